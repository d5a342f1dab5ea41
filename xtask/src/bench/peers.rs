//! The proxies measured: qproxy (the release build), HAProxy with QUIC (`--haproxy PATH`,
//! `QPROXY_BENCH_HAPROXY`, `haproxy` on PATH, or ../shared/peers/haproxy, the first whose `-vv` lists
//! `+QUIC`) and Caddy (`caddy` on PATH). A missing one is skipped with the way to get it; the bench never
//! installs anything. A started proxy is a [`Running`], killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::child::{self, Guard};
use super::configs::{self, Wiring};
use super::procfs::udp_bound;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Qproxy,
    Haproxy,
    Caddy,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Qproxy => "qproxy",
            Kind::Haproxy => "haproxy",
            Kind::Caddy => "caddy",
        }
    }
}

pub(crate) struct Peer {
    pub(crate) kind: Kind,
    pub(crate) bin: PathBuf,
    pub(crate) version: String,
}

/// `name` on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn first_line(bin: &Path, args: &[&str]) -> Option<String> {
    let out = child::run(Command::new(bin).args(args), "version", Duration::from_secs(10)).ok()?;
    let text = out.stdout + &out.stderr;
    out.status?
        .success()
        .then(|| text.lines().next().unwrap_or("").trim().to_string())
}

/// The HAProxy binary to use, or why there is none.
fn haproxy(root: &Path, flag: Option<&Path>) -> Result<Peer, String> {
    let quic = |bin: &Path| -> Option<String> {
        let out = child::run(
            Command::new(bin).arg("-vv"),
            "haproxy -vv",
            Duration::from_secs(10),
        )
        .ok()?;
        (out.ok() && out.stdout.contains("+QUIC"))
            .then(|| out.stdout.lines().next().unwrap_or("").trim().to_string())
    };
    let mut tried = Vec::new();
    let explicit = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("QPROXY_BENCH_HAPROXY").map(PathBuf::from));
    let shared = root.join("../shared/peers/haproxy");
    let candidates = explicit
        .into_iter()
        .chain(which("haproxy"))
        .chain(shared.is_file().then_some(shared));
    for bin in candidates {
        match quic(&bin) {
            Some(version) => {
                return Ok(Peer {
                    kind: Kind::Haproxy,
                    bin,
                    version,
                })
            }
            None => tried.push(bin.display().to_string()),
        }
    }
    Err(format!(
        "no HAProxy with QUIC (tried: {}); Debian's haproxy 2.6 has none: build 3.x with USE_QUIC=1 \
         (../shared/peers/README.md) and pass --haproxy PATH or set QPROXY_BENCH_HAPROXY",
        if tried.is_empty() {
            "none found".into()
        } else {
            tried.join(", ")
        }
    ))
}

/// The proxies to measure, and a line for each one skipped.
pub(crate) fn find(root: &Path, haproxy_flag: Option<&Path>) -> (Vec<Peer>, Vec<String>) {
    let mut peers = Vec::new();
    let mut skipped = Vec::new();
    let qproxy = root.join("target/release/qproxy");
    peers.push(Peer {
        kind: Kind::Qproxy,
        version: first_line(&qproxy, &["--version"]).unwrap_or_default(),
        bin: qproxy,
    });
    match haproxy(root, haproxy_flag) {
        Ok(peer) => peers.push(peer),
        Err(why) => skipped.push(format!("haproxy skipped: {why}")),
    }
    match which("caddy") {
        Some(bin) => peers.push(Peer {
            kind: Kind::Caddy,
            version: first_line(&bin, &["version"]).unwrap_or_default(),
            bin,
        }),
        None => skipped.push("caddy skipped: not installed (apt-get install caddy)".into()),
    }
    (peers, skipped)
}

/// A proxy running on its port.
pub(crate) struct Running {
    pub(crate) port: u16,
    guard: Guard,
}

impl Running {
    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

impl Peer {
    /// Writes this proxy's configuration for `wiring` into `dir` and starts it; returns once its UDP
    /// port is bound (10 s at most).
    pub(crate) fn start(&self, dir: &Path, wiring: &Wiring<'_>) -> Result<Running> {
        let name = self.kind.name();
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let mut cmd = Command::new(&self.bin);
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        match self.kind {
            Kind::Qproxy => {
                let cfg = dir.join("qproxy.cfg");
                std::fs::write(&cfg, configs::qproxy(wiring))?;
                cmd.arg("-q").arg("-f").arg(cfg);
            }
            Kind::Haproxy => {
                let cfg = dir.join("haproxy.cfg");
                std::fs::write(&cfg, configs::haproxy(wiring))?;
                cmd.arg("-db").arg("-f").arg(cfg);
            }
            Kind::Caddy => {
                let cfg = dir.join("Caddyfile");
                std::fs::write(&cfg, configs::caddy(wiring))?;
                cmd.args(["run", "--adapter", "caddyfile", "--config"])
                    .arg(cfg)
                    .env("GOMAXPROCS", wiring.threads.to_string())
                    .env("HOME", dir)
                    .env("XDG_DATA_HOME", dir.join("caddy-data"))
                    .env("XDG_CONFIG_HOME", dir.join("caddy-config"));
            }
        }
        let mut guard = Guard::spawn(&mut cmd, name)?;
        let until = Instant::now() + Duration::from_secs(10);
        while !udp_bound(wiring.port) {
            if let Some(status) = guard.exited() {
                bail!(
                    "{name} exited ({status}): {}",
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
                );
            }
            if Instant::now() > until {
                bail!("{name} did not bind UDP {} within 10 s", wiring.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Running {
            port: wiring.port,
            guard,
        })
    }
}
