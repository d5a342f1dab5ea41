//! The supervisor's orders: graceful stop (GOAWAY, drain, `hard-stop-after`), the forced stop, a
//! reloaded configuration; and datagrams other workers handed over.

use super::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::upstream::balance::Balancer;
use crate::upstream::live::Runtime;
use crate::upstream::Termination;
use inbox::{Control, HandedOff};

impl Worker {
    /// Takes what the inbox holds: orders first, then the datagrams that were there when it was read.
    /// Returns how the worker ends when an order ends it.
    pub(super) fn read_inbox(&mut self) -> Option<Exit> {
        while let Ok(order) = self.inbox.control.try_recv() {
            let now = Instant::now();
            match order {
                Control::Reload { config, runtime } => self.apply_reload(config, runtime),
                Control::Stop { hard_stop } if self.run == Run::Serving => self.begin_stop(now, hard_stop),
                Control::Stop { .. } => {}
                Control::Force => {
                    tracing::warn!(worker = self.me, "forced stop: closing every connection now");
                    self.force_close();
                    return Some(Exit::Forced);
                }
                Control::DrainQueue(backend) => self.drain_queue(&backend, now),
                Control::Room {
                    index,
                    serial,
                    posted,
                } => {
                    posted.store(false, Relaxed);
                    if let Some(slot) = self.slots.slot_mut(ConnHandle { index, serial }) {
                        mark_dirty(&mut self.dirty, slot, index);
                    }
                }
            }
        }
        // Bounded by what is there now: the others keep posting while this worker works.
        let now = Instant::now();
        for _ in 0..self.inbox.datagrams.len() {
            let Ok(HandedOff {
                listener,
                peer,
                mut bytes,
            }) = self.inbox.datagrams.try_recv()
            else {
                break;
            };
            self.on_datagram(listener, &mut bytes, peer, now);
        }
        None
    }

    /// Graceful stop: GOAWAY to every client, no new connection, requests in flight finish, until
    /// `hard_stop`.
    pub(crate) fn begin_stop(&mut self, now: Instant, hard_stop: Option<Instant>) {
        tracing::info!(
            worker = self.me,
            connections = self.slots.len(),
            "stopping: GOAWAY to every client"
        );
        self.run = Run::Draining { hard_stop };
        self.pool.clear();
        for (index, slot) in self.slots.iter_mut() {
            if let ServerConn::Live(c) = &mut slot.conn {
                c.shutdown(now);
            }
            mark_dirty(&mut self.dirty, slot, index);
        }
        self.process_dirty(now);
    }

    pub(super) fn force_close(&mut self) {
        let now = Instant::now();
        let indexes: Vec<usize> = self.slots.iter().map(|(i, _)| i).collect();
        for index in indexes {
            if let Some(ServerConn::Live(c)) = self.slots.get_mut(index).map(|s| &mut s.conn) {
                c.close(qcc::codes::H3_NO_ERROR, "shutting down");
            }
            self.release(index, now);
            self.transmit(index, now);
        }
        let rest: Vec<usize> = self.exchanges.iter().map(|(i, _)| i).collect();
        for ex in rest {
            self.end_exchange(ex, Termination::ClientAborted, false);
        }
        let queued: Vec<ConnHandle> = self
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

    /// A reloaded configuration, for new requests: balancers start afresh, servers keep their state (the
    /// supervisor carried it into `runtime`). Listeners, TLS and the transport parameters stay as they
    /// are; the connection layer's limits (timeouts, Tx budget, glitches, requests per connection) apply
    /// to connections accepted from now on.
    fn apply_reload(&mut self, config: Arc<Config>, runtime: Arc<Runtime>) {
        for listener in &mut self.listeners {
            listener.tls.limits = listener::quic_settings(&config, listener.frontend, &self.limits.tx_pool).1;
        }
        self.balancers = config
            .backends
            .iter()
            .map(|b| Balancer::new(b, self.rng.u64(..)))
            .collect();
        self.runtime = runtime;
        self.config = config;
        // Queued requests of a backend that is gone get their 503 now; the others may fit.
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            self.drain_queue(&name, Instant::now());
        }
    }
}
