//! Release counters shared by every layer.
//!
//! They live in the lowest crate so that each layer can count its own objects without depending upward;
//! the connection layer re-exports them and the binary exports a [`Snapshot`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// A live-object gauge: how many were created and how many released; live is the difference.
#[derive(Debug, Default)]
pub struct Gauge {
    created: AtomicU64,
    released: AtomicU64,
}

impl Gauge {
    /// Counts one object created.
    pub fn inc(&self) {
        self.created.fetch_add(1, Relaxed);
    }

    /// Counts one object released.
    pub fn dec(&self) {
        self.released.fetch_add(1, Relaxed);
    }

    /// Objects alive now.
    pub fn live(&self) -> u64 {
        // Read `released` first so a concurrent create/release pair never shows a negative count.
        let released = self.released.load(Relaxed);
        self.created.load(Relaxed).saturating_sub(released)
    }

    /// Objects created since start.
    pub fn total(&self) -> u64 {
        self.created.load(Relaxed)
    }
}

/// Why a QUIC connection ended; indexes [`TransportCounters::closes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The idle timer.
    IdleTimeout,
    /// The client closed cleanly (NO_ERROR or H3_NO_ERROR).
    PeerNoError,
    /// The client closed with an error.
    PeerError,
    /// We closed cleanly.
    LocalNoError,
    /// We closed with an error.
    LocalError,
}

impl CloseCause {
    /// Every cause, in counter order.
    pub const ALL: [CloseCause; 5] = [
        CloseCause::IdleTimeout,
        CloseCause::PeerNoError,
        CloseCause::PeerError,
        CloseCause::LocalNoError,
        CloseCause::LocalError,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseCause::IdleTimeout => "idle_timeout",
            CloseCause::PeerNoError => "peer_no_error",
            CloseCause::PeerError => "peer_error",
            CloseCause::LocalNoError => "local_no_error",
            CloseCause::LocalError => "local_error",
        }
    }
}

/// What transports saw over their lives, recorded by the connection layer when one is dropped.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Connections whose handshake completed.
    pub handshakes_ok: AtomicU64,
    /// Connections that ended before their handshake completed.
    pub handshakes_failed: AtomicU64,
    /// Ended connections by cause ([`CloseCause`] order; count with [`TransportCounters::count_close`]).
    pub closes: [AtomicU64; CloseCause::ALL.len()],
    /// Packets declared lost.
    pub packets_lost: AtomicU64,
    /// Packets retransmitted.
    pub packets_retransmitted: AtomicU64,
}

impl TransportCounters {
    /// Counts one ended connection.
    pub fn count_close(&self, cause: CloseCause) {
        self.closes[cause as usize].fetch_add(1, Relaxed);
    }
}

/// Every layer's object counters. One instance per process (or per test), shared by `Arc`.
#[derive(Debug)]
pub struct Counters {
    /// HTTP/3 connections (`qcc::Connection`), from accept to release.
    pub connections: Gauge,
    /// Released connections whose transport is still closing (waiting for acks or CONNECTION_CLOSE).
    pub closing: Gauge,
    /// Request streams (`qcs::Stream`), from request HEADERS to the table's release.
    pub streams: Gauge,
    /// Descriptors in the attached phase.
    pub descs_attached: Gauge,
    /// Descriptors in the released phase (waiting for acks).
    pub descs_released: Gauge,
    /// Tx budget bytes in use, over every connection.
    pub tx_budget_bytes: AtomicU64,
    /// Times a stream was refused by a full Tx budget and put on the budget wait list.
    pub tx_budget_waits: AtomicU64,
    /// Wake-ups that found their target gone.
    pub stale_wakeups: AtomicU64,
    /// Releases that ran out of the order of `docs/release-order.md`; must stay 0.
    pub out_of_order_releases: AtomicU64,
    /// How transports ended.
    pub transport: TransportCounters,
    panic_on_out_of_order: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            connections: Gauge::default(),
            closing: Gauge::default(),
            streams: Gauge::default(),
            descs_attached: Gauge::default(),
            descs_released: Gauge::default(),
            tx_budget_bytes: AtomicU64::new(0),
            tx_budget_waits: AtomicU64::new(0),
            stale_wakeups: AtomicU64::new(0),
            out_of_order_releases: AtomicU64::new(0),
            transport: TransportCounters::default(),
            panic_on_out_of_order: AtomicBool::new(cfg!(debug_assertions)),
        }
    }
}

