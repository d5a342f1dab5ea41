//! `cargo xtask integration`: the QUIC interop runner's server-side cases that apply to a proxy, run
//! against the real `qproxy` with clients no one here wrote (ngtcp2's gtlsclient from Debian, aioquic from
//! PyPI, quinn + h3 through `h3get`, Debian's headless Chromium), and the loss cases through the UDP fault proxy. Prints a pass/fail matrix per client and fails
//! on any failure. `--fast` runs the quick cases only (what CI runs).

mod aioquic;
mod chromium;
mod gtls;
mod quinn;

use std::net::SocketAddr;
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
    /// A qproxy with `quic-force-retry`, and its stats port.
    retry_port: u16,
    retry_stats: u16,
    /// A qproxy whose certificate chain is `chain_bytes` long (PEM), for the amplification limit.
    amp_port: u16,
    chain_bytes: usize,
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
    Ok(qproxy_tests::ports::free_udp_port(v6)?)
}

/// The aioquic virtual environment the end-to-end tests use (made by their `aioquic_venv.sh` if missing).
fn python(root: &Path) -> Result<PathBuf> {
    let out = Command::new("sh")
        .arg(root.join("crates/proxy/tests/e2e/aioquic_venv.sh"))
        .arg(root.join("target/e2e-venv"))
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("could not make target/e2e-venv with aioquic (the reason is above)");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
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
    let config = std::fs::read_to_string(dir.join("qproxy.cfg"))?;
    let bind = config
        .lines()
        .find(|l| l.trim_start().starts_with("bind quic4@"))
        .context("demo bind")?
        .to_string();
    // More instances to the same demo origin: on IPv6 for the ipv6 case, with Retry for the retry case.
    let port6 = free_udp(true)?;
    let v6_bind = bind.replace(
        &format!("quic4@127.0.0.1:{port}"),
        &format!("quic6@[::1]:{port6}"),
    );
    let v6 = variant(&bin, &dir, "v6", &config, (&bind, &v6_bind), None)?;
    let (retry_port, retry_stats) = (free_udp(false)?, free_tcp()?);
    let retry_bind = bind.replace(&format!(":{port} "), &format!(":{retry_port} ")) + " quic-force-retry";
    let retry = variant(
        &bin,
        &dir,
        "retry",
        &config,
        (&bind, &retry_bind),
        Some(retry_stats),
    )?;
    // With a certificate chain far larger than three client Initials, for the amplificationlimit case.
    let (amp_port, chain_bytes) = (free_udp(false)?, write_big_chain(&dir)?);
    let amp_bind = bind
        .replace(&format!(":{port} "), &format!(":{amp_port} "))
        .replace("server.pem", "server-big.pem");
    let amp = variant(&bin, &dir, "amplification", &config, (&bind, &amp_bind), None)?;
    let python = python(root)?;
    Ok((
        Setup {
            root: root.to_path_buf(),
            dir,
            port,
            port6,
            retry_port,
            retry_stats,
            amp_port,
            chain_bytes,
            python,
        },
        vec![demo, v6, retry, amp],
    ))
}

fn free_tcp() -> Result<u16> {
    Ok(qproxy_tests::ports::free_tcp_port()?)
}

