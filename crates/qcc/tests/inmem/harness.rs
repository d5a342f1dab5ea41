//! The in-memory harness: a real quiche client (with its HTTP/3 layer) against our `qcc::Connection`,
//! over a simulated network with seeded loss, duplication, reordering and an MTU.
//!
//! Time: our layers take `now` as an argument, so the harness clock is the real monotonic clock plus a
//! virtual offset. When the next deadline is one of qcc's own timers (handshake, http-request,
//! keep-alive), the offset jumps to it at once. quiche reads the real clock for loss recovery and idle
//! timeouts, so for those the harness sleeps (tests keep them short: 1 ms ack delay, 10 ms initial RTT).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use qcc::{AbortCause, BodyRead, Connection, Counters, Event, Limits, ResponseHead, SendBody};
use qcc::{ServerConfig, ServerConn, TransportParams};
use quiche::h3::{self, Header, NameValue};

pub const CLIENT: &str = "127.0.0.1:40000";
pub const SERVER: &str = "127.0.0.1:4433";

/// A self-signed certificate for "localhost", made once per test process.
pub fn cert_files() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("qcc-harness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        (cert, key)
    })
}

/// The bytes a `/bytes/N` response carries at offset `i`; the client checks them.
pub fn pattern(i: u64) -> u8 {
    qproxy_tests::pattern::byte(qproxy_tests::pattern::Body::Hashed, i)
}

pub fn pattern_vec(n: usize) -> Vec<u8> {
    qproxy_tests::pattern::bytes(qproxy_tests::pattern::Body::Hashed, n)
}

// ---------------------------------------------------------------- network

#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub loss: f64,
    pub dup: f64,
    pub reorder: f64,
    pub mtu: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            mtu: 1350,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// A look at each datagram sent: returns whether it goes on.
pub type Tap = Box<dyn FnMut(Dir, &[u8]) -> bool>;

pub struct Net {
    rng: fastrand::Rng,
    pub knobs: Knobs,
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
    /// Held datagrams stay queued, undelivered, until un-held.
    pub hold_to_server: bool,
    pub hold_to_client: bool,
    /// Dropped datagrams vanish.
    pub drop_to_server: bool,
    pub drop_to_client: bool,
    pub delivered: usize,
    /// Sees every datagram sent, before loss; returning false drops it.
    pub tap: Option<Tap>,
}

impl Net {
    fn new(seed: u64, knobs: Knobs) -> Self {
        Net {
            rng: fastrand::Rng::with_seed(seed),
            knobs,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            hold_to_server: false,
            hold_to_client: false,
            drop_to_server: false,
            drop_to_client: false,
            delivered: 0,
            tap: None,
        }
    }

    fn push(&mut self, dir: Dir, dgram: Vec<u8>) {
        assert!(
            dgram.len() <= self.knobs.mtu,
            "a {}-byte datagram over the {}-byte MTU",
            dgram.len(),
            self.knobs.mtu
        );
        if let Some(tap) = &mut self.tap {
            if !tap(dir, &dgram) {
                return;
            }
        }
        let (queue, dropped) = match dir {
            Dir::ToServer => (&mut self.to_server, self.drop_to_server),
            Dir::ToClient => (&mut self.to_client, self.drop_to_client),
        };
        if dropped || self.rng.f64() < self.knobs.loss {
            return;
        }
        if self.rng.f64() < self.knobs.dup {
            queue.push_back(dgram.clone());
        }
        queue.push_back(dgram);
        if queue.len() > 1 && self.rng.f64() < self.knobs.reorder {
            let j = self.rng.usize(..queue.len() - 1);
            let last = queue.len() - 1;
            queue.swap(j, last);
        }
    }

    fn pop(&mut self, dir: Dir) -> Option<Vec<u8>> {
        match dir {
            Dir::ToServer if !self.hold_to_server => self.to_server.pop_front(),
            Dir::ToClient if !self.hold_to_client => self.to_client.pop_front(),
            _ => None,
        }
    }

    /// Nothing is in flight either way.
    pub fn is_idle(&self) -> bool {
        self.to_server.is_empty() && self.to_client.is_empty()
    }

    /// Takes every queued datagram of one direction (to deliver in a chosen order).
    pub fn take(&mut self, dir: Dir) -> Vec<Vec<u8>> {
        match dir {
            Dir::ToServer => self.to_server.drain(..).collect(),
            Dir::ToClient => self.to_client.drain(..).collect(),
        }
    }

