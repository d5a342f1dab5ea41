//! `cargo xtask <command>`: project chores that are not `cargo test`.
//!
//! Kept light on purpose: it must not compile quiche to start.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  deps    install the build prerequisites (cmake, libclang) with apt-get when root, or print the command
  ci      what CI runs: deps, cargo fmt --check, clippy -D warnings, the test suite";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("ci") => ci(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Debian packages quiche's BoringSSL build needs, with the file that shows each is present.
const PREREQUISITES: [(&str, &str); 2] = [
    ("cmake", "/usr/bin/cmake"),
    ("libclang-dev", "/usr/lib/llvm-14/lib/libclang.so"),
];

fn missing_packages() -> Vec<&'static str> {
    PREREQUISITES
        .iter()
        .filter(|(pkg, probe)| {
            let installed = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", pkg])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
            !installed && !std::path::Path::new(probe).exists()
        })
        .map(|(pkg, _)| *pkg)
        .collect()
}

fn deps() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        println!(
            "build prerequisites present: {}",
            PREREQUISITES.map(|(p, _)| p).join(", ")
        );
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let command = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    if !is_root {
        bail!("missing {}; run as root: {command}", missing.join(", "));
    }
    println!("installing {}", missing.join(", "));
    let ok = Command::new("sh")
        .args([
            "-c",
            &format!(
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {}",
                missing.join(" ")
            ),
        ])
        .status()
        .context("running apt-get")?
        .success();
    if !ok {
        bail!("apt-get failed; try: {command}");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn ci() -> Result<()> {
    deps()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cargo(&["test", "--workspace"])
}
