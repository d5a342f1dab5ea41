//! Connection counts every worker shares: the global `maxconn`, each frontend's `maxconn`, and each
//! bind's handshakes in progress (above `tune.quic.fe.sec.retry-threshold`, new clients get a Retry). A
//! connection holds a [`Permit`] of each in its slot (the handshake one until its handshake is over), so
//! whatever way the slot goes (closed, removed, cleared by a forced stop), the counts come down with it.
//! Beside them, the Tx pool that caps the response bytes all connections hold together.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use qcc::TxPool;

use crate::config::Config;

/// The counts of one process, touched once or twice per connection, never per datagram.
#[derive(Debug)]
pub(crate) struct SharedLimits {
    /// The global `maxconn`.
    pub(crate) global: Arc<ConnLimit>,
    /// Each frontend's `maxconn`, in configuration order.
    pub(crate) frontends: Box<[Arc<ConnLimit>]>,
    /// Each bind's connections still in their handshake (no limit: counted for the threshold), in the
    /// workers' listener order.
    pub(crate) handshakes: Box<[Arc<ConnLimit>]>,
    /// Connections open per client address (`src_conn_cur`).
    pub(crate) sources: Arc<SourceCounts>,
    /// `tune.quic.mem.tx-max`: the Tx bytes of every connection together.
    pub(crate) tx_pool: TxPool,
    retry_threshold: AtomicUsize,
}

impl SharedLimits {
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        let binds = config.frontends.iter().map(|f| f.binds.len()).sum();
        let limits = SharedLimits {
            global: ConnLimit::new(None),
            frontends: config.frontends.iter().map(|_| ConnLimit::new(None)).collect(),
            handshakes: (0..binds).map(|_| ConnLimit::new(None)).collect(),
            sources: Arc::default(),
            tx_pool: TxPool::new(config.global.tx_mem_max),
            retry_threshold: AtomicUsize::new(0),
        };
        limits.reload(config);
        Arc::new(limits)
    }

    /// The limits of `config` for connections opened from now on (its frontends and binds are the
    /// running ones: a reload that changes them is refused).
    pub(crate) fn reload(&self, config: &Config) {
        self.global.set_max(config.global.maxconn);
        for (limit, frontend) in self.frontends.iter().zip(&config.frontends) {
            limit.set_max(frontend.maxconn);
        }
        self.retry_threshold.store(config.global.retry_threshold, Relaxed);
        self.tx_pool.set_limit(config.global.tx_mem_max);
    }

    /// Whether bind `listener` has so many handshakes in progress that new clients must prove their
    /// address first.
    pub(crate) fn over_retry_threshold(&self, listener: usize) -> bool {
        self.handshakes[listener].open() >= self.retry_threshold.load(Relaxed)
    }
}

/// Connections open per client address, over every worker, for `quic-initial ... { src_conn_cur OP N }`.
/// Touched when a connection opens and when it goes; sharded by address so that workers rarely meet on a
/// lock.
#[derive(Debug, Default)]
pub(crate) struct SourceCounts {
    shards: [Mutex<HashMap<IpAddr, u64>>; 16],
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub(crate) struct SourcePermit {
    counts: Arc<SourceCounts>,
    ip: IpAddr,
}

impl SourceCounts {
    fn shard(&self, ip: IpAddr) -> &Mutex<HashMap<IpAddr, u64>> {
        let h = xxhash_rust::xxh3::xxh3_64(
            &match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)),
                IpAddr::V6(v6) => u128::from(v6),
            }
            .to_le_bytes(),
        );
        &self.shards[h as usize % self.shards.len()]
    }

    /// Connections open now from `ip`.
    pub(crate) fn current(&self, ip: IpAddr) -> u64 {
        self.shard(ip).lock().get(&ip).copied().unwrap_or(0)
    }

    /// Counts one more connection from `ip` until the permit is dropped.
    pub(crate) fn open(self: &Arc<Self>, ip: IpAddr) -> SourcePermit {
        *self.shard(ip).lock().entry(ip).or_insert(0) += 1;
        SourcePermit {
            counts: self.clone(),
            ip,
        }
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        let mut shard = self.counts.shard(self.ip).lock();
        if let Some(n) = shard.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                shard.remove(&self.ip);
            }
        }
    }
}

/// The count and its limit, shared by the workers (touched once per connection, never per datagram).
#[derive(Debug, Default)]
pub(crate) struct ConnLimit {
    /// 0: no limit. Set again on reload.
    max: AtomicUsize,
    open: AtomicUsize,
}

/// One open connection's share of the limit.
#[derive(Debug)]
pub(crate) struct Permit(Arc<ConnLimit>);

impl ConnLimit {
    /// A limit of `max` connections (`None`: none).
    pub(crate) fn new(max: Option<usize>) -> Arc<ConnLimit> {
        let limit = Arc::new(ConnLimit::default());
        limit.set_max(max);
        limit
    }

    /// A new limit for connections opened from now on (open ones stay).
    pub(crate) fn set_max(&self, max: Option<usize>) {
        self.max.store(max.unwrap_or(0), Relaxed);
    }

    /// A permit for one more connection, unless the limit is reached.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.load(Relaxed);
        self.open
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .ok()
            .map(|_| Permit(self.clone()))
    }

    /// Connections holding a permit.
    fn open(&self) -> usize {
        self.open.load(Relaxed)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_stop_at_the_limit_and_come_back_when_dropped() {
        let limit = ConnLimit::new(Some(2));
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop(a);
        let c = limit.try_acquire().unwrap();
        assert_eq!(limit.open(), 2);
        limit.set_max(None);
        let many: Vec<Permit> = (0..10).filter_map(|_| limit.try_acquire()).collect();
        assert_eq!(many.len(), 10);
        drop((b, c, many));
        assert_eq!(limit.open(), 0);
    }

    #[test]
    fn source_counts_follow_their_permits_and_forget_idle_addresses() {
        let counts: Arc<SourceCounts> = Arc::default();
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        let permits = [counts.open(a), counts.open(a), counts.open(b)];
        assert_eq!((counts.current(a), counts.current(b)), (2, 1));
        drop(permits);
        assert_eq!((counts.current(a), counts.current(b)), (0, 0));
        assert!(
            counts.shards.iter().all(|s| s.lock().is_empty()),
            "no entry left for idle addresses"
        );
    }
}
