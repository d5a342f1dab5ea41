//! Release counters shared by every layer.
//!
//! They live in the lowest crate so that each layer can count its own objects without depending upward;
//! the connection layer re-exports them and the binary exports a [`Snapshot`]. Nothing outside writes a
//! field: a live object holds a [`Live`] token from [`Counters::count`], whose drop is the only release
//! its gauge sees, so an object is released exactly once by construction; the other counters move
//! through one method each.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// A live-object gauge: how many were created and how many released; live is the difference.
#[derive(Debug, Default)]
struct Gauge {
    created: AtomicU64,
    released: AtomicU64,
}

impl Gauge {
    fn inc(&self) {
        self.created.fetch_add(1, Relaxed);
    }

    fn dec(&self) {
        let released = self.released.fetch_add(1, Relaxed) + 1;
        // `live` saturates for readers that race a create; a release past the creates is a bug (a token
        // released twice), never a race: the token's own create happened before its drop.
        debug_assert!(
            released <= self.created.load(Relaxed),
            "an object released more often than created"
        );
    }

    /// Objects alive now.
    fn live(&self) -> u64 {
        // `released` first so a concurrent create/release pair never shows a negative count. A release
        // without its create cannot happen: only a `Live` token's drop counts one.
        let released = self.released.load(Relaxed);
        self.created.load(Relaxed).saturating_sub(released)
    }

    /// Objects created since start.
    fn total(&self) -> u64 {
        self.created.load(Relaxed)
    }
}

/// The kinds of object the layers count while they live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    /// An HTTP/3 connection (`qcc::Connection`), from accept to release.
    Connection,
    /// A released connection whose transport is still closing.
    Closing,
    /// A request stream (`qcs::Stream`), from request HEADERS to the table's release.
    Stream,
    /// A stream descriptor in its attached phase.
    DescAttached,
    /// A stream descriptor in its released phase (waiting for acks).
    DescReleased,
}

/// One live object, counted in its gauge from [`Counters::count`] until the token is dropped.
#[derive(Debug)]
#[must_use = "dropping the token counts its object released"]
pub struct Live {
    counters: Arc<Counters>,
    object: Object,
}

impl Live {
    /// The counters it counts in.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

impl Drop for Live {
    // Accounting only: the one place an object's gauge counts it released.
    fn drop(&mut self) {
        self.counters.gauge(self.object).dec();
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
struct TransportCounters {
    handshakes_ok: AtomicU64,
    handshakes_failed: AtomicU64,
    closes: [AtomicU64; CloseCause::ALL.len()],
    packets_lost: AtomicU64,
    packets_retransmitted: AtomicU64,
    glitches: AtomicU64,
    glitch_closes: AtomicU64,
}

/// Every layer's object counters. One instance per process (or per test), shared by `Arc`.
#[derive(Debug)]
pub struct Counters {
    connections: Gauge,
    closing: Gauge,
    streams: Gauge,
    descs_attached: Gauge,
    descs_released: Gauge,
    /// Tx budget bytes in use, over every connection.
    tx_budget_bytes: AtomicU64,
    /// Times a stream was refused by a full Tx budget and put on the budget wait list.
    tx_budget_waits: AtomicU64,
    /// Of those, the times the process-wide [`crate::TxPool`] was full, not the connection's own budget.
    tx_pool_waits: AtomicU64,
    /// Budget room notifications delivered to a connection with a refused stream.
    tx_room_notices: AtomicU64,
    /// Budget room notifications that found their sink gone.
    stale_wakeups: AtomicU64,
    /// Releases that ran out of the order of `docs/release-order.md`; must stay 0.
    out_of_order_releases: AtomicU64,
    /// How transports ended.
    transport: TransportCounters,
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
            tx_pool_waits: AtomicU64::new(0),
            tx_room_notices: AtomicU64::new(0),
            stale_wakeups: AtomicU64::new(0),
            out_of_order_releases: AtomicU64::new(0),
            transport: TransportCounters::default(),
            panic_on_out_of_order: AtomicBool::new(cfg!(debug_assertions)),
        }
    }
}

impl Counters {
    /// Counts `object` live until the returned token is dropped.
    pub fn count(self: &Arc<Self>, object: Object) -> Live {
        self.gauge(object).inc();
        Live {
            counters: self.clone(),
            object,
        }
    }

    fn gauge(&self, object: Object) -> &Gauge {
        match object {
            Object::Connection => &self.connections,
            Object::Closing => &self.closing,
            Object::Stream => &self.streams,
            Object::DescAttached => &self.descs_attached,
            Object::DescReleased => &self.descs_released,
        }
    }

    /// A stream refused because the process-wide Tx pool was full.
    pub(crate) fn count_pool_wait(&self) {
        self.tx_pool_waits.fetch_add(1, Relaxed);
    }

    /// Tx budget bytes charged.
    pub(crate) fn charge_budget(&self, len: usize) {
        self.tx_budget_bytes.fetch_add(len as u64, Relaxed);
    }

    /// Tx budget bytes refunded.
    pub(crate) fn refund_budget(&self, len: usize) {
        let before = self.tx_budget_bytes.fetch_sub(len as u64, Relaxed);
        debug_assert!(before >= len as u64, "Tx budget refunded more than was charged");
    }

    /// A stream refused by a full Tx budget.
    pub(crate) fn count_budget_wait(&self) {
        self.tx_budget_waits.fetch_add(1, Relaxed);
    }

