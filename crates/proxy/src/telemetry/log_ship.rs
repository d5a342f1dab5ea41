//! Access lines shipped to the `log` targets of `global`: standard output or error, a syslog server over
//! UDP, a local syslog socket such as `/dev/log`. A worker appends each line to a buffer of its own
//! thread and hands the buffer over once per loop turn (as the stderr log does, `log_buffer`), so a
//! request costs no syscall; one `qproxy-log` thread frames every line for every target (RFC 3164,
//! RFC 5424 or raw) and writes it, one datagram per line for syslog sockets.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{LogDest, LogFormat, LogTarget};

/// Access lines are `info`.
const INFO: u8 = 6;
/// Past this many buffered bytes, a line hands the buffer over at once.
const HAND_OVER_AT: usize = 64 * 1024;
/// Buffers waiting for the log thread; past it, a turn's lines are dropped rather than held.
const QUEUED: usize = 1024;

enum Msg {
    /// Lines, each ended by `\n`.
    Lines(Vec<u8>),
    /// Answered once everything sent before is written.
    Sync(Sender<()>),
}

static SHIP: OnceLock<Sender<Msg>> = OnceLock::new();

thread_local! {
    static LINES: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Opens every target and starts the log thread; from then on access lines go there. Once per process.
pub(crate) fn start(targets: &[LogTarget]) -> io::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut outputs = Vec::with_capacity(targets.len());
    for target in targets {
        let out = match &target.dest {
            LogDest::Stdout => Output::Stdout,
            LogDest::Stderr => Output::Stderr,
            LogDest::Udp(addr) => {
                let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Output::Udp(socket)
            }
            LogDest::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket
                    .connect(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("log target {}: {e}", path.display())))?;
                Output::Unix(socket)
            }
        };
        outputs.push((target.clone(), out));
    }
    let (tx, rx) = crossbeam_channel::bounded(QUEUED);
    if SHIP.set(tx).is_err() {
        return Err(io::Error::other("log targets were already started"));
    }
    let framing = Framing {
        host: hostname(),
        pid: std::process::id(),
    };
    std::thread::Builder::new()
        .name("qproxy-log".into())
        .spawn(move || run(&rx, &mut outputs, &framing))?;
    Ok(())
}

/// Whether access lines are shipped (else they go to standard error with the other log lines).
pub(crate) fn active() -> bool {
    SHIP.get().is_some()
}

/// Appends one line (`line` must not contain a newline) to this thread's buffer.
pub(crate) fn ship(line: impl std::fmt::Display) {
    LINES.with_borrow_mut(|buf| {
        let _ = writeln!(buf, "{line}");
        if buf.len() >= HAND_OVER_AT {
            hand_over(buf);
        }
    });
}

/// Hands this thread's lines to the log thread.
pub(crate) fn flush() {
    LINES.with_borrow_mut(hand_over);
}

fn hand_over(buf: &mut String) {
    if buf.is_empty() {
        return;
    }
    if let Some(tx) = SHIP.get() {
        // A log thread that cannot keep up costs lines, never the proxy's progress.
        let _ = tx.try_send(Msg::Lines(std::mem::take(buf).into_bytes()));
    }
    buf.clear();
}

/// Waits (at most a second) until every line handed over so far is written: before the process exits.
pub(crate) fn drain() {
    flush();
    if let Some(tx) = SHIP.get() {
        let (done, wait) = crossbeam_channel::bounded(1);
        if tx.send_timeout(Msg::Sync(done), Duration::from_secs(1)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(1));
        }
    }
}