/// Another qproxy on the demo's configuration with `bind` replaced by `new_bind`, its own stats frontend
/// on `stats` (or none), and a check that it started.
fn variant(
    bin: &Path,
    dir: &Path,
    name: &str,
    config: &str,
    (bind, new_bind): (&str, &str),
    stats: Option<u16>,
) -> Result<Running> {
    let mut text: String = config
        .split("\nfrontend stats")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|l| {
            if l == bind {
                new_bind.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(port) = stats {
        text += &format!(
            "\n\nfrontend stats\n    bind 127.0.0.1:{port}\n    http-request use-service prometheus-exporter if {{ path /metrics }}"
        );
    }
    let cfg = dir.join(format!("qproxy-{name}.cfg"));
    std::fs::write(&cfg, text + "\n")?;
    let log = dir.join(format!("qproxy-{name}.log"));
    let mut child = Running(
        Command::new(bin)
            .arg("-q")
            .arg("-f")
            .arg(&cfg)
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Some(status) = child.0.try_wait()? {
        bail!(
            "the {name} instance exited ({status}): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    Ok(child)
}

/// `server-big.pem`: the demo's leaf, its CA certificate sixteen times (a chain no client will ever see
/// whole: its handshake is cut short), and the key. Returns the certificates' PEM size.
fn write_big_chain(dir: &Path) -> Result<usize> {
    let pem = std::fs::read_to_string(dir.join("server.pem"))?;
    let blocks: Vec<String> = pem
        .split("-----BEGIN ")
        .filter(|b| !b.trim().is_empty())
        .map(|b| format!("-----BEGIN {b}"))
        .collect();
    let [leaf, ca, key] = blocks.as_slice() else {
        bail!(
            "server.pem: expected a leaf, a CA certificate and a key, found {} blocks",
            blocks.len()
        );
    };
    let chain = format!("{leaf}{}", ca.repeat(16));
    std::fs::write(dir.join("server-big.pem"), format!("{chain}{key}"))?;
    Ok(chain.len())
}

/// The amplificationlimit case for any client: through a fault proxy that lets only the client's first
/// datagram reach qproxy, `client` (which must give up by itself) starts a handshake; qproxy, with a chain
/// much larger than three times that datagram, must send at most three times what it received (RFC 9000,
/// 8.1) however long it waits.
fn amplification_case(s: &Setup, client: impl FnOnce(u16) -> Result<()>) -> Result<Outcome> {
    let fp = FaultProxy::start(format!("127.0.0.1:{}", s.amp_port).parse()?, Faults::default(), 8)?;
    fp.limit_up(1);
    client(fp.addr().port())?;
    let up = fp.stats().bytes_up.load(std::sync::atomic::Ordering::Relaxed);
    let down = fp.stats().bytes_down.load(std::sync::atomic::Ordering::Relaxed);
    // PEM is base64: 3 bytes of certificate per 4 characters.
    Ok(if up == 0 || down == 0 {
        Outcome::Fail(format!("no exchange: {up} bytes up, {down} down"))
    } else if s.chain_bytes * 3 / 4 <= 3 * up as usize {
        Outcome::Fail(format!(
            "the chain ({} bytes) does not exceed 3 x {up}",
            s.chain_bytes
        ))
    } else if down > 3 * up {
        Outcome::Fail(format!("qproxy sent {down} bytes for {up} received, over 3x"))
    } else {
        Outcome::Pass
    })
}

/// The retry case for any client: `request` on the Retry instance's port gets its 200s, and the instance
/// counts a validated Retry token for it.
fn retry_case(s: &Setup, request: impl FnOnce(u16) -> Result<Outcome>) -> Result<Outcome> {
    let validated = || -> Result<u64> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.retry_stats))?;
        std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stream, &mut text)?;
        text.lines()
            .find_map(|l| l.strip_prefix("qproxy_quic_retries_total{result=\"validated\"} "))
            .context("no qproxy_quic_retries_total in the metrics")?
            .parse()
            .context("retry counter")
    };
    let before = validated()?;
    let outcome = request(s.retry_port)?;
    let after = validated()?;
    Ok(match outcome {
        Outcome::Pass if after > before => Outcome::Pass,
        Outcome::Pass => Outcome::Fail("the request passed without a validated Retry token".into()),
        other => other,
    })
}

fn run(cmd: &mut Command) -> Result<Output> {
    Ok(cmd.stdin(Stdio::null()).output()?)
}

fn url(port: u16, path: &str) -> String {
    format!("https://localhost:{port}{path}")
}

/// Runs `case` against a fault proxy in front of the demo instance that loses `loss` of the datagrams.
fn with_faults(
    setup: &Setup,
    loss: f64,
    case: impl FnOnce(SocketAddr, &FaultProxy) -> Result<Outcome>,
) -> Result<Outcome> {
    let upstream: SocketAddr = format!("127.0.0.1:{}", setup.port).parse()?;
    let faults = Faults {
        loss,
        ..Faults::default()
    };
    let proxy = FaultProxy::start(upstream, faults, 42)?;
    case(proxy.addr(), &proxy)
}

/// Runs a client that prints one JSON line per response (h3client.py, h3get): `program` with the demo CA,
/// against `host`:`port`, killed after `limit_secs`. Its stdout, or `FAILED` and its last error line.
fn json_client(
    s: &Setup,
    limit_secs: u32,
    program: &[&std::ffi::OsStr],
    (host, port): (&str, u16),
    extra: &[&str],
    targets: &[String],
) -> Result<String> {
    let out = run(Command::new("timeout")
        .arg(limit_secs.to_string())
        .args(program)
        .args(["--host", host, "--port", &port.to_string(), "--ca"])
        .arg(s.dir.join("ca.pem"))
        .args(extra)
        .args(targets))?;
    if !out.status.success() {
        return Ok(format!(
            "FAILED {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Passes when `n` JSON lines of `output` say status 200 and, with `flag`, a line sets it to true.
fn json_200s(output: &str, n: usize, flag: Option<&str>) -> Outcome {
    use qproxy_tests::json::{is_true, lines, u64_at};
    let lines = lines(output);
    let ok = lines.iter().filter(|v| u64_at(v, "status") == Some(200)).count();
    if ok != n {
        return Outcome::Fail(format!(
            "{ok} of {n} responses were 200 {}",
            output.lines().last().unwrap_or("")
        ));
    }
    match flag {
        Some(flag) if !lines.iter().any(|v| is_true(v, flag)) => {
            Outcome::Fail(format!("no {flag}: {}", output.trim_end()))
        }
        _ => Outcome::Pass,
    }
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

/// Runs the matrix; `fast` keeps the quick cases.
pub(crate) fn integration(root: &Path, fast: bool) -> Result<()> {
    let (setup, _running) = start(root)?;
    let mut failures = 0;
    println!(
        "{:<20} {:<10} {:<10} {:<10} {:<10}",
        "case", "gtlsclient", "aioquic", "quinn", "chromium"
    );
    let mut notes = Vec::new();
    for (name, quick) in CASES {
        if fast && !quick {
            continue;
        }
        let mut row = format!("{name:<20}");
        for (client, outcome) in [
            ("gtlsclient", gtls::case(&setup, name)?),
            ("aioquic", aioquic::case(&setup, name)?),
            ("quinn", quinn::case(&setup, name)?),
            ("chromium", chromium::case(&setup, name)?),
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
