//! The quinn column: `h3get` (crates/h3-client: quinn + h3 + rustls, implementations no one here wrote).

use std::process::Command;

use anyhow::Result;
use udp_faults::Faults;

use super::{amplification_case, black_hole, retry_case, run, with_faults, Outcome, Setup};

/// Runs h3get against `host`:`port` with `extra` options; its stdout (JSON lines), or a failure line.
fn h3get(s: &Setup, host: &str, port: u16, extra: &[&str], paths: &[&str]) -> Result<String> {
    let out = run(Command::new("timeout")
        .arg("120")
        .arg(s.root.join("target/debug/h3get"))
        .args(["--host", host, "--port", &port.to_string(), "--ca"])
        .arg(s.dir.join("ca.pem"))
        .args(extra)
        .args(paths))?;
    if !out.status.success() {
        return Ok(format!(
            "FAILED {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn ok_200s(output: &str, n: usize) -> Outcome {
    let ok = output.lines().filter(|l| l.contains("\"status\":200")).count();
    if ok == n {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{ok} of {n} responses were 200 {}",
            output.lines().last().unwrap_or("")
        ))
    }
}

/// `ok_200s`, and `flag` set on connection `conn`'s line.
fn with_flag(output: &str, n: usize, conn: usize, flag: &str) -> Outcome {
    match ok_200s(output, n) {
        Outcome::Pass => {
            let line = format!("{{\"conn\":{conn},");
            let set = output
                .lines()
                .any(|l| l.starts_with(&line) && l.contains(&format!("\"{flag}\":true")));
            if set {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("no {flag} on connection {conn}: {}", output.trim_end()))
            }
        }
        other => other,
    }
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    let (h, p) = ("127.0.0.1", s.port);
    Ok(match name {
        "handshake" | "http3" => ok_200s(&h3get(s, h, p, &[], &["/"])?, 1),
        "transfer" => ok_200s(
            &h3get(
                s,
                h,
                p,
                &[],
                &["/bytes/2000000", "/bytes/3000000", "/bytes/500000"],
            )?,
            3,
        ),
        "multiplexing" => {
            let paths = vec!["/bytes/32"; 2000];
            ok_200s(&h3get(s, h, p, &[], &paths)?, 2000)
        }
        "chacha20" => ok_200s(&h3get(s, h, p, &["--chacha20"], &["/"])?, 1),
        "keyupdate" => ok_200s(&h3get(s, h, p, &["--key-update"], &["/bytes/1000000"])?, 1),
        "ipv6" => ok_200s(&h3get(s, "::1", s.port6, &[], &["/"])?, 1),
        "resumption" => with_flag(
            &h3get(s, h, p, &["--connections", "2", "--resume"], &["/"])?,
            2,
            1,
            "resumed",
        ),
        "zerortt" => with_flag(
            &h3get(s, h, p, &["--connections", "2", "--resume"], &["/"])?,
            2,
            1,
            "early_data",
        ),
        "rebind-port" => with_flag(
            &h3get(s, h, p, &["--rebind-after", "200000"], &["/bytes/5000000"])?,
            1,
            0,
            "rebound",
        ),
        "retry" => retry_case(s, |rp| Ok(ok_200s(&h3get(s, h, rp, &[], &["/"])?, 1)))?,
        "amplificationlimit" => {
            amplification_case(s, |port| h3get(s, h, port, &["--timeout", "3"], &["/"]).map(drop))?
        }
        "handshakeloss" => with_faults(
            s,
            Faults {
                loss: 0.3,
                ..Faults::default()
            },
            |addr, _| {
                Ok(ok_200s(
                    &h3get(s, h, addr.port(), &["--connections", "5"], &["/"])?,
                    5,
                ))
            },
        )?,
        "transferloss" => with_faults(
            s,
            Faults {
                loss: 0.02,
                ..Faults::default()
            },
            |addr, _| Ok(ok_200s(&h3get(s, h, addr.port(), &[], &["/bytes/5000000"])?, 1)),
        )?,
        "blackhole" => with_faults(s, Faults::default(), |addr, fp| {
            std::thread::scope(|scope| {
                let client = scope.spawn(|| h3get(s, h, addr.port(), &[], &["/bytes/20000000"]));
                black_hole(fp);
                Ok(ok_200s(&client.join().expect("client thread")?, 1))
            })
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}
