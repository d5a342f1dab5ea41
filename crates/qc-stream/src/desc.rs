//! The descriptor of one stream, attached then released.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;

use crate::{Live, Object, TxBudget, TxBuf};

/// What buffers and their descriptor share: the bytes charged and not yet freed.
#[derive(Debug, Default)]
pub(crate) struct DescShared {
    pub(crate) outstanding: AtomicUsize,
}

/// A descriptor that accepts data: the Tx side of a live stream.
///
/// Its only exit is [`AttachedDesc::release`]; dropping it without a release is an out-of-order release
/// (counted, and a panic in debug builds).
pub struct AttachedDesc {
    id: u64,
    shared: Arc<DescShared>,
    budget: TxBudget,
    /// Charged buffers the transport has not accepted yet, in stream order.
    queue: VecDeque<TxBuf>,
    queued: usize,
    released: bool,
    _live: Live,
}

impl AttachedDesc {
    /// A new descriptor for stream `id`, charging `budget`.
    pub fn new(id: u64, budget: &TxBudget) -> Self {
        AttachedDesc {
            id,
            shared: Arc::default(),
            budget: budget.clone(),
            queue: VecDeque::new(),
            queued: 0,
            released: false,
            _live: budget.counters().count(Object::DescAttached),
        }
    }

    /// Queues body bytes, charging the budget. When the budget is full the bytes come back untouched and a
    /// room notification is armed: the caller waits for it before trying again.
    pub fn push(&mut self, data: Bytes) -> Result<(), Bytes> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len();
        if !self.budget.try_charge(len) {
            return Err(data);
        }
        self.shared.outstanding.fetch_add(len, Relaxed);
        self.queued += len;
        self.queue
            .push_back(TxBuf::charged(data, self.shared.clone(), self.budget.clone()));
        Ok(())
    }

    /// Takes the first queued buffer, to hand to the transport.
    pub fn pop_front(&mut self) -> Option<TxBuf> {
        let buf = self.queue.pop_front()?;
        self.queued -= buf.len();
        Some(buf)
    }

    /// Puts back the part of a buffer the transport did not accept.
    pub fn push_front(&mut self, buf: TxBuf) {
        if !buf.is_empty() {
            self.queued += buf.len();
            self.queue.push_front(buf);
        }
    }

    /// Bytes queued and not yet accepted by the transport.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes charged and not yet freed: queued here, or held by the transport until acknowledged.
    pub fn outstanding(&self) -> usize {
        self.shared.outstanding.load(Relaxed)
    }

    /// Ends the attached phase. Bytes the transport never accepted are past the stream's final size: they
    /// are trimmed here, which refunds the budget at once. No final size argument is needed: the queue
    /// holds exactly the unaccepted bytes, so the cut is exact by construction.
    #[must_use = "a released descriptor belongs in the connection's descriptor table until it is done"]
    pub fn release(mut self) -> ReleasedDesc {
        self.released = true;
        self.queue.clear();
        self.queued = 0;
        ReleasedDesc {
            id: self.id,
            shared: self.shared.clone(),
            _live: self.budget.counters().count(Object::DescReleased),
        }
    }
}

impl Drop for AttachedDesc {
    // Accounting only: the check that the descriptor left through `release`.
    fn drop(&mut self) {
        let counters = self.budget.counters();
        if !self.released {
            // Unwinding from another panic must not turn into an abort.
            if !std::thread::panicking() {
                counters.out_of_order("stream descriptor dropped without release");
            }
        }
    }
}

impl fmt::Debug for AttachedDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachedDesc")
            .field("id", &self.id)
            .field("queued", &self.queued)
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

/// A descriptor whose stream is gone: it only waits until the transport has freed its bytes.
pub struct ReleasedDesc {
    id: u64,
    shared: Arc<DescShared>,
    _live: Live,
}

impl ReleasedDesc {
    /// Bytes the transport still holds (sent, not yet acknowledged).
    pub fn outstanding(&self) -> usize {
        self.shared.outstanding.load(Relaxed)
    }

    /// True when every byte was acknowledged or discarded: the descriptor can be freed.
    pub fn is_done(&self) -> bool {
        self.outstanding() == 0
    }
}

