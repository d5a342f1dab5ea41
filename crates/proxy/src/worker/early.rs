//! Requests that arrived in 0-RTT early data and wait for their connection's handshake (RFC 8470):
//! held, dispatched once it completes, dropped with their stream or connection, and the 425 replay.

use super::request::Attempt;
use super::*;
use std::time::Instant;

use crate::telemetry::counters::EarlyData;
use crate::upstream::live::Observed;
use crate::upstream::{Forward, Termination};

/// A request that arrived in early data and waits for its connection's handshake to complete.
pub(super) struct AwaitingHandshake {
    pub(super) attempt: Attempt,
    pub(super) forward: Forward,
}

impl Worker {
    /// Holds a request until its connection's handshake completes ([`Worker::after_handshake`]).
    pub(super) fn await_handshake(&mut self, attempt: Attempt, forward: Forward) {
        match self.slots.slot_mut(attempt.conn) {
            Some(slot) => slot
                .awaiting_handshake
                .push(AwaitingHandshake { attempt, forward }),
            None => self.fail_request(attempt, forward, Termination::ClientAborted, None),
        }
    }

    /// The connection's handshake completed: the requests held for it go to their servers.
    pub(super) fn after_handshake(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let established = matches!(&slot.conn, ServerConn::Live(c) if c.is_established());
        if !established || slot.awaiting_handshake.is_empty() {
            return;
        }
        for held in std::mem::take(&mut slot.awaiting_handshake) {
            self.dispatch(held.attempt, held.forward, now);
        }
    }

    /// Drops the requests held for the handshake of a connection (`stream: None`) or of one stream.
    pub(super) fn drop_awaiting(&mut self, index: usize, stream: Option<u64>) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let (gone, kept) = std::mem::take(&mut slot.awaiting_handshake)
            .into_iter()
            .partition(|h| stream.is_none_or(|s| s == h.forward.stream));
        slot.awaiting_handshake = kept;
        for held in gone {
            self.fail_request(held.attempt, held.forward, Termination::ClientAborted, None);
        }
    }

    /// A server answered 425 (Too Early) to a request marked `Early-Data: 1`: the request goes again,
    /// unmarked, once the client's handshake completed (RFC 8470, 5.2); the 425 never reaches the client.
    pub(super) fn replay_after_handshake(&mut self, ex: usize, now: Instant) {
        let Some((attempt, server, exchange)) = self.take_back(ex) else {
            return;
        };
        server.observe(Observed::Fine);
        self.proxy.count_early(EarlyData::Replayed);
        let (sock, forward) = exchange.into_forward();
        drop(sock);
        let conn = attempt.conn;
        self.await_handshake(attempt, forward);
        self.after_handshake(conn.index, now);
        self.drain_queue(&server.backend, now);
    }
}
