//! `cargo xtask integration`: the QUIC interop runner's server-side cases that apply to a proxy, run
//! against the real `qproxy` with clients no one here wrote (ngtcp2's gtlsclient from Debian, aioquic from
//! PyPI), and the loss cases through the UDP fault proxy. Prints a pass/fail matrix per client and fails
//! on any failure. `--fast` runs the quick cases only (what CI runs).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use udp_faults::{Direction, FaultProxy, Faults};

enum Outcome {
    Pass,
    Fail(String),
    Unsupported(&'static str),
}

struct Setup {
    root: PathBuf,
    dir: PathBuf,
    port: u16,
    port6: u16,
    python: PathBuf,
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp(v6: bool) -> Result<u16> {
    let s = if v6 {
        UdpSocket::bind("[::1]:0")?
    } else {
        UdpSocket::bind("127.0.0.1:0")?
    };
    Ok(s.local_addr()?.port())
}

/// The aioquic virtual environment the end-to-end tests use (made here if missing).
fn python(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target/e2e-venv");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()?
            .success()
            && Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "aioquic"])
                .status()?
                .success();
        if !ok {
            bail!("could not make {} with aioquic", venv.display());
        }
    }
    Ok(python)
}

fn start(root: &Path) -> Result<(Setup, Vec<Running>)> {
    let bin = root.join("target/debug/qproxy");
    let dir = std::env::temp_dir().join("qproxy-integration");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (demo, port) = crate::demo_proc::spawn(
        Command::new(&bin)
            .args(["--demo", "--demo-port", "4520", "-q", "--demo-dir"])
            .arg(&dir)
            .stderr(Stdio::null()),
    )?;
    let demo = Running(demo);
    // A second instance on IPv4 and IPv6, to the same demo origin, for the ipv6 case.
    let config = std::fs::read_to_string(dir.join("qproxy.cfg"))?;
    let port6 = free_udp(true)?;
    let bind = config
        .lines()
        .find(|l| l.trim_start().starts_with("bind quic4@"))
        .context("demo bind")?
        .to_string();
    let bind6 = bind.replace(
        &format!("quic4@127.0.0.1:{port}"),
        &format!("quic6@[::1]:{port6}"),
    );
    // Everything but the stats frontend (its port is the first instance's).
    let second: String = config
        .split("\nfrontend stats")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|l| if l == bind { bind6.clone() } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg6 = dir.join("qproxy6.cfg");
    std::fs::write(&cfg6, second + "\n")?;
    let log6 = dir.join("qproxy6.log");
    let mut v6 = Running(
        Command::new(&bin)
            .arg("-q")
            .arg("-f")
            .arg(&cfg6)
            .stderr(std::fs::File::create(&log6)?)
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = v6.0.try_wait()? {
        bail!(
            "the IPv6 instance exited ({status}): {}",
            std::fs::read_to_string(&log6).unwrap_or_default()
        );
    }
    let python = python(root)?;
    Ok((
        Setup {
            root: root.to_path_buf(),
            dir,
            port,
            port6,
            python,
        },
        vec![demo, v6],
    ))
}

fn run(cmd: &mut Command) -> Result<Output> {
    Ok(cmd.stdin(Stdio::null()).output()?)
}

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

fn statuses(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            l.split_once("[:status: ")
                .map(|(_, r)| r.trim_end_matches(']').to_string())
        })
        .collect()
}

fn expect_200s(output: &str, n: usize) -> Outcome {
    let s = statuses(output);
    if s.len() == n && s.iter().all(|x| x == "200") {
        Outcome::Pass
    } else {
        Outcome::Fail(format!(
            "{} of {n} responses were 200",
            s.iter().filter(|x| *x == "200").count()
        ))
    }
}

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

fn url(port: u16, path: &str) -> String {
    format!("https://localhost:{port}{path}")
}

fn with_faults(
    setup: &Setup,
    faults: Faults,
    case: impl FnOnce(SocketAddr, &FaultProxy) -> Result<Outcome>,
) -> Result<Outcome> {
    let upstream: SocketAddr = format!("127.0.0.1:{}", setup.port).parse()?;
    let proxy = FaultProxy::start(upstream, faults, 42)?;
    case(proxy.addr(), &proxy)
}

