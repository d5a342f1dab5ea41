//! A complete HTTP/3 server on `qcc` alone: every request gets the same body.
//!
//! `cargo run -p qcc --example fixed_body -- [ADDR] [CERT KEY]` (default 127.0.0.1:4433 and a fresh
//! self-signed certificate for localhost). Try it with ngtcp2's client:
//! `gtlsclient --exit-on-all-streams-close 127.0.0.1 4433 https://localhost:4433/`.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qcc::route::{CidRoute, CidRouter};
use qcc::{Connection, Counters, Event, Limits, ResponseHead, ServerConfig, ServerConn, TransportParams};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:4433", String::as_str);
    let (cert, key) = match (args.get(1), args.get(2)) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        _ => self_signed()?,
    };
    let mut config = ServerConfig::new(&cert, &key, &TransportParams::default(), Limits::default())?;
    let socket = UdpSocket::bind(addr)?;
    let local = socket.local_addr()?;
    println!("serving HTTP/3 on {local}");
    let counters = Arc::new(Counters::default());
    let (mut slots, mut router) = (HashMap::new(), CidRouter::new(16));
    let (mut buf, mut out, mut next_id) = (vec![0u8; 65535], vec![0u8; 1500], 0u64);
    loop {
        let now = Instant::now();
        let wait = slots
            .values()
            .filter_map(|s: &ServerConn| s.poll_timeout(now))
            .min()
            .map_or(Duration::from_millis(100), |t| t - now);
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        if let Ok((len, peer)) = socket.recv_from(&mut buf) {
            let id = match router.route(&mut buf[..len]) {
                CidRoute::Owner(id) => id,
                CidRoute::New { dcid } => {
                    next_id += 1;
                    let scid = quiche::ConnectionId::from_vec((0..16).map(|_| fastrand::u8(..)).collect());
                    let conn = Connection::accept(
                        &mut config,
                        &scid,
                        None,
                        local,
                        peer,
                        counters.clone(),
                        None,
                        Instant::now(),
                    )?;
                    router.insert(&dcid, next_id);
                    router.insert(&scid, next_id);
                    slots.insert(next_id, ServerConn::live(conn));
                    next_id
                }
                CidRoute::Unknown | CidRoute::Drop => continue,
            };
            let _ = slots
                .get_mut(&id)
                .map(|s| s.handle_datagram(Instant::now(), &mut buf[..len], peer, local));
        }
        let mut dead = Vec::new();
        for (id, slot) in slots.iter_mut() {
            if serve(slot)? {
                dead.push(*id);
            }
        }
        for id in dead {
            if let Some(slot) = slots.get_mut(&id) {
                slot.release(Instant::now());
            }
        }
        for slot in slots.values_mut() {
            while let Some(t) = slot.poll_transmit(Instant::now(), &mut out) {
                socket.send_to(&out[..t.len], t.to)?;
            }
        }
        slots.retain(|id, slot| {
            let closed = slot.is_closed();
            if closed {
                router.remove_owner(*id);
            }
            !closed
        });
    }
}

/// Fires timers and answers every request with the same body. Returns true when the connection is dead
/// and must be released.
fn serve(slot: &mut ServerConn) -> anyhow::Result<bool> {
    let now = Instant::now();
    slot.handle_timeout(now);
    let Some(conn) = slot.as_live_mut() else {
        return Ok(false);
    };
    let mut dead = false;
    while let Some(event) = conn.poll_event() {
        match event {
            Event::Request { stream, .. } => {
                let head = ResponseHead::new(200).with_header("content-type", "text/plain");
                conn.send_response(stream, head, false)?;
                conn.send_body(stream, bytes::Bytes::from_static(b"hello from qcc\n"))?;
                conn.finish(stream, None)?;
            }
            Event::Dead => dead = true,
            _ => {}
        }
    }
    Ok(dead)
}

fn self_signed() -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("qcc-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}
