//! A `qproxy --demo` child started by an xtask command: its HTTP/3 port read from the banner, and its
//! stdout drained for as long as it runs (closing the pipe early would turn its next write into EPIPE).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// Starts `cmd` (a `qproxy --demo …` command line, possibly behind a wrapper such as `/usr/bin/time`)
/// and returns the child with the UDP port its banner names.
pub(crate) fn spawn(cmd: &mut Command) -> Result<(Child, u16)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting qproxy --demo")?;
    let mut out = BufReader::new(child.stdout.take().context("demo stdout")?);
    let mut first = String::new();
    out.read_line(&mut first)?;
    let port = first
        .split("UDP ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no port in the demo banner {first:?}"))?;
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok((child, port))
}
