//! Build facts for `qproxy -vv`: the versions of the protocol crates from the workspace's Cargo.lock, and
//! the BoringSSL API version from the copy that quiche's `boring-sys` vendors (BoringSSL has no release
//! numbers).

use std::path::{Path, PathBuf};

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (krate, var) in [
        ("quiche", "QPROXY_QUICHE_VERSION"),
        ("mio", "QPROXY_MIO_VERSION"),
        ("quinn-udp", "QPROXY_QUINN_UDP_VERSION"),
        ("boring-sys", "QPROXY_BORING_SYS_VERSION"),
    ] {
        let version = locked_version(&text, krate).unwrap_or_else(|| "unknown".into());
        println!("cargo:rustc-env={var}={version}");
    }
    let api = locked_version(&text, "boring-sys")
        .and_then(|v| boringssl_api(&v))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=QPROXY_BORINGSSL_API={api}");
}

/// `version = "..."` of the `[[package]]` named `krate`.
fn locked_version(lock: &str, krate: &str) -> Option<String> {
    let name = format!("name = \"{krate}\"");
    let mut lines = lock.lines();
    lines.find(|l| *l == name)?;
    let version = lines.next()?.strip_prefix("version = \"")?.strip_suffix('"')?;
    Some(version.to_string())
}

/// `BORINGSSL_API_VERSION` in boring-sys's vendored BoringSSL, in cargo's registry sources.
fn boringssl_api(boring_sys: &str) -> Option<String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registries = std::fs::read_dir(home.join("registry/src")).ok()?;
    registries.flatten().find_map(|registry| {
        let header = registry.path().join(format!(
            "boring-sys-{boring_sys}/deps/boringssl/include/openssl/base.h"
        ));
        let text = std::fs::read_to_string(header).ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix("#define BORINGSSL_API_VERSION ")
                .map(|v| v.trim().to_string())
        })
    })
}
