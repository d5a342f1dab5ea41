//! One worker: a mio event loop on its own thread that owns its UDP sockets, its connections, their
//! backend exchanges and its backend pool. `nbthread` workers run side by side and share nothing on the
//! packet path: each has its own socket in every listener's reuseport group, and the connection IDs it
//! issues name it ([`crate::frontend::cid`]), so the kernel steers datagrams to it ([`steering`]) and a
//! datagram that reaches another worker anyway is handed over ([`inbox`]).
//!
//! Tokens: listener sockets are `0..n`, the inbox [`inbox::WAKER`], backend sockets
//! `SOCKET_BASE + descriptor` ([`sockets`]: registered once, whoever has them).
//! Connections have no token: all their datagrams arrive on a listener socket and are routed by
//! destination CID ([`qcc::route::CidRouter`]). Each turn: drain every ready socket until `WouldBlock`,
//! fire due timers, then process every connection marked dirty (events, then transmit), then collect
//! closed ones.

mod accept;
mod conns;
mod early;
mod idle_trim;
pub(crate) mod inbox;
mod lifecycle;
pub(crate) mod limit;
pub(crate) mod listener;
mod pacing;
mod queue;
mod request;
mod sockets;
mod steering;
mod udp;

use std::io::ErrorKind;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use qcc::route::CidRouter;
use qcc::{Counters, ServerConn};
use slab::Slab;

use crate::config::Config;
use crate::frontend::cid::CidLayout;
use crate::frontend::retry_token::RetryTokens;
use crate::frontend::stateless_reset::{ResetKey, Resetter};
use crate::telemetry::counters::{ProxyCounters, WorkerCounters};
use crate::upstream::balance::Balancer;
use crate::upstream::live::Runtime;
use crate::upstream::Pool;
use crate::worker::idle_trim::IdleTrim;
use conns::{mark_dirty, ConnHandle, Slots};
use early::AwaitingHandshake;
use inbox::{Inbox, Mailboxes, WAKER};
use listener::{tls_config, Listener};
use queue::Queues;
use request::ActiveExchange;
use sockets::{SocketOwners, SOCKET_BASE};
use udp::{RxBufs, UdpIo, MAX_BATCH_BYTES, MAX_DATAGRAM};

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

/// What the supervisor gives a worker to start with. Every worker gets the same configuration,
/// live state, CID layout and secrets.
pub(crate) struct WorkerSetup {
    /// Its index, which its connection IDs carry.
    pub(crate) index: usize,
    /// Its poll, on which the supervisor registered its inbox's waker.
    pub(crate) poll: Poll,
    /// Its socket of every listener, in configuration order (bound by [`listener::bind_all`]).
    pub(crate) sockets: Vec<std::net::UdpSocket>,
    /// What the others post to it.
    pub(crate) inbox: Inbox,
    /// Every worker's mailbox.
    pub(crate) mailboxes: Arc<Mailboxes>,
    /// The configuration in force.
    pub(crate) config: Arc<Config>,
    /// Its live state.
    pub(crate) runtime: Arc<Runtime>,
    /// How connection IDs are laid out.
    pub(crate) cids: Arc<CidLayout>,
    /// Retry tokens: one key for all workers (a client may come back to another one).
    pub(crate) retry_tokens: Arc<RetryTokens>,
    /// Stateless reset tokens: one key for all workers (and, with `cluster-secret`, the fleet).
    pub(crate) reset_key: Arc<ResetKey>,
    /// The TLS session ticket key: one for all workers, so a resumed session may land on any.
    pub(crate) ticket_key: [u8; 48],
    /// Its counters.
    pub(crate) counters: WorkerCounters,
    /// The connection counts shared by every worker (`maxconn`s, handshakes in progress).
    pub(crate) limits: Arc<limit::SharedLimits>,
}

