//! Global `maxconn`: the HTTP/3 connections open at once over every worker. A connection holds a
//! [`Permit`] in its slot, so whatever way the slot goes (closed, removed, cleared by a forced stop), the
//! count comes down with it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

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
    #[cfg(test)]
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
