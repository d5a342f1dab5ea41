//! `cargo xtask fuzz`: the cargo-fuzz targets in `fuzz/` (every parser that reads bytes from outside,
//! see `qproxy::fuzzing`) on nightly with libFuzzer, each for a while (nightly and cargo-fuzz are
//! installed first when missing). New inputs go to
//! `target/fuzz-corpus/TARGET` (seeded from `fuzz/corpus/TARGET`, which stays as committed); a crash
//! leaves its input in `fuzz/artifacts/TARGET` and fails the command.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn install(program: &str, args: &[&str]) -> Result<()> {
    let line = format!("{program} {}", args.join(" "));
    println!("installing for cargo-fuzz: {line}");
    let ok = Command::new(program)
        .args(args)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("could not run '{line}'; run it by hand, then cargo xtask fuzz again");
    }
    Ok(())
}

/// Every target, as `fuzz/Cargo.toml` names them.
const TARGETS: [&str; 6] = [
    "config",
    "response_head",
    "chunked",
    "retry_token",
    "request_head",
    "connection",
];

pub(crate) fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let (mut seconds, mut only) = (60u64, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = value.parse().context("--seconds takes a number")?,
            "--target" if TARGETS.contains(&value.as_str()) => only = Some(value.clone()),
            "--target" => bail!("no fuzz target '{value}'; expected one of {}", TARGETS.join(", ")),
            other => bail!("unknown fuzz option {other}; expected --seconds N or --target NAME"),
        }
    }
    let works = |args: &[&str]| {
        Command::new("cargo")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // What cargo-fuzz needs, installed when missing (both come from the Rust project's own servers).
    if !works(&["+nightly", "--version"]) {
        install(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    if !works(&["fuzz", "--version"]) {
        install("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    for target in TARGETS
        .iter()
        .filter(|t| only.as_deref().is_none_or(|o| o == **t))
    {
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        println!(
            "fuzz {target} for {seconds} s (new inputs in {})",
            scratch.display()
        );
        let status = Command::new("cargo")
            .current_dir(root)
            .args(["+nightly", "fuzz", "run", "--fuzz-dir", "fuzz", target])
            .arg(&scratch)
            .arg(root.join("fuzz/corpus").join(target))
            .args(["--", &format!("-max_total_time={seconds}")])
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {target} failed: its input is in fuzz/artifacts/{target}");
        }
    }
    Ok(())
}