impl Counters {
    /// Records a release that broke the order. Debug builds panic, unless a test turned that off with
    /// [`Counters::set_panic_on_out_of_order`] to observe the counter instead.
    pub fn out_of_order(&self, what: &str) {
        self.out_of_order_releases.fetch_add(1, Relaxed);
        if self.panic_on_out_of_order.load(Relaxed) {
            panic!("out-of-order release: {what}");
        }
    }

    /// Records a wake-up whose target was gone.
    pub fn stale_wakeup(&self) {
        self.stale_wakeups.fetch_add(1, Relaxed);
    }

    /// Whether [`Counters::out_of_order`] panics (default: in debug builds).
    pub fn set_panic_on_out_of_order(&self, on: bool) {
        self.panic_on_out_of_order.store(on, Relaxed);
    }

    /// A consistent-enough copy of every counter, for export and assertions.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections_live: self.connections.live(),
            connections_total: self.connections.total(),
            closing_live: self.closing.live(),
            streams_live: self.streams.live(),
            streams_total: self.streams.total(),
            descs_attached_live: self.descs_attached.live(),
            descs_released_live: self.descs_released.live(),
            descs_total: self.descs_attached.total(),
            tx_budget_bytes: self.tx_budget_bytes.load(Relaxed),
            tx_budget_waits: self.tx_budget_waits.load(Relaxed),
            stale_wakeups: self.stale_wakeups.load(Relaxed),
            out_of_order_releases: self.out_of_order_releases.load(Relaxed),
            handshakes_ok: self.transport.handshakes_ok.load(Relaxed),
            handshakes_failed: self.transport.handshakes_failed.load(Relaxed),
            closes: std::array::from_fn(|i| self.transport.closes[i].load(Relaxed)),
            packets_lost: self.transport.packets_lost.load(Relaxed),
            packets_retransmitted: self.transport.packets_retransmitted.load(Relaxed),
        }
    }
}

/// A copy of [`Counters`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Live connections.
    pub connections_live: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Released connections still closing.
    pub closing_live: u64,
    /// Live request streams.
    pub streams_live: u64,
    /// Request streams since start.
    pub streams_total: u64,
    /// Live attached descriptors.
    pub descs_attached_live: u64,
    /// Live released descriptors.
    pub descs_released_live: u64,
    /// Descriptors since start.
    pub descs_total: u64,
    /// Tx budget bytes in use.
    pub tx_budget_bytes: u64,
    /// Budget waits since start.
    pub tx_budget_waits: u64,
    /// Stale wake-ups since start.
    pub stale_wakeups: u64,
    /// Out-of-order releases since start (must be 0).
    pub out_of_order_releases: u64,
    /// Completed handshakes of ended connections.
    pub handshakes_ok: u64,
    /// Ended connections that never completed their handshake.
    pub handshakes_failed: u64,
    /// Ended connections by cause ([`CLOSE_CAUSES`]).
    pub closes: [u64; 5],
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Packets retransmitted.
    pub packets_retransmitted: u64,
}

impl Snapshot {
    /// True when no object of any layer is alive and no budget byte is in use.
    pub fn is_idle(&self) -> bool {
        self.connections_live == 0
            && self.closing_live == 0
            && self.streams_live == 0
            && self.descs_attached_live == 0
            && self.descs_released_live == 0
            && self.tx_budget_bytes == 0
    }
}