enum Output {
    Stdout,
    Stderr,
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

struct Framing {
    host: String,
    pid: u32,
}

fn run(rx: &Receiver<Msg>, outputs: &mut [(LogTarget, Output)], framing: &Framing) {
    let mut framed = Vec::new();
    for msg in rx {
        let lines = match msg {
            Msg::Lines(lines) => lines,
            Msg::Sync(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let now = SystemTime::now();
        for (target, out) in outputs.iter_mut() {
            if target.level < INFO {
                continue;
            }
            let mut stream = Vec::new();
            for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                framed.clear();
                frame(&mut framed, target, line, now, framing);
                // Errors are not reported per line: a syslog daemon that is down costs its lines only.
                match out {
                    Output::Udp(s) => drop(s.send(&framed)),
                    Output::Unix(s) => drop(s.send(&framed)),
                    Output::Stdout | Output::Stderr => {
                        stream.extend_from_slice(&framed);
                        stream.push(b'\n');
                    }
                }
            }
            match out {
                Output::Stdout => drop(io::stdout().lock().write_all(&stream)),
                Output::Stderr => drop(io::stderr().lock().write_all(&stream)),
                Output::Udp(_) | Output::Unix(_) => {}
            }
        }
    }
}

/// `line` framed for `target`, cut to its `len`.
fn frame(out: &mut Vec<u8>, target: &LogTarget, line: &[u8], now: SystemTime, f: &Framing) {
    let pri = u32::from(target.facility) * 8 + u32::from(INFO);
    let mut head = String::new();
    let t = Utc::from(now);
    match target.format {
        LogFormat::Raw => {}
        LogFormat::Rfc3164 => {
            const MONTHS: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let _ = write!(
                head,
                "<{pri}>{} {:2} {:02}:{:02}:{:02} qproxy[{}]: ",
                MONTHS[t.month as usize - 1],
                t.day,
                t.hour,
                t.minute,
                t.second,
                f.pid
            );
        }
        LogFormat::Rfc5424 => {
            let _ = write!(
                head,
                "<{pri}>1 {:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z {} qproxy {} - - ",
                t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros, f.host, f.pid
            );
        }
    }
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(line);
    out.truncate(target.max_len);
}

/// A UTC calendar time.
#[derive(Debug, PartialEq, Eq)]
struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

impl From<SystemTime> for Utc {
    fn from(t: SystemTime) -> Self {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        // Days to a proleptic Gregorian date (H. Hinnant's `civil_from_days`).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3600,
            minute: rest / 60 % 60,
            second: rest % 60,
            micros: since.subsec_micros(),
        }
    }
}

#[allow(unsafe_code)]
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; the name is NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match rc {
        0 if len > 0 => String::from_utf8_lossy(&buf[..len]).into_owned(),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(format: LogFormat, max_len: usize) -> LogTarget {
        LogTarget {
            dest: LogDest::Stdout,
            format,
            facility: 16,
            level: INFO,
            max_len,
        }
    }

    #[test]
    fn calendar_dates_from_unix_time() {
        let at = |secs: u64| Utc::from(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!((at(0).year, at(0).month, at(0).day), (1970, 1, 1));
        // 2024-02-29T23:59:59Z, a leap day.
        let t = at(1_709_251_199);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2024, 2, 29, 23, 59, 59)
        );
        // 2026-12-02T06:31:25Z.
        let t = at(1_796_193_085);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second),
            (2026, 12, 2, 6, 31, 25)
        );
        let t = at(951_782_400); // 2000-02-29
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
    }

    #[test]
    fn each_format_frames_the_line_and_len_cuts_it() {
        let f = Framing {
            host: "box".into(),
            pid: 42,
        };
        let now = UNIX_EPOCH + Duration::from_millis(1_796_193_085_250);
        let framed = |format, len| {
            let mut out = Vec::new();
            frame(&mut out, &target(format, len), b"hello line", now, &f);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(framed(LogFormat::Raw, 1024), "hello line");
        assert_eq!(
            framed(LogFormat::Rfc3164, 1024),
            "<134>Dec  2 06:31:25 qproxy[42]: hello line"
        );
        assert_eq!(
            framed(LogFormat::Rfc5424, 1024),
            "<134>1 2026-12-02T06:31:25.250000Z box qproxy 42 - - hello line"
        );
        assert_eq!(framed(LogFormat::Rfc3164, 30), "<134>Dec  2 06:31:25 qproxy[42");
    }
}
