//! The connection-wide Tx budget and its room notification.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::Counters;

/// Told when freed bytes make room in a budget that refused a charge.
///
/// The connection implements it; the budget holds it by `Weak` only (rule 1: a lower layer never holds a
/// strong reference to an upper one).
pub trait RoomSink: Send + Sync {
    /// Bytes were freed after a charge was refused.
    fn room(&self);
}

/// A byte limit on the Tx data that one connection holds, unsent or unacknowledged.
///
/// Cloning shares the budget. Buffers keep a clone until the transport drops them, so the budget outlives
/// its connection for as long as the transport holds data.
#[derive(Clone)]
pub struct TxBudget(Arc<Inner>);

struct Inner {
    limit: usize,
    in_use: AtomicUsize,
    /// A charge was refused since the last notification.
    wanted: AtomicBool,
    sink: Mutex<Sink>,
    counters: Arc<Counters>,
}

enum Sink {
    None,
    Attached(Weak<dyn RoomSink>),
    Detached,
}

impl TxBudget {
    /// A budget of `limit` bytes, counted into `counters`.
    pub fn new(limit: usize, counters: Arc<Counters>) -> Self {
        TxBudget(Arc::new(Inner {
            limit,
            in_use: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
            sink: Mutex::new(Sink::None),
            counters,
        }))
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes charged and not yet freed.
    pub fn in_use(&self) -> usize {
        self.0.in_use.load(Relaxed)
    }

    /// The counters this budget reports to.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.0.counters
    }

    /// Where room notifications go from now on.
    pub fn attach_sink(&self, sink: Weak<dyn RoomSink>) {
        *self.0.sink.lock() = Sink::Attached(sink);
    }

    /// Stops room notifications: step 3 of the connection release, before the sink's owner goes away.
    pub fn detach_sink(&self) {
        *self.0.sink.lock() = Sink::Detached;
    }

    /// Charges `len` bytes, or refuses when they do not fit. An empty budget admits any charge, so a chunk
    /// larger than the whole limit cannot wait forever. A refusal arms one room notification.
    pub(crate) fn try_charge(&self, len: usize) -> bool {
        let inner = &self.0;
        let mut cur = inner.in_use.load(Relaxed);
        loop {
            if cur != 0 && cur + len > inner.limit {
                inner.wanted.store(true, Relaxed);
                inner.counters.count_budget_wait();
                return false;
            }
            match inner
                .in_use
                .compare_exchange_weak(cur, cur + len, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        inner.counters.charge_budget(len);
        true
    }

    /// Returns `len` bytes and, when a charge was refused since the last notification, tells the sink.
    pub(crate) fn refund(&self, len: usize) {
        let inner = &self.0;
        inner.in_use.fetch_sub(len, Relaxed);
        inner.counters.refund_budget(len);
        if inner.wanted.swap(false, Relaxed) {
            self.notify_room();
        }
    }

    fn notify_room(&self) {
        let sink = match &*self.0.sink.lock() {
            Sink::Attached(weak) => Some(weak.upgrade()),
            Sink::None | Sink::Detached => None,
        };
        match sink {
            Some(Some(sink)) => sink.room(),
            // The owner dropped its sink without detaching it first: the seed bug's shape (a wake-up of a
            // freed tasklet). Here it is a counted no-op.
            Some(None) => {
                self.0.counters.stale_wakeup();
                self.0
                    .counters
                    .out_of_order("Tx budget room notification after its sink was dropped");
            }
            None => {}
        }
    }
}

impl fmt::Debug for TxBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBudget")
            .field("limit", &self.0.limit)
            .field("in_use", &self.in_use())
            .finish()
    }
}
