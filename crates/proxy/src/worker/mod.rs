//! One worker: a mio event loop that owns its UDP sockets, its connections and their backend exchanges.
//!
//! Tokens: listener sockets are `0..n`, signals [`SIGNALS`], backend sockets `EXCHANGE_BASE + index`.
//! Connections have no token: all their datagrams arrive on a listener socket and are routed by
//! destination CID ([`qcc::route::CidRouter`]). Each turn: drain every ready socket until `WouldBlock`,
//! fire due timers, then process every connection marked dirty (events, then transmit), then collect
//! closed ones.

mod idle_trim;
mod request;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use qcc::route::{CidRouter, Route};
use qcc::{Closing, Connection, Counters, Event, Limits, ServerConfig, TransportParams};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{Config, QuicBind};
use crate::frontend::retry_token::RetryTokens;
use crate::telemetry::prometheus::ProxyCounters;
use crate::upstream::balance::Balancer;
use crate::upstream::health::HealthChecks;
use crate::upstream::live::{Runtime, SharedRuntime};
use crate::upstream::{Pool, Termination};
use crate::worker::idle_trim::IdleTrim;
use request::{AwaitingHandshake, Queues, Running};

/// The signals token.
const SIGNALS: Token = Token(1 << 20);
/// Backend socket tokens start here.
const EXCHANGE_BASE: usize = 1 << 21;
/// Length of the connection IDs we issue (short headers carry no length).
const CID_LEN: usize = 16;
/// UDP socket buffer size asked for (the kernel may cap it at net.core.rmem_max / wmem_max).
const UDP_BUFFER: usize = 8 * 1024 * 1024;

struct Listener {
    socket: UdpSocket,
    local: SocketAddr,
    frontend: usize,
    tls: ServerConfig,
    /// `quic-force-retry`.
    force_retry: bool,
}

enum SlotConn {
    Live(Box<Connection>),
    Closing(Closing),
    /// Released with nothing left to drive (only while `release` runs, or after a forced stop).
    Gone,
}

/// A connection in the slab. `serial` tags it: an exchange that outlives its connection finds a
/// different serial (or nothing) and stops there.
struct Slot {
    serial: u64,
    conn: SlotConn,
    listener: usize,
    peer: SocketAddr,
    trace: String,
    exchanges: HashMap<u64, usize>,
    /// Requests that came in early data and wait for the handshake to complete.
    awaiting_handshake: Vec<AwaitingHandshake>,
    dirty: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct ConnKey {
    index: usize,
    serial: u64,
}

/// How the worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every connection finished after a stop signal.
    Graceful,
    /// A second signal or `hard-stop-after` cut the drain short.
    Forced,
}

/// The event loop.
pub(crate) struct Worker {
    poll: Poll,
    listeners: Vec<Listener>,
    slots: Slab<Slot>,
    router: CidRouter<usize>,
    exchanges: Slab<Running>,
    queues: Queues,
    pool: Pool,
    config: Arc<Config>,
    config_path: Option<PathBuf>,
    balancers: Vec<Balancer>,
    runtime: Arc<Runtime>,
    shared: SharedRuntime,
    health: HealthChecks,
    retry_tokens: RetryTokens,
    counters: Arc<Counters>,
    proxy: Arc<ProxyCounters>,
    serial: u64,
    dirty: Vec<usize>,
    stop_deadline: Option<Option<Instant>>,
    signals: Signals,
    rng: fastrand::Rng,
    next_prune: Instant,
    trim: IdleTrim,
    buf: Vec<u8>,
    out: Vec<u8>,
}

fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps these at its maximum.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    Ok(socket.into())
}

/// quiche's transport parameters and the connection layer's limits from the configuration.
fn quic_settings(config: &Config, frontend: usize) -> (TransportParams, Limits) {
    let g = &config.global;
    let t = &config.frontends[frontend].timeouts;
    let params = TransportParams {
        max_idle_timeout: g.max_idle_timeout,
        max_streams_bidi: g.max_concurrent_streams,
        initial_max_data: g.conn_max_data,
        initial_max_stream_data: g.stream_max_data,
        ..TransportParams::default()
    };
    let limits = Limits {
        tx_budget: g.tx_max,
        stream_rx_buf: g.stream_rxbuf,
        handshake_timeout: t.client_hs,
        http_request_timeout: t.http_request,
        keep_alive_timeout: t.http_keep_alive,
    };
    (params, limits)
}

