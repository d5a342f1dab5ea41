//! The connection layer (`qcc`) after a real handshake, driven by a quiche client whose every move the
//! input chooses: raw bytes on any client stream (HTTP/3 frames or garbage), canned requests (up to four
//! at once), resets,
//! STOP_SENDING, forged datagrams with and without the connection's ID, jumps of qcc's clock, resets from
//! the upper side, the client's close, a server that stops hearing the client (so its acknowledgements
//! are lost and Tx bytes stay held), and the ordered release at any point.
//!
//! Invariants: nothing panics (an out-of-order release panics in debug builds, which fuzz builds are),
//! and once the connection is released and gone, every object and budget byte of both the connection's
//! counters and its Tx pool is back.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use qcc::{Connection, Counters, Event, ResponseHead, SendBody, ServerConfig, ServerConn};
use qcc::{Limits, TransportParams, TxPool};

/// HEADERS for `GET https://localhost/`: QPACK with no dynamic table, static entries 17 (GET),
/// 23 (https), 1 (`/`), then `:authority` by static name 0 with a literal value.
const GET_HEADERS: &[u8] = b"\x01\x10\x00\x00\xd1\xd7\xc1\x50\x09localhost";
/// Response bodies, by request: short ones that end within the budget (their bytes then wait for
/// acknowledgement in released descriptors), and long ones that fill it.
const BODIES: [usize; 2] = [6_000, 20_000];
/// Per-connection budget and pool limit (0: none), chosen by the input's first byte.
const TX_LIMITS: [(usize, usize); 3] = [(12 * 1024, 8 * 1024), (6 * 1024, 16 * 1024), (1 << 20, 0)];
/// Rounds of sending and receiving after each move, at most.
const SETTLE: usize = 24;

fn client_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn server_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4433))
}

/// The demo certificate, written once per process.
fn certificate() -> &'static PathBuf {
    static PEM: OnceLock<PathBuf> = OnceLock::new();
    PEM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qproxy-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        crate::tools::demo::write_certificates(&dir)
            .expect("the demo certificate")
            .server
    })
}

thread_local! {
    /// quiche's configurations are costly to build (they load the certificate): one of each per thread.
    static CONFIGS: RefCell<Option<(ServerConfig, quiche::Config)>> = const { RefCell::new(None) };
}

fn configs() -> (ServerConfig, quiche::Config) {
    let params = TransportParams {
        max_ack_delay_ms: 1,
        initial_rtt: Duration::from_millis(5),
        max_idle_timeout: Duration::from_secs(5),
        max_streams_bidi: 16,
        initial_max_stream_data: 64 * 1024,
        initial_max_data: 256 * 1024,
        ..TransportParams::default()
    };
    let pem = certificate();
    let server = ServerConfig::new(pem, pem, &params, Limits::default()).expect("a server config");
    let mut client = quiche::Config::new(quiche::PROTOCOL_VERSION).expect("a client config");
    client
        .set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
        .expect("ALPN");
    client.verify_peer(false);
    client.set_max_idle_timeout(5000);
    client.set_initial_max_data(1 << 20);
    client.set_initial_max_stream_data_bidi_local(1 << 20);
    client.set_initial_max_stream_data_bidi_remote(1 << 20);
    client.set_initial_max_stream_data_uni(1 << 20);
    client.set_initial_max_streams_bidi(16);
    client.set_initial_max_streams_uni(16);
    client.set_max_ack_delay(1);
    client.set_initial_rtt(Duration::from_millis(5));
    (server, client)
}

/// The input, read front to back; past its end every read is empty.
struct Moves<'a>(&'a [u8]);

impl Moves<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn bytes(&mut self) -> &[u8] {
        let n = usize::from(self.arg()).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }

    /// A client-initiated stream ID: bidirectional (request) or unidirectional (control, QPACK, other).
    fn stream(&mut self) -> u64 {
        let b = self.arg();
        u64::from(b >> 1) * 4 + if b & 1 == 1 { 2 } else { 0 }
    }
}

