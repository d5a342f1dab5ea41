//! The bench's child processes: a guard that kills its child when dropped (on every path out, errors
//! included), and commands run to their end within a time limit.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A child killed and reaped when the guard goes.
pub(crate) struct Guard {
    pub(crate) child: Child,
}

impl Guard {
    pub(crate) fn spawn(cmd: &mut Command, what: &str) -> Result<Guard> {
        let child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        Ok(Guard { child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, when the child has already exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a bounded command did.
pub(crate) struct Finished {
    /// `None` when it was killed at its time limit.
    pub(crate) status: Option<ExitStatus>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    pub(crate) fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The last line of standard error, to say why it failed.
    pub(crate) fn why(&self) -> String {
        match self.status {
            None => "killed at its time limit".into(),
            Some(s) => format!(
                "{s}: {}",
                self.stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
            ),
        }
    }
}

/// A started command whose output is collected by two threads.
pub(crate) struct Started {
    guard: Guard,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

pub(crate) fn start(cmd: &mut Command, what: &str) -> Result<Started> {
    let mut guard = Guard::spawn(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        what,
    )?;
    let out = drain(guard.child.stdout.take().context("stdout")?);
    let err = drain(guard.child.stderr.take().context("stderr")?);
    Ok(Started { guard, out, err })
}

impl Started {
    /// Waits until the child exits or `deadline`, when it is killed.
    pub(crate) fn finish(mut self, deadline: Instant) -> Finished {
        let status = loop {
            if let Some(status) = self.guard.exited() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = self.guard.child.kill();
                let _ = self.guard.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Finished {
            status,
            stdout: self.out.join().unwrap_or_default(),
            stderr: self.err.join().unwrap_or_default(),
        }
    }
}

/// Runs `cmd` to its end, killed after `limit`.
pub(crate) fn run(cmd: &mut Command, what: &str, limit: Duration) -> Result<Finished> {
    Ok(start(cmd, what)?.finish(Instant::now() + limit))
}