    pub fn put_back(&mut self, dir: Dir, dgrams: Vec<Vec<u8>>) {
        match dir {
            Dir::ToServer => self.to_server.extend(dgrams),
            Dir::ToClient => self.to_client.extend(dgrams),
        }
    }
}

// ---------------------------------------------------------------- clock

pub struct Clock {
    offset: Duration,
}

impl Clock {
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    pub fn jump_to(&mut self, t: Instant) {
        let now = self.now();
        if t > now {
            self.offset += t - now;
        }
    }
}

// ---------------------------------------------------------------- server upper side

#[derive(Debug)]
enum Kind {
    Bytes {
        total: u64,
        trailers: bool,
    },
    Echo,
    Sink,
    Hold,
    /// Neither reads the request body nor answers.
    Stall,
}

#[derive(Debug)]
struct AppStream {
    kind: Kind,
    produced: u64,
    blocked: Option<Bytes>,
    echo: VecDeque<Bytes>,
    received: u64,
    request_ended: bool,
    finished: bool,
}

/// The server's upper side: answers `/bytes/N`, `/trailers/N`, `/echo`, `/sink`, `/hold`.
#[derive(Default)]
pub struct App {
    streams: HashMap<u64, AppStream>,
    /// When false, request bodies are not read (the Rx buffer fills, flow control pushes back).
    pub dont_read: bool,
    /// When true, `send_body` is retried on every event even while the stream waits for budget room.
    pub spam_retries: bool,
    pub chunk: usize,
    pub requests: Vec<(u64, qcc::RequestHead)>,
    /// Requests whose head said no body follows.
    pub ended_with_head: Vec<u64>,
    pub aborted: Vec<(u64, AbortCause)>,
    pub closed: Vec<u64>,
    pub writable_events: usize,
    pub blocked_sends: usize,
}