/// The upper side: answers each request with a fixed body, reads request bodies, and, when the input
/// says so, resets one of its streams.
#[derive(Default)]
struct Upper {
    /// Streams being answered, with the body bytes still to send.
    answering: BTreeMap<u64, usize>,
}

impl Upper {
    fn on_event(&mut self, conn: &mut Connection, event: Event) -> bool {
        match event {
            Event::Request { stream, .. } => {
                if conn.set_upper(stream, stream).is_ok()
                    && conn.send_response(stream, ResponseHead::new(200), false).is_ok()
                {
                    self.answering
                        .insert(stream, BODIES[(stream / 4) as usize % BODIES.len()]);
                    self.pump(conn, stream);
                }
            }
            Event::Readable { stream } => {
                while let Ok(qcc::BodyRead::Data(_)) = conn.read_body(stream, 16 * 1024) {}
            }
            Event::Writable { stream } => self.pump(conn, stream),
            Event::StreamClosed { stream, .. } | Event::StreamAborted { stream, .. } => {
                self.answering.remove(&stream);
            }
            Event::GoAway => {}
            Event::Dead => return true,
        }
        false
    }

    fn pump(&mut self, conn: &mut Connection, stream: u64) {
        let Some(left) = self.answering.get_mut(&stream) else {
            return;
        };
        while *left > 0 {
            let n = (*left).min(2000);
            match conn.send_body(stream, Bytes::from(vec![b'x'; n])) {
                Ok(SendBody::Queued) => *left -= n,
                Ok(SendBody::Blocked(_)) => return,
                Err(_) => {
                    self.answering.remove(&stream);
                    return;
                }
            }
        }
        self.answering.remove(&stream);
        let _ = conn.finish(stream, None);
    }

    fn reset_one(&mut self, conn: &mut Connection, pick: u8, code: u8) {
        let Some(&stream) = self
            .answering
            .keys()
            .nth(usize::from(pick) % self.answering.len().max(1))
        else {
            return;
        };
        self.answering.remove(&stream);
        let _ = conn.reset_stream(stream, u64::from(code));
    }
}

struct Pair {
    server: Option<ServerConn>,
    client: quiche::Connection,
    upper: Upper,
    counters: Arc<Counters>,
    /// qcc's clock runs ahead of the real one by this much (quiche reads the real one).
    offset: Duration,
    buf: Vec<u8>,
    /// Client flights (rounds in which it sent) the server still hears (`None`: all of them).
    hears: Option<u8>,
}

impl Pair {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    fn live(&mut self) -> Option<&mut Connection> {
        self.server.as_mut().and_then(ServerConn::as_live_mut)
    }

    fn deliver_to_server(&mut self, config: &mut ServerConfig, dgram: &mut [u8]) {
        let now = self.now();
        if self.server.is_none() {
            let Ok(hdr) = quiche::Header::from_slice(dgram, quiche::MAX_CONN_ID_LEN) else {
                return;
            };
            let scid = quiche::ConnectionId::from_vec(hdr.dcid.as_ref().iter().map(|b| b ^ 0x5a).collect());
            let counters = self.counters.clone();
            let Ok(conn) = Connection::accept(
                config,
                &scid,
                None,
                server_addr(),
                client_addr(),
                counters,
                None,
                now,
            ) else {
                return;
            };
            self.server = Some(ServerConn::live(conn));
        }
        if let Some(server) = &mut self.server {
            let _ = server.handle_datagram(now, dgram, client_addr(), server_addr());
        }
    }

    /// Datagrams both ways, then the upper side's events; true when anything moved.
    fn round(&mut self, config: &mut ServerConfig) -> bool {
        let mut moved = false;
        let heard = self.hears != Some(0);
        while let Ok((n, _)) = self.client.send(&mut self.buf) {
            moved = true;
            if heard {
                let mut dgram = self.buf[..n].to_vec();
                self.deliver_to_server(config, &mut dgram);
            }
        }
        if let (true, Some(left)) = (moved, &mut self.hears) {
            *left = left.saturating_sub(1);
        }
        let now = self.now();
        while let Some(t) = self
            .server
            .as_mut()
            .and_then(|s| s.poll_transmit(now, &mut self.buf))
        {
            let info = quiche::RecvInfo {
                from: server_addr(),
                to: client_addr(),
            };
            let _ = self.client.recv(&mut self.buf[..t.len], info);
            moved = true;
        }
        moved |= self.dispatch();
        moved
    }

