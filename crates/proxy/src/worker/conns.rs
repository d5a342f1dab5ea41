//! The connection slots: the handle that names one, the dirty list, each turn's events and
//! transmissions, timers, and the one ordered `release`.

use super::*;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use qcc::Event;

use super::limit::{Permit, SourcePermit};
use super::pacing::{must_wait, Paced};
use super::udp::{TxBatch, UdpIo, MAX_DATAGRAM};
use crate::telemetry::counters::ProxyCounters;
use crate::upstream::Termination;

/// A connection in the slab. `serial` tags it: an exchange that outlives its connection finds a
/// different serial (or nothing) and stops there.
pub(super) struct Slot {
    pub(super) serial: u64,
    pub(super) conn: ServerConn,
    pub(super) listener: usize,
    pub(super) peer: SocketAddr,
    pub(super) trace: Arc<str>,
    /// The connection's `conn{id=...}` span, entered around all work on it.
    pub(super) span: tracing::Span,
    pub(super) exchanges: HashMap<u64, usize>,
    /// Its places under the global and its frontend's `maxconn`, given back when the slot goes.
    pub(super) _permits: [Permit; 2],
    /// Its place among its bind's handshakes in progress, until the handshake is over.
    pub(super) handshake: Option<Permit>,
    /// Its place in its client address's count (`src_conn_cur`).
    pub(super) _source: SourcePermit,
    /// Requests that arrived on this connection so far (`http-reuse safe` treats the first apart).
    pub(super) requests: u64,
    /// Requests that came in early data and wait for the handshake to complete.
    pub(super) awaiting_handshake: Vec<AwaitingHandshake>,
    /// The datagram that waits for its send time (pacing), with the rest of the flight behind it.
    pub(super) paced: Option<Paced>,
    pub(super) dirty: bool,
    /// Its entry in [`Slots`]' timer set, kept there by [`Slots::rearm`] and [`Slots::remove`].
    pub(super) timer: Option<Instant>,
}

impl Slot {
    /// The earliest of its connection's timers and its paced datagram's send time.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let paced = self.paced.as_ref().map(Paced::sendable_at);
        self.conn.poll_timeout(now).into_iter().chain(paced).min()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct ConnHandle {
    pub(super) index: usize,
    pub(super) serial: u64,
}

/// The connection slab. Looked up by index where the index is current (the CID router, the dirty list,
/// events of the connection being processed), and by [`ConnHandle`] everywhere else: exchanges, queued
/// and held requests may outlive their connection, and the serial check lives only here.
///
/// It also keeps every slot's next deadline in one ordered set, so that a loop turn finds the due
/// connections and its poll timeout without visiting each one (with 1,000 idle connections open, the
/// two scans per turn doubled the CPU of a request). A slot's deadline changes only when its connection
/// does work, and all work on a connection ends in `Worker::transmit`, which re-arms it.
#[derive(Default)]
pub(super) struct Slots {
    slab: Slab<Slot>,
    timers: BTreeSet<(Instant, usize)>,
}

impl std::ops::Deref for Slots {
    type Target = Slab<Slot>;
    fn deref(&self) -> &Slab<Slot> {
        &self.slab
    }
}

impl Slots {
    /// The slot `h` names, if it still holds that connection (else `h` is stale).
    pub(super) fn slot(&self, h: ConnHandle) -> Option<&Slot> {
        self.slab.get(h.index).filter(|s| s.serial == h.serial)
    }

    /// The slot `h` names, mutably, if it still holds that connection.
    pub(super) fn slot_mut(&mut self, h: ConnHandle) -> Option<&mut Slot> {
        self.slab.get_mut(h.index).filter(|s| s.serial == h.serial)
    }

    /// The handle of the connection at `index` now.
    pub(super) fn handle(&self, index: usize) -> Option<ConnHandle> {
        self.slab.get(index).map(|s| ConnHandle {
            index,
            serial: s.serial,
        })
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.slab.get_mut(index)
    }

    pub(super) fn iter_mut(&mut self) -> slab::IterMut<'_, Slot> {
        self.slab.iter_mut()
    }

    /// A new slot; its timer is armed by its first transmit.
    pub(super) fn insert(&mut self, slot: Slot) -> usize {
        self.slab.insert(slot)
    }