impl App {
    fn on_event(&mut self, conn: &mut Connection, event: Event) {
        match event {
            Event::Request { stream, head, end } => {
                if end {
                    self.ended_with_head.push(stream);
                }
                let path = head.path().to_string();
                self.requests.push((stream, head));
                let num = |p: &str| {
                    p.rsplit('/')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let kind = if path.starts_with("/bytes/") {
                    Kind::Bytes {
                        total: num(&path),
                        trailers: false,
                    }
                } else if path.starts_with("/trailers/") {
                    Kind::Bytes {
                        total: num(&path),
                        trailers: true,
                    }
                } else if path == "/echo" {
                    Kind::Echo
                } else if path == "/sink" {
                    Kind::Sink
                } else if path == "/stall" {
                    Kind::Stall
                } else {
                    Kind::Hold
                };
                // The stream may already be gone (aborted in the same input): its abort event follows.
                if conn.set_upper(stream, stream + 1_000_000).is_err() {
                    return;
                }
                match &kind {
                    Kind::Bytes { total, .. } => {
                        let head = ResponseHead::new(200).with_header("content-length", total.to_string());
                        conn.send_response(stream, head, false).unwrap();
                    }
                    Kind::Echo => conn.send_response(stream, ResponseHead::new(200), false).unwrap(),
                    Kind::Sink | Kind::Hold | Kind::Stall => {}
                }
                let st = AppStream {
                    kind,
                    produced: 0,
                    blocked: None,
                    echo: VecDeque::new(),
                    received: 0,
                    request_ended: false,
                    finished: false,
                };
                self.streams.insert(stream, st);
                self.pump(conn, stream);
            }
            Event::Readable { stream } => {
                let stalled = self
                    .streams
                    .get(&stream)
                    .is_some_and(|s| matches!(s.kind, Kind::Stall));
                if !self.dont_read && !stalled {
                    self.read(conn, stream);
                }
            }
            Event::Writable { stream } => {
                self.writable_events += 1;
                self.pump(conn, stream);
            }
            Event::StreamClosed { stream, upper } => {
                assert_eq!(upper, Some(stream + 1_000_000));
                self.streams.remove(&stream);
                self.closed.push(stream);
            }
            Event::StreamAborted { stream, cause, .. } => {
                self.streams.remove(&stream);
                self.aborted.push((stream, cause));
            }
            Event::GoAway | Event::Dead => {}
        }
        if self.spam_retries {
            let ids: Vec<u64> = self.streams.keys().copied().collect();
            for id in ids {
                self.pump(conn, id);
            }
        }
    }

    fn read(&mut self, conn: &mut Connection, stream: u64) {
        loop {
            let Ok(read) = conn.read_body(stream, 64 * 1024) else {
                return;
            };
            let Some(st) = self.streams.get_mut(&stream) else {
                return;
            };
            match read {
                BodyRead::Data(data) => {
                    st.received += data.len() as u64;
                    if matches!(st.kind, Kind::Echo) {
                        st.echo.push_back(data);
                    }
                }
                BodyRead::End(_) => {
                    if st.request_ended {
                        return;
                    }
                    st.request_ended = true;
                    if matches!(st.kind, Kind::Sink) {
                        let head = ResponseHead::new(200);
                        if conn.send_response(stream, head, false).is_err() {
                            return;
                        }
                        st.echo.push_back(Bytes::from(st.received.to_string()));
                    }
                    self.pump(conn, stream);
                    return;
                }
                BodyRead::Pending => break,
            }
        }
        self.pump(conn, stream);
    }

    fn pump(&mut self, conn: &mut Connection, stream: u64) {
        let chunk = if self.chunk == 0 { 16 * 1024 } else { self.chunk };
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        if st.finished {
            return;
        }
        loop {
            let next = if let Some(b) = st.blocked.take() {
                b
            } else {
                match st.kind {
                    Kind::Bytes { total, .. } if st.produced < total => {
                        let n = (total - st.produced).min(chunk as u64);
                        let data: Vec<u8> = (st.produced..st.produced + n).map(pattern).collect();
                        st.produced += n;
                        Bytes::from(data)
                    }
                    Kind::Echo | Kind::Sink if !st.echo.is_empty() => st.echo.pop_front().unwrap(),
                    _ => break,
                }
            };
            match conn.send_body(stream, next) {
                Ok(SendBody::Queued) => {}
                Ok(SendBody::Blocked(b)) => {
                    self.blocked_sends += 1;
                    st.blocked = Some(b);
                    return;
                }
                Err(_) => return,
            }
        }
        let done = match st.kind {
            Kind::Bytes { total, .. } => st.produced == total,
            Kind::Echo | Kind::Sink => st.request_ended && st.echo.is_empty(),
            Kind::Hold | Kind::Stall => false,
        };
        if done {
            st.finished = true;
            let trailers = matches!(st.kind, Kind::Bytes { trailers: true, .. })
                .then(|| vec![Header::new(b"x-checksum", st.produced.to_string().as_bytes())]);
            let _ = conn.finish(stream, trailers);
        }
    }

    /// Whether the upper side has handed the whole response of `stream` over and finished it.
    pub fn upper_done(&self, stream: u64) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.finished)
    }

    /// Aborts a stream from the upper side.
    pub fn reset(&mut self, conn: &mut Connection, stream: u64, code: u64) {
        if conn.reset_stream(stream, code).is_ok() {
            self.streams.remove(&stream);
        }
    }
}

// ---------------------------------------------------------------- client

#[derive(Debug, Default, Clone)]
pub struct Response {
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub finished: bool,
    pub reset: Option<u64>,
    pub upload_stopped: Option<u64>,
}

struct Upload {
    data: Bytes,
    pos: usize,
}

pub struct ClientState {
    pub responses: BTreeMap<u64, Response>,
    uploads: BTreeMap<u64, Upload>,
    pub goaway: bool,
    /// The ID the server's last GOAWAY carried.
    pub goaway_id: Option<u64>,
    /// Stop reading response bodies (the client's receive windows fill up).
    pub dont_read: bool,
}

impl ClientState {
    /// Body of `id` is still to be written.
    pub fn uploading(&self, id: u64) -> bool {
        self.uploads.contains_key(&id)
    }
}

// ---------------------------------------------------------------- the pair

pub struct Setup {
    pub seed: u64,
    pub knobs: Knobs,
    pub limits: Limits,
    pub params: TransportParams,
    pub client_idle: Duration,
    pub client_stream_window: u64,
    pub client_max_data: u64,
    /// TLS early data (0-RTT) on both sides, for a [`Pair::reconnect`] that resumes.
    pub early_data: bool,
}

impl Default for Setup {
    fn default() -> Self {
        let params = TransportParams {
            max_ack_delay_ms: 1,
            initial_rtt: Duration::from_millis(10),
            initial_max_data: 32 * 1024 * 1024,
            initial_max_stream_data: 4 * 1024 * 1024,
            max_streams_bidi: 200,
            ..TransportParams::default()
        };
        Setup {
            seed: 1,
            knobs: Knobs::default(),
            limits: Limits::default(),
            params,
            client_idle: Duration::from_secs(30),
            client_stream_window: 8 * 1024 * 1024,
            client_max_data: 64 * 1024 * 1024,
            early_data: false,
        }
    }
}

