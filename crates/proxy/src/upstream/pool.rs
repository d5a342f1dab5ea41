//! Keep-alive pool: idle backend connections per server, kept as HAProxy keeps them: up to
//! `pool-max-conn`, purged by halves every `pool-purge-delay` down to `pool-low-conn`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::socket::BackendSocket;
use crate::config::ServerOptions;
use crate::telemetry::counters::{PoolEvent, ProxyCounters};

/// How one server's idle connections are kept (its `pool-*` options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolPolicy {
    max: Option<u32>,
    low: u32,
    purge_delay: Duration,
}

impl PoolPolicy {
    /// The policy of a server with these options.
    pub(crate) fn of(options: &ServerOptions) -> Self {
        PoolPolicy {
            max: options.pool_max_conn,
            low: options.pool_low_conn,
            purge_delay: options.pool_purge_delay,
        }
    }
}

/// Which idle connection a request may take (`http-reuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Any.
    Any,
    /// Only one that already served more than one request.
    Proven,
    /// None: open a new one.
    Fresh,
}

struct ServerPool {
    /// Oldest first.
    idle: Vec<BackendSocket>,
    policy: PoolPolicy,
    next_purge: Option<Instant>,
}

/// Idle, connected backend sockets (still registered with the event loop: a close wakes [`Pool::on_event`]).
pub(crate) struct Pool {
    servers: HashMap<SocketAddr, ServerPool>,
    counters: Arc<ProxyCounters>,
}

impl Pool {
    /// An empty pool counting its idle sockets into `counters`.
    pub(crate) fn new(counters: Arc<ProxyCounters>) -> Self {
        Pool {
            servers: HashMap::new(),
            counters,
        }
    }

    fn publish(&self) {
        let idle: usize = self.servers.values().map(|s| s.idle.len()).sum();
        self.counters
            .backend_sockets_idle
            .store(idle as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// An idle connection to `addr` that `take` allows, newest first. With `verify`, each is first
    /// checked for a close from the server that the event loop has not shown yet (a `peek`, one syscall);
    /// without, a request that finds its connection closed goes again on a new one
    /// ([`crate::upstream::Step::ClosedAtReuse`]), which only requests that may be sent twice can.
    pub(crate) fn checkout(&mut self, addr: SocketAddr, take: Take, verify: bool) -> Option<BackendSocket> {
        if take == Take::Fresh {
            return None;
        }
        let server = self.servers.get_mut(&addr)?;
        let mut found = None;
        let mut i = server.idle.len();
        while i > 0 {
            i -= 1;
            if take == Take::Proven && server.idle[i].served() < 2 {
                continue;
            }
            let sock = server.idle.remove(i);
            if !verify || is_quiet(&sock) {
                found = Some(sock);
                break;
            }
            self.counters.count_pool(PoolEvent::ClosedIdle);
        }
        if found.is_some() {
            self.counters.count_pool(PoolEvent::Reused);
        }
        self.publish();
        found
    }

    /// An event on the idle socket `fd`: the server closed it or sent bytes out of turn, or the event
    /// is stale (the socket went idle after it was queued). Unless it is still quiet, it is closed.
    pub(crate) fn on_event(&mut self, fd: std::os::fd::RawFd) {
        let mut closed = false;
        for server in self.servers.values_mut() {
            if let Some(i) = server.idle.iter().position(|s| s.fd() == fd) {
                if !is_quiet(&server.idle[i]) {
                    server.idle.remove(i);
                    closed = true;
                }
                break;
            }
        }
        if closed {
            self.counters.count_pool(PoolEvent::ClosedIdle);
            self.servers.retain(|_, s| !s.idle.is_empty());
            self.publish();
        }
    }

    /// Keeps a connection that finished a request, unless the server's pool is full.
    pub(crate) fn checkin(
        &mut self,
        addr: SocketAddr,
        sock: BackendSocket,
        policy: PoolPolicy,
        now: Instant,
    ) {
        let server = self.servers.entry(addr).or_insert_with(|| ServerPool {
            idle: Vec::new(),
            policy,
            next_purge: None,
        });
        server.policy = policy;
        if policy.max.is_none_or(|max| server.idle.len() < max as usize) {
            server.idle.push(sock);
            server.next_purge.get_or_insert(now + policy.purge_delay);
        }
        self.publish();
    }

    /// When [`Pool::purge`] has work next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.servers.values().filter_map(|s| s.next_purge).min()
    }

    /// For each server whose purge delay passed: closes half of its idle connections above
    /// `pool-low-conn`, the oldest first.
    pub(crate) fn purge(&mut self, now: Instant) {
        for server in self.servers.values_mut() {
            if server.next_purge.is_none_or(|t| t > now) {
                continue;
            }
            let low = server.policy.low as usize;
            let above = server.idle.len().saturating_sub(low);
            let close = above.div_ceil(2);
            server.idle.drain(..close);
            for _ in 0..close {
                self.counters.count_pool(PoolEvent::Purged);
            }
            server.next_purge = (server.idle.len() > low).then_some(now + server.policy.purge_delay);
        }
        self.servers.retain(|_, s| !s.idle.is_empty());
        self.publish();
    }

    /// Closes every idle connection.
    pub(crate) fn clear(&mut self) {
        self.servers.clear();
        self.publish();
    }
}

/// An open connection with nothing to read: `peek` would block (0 is the server's close, data is out of
/// protocol).
fn is_quiet(sock: &BackendSocket) -> bool {
    let mut probe = [0u8; 1];
    matches!(sock.stream().peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
