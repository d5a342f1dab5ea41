//! Connection counts every worker shares: the global `maxconn`, each frontend's `maxconn`, and each
//! bind's handshakes in progress (above `tune.quic.fe.sec.retry-threshold`, new clients get a Retry). A
//! connection holds a [`Permit`] of each in its slot (the handshake one until its handshake is over), so
//! whatever way the slot goes (closed, removed, cleared by a forced stop), the counts come down with it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

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
    retry_threshold: AtomicUsize,
}

impl SharedLimits {
    pub(crate) fn new(config: &Config) -> Arc<Self> {
        let binds = config.frontends.iter().map(|f| f.binds.len()).sum();
        let limits = SharedLimits {
            global: ConnLimit::new(None),
            frontends: config.frontends.iter().map(|_| ConnLimit::new(None)).collect(),
            handshakes: (0..binds).map(|_| ConnLimit::new(None)).collect(),
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
    }

    /// Whether bind `listener` has so many handshakes in progress that new clients must prove their
    /// address first.
    pub(crate) fn over_retry_threshold(&self, listener: usize) -> bool {
        self.handshakes[listener].open() >= self.retry_threshold.load(Relaxed)
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
}