/// The event loop.
pub(crate) struct Worker {
    /// Its index among the workers.
    me: usize,
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
    balancers: Vec<Balancer>,
    runtime: Arc<Runtime>,
    cids: Arc<CidLayout>,
    retry_tokens: Arc<RetryTokens>,
    reset_key: Arc<ResetKey>,
    /// This worker's stateless reset limits.
    resets: Resetter,
    limits: Arc<limit::SharedLimits>,
    counters: Arc<Counters>,
    proxy: Arc<ProxyCounters>,
    inbox: Inbox,
    mailboxes: Arc<Mailboxes>,
    /// Workers this turn handed datagrams to, one bit each: woken once at the end of the turn.
    to_wake: u64,
    serial: u64,
    dirty: Vec<usize>,
    run: Run,
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
    /// Registers the worker's sockets and prepares its loop.
    pub(crate) fn new(setup: WorkerSetup) -> Result<Self> {
        let WorkerSetup {
            index,
            poll,
            sockets,
            inbox,
            mailboxes,
            config,
            runtime,
            cids,
            retry_tokens,
            reset_key,
            ticket_key,
            counters,
            limits,
        } = setup;
        let mut listeners = Vec::new();
        let binds = config
            .frontends
            .iter()
            .enumerate()
            .flat_map(|(f, frontend)| frontend.binds.iter().map(move |b| (f, b)));
        for ((f, bind), socket) in binds.zip(sockets) {
            let mut tls = tls_config(&config, f, bind, &limits.tx_pool)?;
            tls.quic_mut()
                .set_ticket_key(&ticket_key)
                .context("setting the TLS ticket key")?;
            let socket = UdpSocket::from_std(socket);
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
        let mut rng = fastrand::Rng::new();
        let balancers = config
            .backends
            .iter()
            .map(|b| Balancer::new(b, rng.u64(..)))
            .collect();
        let proxy = counters.proxy;
        Ok(Worker {
            me: index,
            poll,
            listeners,
            slots: Slots::default(),
            router: CidRouter::new(cids.len()),
            exchanges: Slab::new(),
            owners: SocketOwners::default(),
            queues: Queues::new(),
            pool: Pool::new(proxy.clone()),
            config,
            balancers,
            runtime,
            cids,
            retry_tokens,
            reset_key,
            resets: Resetter::new(Instant::now()),
            limits,
            counters: counters.layers,
            proxy,
            inbox,
            mailboxes,
            to_wake: 0,
            serial: 0,
            dirty: Vec::new(),
            run: Run::Serving,
            rng,
            trim: IdleTrim::new(Instant::now()),
            events: Vec::new(),
            rx: Some(Box::new(RxBufs::new())),
            out: vec![0; MAX_BATCH_BYTES + 2 * MAX_DATAGRAM],
        })
    }

    /// Runs until a stop order has drained every connection (or a forced stop, or hard-stop-after).
    pub(crate) fn run(&mut self) -> Result<Exit> {
        let exit = self.turns();
        crate::telemetry::log_buffer::flush();
        exit
    }

    fn turns(&mut self) -> Result<Exit> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            let timeout = self.next_deadline().map(|t| t.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {
                        if let Some(exit) = self.read_inbox() {
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
            self.wake_handed_to();
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
                    tracing::info!(worker = self.me, "all connections drained, exiting");
                    return Ok(Exit::Graceful);
                }
                if deadline.is_some_and(|d| d <= now) {
                    tracing::warn!(
                        worker = self.me,
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

    fn next_deadline(&self) -> Option<Instant> {
        self.slots.check_timers();
        let conns = self.slots.next_deadline();
        let exchanges = self.exchanges.iter().filter_map(|(_, r)| r.exchange.deadline());
        let stop = match self.run {
            Run::Draining { hard_stop } => hard_stop,
            Run::Serving => None,
        };
        let trim = self
            .trim
            .deadline(self.is_idle(), self.config.global.memory_trimming);
        conns
            .into_iter()
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
