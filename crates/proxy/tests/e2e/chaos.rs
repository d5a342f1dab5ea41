//! The chaos suite: many aioquic connections with random fates, through a lossy UDP fault proxy, against
//! backends that misbehave at random. Judged on the proxy's health: it never dies, every completed
//! response is byte-exact (the client checks), every live gauge returns to zero, no stale wake-up or
//! out-of-order release, and RSS comes back near where it started.
//!
//! `cargo test` runs a CI-sized round (QPROXY_CHAOS_REQUESTS, default 5,000; QPROXY_CHAOS_SEED, default 1);
//! `cargo xtask chaos --requests N --seed S` runs the same test at any size.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use udp_faults::{FaultProxy, Faults};

use crate::harness::{aioquic_python, Proxy};

// ---------------------------------------------------------------- the chaos origin

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// One origin whose behaviour the path picks: `/ok/N`, `/slow/N`, `/reset/N`, `/malformed/N`, `/hang/N`.
fn chaos_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

fn serve(mut s: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_string();
        pending.drain(..end + 4);
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        // Read (and drop) the request body.
        if chunked {
            while !pending.windows(5).any(|w| w == b"0\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
            pending.clear();
        } else {
            while pending.len() < length {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
            pending.drain(..length);
        }
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let n: usize = path.rsplit('/').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let ok_head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
        if path.starts_with("/ok/") || path.starts_with("/slow/") {
            if path.starts_with("/slow/") {
                std::thread::sleep(Duration::from_millis(300));
            }
            if s.write_all(ok_head.as_bytes()).is_err() || s.write_all(&pattern(n)).is_err() {
                return;
            }
        } else if path.starts_with("/reset/") {
            let _ = s.write_all(ok_head.as_bytes());
            let _ = s.write_all(&pattern(n / 2));
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            return; // Dropped with linger 0: a TCP reset mid-body.
        } else if path.starts_with("/malformed/") {
            let _ = s.write_all(b"HTTP/9.9 banana\r\n\r\n");
            return;
        } else {
            std::thread::sleep(Duration::from_secs(4)); // Longer than `timeout server`.
            return;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn run_client(port: u16, requests: u64, seed: u64) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/chaos_client.py");
    let out = Command::new(aioquic_python())
        .arg(script)
        .args([
            "--port",
            &port.to_string(),
            "--requests",
            &requests.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("the chaos client runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "chaos client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn stat(summary: &str, key: &str) -> u64 {
    let at = summary.find(&format!("\"{key}\": ")).map(|i| i + key.len() + 4);
    at.and_then(|i| summary[i..].split([',', '}']).next()?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn chaos_round() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (requests, seed) = (env("QPROXY_CHAOS_REQUESTS", 5000), env("QPROXY_CHAOS_SEED", 1));
    let origin = chaos_origin();
    let proxy = Proxy::start_with(
        &format!("    server chaos {origin}\n"),
        "",
        "    tune.quic.fe.max-idle-timeout 3s\n",
        "    timeout connect 2s\n    timeout server 1500ms\n",
    );
    let faults = Faults {
        loss: 0.05,
        duplicate: 0.01,
        delay: 0.02,
        corrupt: 0.005,
    };
    let fault =
        FaultProxy::start(format!("127.0.0.1:{}", proxy.port).parse().unwrap(), faults, seed).unwrap();
    let pid = proxy.pid();
    // A first round sets the allocator's high-water mark; the RSS baseline is taken after it, so growth
    // over the second round means a leak, not a warmer heap.
    let warm = run_client(fault.addr().port(), requests.min(5000), seed ^ 0xabc);
    assert_eq!(stat(&warm, "corrupt"), 0, "{warm}");
    proxy.assert_gauges_return_to_zero();
    let rss_start = rss_kib(pid);
    let started = Instant::now();
    let summary = run_client(fault.addr().port(), requests, seed);
    let elapsed = started.elapsed();
    assert!(proxy.is_running(), "qproxy died: {}", proxy.log());
    assert_eq!(
        stat(&summary, "corrupt"),
        0,
        "a completed response was not byte-exact: {summary}"
    );
    assert!(stat(&summary, "verified") > 0, "nothing completed: {summary}");
    proxy.assert_gauges_return_to_zero();
    let m = proxy.metrics();
    assert_eq!(m["qproxy_stale_wakeups_total"], 0);
    assert_eq!(m["qproxy_out_of_order_releases_total"], 0);
    let rss_end = rss_kib(pid);
    println!(
        "chaos: seed {seed}, {requests} requests in {:.1} s; client {summary}; fault proxy relayed {} dropped {}; \
         RSS {rss_start} KiB -> {rss_end} KiB; connections {}",
        elapsed.as_secs_f64(),
        fault.stats().relayed.load(Relaxed),
        fault.stats().dropped.load(Relaxed),
        m["qproxy_quic_connections_total"],
    );
    assert!(
        rss_end * 10 <= rss_start * 11 + 10 * 1024,
        "RSS grew from {rss_start} KiB to {rss_end} KiB"
    );
}
