//! One worker: a mio event loop that owns its UDP sockets, its connections and their backend exchanges.
//!
//! Tokens: listener sockets are `0..n`, signals [`SIGNALS`], backend sockets `SOCKET_BASE + descriptor`
//! ([`sockets`]: registered once, whoever has them).
//! Connections have no token: all their datagrams arrive on a listener socket and are routed by
//! destination CID ([`qcc::route::CidRouter`]). Each turn: drain every ready socket until `WouldBlock`,
//! fire due timers, then process every connection marked dirty (events, then transmit), then collect
//! closed ones.

mod accept;
mod conns;
mod early;
mod idle_trim;
mod lifecycle;
mod listener;
mod pacing;
mod queue;
mod request;
mod sockets;
mod udp;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use qcc::route::CidRouter;
use qcc::{Counters, ServerConn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::frontend::retry_token::RetryTokens;
use crate::telemetry::counters::ProxyCounters;
use crate::upstream::balance::Balancer;
use crate::upstream::health::HealthChecks;
use crate::upstream::live::{Runtime, SharedRuntime};
use crate::upstream::Pool;
use crate::worker::idle_trim::IdleTrim;
use conns::{mark_dirty, ConnHandle, Slots};
use early::AwaitingHandshake;
use listener::{tls_config, udp_socket, Listener};
use queue::Queues;
use request::ActiveExchange;
use sockets::{SocketOwners, SOCKET_BASE};
use udp::{RxBufs, UdpIo, MAX_BATCH_BYTES, MAX_DATAGRAM};

/// The signals token.
const SIGNALS: Token = Token(1 << 20);
/// Length of the connection IDs we issue (short headers carry no length).
const CID_LEN: usize = 16;
/// UDP socket buffer size asked for (the kernel may cap it at net.core.rmem_max / wmem_max).
const UDP_BUFFER: usize = 8 * 1024 * 1024;

/// Whether the worker takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Accepting connections.
    Serving,
    /// A stop signal came: no new connection; what is open finishes, until `hard_stop` if set.
    Draining {
        /// `hard-stop-after` from the signal.
        hard_stop: Option<Instant>,
    },
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
    slots: Slots,
    router: CidRouter<usize>,
    exchanges: Slab<ActiveExchange>,
    /// Who has each backend socket (registered once, under its descriptor).
    owners: SocketOwners,
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
    run: Run,
    signals: Signals,
    rng: fastrand::Rng,
    trim: IdleTrim,
    /// Events of the connection being handled (kept to reuse its allocation).
    events: Vec<qcc::Event>,
    /// Receive buffers (taken while a listener is drained).
    rx: Option<Box<RxBufs>>,
    /// Send buffer: one GSO train at most.
    out: Vec<u8>,
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
                let socket = UdpSocket::from_std(udp_socket(bind.addr)?);
                let local = socket.local_addr()?;
                let mut io = UdpIo::new(socket, config.global.udp_gso)
                    .with_context(|| format!("UDP socket options on {local}"))?;
                poll.registry()
                    .register(io.socket_mut(), Token(listeners.len()), Interest::READABLE)?;
                listeners.push(Listener {
                    io,
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
            slots: Slots::default(),
            router: CidRouter::new(CID_LEN),
            exchanges: Slab::new(),
            owners: SocketOwners::default(),
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
            run: Run::Serving,
            signals,
            rng,
            trim: IdleTrim::new(Instant::now()),
            events: Vec::new(),
            rx: Some(Box::new(RxBufs::new())),
            out: vec![0; MAX_BATCH_BYTES + 2 * MAX_DATAGRAM],
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
                    Token(t) if t >= SOCKET_BASE => {
                        let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                        self.on_backend_event(t - SOCKET_BASE, readable)
                    }
                    Token(i) => self.read_listener(i),
                }
            }
            let now = Instant::now();
            self.fire_timers(now);
            self.process_dirty(now);
            crate::telemetry::log_buffer::flush();
            if self
                .trim
                .after_turn(self.is_idle(), self.config.global.memory_trimming, now)
            {
                self.proxy.memory_trims.fetch_add(1, Relaxed);
            }
            if let Run::Draining { hard_stop: deadline } = self.run {
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
        let conns = self.slots.iter().filter_map(|(_, s)| s.conn.poll_timeout(now));
        let paced = self
            .slots
            .iter()
            .filter_map(|(_, s)| s.paced.as_ref().map(|p| p.sendable_at()));
        let exchanges = self.exchanges.iter().filter_map(|(_, r)| r.exchange.deadline());
        let stop = match self.run {
            Run::Draining { hard_stop } => hard_stop,
            Run::Serving => None,
        };
        let trim = self
            .trim
            .deadline(self.is_idle(), self.config.global.memory_trimming);
        conns
            .chain(paced)
            .chain(exchanges)
            .chain(self.queue_deadline())
            .chain(stop)
            .chain(trim)
            .chain(self.pool.deadline())
            .min()
    }

    // ---------------------------------------------------------------- datagrams

    // ---------------------------------------------------------------- connections

    // ---------------------------------------------------------------- signals and stop
}
