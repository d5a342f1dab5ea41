//! `cargo xtask integration`: the QUIC interop runner's server-side cases that apply to a proxy, run
//! against the real `qproxy` with clients no one here wrote (ngtcp2's gtlsclient from Debian, aioquic from
//! PyPI, quinn + h3 through `h3get`), and the loss cases through the UDP fault proxy. Prints a pass/fail matrix per client and fails
//! on any failure. `--fast` runs the quick cases only (what CI runs).

mod aioquic;
mod gtls;
mod quinn;

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

/// Runs the matrix; `fast` keeps the quick cases.
pub(crate) fn integration(root: &Path, fast: bool) -> Result<()> {
    let (setup, _running) = start(root)?;
    let mut failures = 0;
    println!(
        "{:<20} {:<10} {:<10} {:<10}",
        "case", "gtlsclient", "aioquic", "quinn"
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
