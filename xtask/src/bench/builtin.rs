//! The built-in HTTP/1.1 origin: keep-alive, one thread per connection. `GET /1k` answers 1,024 bytes,
//! `GET /100m` 100 MiB, and `GET /slow` holds the request (counted as open) until [`Builtin::release`]
//! or 30 s, then answers 2 bytes. It is the origin when nginx is not installed, and always the `/slow`
//! server, since nginx cannot hold a request without a module.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

pub(crate) const BIG: u64 = 100 * 1024 * 1024;
const SLOW_LIMIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    open_slow: AtomicU64,
    epoch: AtomicU64,
    stop: AtomicBool,
}

pub(crate) struct Builtin {
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
}

impl Builtin {
    pub(crate) fn start() -> Result<Builtin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = accept_state.clone();
                let _ = std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn(move || serve(stream, &state));
            }
        });
        Ok(Builtin { addr, state })
    }

    /// `/slow` requests waiting now.
    pub(crate) fn open_slow(&self) -> u64 {
        self.state.open_slow.load(Ordering::Relaxed)
    }

    /// Answers every `/slow` request waiting now.
    pub(crate) fn release(&self) {
        self.state.epoch.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Builtin {
    fn drop(&mut self) {
        self.release();
        self.state.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Requests on one connection until EOF, an error or 60 s without a request.
fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || state.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut body_len = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    body_len = value.trim().parse().unwrap_or(0);
                }
            }
        }
        std::io::copy(&mut (&mut reader).take(body_len as u64), &mut std::io::sink())?;
        respond(&mut out, &path, state)?;
    }
}

fn head(out: &mut TcpStream, status: &str, len: u64) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
    )
}

fn respond(out: &mut TcpStream, path: &str, state: &State) -> std::io::Result<()> {
    static CHUNK: [u8; 65536] = [b'x'; 65536];
    match path {
        "/1k" => {
            let mut response = Vec::with_capacity(1200);
            write!(
                response,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1024\r\n\r\n"
            )?;
            response.extend_from_slice(&CHUNK[..1024]);
            out.write_all(&response)
        }
        "/100m" => {
            head(out, "200 OK", BIG)?;
            for _ in 0..BIG / CHUNK.len() as u64 {
                out.write_all(&CHUNK)?;
            }
            Ok(())
        }
        p if p.starts_with("/slow") => {
            let epoch = state.epoch.load(Ordering::Relaxed);
            state.open_slow.fetch_add(1, Ordering::Relaxed);
            let until = Instant::now() + SLOW_LIMIT;
            while state.epoch.load(Ordering::Relaxed) == epoch && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            state.open_slow.fetch_sub(1, Ordering::Relaxed);
            head(out, "200 OK", 2)?;
            out.write_all(b"ok")
        }
        _ => {
            head(out, "404 Not Found", 0)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(stream: &mut TcpStream, path: &str) -> Vec<u8> {
        write!(stream, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim_end().is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        body
    }

    #[test]
    fn keep_alive_and_slow_requests_wait_for_release() {
        let origin = Builtin::start().unwrap();
        let mut a = TcpStream::connect(origin.addr).unwrap();
        assert_eq!(get(&mut a, "/1k").len(), 1024);
        assert_eq!(get(&mut a, "/1k").len(), 1024);
        let addr = origin.addr;
        let slow = std::thread::spawn(move || get(&mut TcpStream::connect(addr).unwrap(), "/slow"));
        let until = Instant::now() + Duration::from_secs(5);
        while origin.open_slow() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(origin.open_slow(), 1);
        origin.release();
        assert_eq!(slow.join().unwrap(), b"ok");
    }
}