    /// Counts the end of a transport: whether its handshake completed, why it closed, and what it lost
    /// and retransmitted.
    pub fn count_transport_end(&self, established: bool, cause: CloseCause, lost: u64, retransmitted: u64) {
        let t = &self.transport;
        let handshake = if established {
            &t.handshakes_ok
        } else {
            &t.handshakes_failed
        };
        handshake.fetch_add(1, Relaxed);
        t.closes[cause as usize].fetch_add(1, Relaxed);
        t.packets_lost.fetch_add(lost, Relaxed);
        t.packets_retransmitted.fetch_add(retransmitted, Relaxed);
    }

    /// A protocol oddity of a client (see `qcc`'s glitch count).
    pub fn count_glitch(&self) {
        self.transport.glitches.fetch_add(1, Relaxed);
    }

    /// A connection closed for its glitches.
    pub fn count_glitch_close(&self) {
        self.transport.glitch_closes.fetch_add(1, Relaxed);
    }

    /// Records a release that broke the order. Debug builds panic, unless a test turned that off with
    /// [`Counters::set_panic_on_out_of_order`] to observe the counter instead.
    pub fn out_of_order(&self, what: &str) {
        self.out_of_order_releases.fetch_add(1, Relaxed);
        if self.panic_on_out_of_order.load(Relaxed) {
            panic!("out-of-order release: {what}");
        }
    }

    /// Records a budget room notification delivered to its sink.
    pub(crate) fn count_room_notice(&self) {
        self.tx_room_notices.fetch_add(1, Relaxed);
    }

    /// Records a budget room notification whose sink was gone.
    pub(crate) fn stale_wakeup(&self) {
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
            tx_pool_waits: self.tx_pool_waits.load(Relaxed),
            tx_room_notices: self.tx_room_notices.load(Relaxed),
            stale_wakeups: self.stale_wakeups.load(Relaxed),
            out_of_order_releases: self.out_of_order_releases.load(Relaxed),
            handshakes_ok: self.transport.handshakes_ok.load(Relaxed),
            handshakes_failed: self.transport.handshakes_failed.load(Relaxed),
            closes: std::array::from_fn(|i| self.transport.closes[i].load(Relaxed)),
            packets_lost: self.transport.packets_lost.load(Relaxed),
            packets_retransmitted: self.transport.packets_retransmitted.load(Relaxed),
            glitches: self.transport.glitches.load(Relaxed),
            glitch_closes: self.transport.glitch_closes.load(Relaxed),
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
    /// Of those, waits for the process-wide Tx pool.
    pub tx_pool_waits: u64,
    /// Budget room notifications delivered, since start.
    pub tx_room_notices: u64,
    /// Budget room notifications that found their sink gone, since start.
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
    /// Client protocol oddities counted against their connections.
    pub glitches: u64,
    /// Connections closed (H3_EXCESSIVE_LOAD) for their glitches.
    pub glitch_closes: u64,
}

impl std::ops::AddAssign<&Snapshot> for Snapshot {
    /// Adds another set of counters (one worker's) to this one.
    fn add_assign(&mut self, other: &Snapshot) {
        let Snapshot {
            connections_live,
            connections_total,
            closing_live,
            streams_live,
            streams_total,
            descs_attached_live,
            descs_released_live,
            descs_total,
            tx_budget_bytes,
            tx_budget_waits,
            tx_pool_waits,
            tx_room_notices,
            stale_wakeups,
            out_of_order_releases,
            handshakes_ok,
            handshakes_failed,
            closes,
            packets_lost,
            packets_retransmitted,
            glitches,
            glitch_closes,
        } = other;
        self.connections_live += connections_live;
        self.connections_total += connections_total;
        self.closing_live += closing_live;
        self.streams_live += streams_live;
        self.streams_total += streams_total;
        self.descs_attached_live += descs_attached_live;
        self.descs_released_live += descs_released_live;
        self.descs_total += descs_total;
        self.tx_budget_bytes += tx_budget_bytes;
        self.tx_budget_waits += tx_budget_waits;
        self.tx_pool_waits += tx_pool_waits;
        self.tx_room_notices += tx_room_notices;
        self.stale_wakeups += stale_wakeups;
        self.out_of_order_releases += out_of_order_releases;
        self.handshakes_ok += handshakes_ok;
        self.handshakes_failed += handshakes_failed;
        for (to, from) in self.closes.iter_mut().zip(closes) {
            *to += from;
        }
        self.packets_lost += packets_lost;
        self.packets_retransmitted += packets_retransmitted;
        self.glitches += glitches;
        self.glitch_closes += glitch_closes;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(v: u64) -> Snapshot {
        Snapshot {
            connections_live: v,
            connections_total: v,
            closing_live: v,
            streams_live: v,
            streams_total: v,
            descs_attached_live: v,
            descs_released_live: v,
            descs_total: v,
            tx_budget_bytes: v,
            tx_budget_waits: v,
            tx_pool_waits: v,
            tx_room_notices: v,
            stale_wakeups: v,
            out_of_order_releases: v,
            handshakes_ok: v,
            handshakes_failed: v,
            closes: [v; CloseCause::ALL.len()],
            packets_lost: v,
            packets_retransmitted: v,
            glitches: v,
            glitch_closes: v,
        }
    }

    #[test]
    fn workers_snapshots_add_field_by_field() {
        let mut sum = filled(3);
        sum += &filled(2);
        assert_eq!(sum, filled(5));
    }

    #[test]
    fn close_causes_are_named_as_the_metrics_label_them() {
        let names: Vec<&str> = CloseCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "idle_timeout",
                "peer_no_error",
                "peer_error",
                "local_no_error",
                "local_error"
            ]
        );
    }
}