fn tls_config(config: &Config, frontend: usize, bind: &QuicBind) -> Result<ServerConfig> {
    let (params, limits) = quic_settings(config, frontend);
    let mut tls = ServerConfig::new(&bind.cert, &bind.key, &params, limits)
        .with_context(|| format!("TLS setup for {} ({})", bind.addr, bind.cert.display()))?;
    if bind.allow_0rtt {
        tls.enable_early_data();
    }
    Ok(tls)
}

impl Worker {
    /// Binds every frontend's listeners and prepares the loop.
    pub(crate) fn new(
        config: Arc<Config>,
        config_path: Option<PathBuf>,
        counters: Arc<Counters>,
        proxy: Arc<ProxyCounters>,
        shared: SharedRuntime,
    ) -> Result<Self> {
        let poll = Poll::new()?;
        let mut listeners = Vec::new();
        for (f, frontend) in config.frontends.iter().enumerate() {
            for bind in &frontend.binds {
                let tls = tls_config(&config, f, bind)?;
                let mut socket = UdpSocket::from_std(udp_socket(bind.addr)?);
                let local = socket.local_addr()?;
                poll.registry()
                    .register(&mut socket, Token(listeners.len()), Interest::READABLE)?;
                listeners.push(Listener {
                    socket,
                    local,
                    frontend: f,
                    tls,
                    force_retry: bind.force_retry,
                });
            }
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut rng = fastrand::Rng::new();
        let balancers = config
            .backends
            .iter()
            .map(|b| Balancer::new(b, rng.u64(..)))
            .collect();
        let runtime = shared.read().clone();
        let health = HealthChecks::start(&config, &runtime).context("starting health checks")?;
        Ok(Worker {
            poll,
            listeners,
            slots: Slab::new(),
            router: CidRouter::new(CID_LEN),
            exchanges: Slab::new(),
            queues: Queues::new(),
            pool: Pool::new(proxy.clone()),
            config,
            config_path,
            balancers,
            runtime,
            shared,
            health,
            retry_tokens: RetryTokens::new()
                .map_err(|_| anyhow::anyhow!("no random key for Retry tokens"))?,
            counters,
            proxy,
            serial: 0,
            dirty: Vec::new(),
            stop_deadline: None,
            signals,
            rng,
            next_prune: Instant::now(),
            trim: IdleTrim::new(Instant::now()),
            buf: vec![0; 65535],
            out: vec![0; 65535],
        })
    }

    /// The addresses the listeners are bound to (a port 0 in the config becomes a real port here).
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// Runs until a stop signal has drained every connection (or a second signal / hard-stop-after).
    pub(crate) fn run(&mut self) -> Result<Exit> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = self.next_deadline(now).map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                match event.token() {
                    SIGNALS => {
                        if let Some(exit) = self.on_signals()? {
                            return Ok(exit);
                        }
                    }
                    Token(t) if t >= EXCHANGE_BASE => self.progress_exchange(t - EXCHANGE_BASE),
                    Token(i) => self.read_listener(i),
                }
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.process_dirty(now);
            if self
                .trim
                .after_turn(self.is_idle(), self.config.global.memory_trimming, now)
            {
                self.proxy.memory_trims.fetch_add(1, Relaxed);
            }
            if let Some(deadline) = self.stop_deadline {
                if self.slots.is_empty() {
                    tracing::info!("all connections drained, exiting");
                    return Ok(Exit::Graceful);
                }
                if deadline.is_some_and(|d| d <= now) {
                    tracing::warn!(
                        connections = self.slots.len(),
                        "hard-stop-after reached, closing what is left"
                    );
                    self.force_close();
                    return Ok(Exit::Forced);
                }
            }
        }
    }

    /// No connection and no backend exchange: what a burst allocated is free again.
    fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.exchanges.is_empty()
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let conns = self.slots.iter().filter_map(|(_, s)| match &s.conn {
            SlotConn::Live(c) => c.poll_timeout(now),
            SlotConn::Closing(c) => c.poll_timeout(now),
            SlotConn::Gone => None,
        });
        let exchanges = self.exchanges.iter().filter_map(|(_, r)| r.exchange.deadline());
        let stop = self.stop_deadline.flatten();
        let trim = self
            .trim
            .deadline(self.is_idle(), self.config.global.memory_trimming);
        conns
            .chain(exchanges)
            .chain(self.queue_deadline())
            .chain(stop)
            .chain(trim)
            .chain(Some(self.next_prune))
            .min()
    }

    // ---------------------------------------------------------------- datagrams

    fn read_listener(&mut self, i: usize) {
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.socket.recv_from(&mut self.buf) {
                Ok((len, peer)) => self.on_datagram(i, len, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    fn on_datagram(&mut self, listener: usize, len: usize, peer: SocketAddr) {
        let now = Instant::now();
        let local = self.listeners[listener].local;
        let index = match self.router.route(&mut self.buf[..len]) {
            Route::Owner(index) => index,
            Route::New { dcid } => match self.accept(listener, len, peer, &dcid, now) {
                Some(index) => index,
                None => return,
            },
            Route::Drop => return,
        };
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let res = match &mut slot.conn {
            SlotConn::Live(c) => c.handle_datagram(now, &mut self.buf[..len], peer, local),
            SlotConn::Closing(c) => c.handle_datagram(now, &mut self.buf[..len], peer, local),
            SlotConn::Gone => Ok(0),
        };
        if let Err(e) = res {
            tracing::debug!(conn = %slot.trace, error = %e, "datagram refused");
        }
        // The client may have moved (NAT rebinding, migration): answers go where it is now.
        slot.peer = peer;
        mark_dirty(&mut self.dirty, slot, index);
    }

    fn accept(
        &mut self,
        listener: usize,
        len: usize,
        peer: SocketAddr,
        dcid: &[u8],
        now: Instant,
    ) -> Option<usize> {
        if self.stop_deadline.is_some() {
            return None; // Stopping: no new connection.
        }
        let hdr = quiche::Header::from_slice(&mut self.buf[..len], CID_LEN).ok()?;
        let local = self.listeners[listener].local;
        if !quiche::version_is_supported(hdr.version) {
            let n = quiche::negotiate_version(&hdr.scid, &hdr.dcid, &mut self.out).ok()?;
            let _ = self.listeners[listener].socket.send_to(&self.out[..n], peer);
            return None;
        }
        // A client Initial fills at least 1200 bytes (RFC 9000, 14.1); smaller ones cost us nothing.
        if len < 1200 {
            return None;
        }
        let random_cid: Vec<u8> = (0..CID_LEN).map(|_| self.rng.u8(..)).collect();
        let (scid, odcid) = if self.listeners[listener].force_retry {
            let token = hdr.token.as_deref().unwrap_or_default();
            if hdr.ty != quiche::Type::Initial {
                return None;
            }
            if token.is_empty() {
                // Stateless: the client comes back to `random_cid` with the token, or not at all.
                let token = self.retry_tokens.mint(peer, &hdr.dcid, SystemTime::now());
                let new_scid = quiche::ConnectionId::from_ref(&random_cid);
                let n = quiche::retry(
                    &hdr.scid,
                    &hdr.dcid,
                    &new_scid,
                    &token,
                    hdr.version,
                    &mut self.out,
                )
                .ok()?;
                let _ = self.listeners[listener].socket.send_to(&self.out[..n], peer);
                self.proxy.retries[0].fetch_add(1, Relaxed);
                return None;
            }
            let Some(odcid) = self.retry_tokens.validate(peer, token, SystemTime::now()) else {
                self.proxy.retries[2].fetch_add(1, Relaxed);
                return None;
            };
            self.proxy.retries[1].fetch_add(1, Relaxed);
            (hdr.dcid.to_vec(), Some(quiche::ConnectionId::from_vec(odcid)))
        } else {
            (random_cid, None)
        };
        let scid = quiche::ConnectionId::from_vec(scid);
        let conn = match Connection::accept(
            &mut self.listeners[listener].tls,
            &scid,
            odcid.as_ref(),
            local,
            peer,
            self.counters.clone(),
            None,
            now,
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "accept failed");
                return None;
            }
        };
        self.serial += 1;
        let trace = scid.iter().map(|b| format!("{b:02x}")).collect::<String>();
        tracing::debug!(conn = %trace, %peer, "new connection");
        let index = self.slots.insert(Slot {
            serial: self.serial,
            conn: SlotConn::Live(Box::new(conn)),
            listener,
            peer,
            trace,
            exchanges: HashMap::new(),
            awaiting_handshake: Vec::new(),
            dirty: false,
        });
        self.router.insert(dcid, index);
        self.router.insert(scid.as_ref(), index);
        self.publish_routes();
        Some(index)
    }

    // ---------------------------------------------------------------- connections

    fn process_dirty(&mut self, now: Instant) {
        while let Some(index) = self.dirty.pop() {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.dirty = false;
            }
            self.handle_events(index, now);
            self.transmit(index, now);
        }
    }

    fn handle_events(&mut self, index: usize, now: Instant) {
        let mut events = Vec::new();
        {
            let Some(slot) = self.slots.get_mut(index) else {
                return;
            };
            let SlotConn::Live(conn) = &mut slot.conn else {
                return;
            };
            while let Some(event) = conn.poll_event() {
                events.push(event);
            }
        }
        for event in events {
            match event {
                Event::Request { stream, head, end } => self.on_request(index, stream, head, end, now),
                Event::Readable { stream } | Event::Writable { stream } => {
                    if let Some(ex) = self
                        .slots
                        .get(index)
                        .and_then(|s| s.exchanges.get(&stream).copied())
                    {
                        self.progress_exchange(ex);
                    }
                }
                Event::StreamClosed { stream, .. } => {
                    if let Some(ex) = self
                        .slots
                        .get(index)
                        .and_then(|s| s.exchanges.get(&stream).copied())
                    {
                        self.progress_exchange(ex);
                    }
                }
                Event::StreamAborted { stream, cause, .. } => {
                    tracing::debug!(stream, ?cause, "stream aborted");
                    if let Some(ex) = self
                        .slots
                        .get(index)
                        .and_then(|s| s.exchanges.get(&stream).copied())
                    {
                        self.end_exchange(ex, Termination::ClientAborted, false);
                    }
                    if let Some(serial) = self.slots.get(index).map(|s| s.serial) {
                        self.unqueue(ConnKey { index, serial }, Some(stream));
                    }
                    self.drop_awaiting(index, Some(stream));
                }
                Event::GoAway => {}
                Event::Dead => self.release(index, now),
            }
        }
        self.after_handshake(index, now);
    }

    /// `Connection::release`, the only way a connection ends; its exchanges are dropped first.
    fn release(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let exchanges: Vec<usize> = slot.exchanges.values().copied().collect();
        let key = ConnKey {
            index,
            serial: slot.serial,
        };
        self.drop_awaiting(index, None);
        for ex in exchanges {
            self.end_exchange(ex, Termination::ClientAborted, false);
        }
        self.unqueue(key, None);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !matches!(slot.conn, SlotConn::Live(_)) {
            return;
        }
        let SlotConn::Live(conn) = std::mem::replace(&mut slot.conn, SlotConn::Gone) else {
            return;
        };
        let released = conn.release(now);
        tracing::debug!(conn = %slot.trace, orphans = released.orphans.len(), "connection released");
        slot.conn = SlotConn::Closing(released.closing);
        mark_dirty(&mut self.dirty, slot, index);
    }

    fn transmit(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let socket = &self.listeners[slot.listener].socket;
        loop {
            let t = match &mut slot.conn {
                SlotConn::Live(c) => c.poll_transmit(now, &mut self.out),
                SlotConn::Closing(c) => c.poll_transmit(now, &mut self.out),
                SlotConn::Gone => None,
            };
            let Some(t) = t else { break };
            match socket.send_to(&self.out[..t.len], t.to) {
                Ok(_) => {}
                // A full socket buffer drops the datagram; QUIC recovers it as a loss.
                Err(e) if e.kind() == ErrorKind::WouldBlock => tracing::trace!("UDP send buffer full"),
                Err(e) => tracing::debug!(error = %e, to = %t.to, "UDP send failed"),
            }
        }
        // Requests answered while transmitting (a stream closed) may have queued events.
        if let SlotConn::Live(c) = &mut slot.conn {
            if c.has_events() {
                mark_dirty(&mut self.dirty, slot, index);
            }
        }
        let closed = match &slot.conn {
            SlotConn::Live(_) => false,
            SlotConn::Closing(c) => c.is_closed(),
            SlotConn::Gone => true,
        };
        if closed {
            tracing::debug!(conn = %slot.trace, "connection closed");
            self.slots.remove(index);
            self.router.remove_owner(index);
            self.publish_routes();
        }
    }

    fn publish_routes(&self) {
        self.proxy.cid_routes.store(self.router.len() as u64, Relaxed);
    }

    fn fire_timers(&mut self, now: Instant) {
        for (index, slot) in self.slots.iter_mut() {
            let due = match &slot.conn {
                SlotConn::Live(c) => c.poll_timeout(now),
                SlotConn::Closing(c) => c.poll_timeout(now),
                SlotConn::Gone => None,
            };
            if due.is_some_and(|t| t <= now) {
                match &mut slot.conn {
                    SlotConn::Live(c) => c.handle_timeout(now),
                    SlotConn::Closing(c) => c.handle_timeout(now),
                    SlotConn::Gone => {}
                }
                mark_dirty(&mut self.dirty, slot, index);
            }
        }
        let expired: Vec<usize> = self
            .exchanges
            .iter()
            .filter(|(_, r)| r.exchange.deadline().is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect();
        for ex in expired {
            self.timeout_exchange(ex, now);
        }
        self.expire_queues(now);
        if self.next_prune <= now {
            self.pool.prune(now);
            self.next_prune = now + Duration::from_secs(5);
        }
    }

    // ---------------------------------------------------------------- signals and stop

    fn on_signals(&mut self) -> Result<Option<Exit>> {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGHUP => self.reload(),
                _ if self.stop_deadline.is_some() => {
                    tracing::warn!("second stop signal: closing every connection now");
                    self.force_close();
                    return Ok(Some(Exit::Forced));
                }
                _ => self.begin_stop(Instant::now()),
            }
        }
        Ok(None)
    }

    /// Graceful stop: GOAWAY to every client, no new connection, requests in flight finish.
    pub(crate) fn begin_stop(&mut self, now: Instant) {
        let hard = self.config.global.hard_stop_after.map(|d| now + d);
        tracing::info!(connections = self.slots.len(), "stopping: GOAWAY to every client");
        self.stop_deadline = Some(hard);
        self.pool.clear();
        for (index, slot) in self.slots.iter_mut() {
            if let SlotConn::Live(c) = &mut slot.conn {
                c.shutdown(now);
            }
            mark_dirty(&mut self.dirty, slot, index);
        }
        self.process_dirty(now);
    }

    fn force_close(&mut self) {
        let now = Instant::now();
        let indexes: Vec<usize> = self.slots.iter().map(|(i, _)| i).collect();
        for index in indexes {
            if let Some(SlotConn::Live(c)) = self.slots.get_mut(index).map(|s| &mut s.conn) {
                c.close(qcc::codes::H3_NO_ERROR, "shutting down");
            }
            self.release(index, now);
            self.transmit(index, now);
        }
        let rest: Vec<usize> = self.exchanges.iter().map(|(i, _)| i).collect();
        for ex in rest {
            self.end_exchange(ex, Termination::ClientAborted, false);
        }
        let queued: Vec<ConnKey> = self
            .queues
            .values()
            .flat_map(|q| q.iter().map(|e| e.conn()))
            .collect();
        for key in queued {
            self.unqueue(key, None);
        }
        self.slots.clear();
        self.pool.clear();
    }

    /// SIGHUP: read the configuration again for new requests. Listeners and TLS stay as they are.
    fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::warn!("SIGHUP: no configuration file to reload");
            return;
        };
        match Config::load(&path) {
            Ok(new) => {
                let binds = |c: &Config| c.frontends.iter().map(|f| f.binds.clone()).collect::<Vec<_>>();
                if binds(&new) != binds(&self.config) {
                    tracing::warn!(
                        "SIGHUP: listener changes need a restart; keeping the running configuration"
                    );
                    return;
                }
                let runtime = Arc::new(Runtime::new(&new, Some(&self.runtime)));
                let health = match HealthChecks::start(&new, &runtime) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::error!(
                            "SIGHUP: starting health checks: {e}; keeping the running configuration"
                        );
                        return;
                    }
                };
                self.balancers = new
                    .backends
                    .iter()
                    .map(|b| Balancer::new(b, self.rng.u64(..)))
                    .collect();
                self.health = health;
                *self.shared.write() = runtime.clone();
                self.runtime = runtime;
                self.config = Arc::new(new);
                tracing::info!(path = %path.display(), checks = self.health.checked(), "configuration reloaded");
                // Queued requests of a backend that is gone get their 503 now; the others may fit.
                let names: Vec<String> = self.queues.keys().cloned().collect();
                for name in names {
                    self.drain_queue(&name, Instant::now());
                }
            }
            Err(e) => tracing::error!("SIGHUP: {e}; keeping the running configuration"),
        }
    }
}

fn mark_dirty(dirty: &mut Vec<usize>, slot: &mut Slot, index: usize) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(index);
    }
}
