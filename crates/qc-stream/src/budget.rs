//! The connection-wide Tx budget, the process-wide Tx pool over all budgets, and their room
//! notification.

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
    fn room(&self, from: Room);
}

/// Whose freed bytes made the room a [`RoomSink`] is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// The budget's own: its connection's transport dropped them (an acknowledgement, a reset) or its
    /// release trimmed them, so the notice comes on the connection's own turn, which looks for room
    /// before it ends. Nothing needs waking.
    Own,
    /// The pool's: another connection freed them, maybe on another thread, so the waiting connection
    /// must be woken.
    Pool,
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
    pool: Option<TxPool>,
    /// This budget is on its pool's wait list.
    pool_wanted: AtomicBool,
}

/// A byte limit on the Tx data that all connections of the process hold together
/// (`tune.quic.mem.tx-max`), beside each connection's own budget.
///
/// A charge that fits its connection's budget is still refused while the pool is full, unless that
/// connection holds nothing: as with a budget, an empty one admits its charge, so every connection can
/// always move one chunk and none waits forever on the others. The pool may thus exceed its limit by at
/// most one chunk per connection. Budgets it refused are told (through their own sinks) when bytes
/// anywhere in the pool are freed. Cloning shares the pool; it holds budgets by `Weak` only.
#[derive(Clone)]
pub struct TxPool(Arc<Pool>);

struct Pool {
    /// 0: no limit.
    limit: AtomicUsize,
    in_use: AtomicUsize,
    /// Budgets refused by the pool since it last had room.
    waiting: Mutex<Vec<Weak<Inner>>>,
    any_waiting: AtomicBool,
}

impl TxPool {
    /// A pool of `limit` bytes (0: no limit).
    pub fn new(limit: usize) -> Self {
        TxPool(Arc::new(Pool {
            limit: AtomicUsize::new(limit),
            in_use: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
            any_waiting: AtomicBool::new(false),
        }))
    }

    /// Changes the limit for charges from now on (a reload); bytes in use stay.
    pub fn set_limit(&self, limit: usize) {
        self.0.limit.store(limit, Relaxed);
    }

    /// Bytes charged over every budget of the pool and not yet freed.
    pub fn in_use(&self) -> usize {
        self.0.in_use.load(Relaxed)
    }

    fn try_charge(&self, len: usize, empty_budget: bool) -> bool {
        let pool = &self.0;
        let mut cur = pool.in_use.load(Relaxed);
        loop {
            let limit = pool.limit.load(Relaxed);
            if !empty_budget && limit != 0 && cur + len > limit {
                return false;
            }
            match pool
                .in_use
                .compare_exchange_weak(cur, cur + len, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn wait(&self, budget: &Arc<Inner>) {
        if !budget.pool_wanted.swap(true, Relaxed) {
            self.0.waiting.lock().push(Arc::downgrade(budget));
            self.0.any_waiting.store(true, Relaxed);
        }
    }

    fn refund(&self, len: usize) {
        let pool = &self.0;
        let before = pool.in_use.fetch_sub(len, Relaxed);
        debug_assert!(before >= len, "Tx pool refunded more than was charged");
        let limit = pool.limit.load(Relaxed);
        if !pool.any_waiting.load(Relaxed) || (limit != 0 && before - len >= limit) {
            return;
        }
        // Taken under the lock, told outside it: a sink may wake another thread's loop.
        let waiting = {
            let mut list = pool.waiting.lock();
            pool.any_waiting.store(false, Relaxed);
            std::mem::take(&mut *list)
        };
        for budget in waiting.iter().filter_map(Weak::upgrade) {
            budget.pool_wanted.store(false, Relaxed);
            TxBudget(budget).notify_room(Room::Pool);
        }
    }
}

impl fmt::Debug for TxPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxPool")
            .field("limit", &self.0.limit.load(Relaxed))
            .field("in_use", &self.in_use())
            .finish()
    }
}

enum Sink {
    None,
    Attached(Weak<dyn RoomSink>),
    Detached,
}

impl TxBudget {
    /// A budget of `limit` bytes, counted into `counters`.
    pub fn new(limit: usize, counters: Arc<Counters>) -> Self {
        Self::with_pool(limit, None, counters)
    }

    /// A budget of `limit` bytes whose charges also count against `pool`, when there is one.
    pub fn with_pool(limit: usize, pool: Option<TxPool>, counters: Arc<Counters>) -> Self {
        TxBudget(Arc::new(Inner {
            limit,
            in_use: AtomicUsize::new(0),
            wanted: AtomicBool::new(false),
            sink: Mutex::new(Sink::None),
            counters,
            pool,
            pool_wanted: AtomicBool::new(false),
        }))
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

    /// Charges `len` bytes, or refuses when they do not fit this budget or its pool. An empty budget
    /// admits any charge, so a chunk larger than the whole limit cannot wait forever. A refusal arms one
    /// room notification.
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
        if let Some(pool) = &inner.pool {
            if !pool.try_charge(len, cur == 0) {
                inner.in_use.fetch_sub(len, Relaxed);
                pool.wait(inner);
                inner.counters.count_budget_wait();
                inner.counters.count_pool_wait();
                return false;
            }
        }
        inner.counters.charge_budget(len);
        true
    }

    /// Returns `len` bytes and, when a charge was refused since the last notification, tells the sink
    /// (and the pool tells the budgets it refused).
    pub(crate) fn refund(&self, len: usize) {
        let inner = &self.0;
        inner.in_use.fetch_sub(len, Relaxed);
        inner.counters.refund_budget(len);
        if inner.wanted.swap(false, Relaxed) {
            self.notify_room(Room::Own);
        }
        if let Some(pool) = &inner.pool {
            pool.refund(len);
        }
    }

    fn notify_room(&self, from: Room) {
        let sink = match &*self.0.sink.lock() {
            Sink::Attached(weak) => Some(weak.upgrade()),
            Sink::None | Sink::Detached => None,
        };
        match sink {
            Some(Some(sink)) => {
                self.0.counters.count_room_notice();
                sink.room(from);
            }
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
