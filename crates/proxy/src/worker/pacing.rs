//! Pacing with GSO. quiche's pacer gives each datagram the time it should leave (`send_info.at`), a
//! flight spread over the round trip. A GSO train goes out in one call, so the worker sends every
//! datagram that is due within [`GRANULARITY`] together, and holds the first one that is not, with
//! everything after it still in quiche, until its time: bursts stay within a millisecond of the
//! pacing rate, and a loaded worker still batches.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How early a datagram may leave: the burst a train may carry ahead of the pacer.
pub(super) const GRANULARITY: Duration = Duration::from_millis(1);

/// Is a datagram for `at` too early to send at `now`?
pub(super) fn must_wait(at: Instant, now: Instant) -> bool {
    at > now + GRANULARITY
}

/// A datagram quiche wrote that waits for its send time.
#[derive(Debug)]
pub(super) struct Paced {
    pub(super) datagram: Vec<u8>,
    pub(super) to: SocketAddr,
    pub(super) at: Instant,
}

impl Paced {
    /// When it may go: [`GRANULARITY`] before its time.
    pub(super) fn sendable_at(&self) -> Instant {
        self.at.checked_sub(GRANULARITY).unwrap_or(self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_waits_only_when_due_past_the_granularity() {
        let now = Instant::now();
        assert!(!must_wait(now, now));
        assert!(
            !must_wait(now - Duration::from_millis(5), now),
            "late: send at once"
        );
        assert!(!must_wait(now + GRANULARITY, now), "within the burst");
        assert!(must_wait(now + GRANULARITY + Duration::from_micros(1), now));
    }
}