#[derive(Default)]
pub struct CountingWaker(pub AtomicUsize);

impl qcc::Waker for CountingWaker {
    fn wake(&self) {
        self.0.fetch_add(1, Relaxed);
    }
}

pub struct Pair {
    pub counters: Arc<Counters>,
    /// `None` until the client's first Initial arrives.
    pub server: Option<ServerConn>,
    server_config: ServerConfig,
    pub client: quiche::Connection,
    pub client_h3: Option<h3::Connection>,
    pub client_state: ClientState,
    pub net: Net,
    pub clock: Clock,
    pub app: App,
    pub orphans: Vec<(u64, Option<u64>)>,
    pub waker: Arc<CountingWaker>,
    /// Release the connection as soon as it reports `Dead` (default true).
    pub auto_release: bool,
    pub dead_seen: bool,
    /// Datagrams delivered to the server connection while it was closing.
    pub to_closing: usize,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    client_config: quiche::Config,
    rng: fastrand::Rng,
    buf: Vec<u8>,
}

fn new_client(
    rng: &mut fastrand::Rng,
    config: &mut quiche::Config,
    from: SocketAddr,
    to: SocketAddr,
    session: Option<Vec<u8>>,
) -> quiche::Connection {
    let scid: Vec<u8> = (0..16).map(|_| rng.u8(..)).collect();
    let scid = quiche::ConnectionId::from_vec(scid);
    let mut client = quiche::connect(Some("localhost"), &scid, from, to, config).unwrap();
    if let Some(session) = session {
        client.set_session(&session).unwrap();
    }
    client
}

