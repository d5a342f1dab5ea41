//! Architecture checks (rust-analyzer's "tidy"): the layer crates stay sans-IO and in dependency order,
//! every release scenario has its test, and every Rust file says what it is for. The metric family and
//! configuration keyword tables are held against their docs by unit tests beside the tables
//! (`telemetry::families`, `config::keywords`), which can read them.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The package names listed under `[dependencies]` of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                deps.push(name.trim().split('.').next().unwrap().to_string());
            }
        }
    }
    deps
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

const LAYERS: [&str; 3] = ["qc-stream", "qcs", "qcc"];

#[test]
fn layer_crates_depend_only_downward_and_never_on_io_crates() {
    let forbidden_io = [
        "mio",
        "socket2",
        "quinn-udp",
        "tokio",
        "crossbeam-channel",
        "signal-hook",
    ];
    for (i, layer) in LAYERS.iter().enumerate() {
        let deps = dependencies(&root().join("crates").join(layer).join("Cargo.toml"));
        assert!(!deps.is_empty(), "{layer}: no [dependencies] found");
        for dep in &deps {
            assert!(
                !forbidden_io.contains(&dep.as_str()),
                "{layer} depends on {dep}, an I/O crate"
            );
            assert!(dep != "qproxy", "{layer} depends on the binary");
            if let Some(j) = LAYERS.iter().position(|l| l == dep) {
                assert!(j < i, "{layer} depends on {dep}, which is above it");
            }
        }
    }
}

#[test]
fn layer_crates_never_touch_a_socket_or_the_clock() {
    let forbidden = [
        "Instant::now",
        "SystemTime::now",
        "UdpSocket",
        "TcpStream",
        "std::thread::sleep",
        "mio::",
    ];
    for layer in LAYERS {
        for file in rust_files(&root().join("crates").join(layer).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                // Doc examples show how a caller drives the crate; they are not the crate's code.
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for word in forbidden {
                    assert!(
                        !line.contains(word),
                        "{}:{}: {word} in a layer crate",
                        file.display(),
                        n + 1
                    );
                }
            }
        }
    }
}

#[test]
fn every_release_scenario_has_its_test() {
    // In memory (qcc) and, for frames quiche as a client cannot write, end to end with a raw client.
    let mut files = rust_files(&root().join("crates/qcc/tests"));
    files.extend(rust_files(&root().join("crates/proxy/tests")));
    let tests: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let doc = std::fs::read_to_string(root().join("docs/release-order.md")).unwrap();
    // Every row of the scenario table, however many there are now.
    let rows = doc
        .lines()
        .filter(|l| {
            l.split('|')
                .nth(1)
                .is_some_and(|c| c.trim().parse::<u32>().is_ok())
        })
        .count();
    assert!(rows >= 41, "the scenario table has {rows} rows");
    for n in 1..=rows {
        let name = format!("fn scenario_{n:02}_");
        assert!(tests.contains(&name), "no test for release scenario {n}");
        assert!(
            doc.contains(&format!("scenario_{n:02}_")),
            "docs/release-order.md does not map scenario {n}"
        );
    }
}

#[test]
fn every_rust_file_starts_with_a_module_comment() {
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        files.extend(rust_files(&root().join(dir)));
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} does not start with a `//!` comment saying what it is for",
            file.display()
        );
    }
}
