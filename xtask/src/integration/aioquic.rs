//! The aioquic column (aioquic from PyPI, driven by the end-to-end suite's h3client.py).

use std::process::Command;

use anyhow::Result;
use udp_faults::Faults;

use super::{amplification_case, black_hole, retry_case, run, url, with_faults, Outcome, Setup};

fn aioquic(setup: &Setup, host: &str, port: u16, extra: &[&str], urls: &[String]) -> Result<String> {
    let script = setup.root.join("crates/proxy/tests/e2e/h3client.py");
    let out = run(Command::new("timeout")
        .arg("120")
        .arg(&setup.python)
        .arg(script)
        .args(["--host", host, "--port", &port.to_string(), "--ca"])
        .arg(setup.dir.join("ca.pem"))
        .args(extra)
        .args(urls))?;
    if !out.status.success() {
        return Ok(format!(
            "FAILED {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn aioquic_200s(output: &str, n: usize) -> Outcome {
    let ok = output.lines().filter(|l| l.contains("\"status\": 200")).count();
    if ok == n {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{ok} of {n} responses were 200 {}",
            output.lines().last().unwrap_or("")
        ))
    }
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    let p = s.port;
    let h = "127.0.0.1";
    Ok(match name {
        "handshake" | "http3" => aioquic_200s(&aioquic(s, h, p, &[], &[url(p, "/")])?, 1),
        "transfer" => aioquic_200s(
            &aioquic(
                s,
                h,
                p,
                &[],
                &[
                    url(p, "/bytes/2000000"),
                    url(p, "/bytes/3000000"),
                    url(p, "/bytes/500000"),
                ],
            )?,
            3,
        ),
        "multiplexing" => {
            let urls: Vec<String> = (0..2000).map(|_| url(p, "/bytes/32")).collect();
            aioquic_200s(&aioquic(s, h, p, &[], &urls)?, 2000)
        }
        "chacha20" => aioquic_200s(&aioquic(s, h, p, &["--chacha20"], &[url(p, "/")])?, 1),
        "keyupdate" => aioquic_200s(
            &aioquic(s, h, p, &["--key-update"], &[url(p, "/bytes/1000000")])?,
            1,
        ),
        "ipv6" => aioquic_200s(
            &aioquic(s, "::1", s.port6, &[], &[format!("https://[::1]:{}/", s.port6)])?,
            1,
        ),
        "resumption" | "zerortt" => {
            let out = aioquic(s, h, p, &["--resume"], &[url(p, "/")])?;
            let key = if name == "resumption" {
                "\"resumed\": true"
            } else {
                "\"early_data\": true"
            };
            match aioquic_200s(&out, 1) {
                Outcome::Pass if out.contains(key) => Outcome::Pass,
                Outcome::Pass => Outcome::Fail(format!("no {key}: {}", out.lines().last().unwrap_or(""))),
                other => other,
            }
        }
        "rebind-port" => {
            let out = aioquic(
                s,
                h,
                p,
                &["--rebind-after", "200000"],
                &[url(p, "/bytes/5000000")],
            )?;
            match aioquic_200s(&out, 1) {
                Outcome::Pass if out.contains("\"rebound\": true") => Outcome::Pass,
                Outcome::Pass => {
                    Outcome::Fail(format!("the client did not change its port: {}", out.trim_end()))
                }
                other => other,
            }
        }
        "retry" => retry_case(s, |rp| {
            Ok(aioquic_200s(&aioquic(s, h, rp, &[], &[url(rp, "/")])?, 1))
        })?,
        "amplificationlimit" => amplification_case(s, |port| {
            run(Command::new("timeout")
                .arg("5")
                .arg(&s.python)
                .arg(s.root.join("crates/proxy/tests/e2e/h3client.py"))
                .args(["--port", &port.to_string(), "--ca"])
                .arg(s.dir.join("ca.pem"))
                .arg(url(port, "/")))
            .map(drop)
        })?,
        "handshakeloss" => with_faults(
            s,
            Faults {
                loss: 0.3,
                ..Faults::default()
            },
            |addr, _| {
                Ok(aioquic_200s(
                    &aioquic(s, h, addr.port(), &["--connections", "5"], &[url(p, "/")])?,
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
            |addr, _| {
                Ok(aioquic_200s(
                    &aioquic(s, h, addr.port(), &[], &[url(p, "/bytes/5000000")])?,
                    1,
                ))
            },
        )?,
        "blackhole" => with_faults(s, Faults::default(), |addr, fp| {
            let (port, python, script, ca) = (
                addr.port(),
                s.python.clone(),
                s.root.join("crates/proxy/tests/e2e/h3client.py"),
                s.dir.join("ca.pem"),
            );
            let client = std::thread::spawn(move || {
                run(Command::new(python)
                    .arg(script)
                    .args(["--port", &port.to_string(), "--ca"])
                    .arg(ca)
                    .arg(url(p, "/bytes/20000000")))
            });
            black_hole(fp);
            let out = client.join().expect("client thread")?;
            Ok(aioquic_200s(&String::from_utf8_lossy(&out.stdout), 1))
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}
