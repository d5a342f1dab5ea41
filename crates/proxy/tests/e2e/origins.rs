//! Origins for the balancing tests: in-process keep-alive servers that count what they serve, and real
//! server processes (Python's http.server) that a test can kill and restart.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::read_head;

/// An in-process origin answering every request `200` with its name as the body.
pub struct Counting {
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    peak: Arc<AtomicUsize>,
}

impl Counting {
    /// Requests answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// The paths it answered, in order.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }

    /// The most requests it had in progress at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// The path of the next request; `None` at the end of the connection.
fn request_path(s: &mut TcpStream) -> Option<String> {
    let head = read_head(s)?;
    Some(head.split_whitespace().nth(1).unwrap_or("/").to_string())
}

/// Starts a counting origin called `name` that waits `delay` before each answer.
pub fn counting(name: &'static str, delay: Duration) -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = Counting {
        addr: listener.local_addr().unwrap(),
        served: Arc::default(),
        paths: Arc::default(),
        peak: Arc::default(),
    };
    let (served, paths, peak) = (origin.served.clone(), origin.paths.clone(), origin.peak.clone());
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (served, paths, peak, busy) = (served.clone(), paths.clone(), peak.clone(), busy.clone());
            std::thread::spawn(move || {
                let mut s = s;
                while let Some(path) = request_path(&mut s) {
                    let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    paths.lock().unwrap().push(path);
                    served.fetch_add(1, Ordering::SeqCst);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{name}", name.len());
                    if s.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    origin
}

/// A real HTTP/1 server process (Python's http.server) serving `dir` on `port`.
pub struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Starts it and waits until it accepts connections.
    pub fn start(port: u16, dir: &Path) -> ServerProcess {
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server starts");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "http.server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ServerProcess { child }
    }

    /// SIGKILL; once it returns, the port refuses connections.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An origin that keeps every request head it receives, byte for byte, and answers each `200 ok` (or,
/// with `too_early`, `425` to a head that carries `early-data: 1`). Request bodies framed by
/// content-length are read and kept too.
pub struct Recording {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Recording {
    /// Every request head received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Every byte received, over every connection.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts a recording origin.
pub fn recording(too_early: bool) -> Recording {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = Recording {
        addr: listener.local_addr().unwrap(),
        heads: Arc::default(),
        raw: Arc::default(),
    };
    let (heads, raw) = (origin.heads.clone(), origin.raw.clone());
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (heads, raw) = (heads.clone(), raw.clone());
            std::thread::spawn(move || {
                let mut s = s;
                while let Some(head) = read_head(&mut s) {
                    let mut body = vec![0u8; content_length(&head)];
                    if std::io::Read::read_exact(&mut s, &mut body).is_err() {
                        return;
                    }
                    raw.lock().unwrap().extend(head.as_bytes().iter().chain(&body));
                    let early = head.to_ascii_lowercase().contains("\r\nearly-data: 1\r\n");
                    heads.lock().unwrap().push(head);
                    let answer: &[u8] = if too_early && early {
                        b"HTTP/1.1 425 Too Early\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if s.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    origin
}