/// 300 ms into a transfer, both directions go dark for 2 s; the transfer must then complete.
fn black_hole(fp: &FaultProxy) {
    std::thread::sleep(Duration::from_millis(300));
    for on in [true, false] {
        fp.set_blackhole(Direction::Down, on);
        fp.set_blackhole(Direction::Up, on);
        if on {
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

type Case = (&'static str, bool);

/// (name, fast): the cases, in the interop runner's order.
const CASES: [Case; 15] = [
    ("handshake", true),
    ("transfer", true),
    ("multiplexing", false),
    ("http3", true),
    ("chacha20", true),
    ("keyupdate", true),
    ("ipv6", true),
    ("resumption", true),
    ("zerortt", true),
    ("rebind-port", false),
    ("retry", true),
    ("amplificationlimit", true),
    ("handshakeloss", false),
    ("transferloss", false),
    ("blackhole", false),
];

fn gtls_case(s: &Setup, name: &str) -> Result<Outcome> {
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
        "retry" => Outcome::Unsupported("qproxy sends no Retry yet (quic-force-retry is not implemented)"),
        "amplificationlimit" => {
            Outcome::Unsupported("needs the runner's packet capture; quiche enforces the 3x limit")
        }
        "handshakeloss" => with_faults(
            s,
            Faults {
                loss: 0.3,
                ..Faults::default()
            },
            |addr, _| {
                let mut ok = 0;
                for _ in 0..10 {
                    if statuses(&gtls("127.0.0.1", addr.port(), &[], &[url(p, "/")])?) == ["200"] {
                        ok += 1;
                    }
                }
                Ok(if ok == 10 {
                    Outcome::Pass
                } else {
                    Outcome::Fail(format!("{ok} of 10 handshakes completed at 30 % loss"))
                })
            },
        )?,
        "transferloss" => with_faults(
            s,
            Faults {
                loss: 0.02,
                ..Faults::default()
            },
            |addr, _| {
                Ok(expect_200s(
                    &gtls("127.0.0.1", addr.port(), &[], &[url(p, "/bytes/5000000")])?,
                    1,
                ))
            },
        )?,
        "blackhole" => with_faults(s, Faults::default(), |addr, fp| {
            let port = addr.port();
            let client =
                std::thread::spawn(move || gtls("127.0.0.1", port, &[], &[url(p, "/bytes/20000000")]));
            black_hole(fp);
            Ok(expect_200s(&client.join().expect("client thread")?, 1))
        })?,
        _ => Outcome::Unsupported("unknown case"),
    })
}

fn aioquic_case(s: &Setup, name: &str) -> Result<Outcome> {
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
            Outcome::Unsupported("the aioquic client here cannot change its port mid-connection")
        }
        "retry" => Outcome::Unsupported("qproxy sends no Retry yet (quic-force-retry is not implemented)"),
        "amplificationlimit" => {
            Outcome::Unsupported("needs the runner's packet capture; quiche enforces the 3x limit")
        }
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

/// Runs the matrix; `fast` keeps the quick cases.
pub(crate) fn integration(root: &Path, fast: bool) -> Result<()> {
    let (setup, _running) = start(root)?;
    let mut failures = 0;
    println!("{:<20} {:<10} {:<10}", "case", "gtlsclient", "aioquic");
    let mut notes = Vec::new();
    for (name, quick) in CASES {
        if fast && !quick {
            continue;
        }
        let mut row = format!("{name:<20}");
        for (client, outcome) in [
            ("gtlsclient", gtls_case(&setup, name)?),
            ("aioquic", aioquic_case(&setup, name)?),
        ] {
            let cell = match outcome {
                Outcome::Pass => "pass".to_string(),
                Outcome::Fail(why) => {
                    failures += 1;
                    notes.push(format!("{name} / {client}: FAIL: {why}"));
                    "FAIL".to_string()
                }
                Outcome::Unsupported(why) => {
                    notes.push(format!("{name} / {client}: n/a: {why}"));
                    "n/a".to_string()
                }
            };
            row.push_str(&format!(" {cell:<10}"));
        }
        println!("{row}");
    }
    for note in notes {
        println!("  {note}");
    }
    if failures > 0 {
        bail!("{failures} interop case(s) failed");
    }
    Ok(())
}
