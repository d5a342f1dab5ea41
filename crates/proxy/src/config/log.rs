//! `log TARGET [len N] [format F] FACILITY [LEVEL]` in `global`, as HAProxy reads it: where access lines
//! are shipped (standard output or error, a syslog server over UDP, a local syslog socket) and how each
//! is framed.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::lexer::{need, no_more, Res};

/// One `log` line of `global`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// Where.
    pub dest: LogDest,
    /// How each line is framed.
    pub format: LogFormat,
    /// The syslog facility code (`local0` is 16).
    pub facility: u8,
    /// The most verbose severity shipped (access lines are `info`, 6).
    pub level: u8,
    /// `len`: a framed line is cut to this many bytes (HAProxy's default 1024).
    pub max_len: usize,
}

/// Where a `log` target writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// `stdout`.
    Stdout,
    /// `stderr`.
    Stderr,
    /// `ADDR[:PORT]` or `udp@ADDR[:PORT]`: a syslog server (port 514 by default).
    Udp(SocketAddr),
    /// `/PATH`: a local syslog socket (datagrams), such as `/dev/log`.
    Unix(PathBuf),
}

/// `format`: how a target frames each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `<PRI>Mmm dd hh:mm:ss qproxy[PID]: LINE` (HAProxy's default).
    Rfc3164,
    /// `<PRI>1 TIMESTAMP HOST qproxy PID - - LINE`.
    Rfc5424,
    /// The line alone.
    Raw,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2", "ftp", "ntp",
    "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
];

const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Reads `log ...` (args[0] is `log`).
pub(super) fn target(args: &[String]) -> Res<LogTarget> {
    let raw = need(args, 1, "a log target: stdout, stderr, /dev/log or ADDR:PORT")?;
    let dest = dest(raw)?;
    let mut at = 2;
    let (mut format, mut max_len) = (LogFormat::Rfc3164, 1024);
    loop {
        match args.get(at).map(String::as_str) {
            Some("len") => {
                let n = need(args, at + 1, "a length after 'len'")?;
                max_len = n
                    .parse()
                    .ok()
                    .filter(|n| (80..=65_535).contains(n))
                    .ok_or(format!(
                        "expected a length from 80 to 65535 after 'len', found '{n}'"
                    ))?;
                at += 2;
            }
            Some("format") => {
                format = match need(args, at + 1, "rfc3164, rfc5424 or raw after 'format'")? {
                    "rfc3164" => LogFormat::Rfc3164,
                    "rfc5424" => LogFormat::Rfc5424,
                    "raw" => LogFormat::Raw,
                    other => return Err(format!("log format '{other}': expected rfc3164, rfc5424 or raw")),
                };
                at += 2;
            }
            _ => break,
        }
    }
    let name = need(args, at, "a syslog facility such as local0")?;
    let facility = FACILITIES.iter().position(|f| *f == name).ok_or(format!(
        "unknown syslog facility '{name}'; expected one of {}",
        FACILITIES.join(", ")
    ))?;
    let level = match args.get(at + 1) {
        Some(name) => LEVELS.iter().position(|l| l == name).ok_or(format!(
            "unknown log level '{name}'; expected one of {}",
            LEVELS.join(", ")
        ))?,
        None => LEVELS.len() - 1,
    };
    // HAProxy's optional minimum level, accepted: access lines are all `info`.
    if let Some(min) = args.get(at + 2) {
        if !LEVELS.contains(&min.as_str()) {
            return Err(format!(
                "unknown log level '{min}'; expected one of {}",
                LEVELS.join(", ")
            ));
        }
    }
    no_more(args, at + 3)?;
    Ok(LogTarget {
        dest,
        format,
        facility: facility as u8,
        level: level as u8,
        max_len,
    })
}

fn dest(raw: &str) -> Res<LogDest> {
    Ok(match raw {
        "stdout" => LogDest::Stdout,
        "stderr" => LogDest::Stderr,
        path if path.starts_with('/') => LogDest::Unix(PathBuf::from(path)),
        other => {
            let addr = other
                .strip_prefix("udp@")
                .or(other.strip_prefix("ipv4@"))
                .unwrap_or(other);
            let with_port = |a: &str| a.parse::<SocketAddr>().ok();
            LogDest::Udp(
                with_port(addr)
                    .or_else(|| addr.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, 514)))
                    .ok_or(format!(
                        "expected a log target: stdout, stderr, a socket path such as /dev/log, or ADDR[:PORT]; found '{raw}'"
                    ))?,
            )
        }
    })
}