    fn dispatch(&mut self) -> bool {
        let mut moved = false;
        let mut dead = false;
        if let Some(conn) = self.server.as_mut().and_then(ServerConn::as_live_mut) {
            while let Some(event) = conn.poll_event() {
                moved = true;
                dead |= self.upper.on_event(conn, event);
            }
        }
        if dead {
            self.release();
        }
        moved
    }

    fn settle(&mut self, config: &mut ServerConfig) {
        for _ in 0..SETTLE {
            if !self.round(config) {
                break;
            }
        }
    }

    /// `Connection::release`, as the worker does on `Event::Dead` or when it closes a connection.
    fn release(&mut self) {
        let now = self.now();
        if let Some(server) = &mut self.server {
            let _ = server.release(now);
        }
        self.upper.answering.clear();
    }

    fn play(&mut self, config: &mut ServerConfig, moves: &mut Moves<'_>) {
        let mut next_request = 0u64;
        while let Some(op) = moves.byte() {
            match op % 11 {
                0 => {
                    let (id, fin) = (moves.stream(), moves.arg() & 1 == 1);
                    let data = moves.bytes().to_vec();
                    let _ = self.client.stream_send(id, &data, fin);
                }
                1 => {
                    // One to four requests at once, complete (FIN) or not.
                    let arg = moves.arg();
                    for _ in 0..=(arg >> 1) % 4 {
                        let _ = self.client.stream_send(next_request, GET_HEADERS, arg & 1 == 1);
                        next_request += 4;
                    }
                }
                2 => {
                    let (id, code) = (moves.stream(), moves.arg());
                    let _ = self
                        .client
                        .stream_shutdown(id, quiche::Shutdown::Write, u64::from(code));
                }
                3 => {
                    let (id, code) = (moves.stream(), moves.arg());
                    let _ = self
                        .client
                        .stream_shutdown(id, quiche::Shutdown::Read, u64::from(code));
                }
                4 => {
                    // A forged datagram: with the server's connection ID behind a short header, or raw.
                    let short = moves.arg() & 1 == 1;
                    let mut dgram = Vec::new();
                    if short {
                        dgram.push(0x40 | (moves.arg() & 0x3f));
                        dgram.extend_from_slice(self.client.destination_id().as_ref());
                    }
                    dgram.extend_from_slice(moves.bytes());
                    self.deliver_to_server(config, &mut dgram);
                }
                5 => {
                    self.offset += Duration::from_millis(u64::from(moves.arg()) * 100);
                    let now = self.now();
                    if let Some(server) = &mut self.server {
                        server.handle_timeout(now);
                    }
                    self.client.on_timeout();
                    self.dispatch();
                }
                6 => {
                    let (pick, code) = (moves.arg(), moves.arg());
                    let Some(conn) = self.server.as_mut().and_then(ServerConn::as_live_mut) else {
                        continue;
                    };
                    self.upper.reset_one(conn, pick, code);
                }
                7 => self.release(),
                8 => {
                    let code = moves.arg();
                    let _ = self.client.close(moves.arg() & 1 == 1, u64::from(code), b"fuzz");
                }
                9 => {
                    if let Some(conn) = self.live() {
                        conn.shutdown(Instant::now());
                    }
                }
                _ => {
                    // The server hears N more client flights, then nothing (0: all again).
                    self.hears = Some(moves.arg()).filter(|&n| n != 0);
                }
            }
            self.settle(config);
        }
    }
}

/// See the module's documentation.
pub fn connection(data: &[u8]) {
    let snap = play(data);
    assert!(snap.is_idle(), "objects still alive after the release: {snap:?}");
    assert_eq!(snap.out_of_order_releases, 0, "{snap:?}");
}

