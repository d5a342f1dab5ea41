//! Request counters of one frontend, backend or server: requests by status class, bytes both ways,
//! requests in flight, and a response-time histogram.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::telemetry::counters::StatusClass;

/// Upper bounds (seconds) of the response-time histogram's buckets; the last bucket is +Inf.
pub(crate) const RESPONSE_TIME_BUCKETS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Counters of one proxy object.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    requests: [AtomicU64; StatusClass::ALL.len()],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active: AtomicU64,
    buckets: [AtomicU64; RESPONSE_TIME_BUCKETS.len() + 1],
    response_time_micros: AtomicU64,
}

/// A copy of a [`Traffic`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct TrafficSnapshot {
    /// Requests by status class, in [`StatusClass`] order.
    pub(crate) requests: [u64; StatusClass::ALL.len()],
    /// Request body bytes.
    pub(crate) bytes_in: u64,
    /// Response body bytes.
    pub(crate) bytes_out: u64,
    /// Requests in flight.
    pub(crate) active: u64,
    /// Response times per bucket (not cumulative), the last one above every bound.
    pub(crate) response_time_buckets: [u64; RESPONSE_TIME_BUCKETS.len() + 1],
    /// Sum of the response times, in seconds.
    pub(crate) response_time_sum: f64,
}

impl TrafficSnapshot {
    /// Requests of every class.
    pub(crate) fn total(&self) -> u64 {
        self.requests.iter().sum()
    }
}

impl Traffic {
    /// A request starts.
    pub(crate) fn begin(&self) {
        self.active.fetch_add(1, Relaxed);
    }

    /// A request starts, unless `max` (0: no limit) are in flight already. One atomic step, so that
    /// workers racing for the last slot cannot both take it.
    pub(crate) fn try_begin(&self, max: u64) -> bool {
        self.active
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok()
    }

    /// A request started with [`Traffic::begin`] leaves without being counted (it is retried elsewhere).
    pub(crate) fn abandon(&self) {
        self.active.fetch_sub(1, Relaxed);
    }

    /// A request started with [`Traffic::begin`] ends.
    pub(crate) fn end(&self, status: Option<u16>, bytes: (u64, u64), response_time: Option<Duration>) {
        self.active.fetch_sub(1, Relaxed);
        self.count(status, bytes, response_time);
    }

    /// Counts a finished request (one that never was in flight here, or at its end).
    pub(crate) fn count(
        &self,
        status: Option<u16>,
        (bytes_in, bytes_out): (u64, u64),
        response_time: Option<Duration>,
    ) {
        self.requests[StatusClass::of(status) as usize].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
        if let Some(t) = response_time {
            let secs = t.as_secs_f64();
            let bucket = RESPONSE_TIME_BUCKETS
                .iter()
                .position(|bound| secs <= *bound)
                .unwrap_or(RESPONSE_TIME_BUCKETS.len());
            self.buckets[bucket].fetch_add(1, Relaxed);
            self.response_time_micros
                .fetch_add(t.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
        }
    }

    /// Requests in flight.
    pub(crate) fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            requests: std::array::from_fn(|i| self.requests[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            active: self.active.load(Relaxed),
            response_time_buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            response_time_sum: self.response_time_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_their_class_and_bucket() {
        let t = Traffic::default();
        t.begin();
        t.begin();
        assert_eq!(t.active(), 2);
        t.end(Some(200), (10, 20), Some(Duration::from_millis(3)));
        t.end(Some(503), (0, 5), Some(Duration::from_secs(20)));
        t.count(None, (0, 0), None);
        let s = t.snapshot();
        assert_eq!(s.requests, [0, 1, 0, 0, 1, 1]);
        assert_eq!((s.bytes_in, s.bytes_out, s.active), (10, 25, 0));
        assert_eq!(s.response_time_buckets[0], 1);
        assert_eq!(s.response_time_buckets[RESPONSE_TIME_BUCKETS.len()], 1);
        assert!((s.response_time_sum - 20.003).abs() < 1e-6);
        assert_eq!(s.total(), 3);
    }
}