    pub(super) fn remove(&mut self, index: usize) -> Slot {
        let slot = self.slab.remove(index);
        if let Some(t) = slot.timer {
            self.timers.remove(&(t, index));
        }
        slot
    }

    pub(super) fn clear(&mut self) {
        self.slab.clear();
        self.timers.clear();
    }

    /// Files the slot's next deadline after its connection did work.
    pub(super) fn rearm(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slab.get_mut(index) else {
            return;
        };
        let next = slot.next_deadline(now);
        if next == slot.timer {
            return;
        }
        if let Some(t) = slot.timer {
            self.timers.remove(&(t, index));
        }
        if let Some(t) = next {
            self.timers.insert((t, index));
        }
        slot.timer = next;
    }

    /// The earliest deadline of any slot.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// A slot whose deadline has come, taken out of the set (its transmit files it again).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        let &(t, index) = self.timers.first().filter(|(t, _)| *t <= now)?;
        self.timers.remove(&(t, index));
        if let Some(slot) = self.slab.get_mut(index) {
            slot.timer = None;
        }
        Some(index)
    }

    /// Debug builds check, at the top of each turn, that no slot's work went without a re-arm: a filed
    /// deadline later than the connection's own would be a missed timer.
    pub(super) fn check_timers(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        for (index, slot) in self.slab.iter() {
            // quiche's timers come as a delay from its own clock reading, taken within `read` after
            // `before` (longer if the thread was preempted): the true deadline lies in `due..=due + read`.
            // A filed deadline may be early (filed with the turn's older clock), never later than that.
            let before = Instant::now();
            let due = slot.next_deadline(before);
            let read = before.elapsed();
            let late = match (slot.timer, due) {
                (None, Some(_)) => true,
                (Some(filed), Some(due)) => filed > due + read,
                _ => false,
            };
            let filed = slot.timer;
            assert!(
                !late,
                "slot {index}: filed timer {filed:?}, due {due:?} (+{read:?})"
            );
        }
    }
}

/// Sends a batch: one datagram, or a GSO train.
fn flush(io: &UdpIo, out: &[u8], batch: &TxBatch, proxy: &ProxyCounters) {
    let Some(to) = batch.to else { return };
    let segment = (batch.count > 1).then_some(batch.segment);
    // A full socket buffer drops the datagrams; QUIC recovers them as losses.
    if io.send(to, &out[..batch.len], segment, proxy).is_err() {
        tracing::trace!("UDP send buffer full");
    }
}

pub(super) fn mark_dirty(dirty: &mut Vec<usize>, slot: &mut Slot, index: usize) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(index);
    }
}

impl Worker {
    pub(super) fn process_dirty(&mut self, now: Instant) {
        while let Some(index) = self.dirty.pop() {
            if let Some(slot) = self.slots.get_mut(index) {
                slot.dirty = false;
            }
            self.handle_events(index, now);
            self.transmit(index, now);
        }
    }