/// Plays `data` on a fresh connection to its end; the counters then.
fn play(data: &[u8]) -> qcc::Snapshot {
    CONFIGS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (server_config, client_config) = cell.get_or_insert_with(configs);
        // The first byte picks the Tx limits: a pool smaller than the budget (the pool refuses and
        // wakes), a budget smaller than the pool (the budget refuses and notifies), or neither.
        let (budget, pool) = TX_LIMITS[usize::from(data.first().copied().unwrap_or(0)) % TX_LIMITS.len()];
        let pool = TxPool::new(pool);
        server_config.limits = Limits {
            tx_budget: budget,
            tx_pool: Some(pool.clone()),
            ..Limits::default()
        };
        let counters = Arc::new(Counters::default());
        let scid = [0x11; 16];
        let client = quiche::connect(
            Some("localhost"),
            &quiche::ConnectionId::from_ref(&scid),
            client_addr(),
            server_addr(),
            client_config,
        )
        .expect("a client connection");
        let mut pair = Pair {
            server: None,
            client,
            upper: Upper::default(),
            counters: counters.clone(),
            offset: Duration::ZERO,
            buf: vec![0; 65_536],
            hears: None,
        };
        for _ in 0..16 {
            if pair.client.is_established() && pair.live().is_some_and(|c| c.is_established()) {
                break;
            }
            pair.round(server_config);
        }
        assert!(pair.client.is_established(), "the handshake did not complete");
        pair.settle(server_config);
        pair.play(server_config, &mut Moves(data.get(1..).unwrap_or_default()));
        pair.release();
        // The closing connection is dropped, as a stopping worker drops what is left: quiche frees
        // the buffers it held, and with them every descriptor.
        drop(pair);
        assert_eq!(pool.in_use(), 0, "the Tx pool kept bytes");
        counters.snapshot()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_requests_reach_the_upper_side_and_wait_for_the_budget() {
        let snap = play(&[0, 1, 7]);
        assert_eq!(snap.streams_total, 4, "{snap:?}");
        assert!(snap.tx_pool_waits > 0, "the pool never refused: {snap:?}");
        assert!(snap.is_idle(), "{snap:?}");
    }

    #[test]
    fn a_release_with_unacknowledged_bytes_and_waiting_streams_stays_in_order() {
        // The server hears the requests and no acknowledgement after them: at the release its budget
        // is full of unacknowledged bytes and streams wait for room.
        let snap = play(&[1, 10, 1, 1, 7, 7]);
        assert_eq!(snap.streams_total, 4, "{snap:?}");
        assert!(snap.tx_budget_waits > 0, "{snap:?}");
        assert!(snap.is_idle(), "{snap:?}");
    }

    #[test]
    fn a_release_whose_budget_still_wants_room_needs_the_detach_step() {
        // HAProxy #2494's shape (release-order step 3): request 0's 6,000 bytes fill the 6 KiB budget
        // and its stream ends, so they wait unacknowledged in a released descriptor (the server hears
        // nothing more); request 4's first chunk is refused and returned, so the budget still wants
        // room and releasing stream 4 frees nothing. The release then drops the connection's sink: only
        // the detach keeps the later refund of request 0's bytes from notifying it (in debug builds an
        // out-of-order release panics).
        let snap = play(&[1, 10, 1, 1, 3, 7]);
        assert_eq!((snap.streams_total, snap.tx_budget_waits), (2, 1), "{snap:?}");
        assert_eq!(
            (snap.stale_wakeups, snap.out_of_order_releases),
            (0, 0),
            "{snap:?}"
        );
        assert!(snap.is_idle(), "{snap:?}");
    }

    #[test]
    fn raw_frames_on_a_request_stream_are_parsed_as_http3() {
        let mut moves = vec![2, 0, 0, 1, GET_HEADERS.len() as u8];
        moves.extend_from_slice(GET_HEADERS);
        assert_eq!(play(&moves).streams_total, 1);
    }
}
