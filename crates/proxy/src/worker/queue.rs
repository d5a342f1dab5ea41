//! The backend queues: requests waiting for a server slot while every usable server is at its
//! `maxconn`, in FIFO order, until `timeout queue`.

use super::request::Attempt;
use super::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::upstream::{Forward, Termination};

/// A request waiting in a backend queue for a server slot.
pub(super) struct Queued {
    pub(super) attempt: Attempt,
    pub(super) forward: Forward,
    pub(super) deadline: Instant,
}

impl Queued {
    /// Its connection.
    pub(super) fn conn(&self) -> ConnHandle {
        self.attempt.conn
    }
}

/// The queues of a worker, one per backend name.
pub(super) type Queues = std::collections::HashMap<String, VecDeque<Queued>>;

impl Worker {
    /// Starts queued requests of backend `name` while a server has room; drops those whose client left.
    pub(super) fn drain_queue(&mut self, name: &str, now: Instant) {
        loop {
            let Some(front) = self.queues.get_mut(name).and_then(VecDeque::pop_front) else {
                return;
            };
            front.attempt.backend.queued.fetch_sub(1, Relaxed);
            if !self.is_live(front.attempt.conn) {
                self.fail_request(front.attempt, front.forward, Termination::ClientAborted, None);
                continue;
            }
            let Some(b) = self.config.backend(name) else {
                self.fail_request(front.attempt, front.forward, Termination::ConnectFailed, None);
                continue;
            };
            let loads = self.loads(b, &front.attempt.tried);
            let key = front.attempt.key.clone();
            match self.balancers[b].pick(&loads, key.as_deref()) {
                Some(s) => self.start_exchange(front.attempt, front.forward, b, s, now),
                None => {
                    front.attempt.backend.queued.fetch_add(1, Relaxed);
                    if let Some(queue) = self.queues.get_mut(name) {
                        queue.push_front(front);
                    }
                    return;
                }
            }
        }
    }

    /// The earliest queue deadline. Queues are FIFO with one timeout per backend, so their fronts expire
    /// first (after a reload changed `timeout queue`, later entries wait for the front: at most the old
    /// timeout).
    pub(super) fn queue_deadline(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| q.front().map(|e| e.deadline))
            .min()
    }

    /// Answers 503 to queued requests past `timeout queue`.
    pub(super) fn expire_queues(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|e| e.deadline <= now) {
                expired.extend(queue.pop_front());
            }
        }
        for e in expired {
            e.attempt.backend.queued.fetch_sub(1, Relaxed);
            self.fail_request(e.attempt, e.forward, Termination::QueueTimeout, None);
        }
    }

    /// Drops the queued requests of a connection (`stream: None`) or of one of its streams.
    pub(super) fn unqueue(&mut self, conn: ConnHandle, stream: Option<u64>) {
        let mut gone = Vec::new();
        for queue in self.queues.values_mut() {
            while let Some(pos) = queue
                .iter()
                .position(|e| e.attempt.conn == conn && stream.is_none_or(|s| s == e.forward.stream))
            {
                if let Some(e) = queue.remove(pos) {
                    gone.push(e);
                }
            }
        }
        for e in gone {
            e.attempt.backend.queued.fetch_sub(1, Relaxed);
            self.fail_request(e.attempt, e.forward, Termination::ClientAborted, None);
        }
    }

    pub(super) fn is_live(&self, conn: ConnHandle) -> bool {
        self.slots
            .slot(conn)
            .is_some_and(|s| matches!(s.conn, ServerConn::Live(_)))
    }
}