    pub(super) fn handle_events(&mut self, index: usize, now: Instant) {
        let Some(span) = self.slots.get(index).map(|s| s.span.clone()) else {
            return;
        };
        let _entered = span.enter();
        // The worker's event list, lent out while they are handled (no allocation per turn).
        let mut events = std::mem::take(&mut self.events);
        if let Some(ServerConn::Live(conn)) = self.slots.get_mut(index).map(|s| &mut s.conn) {
            while let Some(event) = conn.poll_event() {
                events.push(event);
            }
        }
        for event in events.drain(..) {
            match event {
                Event::Request { stream, head, end } => self.on_request(index, stream, head, end, now),
                Event::Readable { stream } | Event::Writable { stream } => {
                    if let Some(ex) = self
                        .slots
                        .get(index)
                        .and_then(|s| s.exchanges.get(&stream).copied())
                    {
                        self.progress_exchange(ex, false);
                    }
                }
                Event::StreamClosed { stream, .. } => {
                    if let Some(ex) = self
                        .slots
                        .get(index)
                        .and_then(|s| s.exchanges.get(&stream).copied())
                    {
                        self.progress_exchange(ex, false);
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
                    if let Some(handle) = self.slots.handle(index) {
                        self.unqueue(handle, Some(stream));
                    }
                    self.drop_awaiting(index, Some(stream));
                }
                Event::GoAway => {}
                Event::Dead => self.release(index, now),
            }
        }
        self.events = events;
        self.after_handshake(index, now);
    }

    /// `Connection::release`, the only way a connection ends. Its requests that wait (for the handshake,
    /// in a backend queue) go first: ending an exchange frees a server slot and drains the queue, which
    /// must not find a request of this connection there to start. Then its exchanges end, then the
    /// connection is released.
    pub(super) fn release(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let key = ConnHandle {
            index,
            serial: slot.serial,
        };
        self.drop_awaiting(index, None);
        self.unqueue(key, None);
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let exchanges: Vec<usize> = slot.exchanges.values().copied().collect();
        for ex in exchanges {
            self.end_exchange(ex, Termination::ClientAborted, false);
        }
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let orphans = slot.conn.release(now);
        slot.span
            .in_scope(|| tracing::debug!(orphans = orphans.len(), "connection released"));
        mark_dirty(&mut self.dirty, slot, index);
    }

    pub(super) fn transmit(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let _entered = slot.span.clone().entered();
        let io = &self.listeners[slot.listener].io;
        let max_segments = io.max_segments();
        let out = &mut self.out;
        let mut batch = TxBatch::default();
        match slot.paced.take() {
            Some(p) if must_wait(p.at, now) => slot.paced = Some(p),
            Some(p) => {
                out[..p.datagram.len()].copy_from_slice(&p.datagram);
                batch = TxBatch {
                    len: p.datagram.len(),
                    segment: p.datagram.len(),
                    count: 1,
                    to: Some(p.to),
                };
            }
            None => {}
        }
        // Each datagram is written right after the batch; one that cannot join it sends the batch and
        // moves to the front. One that is not due yet waits in the slot, and quiche keeps the rest.
        while slot.paced.is_none() {
            let Some(t) = slot
                .conn
                .poll_transmit(now, &mut out[batch.len..batch.len + MAX_DATAGRAM])
            else {
                break;
            };
            // `now` is from the start of the turn: quiche's own clock may be ahead of it.
            if must_wait(t.at, now) && must_wait(t.at, Instant::now()) {
                slot.paced = Some(Paced {
                    datagram: out[batch.len..batch.len + t.len].to_vec(),
                    to: t.to,
                    at: t.at,
                });
                self.proxy.udp_paced.fetch_add(1, Relaxed);
                break;
            }
            if batch.admits(t.to, t.len, max_segments) {
                batch.len += t.len;
                batch.count += 1;
            } else {
                if batch.count > 0 {
                    flush(io, out, &batch, &self.proxy);
                    out.copy_within(batch.len..batch.len + t.len, 0);
                }
                batch = TxBatch {
                    len: t.len,
                    segment: t.len,
                    count: 1,
                    to: Some(t.to),
                };
            }
            if batch.len + MAX_DATAGRAM > out.len() {
                flush(io, out, &batch, &self.proxy);
                batch = TxBatch::default();
            }
        }
        if batch.count > 0 {
            flush(io, out, &batch, &self.proxy);
        }
        // Requests answered while transmitting (a stream closed) may have queued events.
        if let ServerConn::Live(c) = &mut slot.conn {
            if c.has_events() {
                mark_dirty(&mut self.dirty, slot, index);
            }
        }
        let closed = slot.conn.is_closed();
        if closed {
            tracing::debug!("connection closed");
            self.slots.remove(index);
            self.router.remove_owner(index);
            self.publish_routes();
        } else {
            self.slots.rearm(index, now);
        }
    }

    pub(super) fn publish_routes(&self) {
        self.proxy.cid_routes.store(self.router.len() as u64, Relaxed);
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(index) = self.slots.pop_due(now) {
            let Some(slot) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.conn.poll_timeout(now).is_some_and(|t| t <= now) {
                slot.span.in_scope(|| slot.conn.handle_timeout(now));
            }
            // Its transmit sends a paced datagram that is due, and files the next deadline.
            mark_dirty(&mut self.dirty, slot, index);
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
        if self.pool.deadline().is_some_and(|t| t <= now) {
            self.pool.purge(now);
        }
    }
}
