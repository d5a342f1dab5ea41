//! Keep-alive pool: idle backend connections per server address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::socket::BackendSocket;
use crate::telemetry::counters::ProxyCounters;

/// Idle connections kept per server.
const MAX_IDLE_PER_SERVER: usize = 32;
/// An idle connection older than this is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle, connected backend sockets, deregistered from the event loop.
pub(crate) struct Pool {
    idle: HashMap<SocketAddr, Vec<(BackendSocket, Instant)>>,
    counters: Arc<ProxyCounters>,
}

impl Pool {
    /// An empty pool counting its idle sockets into `counters`.
    pub(crate) fn new(counters: Arc<ProxyCounters>) -> Self {
        Pool {
            idle: HashMap::new(),
            counters,
        }
    }

    fn count(&self) -> u64 {
        self.idle.values().map(|l| l.len() as u64).sum()
    }

    fn publish(&self) {
        self.counters.backend_sockets_idle.store(self.count(), Relaxed);
    }

    /// A live idle connection to `addr`, if one is left. Sockets the server closed meanwhile are dropped.
    pub(crate) fn checkout(&mut self, addr: SocketAddr) -> Option<BackendSocket> {
        let list = self.idle.get_mut(&addr)?;
        let mut found = None;
        while let Some((sock, _)) = list.pop() {
            let mut probe = [0u8; 1];
            // WouldBlock: alive and quiet. 0: the server closed it. Data: out of protocol; drop it.
            if let Err(e) = sock.stream().peek(&mut probe) {
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    found = Some(sock);
                    break;
                }
            }
        }
        self.publish();
        found
    }

    /// Keeps a connection for reuse.
    pub(crate) fn checkin(&mut self, addr: SocketAddr, sock: BackendSocket, now: Instant) {
        let list = self.idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_PER_SERVER {
            list.push((sock, now));
        }
        self.publish();
    }

    /// Closes idle connections older than [`IDLE_TIMEOUT`].
    pub(crate) fn prune(&mut self, now: Instant) {
        for list in self.idle.values_mut() {
            list.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
        }
        self.idle.retain(|_, list| !list.is_empty());
        self.publish();
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&mut self) {
        self.idle.clear();
        self.publish();
    }
}
