//! `cargo xtask <command>`: project chores that are not `cargo test`.
//!
//! Kept light on purpose: it must not compile quiche to start.

mod bench;
mod demo_proc;
mod fleet;
mod fuzz;
mod integration;
mod mutants;

use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  deps    install the build prerequisites (cmake, libclang) with apt-get when root, or print the command
  test    install what the tests need too (ngtcp2-client, python3-venv), then cargo test --workspace
  demo    deps, then run `qproxy --demo` (HTTP/3 on 127.0.0.1:4433 or the next free port)
  rss     download 1 GiB through a release qproxy and report its peak RSS (/usr/bin/time -v)
  soak [--minutes M]
          chaos at a steady rate for M minutes (default 10); CSV and SVG in target/soak; fails on growth
  integration [--fast]
          interop cases against qproxy with gtlsclient, aioquic and quinn (h3get); a pass/fail matrix
  chaos [--requests N] [--seed S]
          random client fates and backend failures through a lossy fault proxy (default 100000, seed 1)
  bench [--rounds N] [--quick] [--threads N] [--haproxy PATH] [--cases K,..] [--peers P,..]
          qproxy, HAProxy (QUIC) and Caddy side by side: req/s, latency, MB/s, CPU and RSS; target/bench
  fuzz [--seconds N] [--target T]
          the cargo-fuzz targets in fuzz/ on nightly, N seconds each (default 60); cargo test runs a slice
  mutants [--scope qc-stream|qcs|qcc|worker] [--shard K/N] [--re REGEX] [--exclude-re REGEX] [--file PATH] [--list] [--iterate]
          cargo-mutants over the layers and the worker's release, in place; the report is per scope
  fleet   two qproxy instances behind a stateless nftables QUIC-LB balancer in network namespaces (root)
  ci      what CI runs: deps, cargo fmt --check, clippy -D warnings, integration --fast, fleet, the test suite";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => deps(),
        Some("test") => install(&TEST_PREREQUISITES).and_then(|()| test_workspace()),
        Some("demo") => demo(&args[1..]),
        Some("rss") => rss(),
        Some("chaos") => chaos(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("integration") => run_integration(args.iter().any(|a| a == "--fast")),
        Some("bench") => deps().and_then(|()| bench::bench(&args[1..])),
        Some("fuzz") => workspace_root().and_then(|root| fuzz::fuzz(&root, &args[1..])),
        Some("mutants") => workspace_root().and_then(|root| mutants::mutants(&root, &args[1..])),
        Some("fleet") => debug_binaries().and_then(|root| fleet::fleet(&root)),
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

/// The build's, and what the end-to-end tests run: ngtcp2's gtlsclient, and a venv for aioquic.
const TEST_PREREQUISITES: [(&str, &str); 4] = [
    PREREQUISITES[0],
    PREREQUISITES[1],
    ("ngtcp2-client", "/usr/bin/gtlsclient"),
    ("python3-venv", "/usr/share/doc/python3-venv"),
];

fn missing_packages(packages: &[(&'static str, &str)]) -> Vec<&'static str> {
    packages
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

/// What `cargo build` needs beside Rust.
fn deps() -> Result<()> {
    install(&PREREQUISITES)
}

/// Installs the missing ones of `packages` with apt-get when root; otherwise fails naming the command.
fn install(packages: &[(&'static str, &str)]) -> Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        println!("prerequisites present: {}", names.join(", "));
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

fn demo(extra: &[String]) -> Result<()> {
    deps()?;
    // The dev profile, which `cargo test` builds too: whichever of the README's two commands runs
    // first, the other reuses its build. Cargo's progress stays on: a first build takes minutes.
    let mut args = vec!["run", "--package", "qproxy", "--", "--demo"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// Peak RSS of a release qproxy while gtlsclient downloads 1 GiB through it.
fn rss() -> Result<()> {
    deps()?;
    cargo(&["build", "--release", "--package", "qproxy"])?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let bin = root.join("target/release/qproxy");
    let dir = std::env::temp_dir().join("qproxy-rss");
    let report = dir.join("time.txt");
    std::fs::create_dir_all(&dir)?;
    let (mut proxy, port) = demo_proc::spawn(
        Command::new("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(&report)
            .arg(&bin)
            .args(["--demo", "--demo-port", "4480", "-q", "--demo-dir"])
            .arg(&dir),
    )
    .context("/usr/bin/time -v qproxy --demo (Debian package: time)")?;
    let port = port.to_string();
    let url = format!("https://localhost:{port}/bytes/1073741824");
    let started = std::time::Instant::now();
    let client = Command::new("gtlsclient")
        .args([
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
            "--max-data=64M",
        ])
        .args(["--max-stream-data-bidi-local=32M", "127.0.0.1", &port, &url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("running gtlsclient (Debian package ngtcp2-client)")?;
    let elapsed = started.elapsed();
    // SIGTERM to qproxy itself (the child of /usr/bin/time), so that time writes its report.
    let _ = Command::new("pkill")
        .args(["-TERM", "-P"])
        .arg(proxy.id().to_string())
        .status();
    proxy.wait()?;
    let text = std::fs::read_to_string(&report)?;
    let peak = text
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .unwrap_or("Maximum resident set size: ?");
    println!(
        "1 GiB through qproxy in {:.1} s ({:.0} MiB/s), client {}; qproxy {}",
        elapsed.as_secs_f64(),
        1024.0 / elapsed.as_secs_f64(),
        if client.success() { "ok" } else { "FAILED" },
        peak.trim()
    );
    Ok(())
}

fn soak(args: &[String]) -> Result<()> {
    let minutes = match args {
        [] => "10".to_string(),
        [flag, m] if flag == "--minutes" => m.clone(),
        _ => bail!("usage: cargo xtask soak [--minutes M]"),
    };
    e2e_release("soak", &["--ignored"], &[("QPROXY_SOAK_MINUTES", &minutes)])
        .with_context(|| format!("soak failed ({minutes} min)"))
}

/// Runs one test of the end-to-end suite in release mode (a load test), sized by environment variables.
fn e2e_release(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
    deps()?;
    let mut args = vec![
        "test",
        "--release",
        "--package",
        "qproxy",
        "--test",
        "e2e",
        test,
        "--",
        "--nocapture",
    ];
    args.extend_from_slice(extra);
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo_bin)
        .args(&args)
        .envs(env.iter().copied())
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Builds the debug `qproxy`, `h3get` and `h3load` (after the prerequisites); returns the workspace root.
fn debug_binaries() -> Result<std::path::PathBuf> {
    deps()?;
    cargo(&[
        "build",
        "--quiet",
        "--package",
        "qproxy",
        "--package",
        "h3-client",
    ])?;
    workspace_root()
}

/// The directory of the workspace's Cargo.toml.
fn workspace_root() -> Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    Ok(root.to_path_buf())
}

fn run_integration(fast: bool) -> Result<()> {
    let root = debug_binaries()?;
    integration::integration(&root, fast)
}

/// The chaos round of the end-to-end suite, at any size (release build: it is a load test).
fn chaos(args: &[String]) -> Result<()> {
    let (mut requests, mut seed) = ("100000".to_string(), "1".to_string());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--requests" => requests = value.clone(),
            "--seed" => seed = value.clone(),
            other => bail!("unknown chaos option {other}; expected --requests N or --seed S"),
        }
    }
    e2e_release(
        "chaos_round",
        &[],
        &[("QPROXY_CHAOS_REQUESTS", &requests), ("QPROXY_CHAOS_SEED", &seed)],
    )
    .with_context(|| format!("chaos round failed (seed {seed}, {requests} requests)"))
}

/// What CI runs, the one list of its steps (`.ci/run` installs system packages, then calls this): fmt,
/// clippy, the fast part of the interop matrix, the fleet behind its nftables balancer, and the README's
/// test command, closed by one line that
/// sums every test binary's result.
fn ci() -> Result<()> {
    deps()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    run_integration(true)?;
    fleet::fleet(&debug_binaries()?)?;
    test_workspace()
}

/// `cargo test --workspace`, its output passed through, then `ci: N passed, N failed`.
fn test_workspace() -> Result<()> {
    use std::io::BufRead;
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo_bin)
        .args(["test", "--workspace"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test's output")?;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |what: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(what)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
        }
    }
    let status = child.wait()?;
    println!("ci: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test --workspace failed");
    }
    Ok(())
}
