//! The stats listener: Prometheus text over plain HTTP/1.1, on its own small thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use qcc::Counters;

use crate::metrics::{render, ProxyCounters};

/// Binds `addr` and serves `path` until the process ends.
pub fn spawn(
    addr: SocketAddr,
    path: String,
    layers: Arc<Counters>,
    proxy: Arc<ProxyCounters>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("qproxy-stats".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &path, &layers, &proxy);
            }
        })?;
    Ok(local)
}

fn serve(mut stream: TcpStream, path: &str, layers: &Counters, proxy: &ProxyCounters) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) = if target == path || target.starts_with(&format!("{path}?")) {
        (
            "200 OK",
            "text/plain; version=0.0.4",
            render(&layers.snapshot(), proxy),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            format!("not found; metrics are at {path}\n"),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}