impl Pair {
    pub fn new(setup: Setup) -> Self {
        let (cert, key) = cert_files();
        let mut server_config = ServerConfig::new(cert, key, &setup.params, setup.limits.clone()).unwrap();
        let mut cc = quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap();
        cc.set_application_protos(h3::APPLICATION_PROTOCOL).unwrap();
        cc.verify_peer(false);
        cc.set_max_idle_timeout(setup.client_idle.as_millis() as u64);
        cc.set_max_send_udp_payload_size(setup.knobs.mtu);
        cc.set_max_recv_udp_payload_size(setup.knobs.mtu);
        cc.set_initial_max_data(setup.client_max_data);
        cc.set_initial_max_stream_data_bidi_local(setup.client_stream_window);
        cc.set_initial_max_stream_data_bidi_remote(setup.client_stream_window);
        cc.set_initial_max_stream_data_uni(1024 * 1024);
        cc.set_initial_max_streams_bidi(100);
        cc.set_initial_max_streams_uni(100);
        cc.set_max_ack_delay(1);
        cc.set_initial_rtt(Duration::from_millis(10));
        if setup.early_data {
            cc.enable_early_data();
            server_config.enable_early_data();
        }
        let mut rng = fastrand::Rng::with_seed(setup.seed);
        let (client_addr, server_addr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let client = new_client(&mut rng, &mut cc, client_addr, server_addr, None);
        let mut server_config = server_config;
        server_config
            .quic_mut()
            .set_max_send_udp_payload_size(setup.knobs.mtu);
        Pair {
            counters: Arc::new(Counters::default()),
            server: None,
            server_config,
            client,
            client_h3: None,
            client_state: ClientState {
                responses: BTreeMap::new(),
                uploads: BTreeMap::new(),
                goaway: false,
                goaway_id: None,
                dont_read: false,
            },
            net: Net::new(setup.seed ^ 0x5eed, setup.knobs),
            clock: Clock {
                offset: Duration::ZERO,
            },
            app: App::default(),
            orphans: Vec::new(),
            waker: Arc::new(CountingWaker::default()),
            auto_release: true,
            dead_seen: false,
            to_closing: 0,
            client_addr,
            server_addr,
            client_config: cc,
            rng,
            buf: vec![0; 65535],
        }
    }

    /// A new client connection in place of the ended one, resuming its TLS session when `resume` (and
    /// the setup enabled early data), against the same server configuration and counters.
    pub fn reconnect(&mut self, resume: bool) {
        assert!(
            matches!(self.server, Some(ServerConn::Closed)) && self.client.is_closed(),
            "reconnect before the last connection ended"
        );
        let session = if resume {
            self.client.session().map(<[u8]>::to_vec)
        } else {
            None
        };
        assert!(!resume || session.is_some(), "no session ticket to resume");
        self.client = new_client(
            &mut self.rng,
            &mut self.client_config,
            self.client_addr,
            self.server_addr,
            session,
        );
        self.client_h3 = None;
        self.client_state = ClientState {
            responses: BTreeMap::new(),
            uploads: BTreeMap::new(),
            goaway: false,
            goaway_id: None,
            dont_read: false,
        };
        self.server = None;
        self.app = App::default();
        self.net.drop_to_client = false;
        self.net.drop_to_server = false;
        self.dead_seen = false;
    }

    /// A pair with the handshake done and both HTTP/3 layers up.
    pub fn established(setup: Setup) -> Self {
        let mut pair = Pair::new(setup);
        let up = pair.run_until(|p| p.client_h3.is_some() && p.live().is_some_and(|c| c.is_established()));
        assert!(up, "no handshake: {}", pair.describe());
        let conn = pair.live().unwrap();
        assert!(
            Arc::ptr_eq(conn.counters(), &pair.counters),
            "the connection counts elsewhere"
        );
        assert!(!conn.has_events(), "events left undispatched");
        pair
    }

    // The harness holds its connection through `ServerConn`'s accessors, as the worker does.
    pub fn live(&self) -> Option<&Connection> {
        self.server.as_ref()?.as_live()
    }

    pub fn live_mut(&mut self) -> Option<&mut Connection> {
        self.server.as_mut()?.as_live_mut()
    }

    /// Runs `f` with the live connection and the app.
    pub fn with_server<R>(&mut self, f: impl FnOnce(&mut Connection, &mut App) -> R) -> R {
        let Some(ServerConn::Live(conn)) = &mut self.server else {
            panic!("the server connection is not live")
        };
        let r = f(conn, &mut self.app);
        self.dispatch_server_events();
        r
    }

    // ---- client operations

    pub fn request(&mut self, method: &str, path: &str, body: Option<Vec<u8>>) -> u64 {
        self.request_with(method, path, body, &[])
    }

    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> u64 {
        self.try_request(method, path, body, extra)
            .expect("the request could not be sent")
    }

    /// Sends a request, driving the pair until its HEADERS fit. `None` when the connection cannot carry it.
    pub fn try_request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Option<u64> {
        let mut headers = vec![
            Header::new(b":method", method.as_bytes()),
            Header::new(b":scheme", b"https"),
            Header::new(b":authority", b"localhost"),
            Header::new(b":path", path.as_bytes()),
        ];
        if let Some(b) = &body {
            headers.push(Header::new(b"content-length", b.len().to_string().as_bytes()));
        }
        headers.extend(extra.iter().map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes())));
        // A new connection's HTTP/3 layer comes with its handshake (or its early data).
        if self.client_h3.is_none() && !self.run_until(|p| p.client_h3.is_some() || p.client.is_closed()) {
            return None;
        }
        // The HEADERS frame needs stream and congestion credit: drive the pair until it fits.
        let id = loop {
            let h3 = self.client_h3.as_mut()?;
            match h3.send_request(&mut self.client, &headers, body.is_none()) {
                Ok(id) => break id,
                Err(h3::Error::StreamBlocked | h3::Error::TransportError(quiche::Error::StreamLimit)) => {
                    if self.client.is_closed() || (!self.step() && !self.advance(Duration::from_secs(1))) {
                        return None;
                    }
                }
                Err(_) => return None,
            }
        };
        self.client_state.responses.insert(id, Response::default());
        if let Some(b) = body {
            self.client_state.uploads.insert(
                id,
                Upload {
                    data: Bytes::from(b),
                    pos: 0,
                },
            );
        }
        self.client_pump_uploads();
        Some(id)
    }

    /// Reads again after `client_state.dont_read`: what quiche holds of every response now, the rest as
    /// it comes.
    pub fn client_resume_reading(&mut self) {
        self.client_state.dont_read = false;
        let Some(h3) = self.client_h3.as_mut() else { return };
        let mut buf = vec![0; 65536];
        for (id, r) in self.client_state.responses.iter_mut() {
            while let Ok(n) = h3.recv_body(&mut self.client, *id, &mut buf) {
                r.body.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// RESET_STREAM from the client on `id`.
    pub fn client_reset(&mut self, id: u64, code: u64) {
        self.client_state.uploads.remove(&id);
        let _ = self.client.stream_shutdown(id, quiche::Shutdown::Write, code);
    }

    /// STOP_SENDING from the client on `id`.
    pub fn client_stop_sending(&mut self, id: u64, code: u64) {
        let _ = self.client.stream_shutdown(id, quiche::Shutdown::Read, code);
    }

    fn client_pump_uploads(&mut self) {
        let Some(h3) = self.client_h3.as_mut() else { return };
        let ids: Vec<u64> = self.client_state.uploads.keys().copied().collect();
        for id in ids {
            let up = self.client_state.uploads.get_mut(&id).unwrap();
            loop {
                let end = (up.pos + 32 * 1024).min(up.data.len());
                let fin = end == up.data.len();
                match h3.send_body(&mut self.client, id, &up.data[up.pos..end], fin) {
                    Ok(n) => {
                        up.pos += n;
                        if fin && up.pos == up.data.len() {
                            self.client_state.uploads.remove(&id);
                            break;
                        }
                        if n == 0 {
                            break;
                        }
                    }
                    Err(h3::Error::Done | h3::Error::StreamBlocked) => break,
                    Err(h3::Error::TransportError(quiche::Error::StreamStopped(code))) => {
                        self.client_state.responses.entry(id).or_default().upload_stopped = Some(code);
                        self.client_state.uploads.remove(&id);
                        break;
                    }
                    Err(_) => {
                        self.client_state.uploads.remove(&id);
                        break;
                    }
                }
            }
        }
    }

    fn client_poll(&mut self) -> bool {
        if self.client_h3.is_none() && (self.client.is_established() || self.client.is_in_early_data()) {
            self.client_h3 =
                Some(h3::Connection::with_transport(&mut self.client, &h3::Config::new().unwrap()).unwrap());
        }
        self.client_pump_uploads();
        let Some(h3) = self.client_h3.as_mut() else {
            return false;
        };
        let mut progress = false;
        loop {
            match h3.poll(&mut self.client) {
                Ok((id, ev)) => {
                    progress = true;
                    let r = self.client_state.responses.entry(id).or_default();
                    match ev {
                        h3::Event::Headers { list, .. } => {
                            let pairs: Vec<(String, String)> = list
                                .iter()
                                .map(|h| {
                                    (
                                        String::from_utf8_lossy(h.name()).into(),
                                        String::from_utf8_lossy(h.value()).into(),
                                    )
                                })
                                .collect();
                            if r.status.is_none() {
                                r.status = pairs
                                    .iter()
                                    .find(|(n, _)| n == ":status")
                                    .and_then(|(_, v)| v.parse().ok());
                                r.headers = pairs;
                            } else {
                                r.trailers = pairs;
                            }
                        }
                        h3::Event::Data => {
                            if !self.client_state.dont_read {
                                let mut buf = vec![0; 65536];
                                while let Ok(n) = h3.recv_body(&mut self.client, id, &mut buf) {
                                    r.body.extend_from_slice(&buf[..n]);
                                }
                            }
                        }
                        h3::Event::Finished => r.finished = true,
                        h3::Event::Reset(code) => r.reset = Some(code),
                        h3::Event::GoAway => {
                            self.client_state.goaway = true;
                            self.client_state.goaway_id = Some(id);
                        }
                        h3::Event::PriorityUpdate => {}
                    }
                }
                Err(h3::Error::Done) => break,
                Err(_) => break,
            }
        }
        progress
    }

    // ---- server side

    fn server_recv(&mut self, mut dgram: Vec<u8>) {
        let now = self.clock.now();
        let (from, to) = (self.client_addr, self.server_addr);
        if self.server.is_none() {
            let Ok(hdr) = quiche::Header::from_slice(&mut dgram, quiche::MAX_CONN_ID_LEN) else {
                return;
            };
            if hdr.ty != quiche::Type::Initial {
                return;
            }
            let scid: Vec<u8> = (0..16)
                .map(|i| hdr.dcid.as_ref().get(i).copied().unwrap_or(0) ^ 0xa5)
                .collect();
            let scid = quiche::ConnectionId::from_vec(scid);
            let waker: Arc<dyn qcc::Waker> = self.waker.clone();
            let conn = Connection::accept(
                &mut self.server_config,
                &scid,
                None,
                to,
                from,
                self.counters.clone(),
                Some(waker),
                now,
            )
            .unwrap();
            self.server = Some(ServerConn::live(conn));
        }
        if let Some(server) = &mut self.server {
            if matches!(server, ServerConn::Closing(_)) {
                self.to_closing += 1;
            }
            let _ = server.handle_datagram(now, &mut dgram, from, to);
        }
        self.dispatch_server_events();
    }

    pub fn dispatch_server_events(&mut self) -> bool {
        let mut progress = false;
        while let Some(ServerConn::Live(conn)) = &mut self.server {
            if !conn.has_events() {
                break;
            }
            let event = conn.poll_event().expect("has_events promised an event");
            progress = true;
            if matches!(event, Event::Dead) {
                self.dead_seen = true;
                if self.auto_release {
                    self.release_server();
                }
                continue;
            }
            self.app.on_event(conn, event);
        }
        if self
            .server
            .as_ref()
            .is_some_and(|s| matches!(s, ServerConn::Closing(_)) && s.is_closed())
        {
            self.server = Some(ServerConn::Closed);
            progress = true;
        }
        progress
    }

    /// `Connection::release`, the only way a connection ends.
    pub fn release_server(&mut self) {
        let now = self.clock.now();
        if let Some(server) = &mut self.server {
            self.orphans.extend(server.release(now));
        }
    }

    // ---- driving

    /// One round: both sides send, the network delivers, both sides handle events. Returns whether
    /// anything moved.
    pub fn step(&mut self) -> bool {
        let mut progress = self.client_poll();
        let now = self.clock.now();
        while let Ok((n, _)) = self.client.send(&mut self.buf) {
            let d = self.buf[..n].to_vec();
            self.net.push(Dir::ToServer, d);
            progress = true;
        }
        loop {
            let t = self
                .server
                .as_mut()
                .and_then(|s| s.poll_transmit(now, &mut self.buf));
            let Some(t) = t else { break };
            assert_eq!(t.to, self.client_addr);
            let d = self.buf[..t.len].to_vec();
            self.net.push(Dir::ToClient, d);
            progress = true;
        }
        progress |= self.dispatch_server_events();
        while let Some(d) = self.net.pop(Dir::ToServer) {
            self.net.delivered += 1;
            progress = true;
            self.server_recv(d);
        }
        while let Some(mut d) = self.net.pop(Dir::ToClient) {
            self.net.delivered += 1;
            progress = true;
            let info = quiche::RecvInfo {
                from: self.server_addr,
                to: self.client_addr,
            };
            let _ = self.client.recv(&mut d, info);
        }
        progress |= self.client_poll();
        progress
    }

    /// Sends everything the client has and hands it to the server at once, the server answering
    /// nothing yet (its next `poll_transmit` is the next `step`'s). Returns the datagrams sent.
    pub fn client_flight_to_server(&mut self) -> usize {
        let mut sent = 0;
        while let Ok((n, _)) = self.client.send(&mut self.buf) {
            let d = self.buf[..n].to_vec();
            self.server_recv(d);
            sent += 1;
        }
        sent
    }

    /// The bytes the client may still write on `id` (the smaller of the stream's and the
    /// connection's credit); `None` once the stream is gone or stopped.
    pub fn client_credit(&mut self, id: u64) -> Option<usize> {
        self.client.stream_capacity(id).ok()
    }

    /// Waits for the next timer: qcc's own timers by jumping the virtual clock, quiche's by sleeping.
    /// Returns false when no timer is due within `max_sleep`.
    fn advance(&mut self, max_sleep: Duration) -> bool {
        let now = self.clock.now();
        let client_dl = if self.client.is_closed() {
            None
        } else {
            self.client.timeout().map(|d| now + d)
        };
        let (server_real, ours) = match &self.server {
            Some(ServerConn::Live(c)) => (c.transport_timeout(now), c.own_timeout()),
            Some(s @ ServerConn::Closing(_)) => (s.poll_timeout(now), None),
            _ => (None, None),
        };
        let real = [client_dl, server_real].into_iter().flatten().min();
        if let Some(ours) = ours.filter(|t| real.is_none_or(|r| *t <= r)) {
            self.clock.jump_to(ours);
            let now = self.clock.now();
            if let Some(ServerConn::Live(c)) = &mut self.server {
                c.handle_timeout(now);
            }
            self.dispatch_server_events();
            return true;
        }
        let Some(real) = real else { return false };
        if real > now + max_sleep {
            return false;
        }
        if real > now {
            std::thread::sleep(real - now);
        }
        let now = self.clock.now();
        self.client.on_timeout();
        if let Some(server) = &mut self.server {
            server.handle_timeout(now);
        }
        self.dispatch_server_events();
        true
    }

    /// Drives both sides until `done` holds. Bounded: 2,000,000 rounds or 30 s of real time.
    pub fn run_until(&mut self, mut done: impl FnMut(&Pair) -> bool) -> bool {
        self.run_within(|p| done(p), Duration::from_secs(5))
    }

    /// `run_until` for a condition that needs the pair mutably (quiche's `stream_capacity` does).
    pub fn run_until_mut(&mut self, done: impl FnMut(&mut Pair) -> bool) -> bool {
        self.run_within(done, Duration::from_secs(5))
    }

    /// `run_until`, sleeping over timers at most `horizon` away.
    fn run_within(&mut self, mut done: impl FnMut(&mut Pair) -> bool, horizon: Duration) -> bool {
        let start = Instant::now();
        for _ in 0..2_000_000 {
            if done(self) {
                return true;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return false;
            }
            if !self.step() && !done(self) && !self.advance(horizon) {
                return done(self);
            }
        }
        false
    }

    /// Drives until nothing moves and no timer is due within `horizon`.
    pub fn settle(&mut self, horizon: Duration) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if !self.step() && !self.advance(horizon) {
                return;
            }
        }
    }

    /// Drives until the server connection is gone (released, closed, dropped) and the client closed.
    pub fn run_to_end(&mut self) -> bool {
        let server_gone = |p: &Pair| matches!(p.server, Some(ServerConn::Closed));
        if self.net.knobs.loss == 0.0 {
            return self.run_until(|p| server_gone(p) && p.client.is_closed());
        }
        // With loss the server's CONNECTION_CLOSE may never arrive (quiche repeats it only in answer
        // to a packet, and the client has nothing to send): the client then ends at its idle timer,
        // as a real one does.
        self.run_until(server_gone) && self.run_within(|p| p.client.is_closed(), Duration::from_secs(120))
    }

    /// A one-line state report for failure messages.
    pub fn describe(&self) -> String {
        let server = match &self.server {
            None => "pending".to_string(),
            Some(ServerConn::Live(c)) => format!("live {c:?} dead={}", c.is_dead()),
            Some(ServerConn::Closing(c)) => format!("{c:?} closed={}", c.is_closed()),
            Some(ServerConn::Closed) => "gone".to_string(),
        };
        format!(
            "server: {server}; client closed={} draining={} timeout={:?} goaway={} errors={:?}/{:?}; counters {:?}; app streams {:?}",
            self.client.is_closed(),
            self.client.is_draining(),
            self.client.timeout(),
            self.client_state.goaway,
            self.client.local_error(),
            self.client.peer_error(),
            self.counters.snapshot(),
            self.app.requests.iter().map(|(id, h)| (id, h.path().to_string())).collect::<Vec<_>>(),
        )
    }

    pub fn response(&self, id: u64) -> &Response {
        &self.client_state.responses[&id]
    }

    /// A normal GET on the connection is still answered.
    pub fn serves_another_request(&mut self) {
        let id = self.request("GET", "/bytes/100", None);
        assert!(self.run_until(|p| p.response(id).finished), "{}", self.describe());
        assert_eq!(self.response(id).status, Some(200));
    }

    /// Shuts the connection down (GOAWAY), drives both sides to their end, and asserts all is idle.
    pub fn shutdown_and_end(&mut self) {
        let now = self.clock.now();
        if let Some(conn) = self.live_mut() {
            conn.shutdown(now);
        }
        self.dispatch_server_events();
        assert!(
            self.run_to_end(),
            "the connection did not end: {}",
            self.describe()
        );
        self.assert_idle();
    }

    /// Asserts that every live counter is back to zero and no release ran out of order.
    pub fn assert_idle(&self) {
        self.assert_no_out_of_order();
        assert!(
            matches!(self.server, Some(ServerConn::Closed) | None),
            "the server connection still exists"
        );
        let snap = self.counters.snapshot();
        assert!(snap.is_idle(), "objects still alive: {snap:?}");
    }

    pub fn assert_no_out_of_order(&self) {
        let snap = self.counters.snapshot();
        assert_eq!(snap.out_of_order_releases, 0, "{snap:?}");
    }
}

impl Drop for Pair {
    // A test that ends with the connection live still ends it the only allowed way.
    fn drop(&mut self) {
        self.release_server();
    }
}
