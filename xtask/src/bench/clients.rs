//! The two clients: `h3load` (quinn + h3, this workspace's load generator; one JSON line, or phase lines
//! in `--hold` mode) and ngtcp2's `gtlsclient` (Debian package ngtcp2-client), each bounded in time.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::child::{self, Guard};

/// How to reach the proxy under test.
pub(crate) struct Target {
    pub(crate) h3load: PathBuf,
    pub(crate) ca: PathBuf,
    pub(crate) port: u16,
}

impl Target {
    fn h3load(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.h3load);
        cmd.args(["--port", &self.port.to_string(), "--ca"])
            .arg(&self.ca)
            .args(args);
        cmd
    }

    /// Runs h3load with `args` (killed after `limit`) and returns its report.
    pub(crate) fn load(&self, args: &[String], limit: Duration) -> Result<Value> {
        let mut cmd = self.h3load(args);
        cmd.args(["--timeout", &format!("{}", limit.as_secs_f64().max(1.0))]);
        let out = child::run(&mut cmd, "h3load", limit + Duration::from_secs(10))?;
        if !out.ok() {
            bail!("h3load failed: {}", out.why());
        }
        let line = out.stdout.lines().last().unwrap_or("");
        serde_json::from_str(line).with_context(|| format!("h3load printed {line:?}"))
    }

    /// Starts h3load in `--hold` mode with `args`.
    pub(crate) fn hold(&self, args: &[String], limit: Duration) -> Result<Hold> {
        let mut cmd = self.h3load(args);
        cmd.args(["--hold", "--timeout", &limit.as_secs().max(1).to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut guard = Guard::spawn(&mut cmd, "h3load --hold")?;
        let stdin = guard.child.stdin.take().context("h3load stdin")?;
        let stdout = guard.child.stdout.take().context("h3load stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Hold {
            _guard: guard,
            stdin,
            lines,
        })
    }
}

/// An h3load holding connections open, stepped through its phases.
pub(crate) struct Hold {
    _guard: Guard,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Hold {
    /// The next JSON line (a phase, or the final report), waiting `limit` at most.
    pub(crate) fn next(&self, limit: Duration) -> Result<Value> {
        let line = self
            .lines
            .recv_timeout(limit)
            .context("h3load --hold said nothing in time (or exited)")?;
        serde_json::from_str(&line).with_context(|| format!("h3load printed {line:?}"))
    }

    /// On to the next phase.
    pub(crate) fn step(&mut self) -> Result<()> {
        self.stdin.write_all(b"go\n")?;
        Ok(self.stdin.flush()?)
    }
}

/// What gtlsclients did.
pub(crate) struct GtlsRun {
    /// Responses with status 200, over all clients.
    pub(crate) ok: usize,
    /// Responses expected.
    pub(crate) expected: usize,
    /// From the first start to the last exit.
    pub(crate) elapsed: Duration,
    pub(crate) failure: Option<String>,
}

/// `clients` gtlsclients at once, each making `requests` GETs of `path` on one connection, with
/// `extra` options; killed after `limit`.
pub(crate) fn gtls(
    port: u16,
    clients: usize,
    requests: usize,
    path: &str,
    extra: &[&str],
    limit: Duration,
) -> Result<GtlsRun> {
    let started = Instant::now();
    let url = format!("https://localhost:{port}{path}");
    let mut running = Vec::new();
    for _ in 0..clients {
        running.push(child::start(
            Command::new("gtlsclient")
                .args([
                    "--no-quic-dump",
                    "--no-http-dump",
                    "--exit-on-all-streams-close",
                    "--timeout=15s",
                ])
                .args(["-n", &requests.to_string()])
                .args(extra)
                .args(["127.0.0.1", &port.to_string(), &url]),
            "gtlsclient (Debian package ngtcp2-client)",
        )?);
    }
    let deadline = started + limit;
    let (mut ok, mut failure) = (0, None);
    for client in running {
        let out = client.finish(deadline);
        let statuses = qproxy_tests::gtls::statuses(&(out.stdout.clone() + &out.stderr));
        ok += statuses.iter().filter(|s| **s == 200).count();
        if !out.ok() {
            failure.get_or_insert(out.why());
        }
    }
    Ok(GtlsRun {
        ok,
        expected: clients * requests,
        elapsed: started.elapsed(),
        failure,
    })
}

/// gtlsclient is installed.
pub(crate) fn have_gtls() -> bool {
    super::peers::which("gtlsclient").is_some()
}

/// `a`'s field `key` as a number.
pub(crate) fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The path of `bin` in the release build.
pub(crate) fn release_bin(root: &Path, bin: &str) -> PathBuf {
    root.join("target/release").join(bin)
}