impl fmt::Debug for ReleasedDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleasedDesc")
            .field("id", &self.id)
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Counters;
    use quiche::BufSplit;
    use std::sync::atomic::AtomicUsize;

    /// Counts every room notice, and apart those from the pool.
    #[derive(Default)]
    struct CountingSink(AtomicUsize, AtomicUsize);
    impl crate::RoomSink for CountingSink {
        fn room(&self, from: crate::Room) {
            self.0.fetch_add(1, Relaxed);
            if from == crate::Room::Pool {
                self.1.fetch_add(1, Relaxed);
            }
        }
    }

    fn budget(limit: usize) -> (Arc<Counters>, TxBudget) {
        let counters = Arc::new(Counters::default());
        (counters.clone(), TxBudget::new(limit, counters))
    }

    #[test]
    fn full_budget_refuses_then_reports_room_once_bytes_are_freed() {
        let (counters, budget) = budget(10);
        let sink: Arc<CountingSink> = Arc::new(CountingSink::default());
        let weak: std::sync::Weak<dyn crate::RoomSink> =
            Arc::downgrade(&(sink.clone() as Arc<dyn crate::RoomSink>));
        budget.attach_sink(weak);
        let mut a = AttachedDesc::new(0, &budget);
        a.push(Bytes::from(vec![1; 8])).unwrap();
        let refused = a.push(Bytes::from(vec![2; 8])).unwrap_err();
        assert_eq!(refused.len(), 8);
        assert_eq!(sink.0.load(Relaxed), 0);
        // The transport takes the buffer and later drops it (acknowledged).
        let held = a.pop_front().unwrap();
        assert_eq!(a.outstanding(), 8);
        drop(held);
        assert_eq!(sink.0.load(Relaxed), 1);
        assert_eq!(budget.in_use(), 0);
        a.push(refused).unwrap();
        let released = a.release();
        assert!(released.is_done());
        drop(released);
        let snap = counters.snapshot();
        assert!(snap.is_idle(), "{snap:?}");
        assert_eq!(snap.out_of_order_releases, 0);
    }

    #[test]
    fn empty_budget_admits_a_chunk_larger_than_the_limit() {
        let (_c, budget) = budget(4);
        let mut a = AttachedDesc::new(0, &budget);
        assert!(a.push(Bytes::from(vec![0; 100])).is_ok());
        assert!(a.push(Bytes::from(vec![0; 1])).is_err());
        let _ = a.release();
    }

    #[test]
    fn split_buffers_refund_once_when_the_last_piece_goes() {
        let (counters, budget) = budget(100);
        let mut a = AttachedDesc::new(4, &budget);
        a.push(Bytes::from(vec![0; 10])).unwrap();
        let mut first = a.pop_front().unwrap();
        let second = first.split_at(4);
        let clone = second.clone();
        let released = a.release();
        drop(first);
        drop(second);
        assert!(!released.is_done(), "a clone still holds the allocation");
        assert_eq!(budget.in_use(), 10);
        drop(clone);
        assert!(released.is_done());
        assert_eq!(counters.snapshot().tx_budget_bytes, 0);
    }

    #[test]
    fn release_trims_unaccepted_bytes_and_keeps_the_ones_in_flight() {
        let (_c, budget) = budget(100);
        let mut a = AttachedDesc::new(8, &budget);
        a.push(Bytes::from(vec![0; 10])).unwrap();
        a.push(Bytes::from(vec![0; 20])).unwrap();
        assert_eq!(a.queued(), 30);
        let in_flight = a.pop_front().unwrap();
        assert_eq!(a.queued(), 20);
        let released = a.release();
        assert_eq!(released.outstanding(), 10);
        assert_eq!(budget.in_use(), 10);
        drop(in_flight);
        assert!(released.is_done());
    }

    #[test]
    fn a_dropped_sink_is_a_counted_no_op() {
        let (counters, budget) = budget(1);
        counters.set_panic_on_out_of_order(false);
        let sink: Arc<dyn crate::RoomSink> = Arc::new(CountingSink::default());
        budget.attach_sink(Arc::downgrade(&sink));
        let mut a = AttachedDesc::new(0, &budget);
        a.push(Bytes::from_static(b"ab")).unwrap();
        assert!(a.push(Bytes::from_static(b"c")).is_err());
        drop(sink); // The owner goes away without detaching: out of order.
        let _ = a.release();
        let snap = counters.snapshot();
        assert_eq!(snap.stale_wakeups, 1);
        assert_eq!(snap.out_of_order_releases, 1);
    }

    #[test]
    fn a_detached_sink_is_silent() {
        let (counters, budget) = budget(1);
        let sink: Arc<dyn crate::RoomSink> = Arc::new(CountingSink::default());
        budget.attach_sink(Arc::downgrade(&sink));
        let mut a = AttachedDesc::new(0, &budget);
        a.push(Bytes::from_static(b"ab")).unwrap();
        assert!(a.push(Bytes::from_static(b"c")).is_err());
        budget.detach_sink();
        drop(sink);
        let _ = a.release();
        let snap = counters.snapshot();
        assert_eq!((snap.stale_wakeups, snap.out_of_order_releases), (0, 0));
    }

    fn sink_on(budget: &TxBudget) -> Arc<CountingSink> {
        let sink = Arc::new(CountingSink::default());
        let weak: std::sync::Weak<dyn crate::RoomSink> =
            Arc::downgrade(&(sink.clone() as Arc<dyn crate::RoomSink>));
        budget.attach_sink(weak);
        sink
    }

    #[test]
    fn a_full_pool_refuses_a_budget_with_room_and_bytes_freed_elsewhere_wake_it() {
        let counters = Arc::new(Counters::default());
        let pool = crate::TxPool::new(10);
        let a = TxBudget::with_pool(100, Some(pool.clone()), counters.clone());
        let b = TxBudget::with_pool(100, Some(pool.clone()), counters.clone());
        let sink_b = sink_on(&b);
        let (mut da, mut db) = (AttachedDesc::new(0, &a), AttachedDesc::new(4, &b));
        da.push(Bytes::from(vec![0; 8])).unwrap();
        db.push(Bytes::from(vec![0; 4])).unwrap(); // an empty budget passes a full pool: 12 of 10
        assert_eq!(pool.in_use(), 12);
        let refused = db.push(Bytes::from(vec![0; 1])).unwrap_err();
        assert_eq!(b.in_use(), 4, "a refused charge leaves the budget as it was");
        assert_eq!(counters.snapshot().tx_pool_waits, 1);
        // a's bytes are acknowledged: the pool has room again and b hears of it.
        drop(da.pop_front().unwrap());
        assert_eq!(sink_b.0.load(Relaxed), 1);
        db.push(refused).unwrap();
        assert_eq!(pool.in_use(), 5);
        drop(da.release());
        drop(db.release());
        assert_eq!(pool.in_use(), 0);
        assert!(counters.snapshot().is_idle());
    }

    #[test]
    fn a_budget_released_while_waiting_for_the_pool_is_not_woken() {
        let counters = Arc::new(Counters::default());
        let pool = crate::TxPool::new(4);
        let a = TxBudget::with_pool(100, Some(pool.clone()), counters.clone());
        let b = TxBudget::with_pool(100, Some(pool), counters.clone());
        let sink_b = sink_on(&b);
        let (mut da, mut db) = (AttachedDesc::new(0, &a), AttachedDesc::new(4, &b));
        da.push(Bytes::from(vec![0; 4])).unwrap();
        db.push(Bytes::from(vec![0; 1])).unwrap();
        assert!(db.push(Bytes::from(vec![0; 1])).is_err());
        b.detach_sink(); // b's connection is released
        drop(db.release());
        drop(sink_b);
        drop(da.pop_front().unwrap());
        let snap = counters.snapshot();
        assert_eq!((snap.stale_wakeups, snap.out_of_order_releases), (0, 0));
        drop(da.release());
        assert!(counters.snapshot().is_idle());
    }

    #[test]
    fn a_descriptor_dropped_without_release_is_counted_out_of_order() {
        let (counters, budget) = budget(100);
        counters.set_panic_on_out_of_order(false);
        let mut a = AttachedDesc::new(0, &budget);
        a.push(Bytes::from_static(b"abc")).unwrap();
        drop(a);
        assert_eq!(counters.snapshot().out_of_order_releases, 1);
    }

    #[test]
    fn the_pool_admits_a_charge_that_fills_it_exactly_and_a_new_limit_at_once() {
        let counters = Arc::new(Counters::default());
        let pool = crate::TxPool::new(10);
        let a = TxBudget::with_pool(100, Some(pool.clone()), counters);
        let mut da = AttachedDesc::new(0, &a);
        da.push(Bytes::from(vec![0; 4])).unwrap();
        da.push(Bytes::from(vec![0; 6])).unwrap();
        assert_eq!(pool.in_use(), 10);
        let refused = da.push(Bytes::from(vec![0; 5])).unwrap_err();
        pool.set_limit(100); // a reload
        da.push(refused).unwrap();
        assert_eq!(pool.in_use(), 15);
        drop(da.release());
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_refund_that_leaves_the_pool_over_its_limit_tells_no_one() {
        let counters = Arc::new(Counters::default());
        let pool = crate::TxPool::new(10);
        let budget = || TxBudget::with_pool(100, Some(pool.clone()), counters.clone());
        let (a, b, c) = (budget(), budget(), budget());
        let sink_c = sink_on(&c);
        let (mut da, mut db, mut dc) = (
            AttachedDesc::new(0, &a),
            AttachedDesc::new(4, &b),
            AttachedDesc::new(8, &c),
        );
        // Empty budgets pass the full pool: 12 + 3 + 1 of 10. Then c waits.
        da.push(Bytes::from(vec![0; 12])).unwrap();
        db.push(Bytes::from(vec![0; 3])).unwrap();
        dc.push(Bytes::from(vec![0; 1])).unwrap();
        let refused = dc.push(Bytes::from(vec![0; 1])).unwrap_err();
        assert_eq!(pool.in_use(), 16);
        // b's 3 bytes are freed: 13 of 10, still no room.
        drop(db.pop_front().unwrap());
        assert_eq!(sink_c.0.load(Relaxed), 0, "told of room the pool does not have");
        // a's 12: 1 of 10, and c hears it from the pool.
        drop(da.pop_front().unwrap());
        assert_eq!((sink_c.0.load(Relaxed), sink_c.1.load(Relaxed)), (1, 1));
        dc.push(refused).unwrap();
        for d in [da, db, dc] {
            drop(d.release());
        }
        assert_eq!(pool.in_use(), 0);
        assert!(counters.snapshot().is_idle());
    }
}
