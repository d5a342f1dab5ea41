//! The gtlsclient column (ngtcp2's client from Debian's ngtcp2-client).

use std::process::Command;

use anyhow::Result;

use super::{amplification_case, black_hole, retry_case, run, url, with_faults, Outcome, Setup};

fn gtls(host: &str, port: u16, extra: &[&str], urls: &[String]) -> Result<String> {
    let out = run(Command::new("timeout")
        .args([
            "60",
            "gtlsclient",
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
            "--timeout=15s",
        ])
        .args(extra)
        .args([host, &port.to_string()])
        .args(urls))?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// Bytes of CRYPTO frames the server sent in Handshake packets (from gtlsclient's frame log).
fn handshake_bytes(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.contains("frm rx") && l.contains("Handshake CRYPTO"))
        .filter_map(|l| {
            l.rsplit("len=")
                .next()?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

use qproxy_tests::gtls::statuses;

fn expect_200s(output: &str, n: usize) -> Outcome {
    let s = statuses(output);
    if s.len() == n && s.iter().all(|x| *x == 200) {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{} of {n} responses were 200",
            s.iter().filter(|x| **x == 200).count()
        ))
    }
}

pub(super) fn case(s: &Setup, name: &str) -> Result<Outcome> {
    let p = s.port;
    Ok(match name {
        "handshake" | "http3" => expect_200s(&gtls("127.0.0.1", p, &[], &[url(p, "/")])?, 1),
        "transfer" => expect_200s(
            &gtls(
                "127.0.0.1",
                p,
                &["--max-stream-data-bidi-local=64K", "--max-data=256K"],
                &[
                    url(p, "/bytes/2000000"),
                    url(p, "/bytes/3000000"),
                    url(p, "/bytes/500000"),
                ],
            )?,
            3,
        ),
        "multiplexing" => expect_200s(
            &gtls("127.0.0.1", p, &["-n", "2000"], &[url(p, "/bytes/32")])?,
            2000,
        ),
        "chacha20" => {
            let out = gtls(
                "127.0.0.1",
                p,
                &["--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"],
                &[url(p, "/")],
            )?;
            match expect_200s(&out, 1) {
                Outcome::Pass if out.contains("CHACHA20") => Outcome::Pass,
                Outcome::Pass => Outcome::Fail("another cipher was negotiated".into()),
                other => other,
            }
        }
        "keyupdate" => expect_200s(
            &gtls(
                "127.0.0.1",
                p,
                &["--key-update=1ms", "--delay-stream=50ms"],
                &[url(p, "/bytes/1000000")],
            )?,
            1,
        ),
        "ipv6" => expect_200s(
            &gtls("::1", s.port6, &[], &[format!("https://[::1]:{}/", s.port6)])?,
            1,
        ),
        "resumption" | "zerortt" => {
            let (sess, tp) = (s.dir.join("gtls.session"), s.dir.join("gtls.tp"));
            let files = [
                format!("--session-file={}", sess.display()),
                format!("--tp-file={}", tp.display()),
            ];
            let args: Vec<&str> = files.iter().map(String::as_str).collect();
            let _ = std::fs::remove_file(&sess);
            let _ = std::fs::remove_file(&tp);
            let first = gtls("127.0.0.1", p, &args, &[url(p, "/")])?;
            let second = gtls("127.0.0.1", p, &args, &[url(p, "/")])?;
            // gtlsclient does not say it resumed; a resumed handshake shows it by leaving out the
            // certificate chain, so the server's Handshake flight is a fraction of the first one.
            let resumed = handshake_bytes(&second) * 2 < handshake_bytes(&first);
            // The request went out in 0-RTT packets and the server did not reject them.
            let early = second
                .lines()
                .any(|l| l.contains("pkt tx") && l.contains("type=0RTT"))
                && !second.to_ascii_lowercase().contains("rejected");
            match (expect_200s(&first, 1), expect_200s(&second, 1)) {
                (Outcome::Pass, Outcome::Pass) if name == "resumption" && resumed => Outcome::Pass,
                (Outcome::Pass, Outcome::Pass) if name == "zerortt" && early => Outcome::Pass,
                (Outcome::Pass, Outcome::Pass) => {
                    Outcome::Fail(format!("resumed={resumed} early data accepted={early}"))
                }
                _ => Outcome::Fail("a request failed".into()),
            }
        }
        "rebind-port" => expect_200s(
            &gtls(
                "127.0.0.1",
                p,
                &["--change-local-addr=200ms", "--nat-rebinding", "--delay-stream=0"],
                &[url(p, "/bytes/5000000")],
            )?,
            1,
        ),
        "retry" => retry_case(s, |rp| {
            Ok(expect_200s(&gtls("127.0.0.1", rp, &[], &[url(rp, "/")])?, 1))
        })?,
        "amplificationlimit" => amplification_case(s, |port| {
            gtls("127.0.0.1", port, &["--timeout=3s"], &[url(port, "/")]).map(drop)
        })?,
        "handshakeloss" => with_faults(s, 0.3, |addr, _| {
            let mut ok = 0;
            for _ in 0..10 {
                if statuses(&gtls("127.0.0.1", addr.port(), &[], &[url(p, "/")])?) == [200] {
                    ok += 1;
                }
            }
            Ok(if ok == 10 {
                Outcome::Pass
            } else {
                Outcome::Fail(format!("{ok} of 10 handshakes completed at 30 % loss"))
            })
        })?,
        "transferloss" => with_faults(s, 0.02, |addr, _| {
            Ok(expect_200s(
                &gtls("127.0.0.1", addr.port(), &[], &[url(p, "/bytes/5000000")])?,
                1,
            ))
        })?,
        "blackhole" => with_faults(s, 0.0, |addr, fp| {
            let port = addr.port();
            let client =
                std::thread::spawn(move || gtls("127.0.0.1", port, &[], &[url(p, "/bytes/20000000")]));
            black_hole(fp);
            Ok(expect_200s(&client.join().expect("client thread")?, 1))
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}
