//! Stateless resets (RFC 9000, 10.3) for short-header datagrams of connections this instance does not
//! know (it restarted, or the connection is gone): the client learns at once that its connection is
//! dead instead of waiting out its idle timeout. Each connection's token is an HMAC of the connection
//! ID it was issued with, under a key derived from `cluster-secret` (so that a restarted instance, or
//! another one of the fleet, resets connections it never saw), or a random one per process.
//!
//! A reset is always shorter than the datagram that caused it (two endpoints can never ping-pong) and at
//! least 21 bytes; datagrams too short for that, or for a connection ID of ours, get nothing. Resets are
//! rate-limited per source address and in total, so that they cannot be used to reflect traffic.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::hmac;

/// The shortest reset: 1 + 4 unpredictable bytes + the 16-byte token.
const MIN_RESET: usize = 21;
/// Resets are at most this long, well below any datagram a path carries.
const MAX_RESET: usize = 42;
/// The token's length.
const TOKEN: usize = 16;
/// Per source address (its slot in the table): one reset per this.
const PER_SOURCE: Duration = Duration::from_millis(100);
/// Source slots (addresses that share one are limited together: stricter, never looser).
const SOURCES: usize = 1024;
/// In total: this many at once, refilled at `RATE` per second.
const BURST: f64 = 100.0;
const RATE: f64 = 1000.0;

/// Derives the tokens.
pub(crate) struct ResetKey {
    key: hmac::Key,
}

impl std::fmt::Debug for ResetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResetKey(..)")
    }
}

impl ResetKey {
    /// From `cluster-secret`, or random for this process.
    pub(crate) fn new(cluster_secret: Option<&[u8]>) -> Result<Self, ring::error::Unspecified> {
        let key = super::secret::key(cluster_secret, b"qproxy stateless reset")?;
        Ok(ResetKey { key })
    }

    /// The token of the connection issued `cid`, as quiche takes it (big-endian on the wire).
    pub(crate) fn token(&self, cid: &[u8]) -> u128 {
        let tag = hmac::sign(&self.key, cid);
        let mut token = [0u8; TOKEN];
        token.copy_from_slice(&tag.as_ref()[..TOKEN]);
        u128::from_be_bytes(token)
    }
}

/// How one worker sends resets: the limits' state.
#[derive(Debug)]
pub(crate) struct Resetter {
    sources: Box<[Option<Instant>]>,
    tokens: f64,
    refilled: Instant,
}

/// Why no reset went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoReset {
    /// The datagram cannot carry one of our IDs, or a reset shorter than it.
    TooShort,
    /// Over the per-source or the total rate.
    Limited,
}

impl Resetter {
    pub(crate) fn new(now: Instant) -> Self {
        Resetter {
            sources: vec![None; SOURCES].into_boxed_slice(),
            tokens: BURST,
            refilled: now,
        }
    }

    /// Writes into `out` the reset for a short-header `datagram` of `len` bytes whose destination ID
    /// (`cid`, `cid_len` bytes as we issue them) no connection has; returns its length.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reset(
        &mut self,
        key: &ResetKey,
        datagram: &[u8],
        cid_len: usize,
        from: IpAddr,
        now: Instant,
        rng: &mut fastrand::Rng,
        out: &mut [u8],
    ) -> Result<usize, NoReset> {
        if datagram.len() <= MIN_RESET || datagram.len() < 1 + cid_len {
            return Err(NoReset::TooShort);
        }
        self.admit(from, now)?;
        let len = (datagram.len() - 1).min(MAX_RESET);
        let out = &mut out[..len];
        rng.fill(out);
        // A short header's first bits: form 0, fixed bit 1, the rest unpredictable.
        out[0] = 0x40 | (out[0] & 0x3f);
        let token = key.token(&datagram[1..1 + cid_len]).to_be_bytes();
        out[len - TOKEN..].copy_from_slice(&token);
        Ok(len)
    }

    fn admit(&mut self, from: IpAddr, now: Instant) -> Result<(), NoReset> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.refilled = now;
        let slot = &mut self.sources[source_slot(from)];
        if slot.is_some_and(|last| now.saturating_duration_since(last) < PER_SOURCE) || self.tokens < 1.0 {
            return Err(NoReset::Limited);
        }
        *slot = Some(now);
        self.tokens -= 1.0;
        Ok(())
    }
}

fn source_slot(ip: IpAddr) -> usize {
    let bytes = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    (xxhash_rust::xxh3::xxh3_64(&bytes.to_le_bytes()) as usize) % SOURCES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(cid: &[u8], len: usize) -> Vec<u8> {
        let mut d = vec![0x41];
        d.extend_from_slice(cid);
        d.resize(len, 0xaa);
        d
    }

    #[test]
    fn a_reset_is_shorter_than_its_cause_and_ends_with_the_ids_token() {
        let key = ResetKey::new(Some(b"fleet secret")).unwrap();
        let (now, mut rng) = (Instant::now(), fastrand::Rng::with_seed(1));
        let mut out = [0u8; 64];
        let cid = [7u8; 16];
        for (i, len) in [22usize, 30, 43, 1200].into_iter().enumerate() {
            let mut r = Resetter::new(now);
            let from = IpAddr::from([10, 0, 0, i as u8]);
            let n = r
                .reset(&key, &datagram(&cid, len), 16, from, now, &mut rng, &mut out)
                .unwrap();
            assert!((MIN_RESET..len).contains(&n) && n <= MAX_RESET, "{len} -> {n}");
            assert_eq!(out[0] & 0xc0, 0x40, "short header, fixed bit");
            assert_eq!(out[n - 16..n], key.token(&cid).to_be_bytes());
        }
        let mut r = Resetter::new(now);
        for len in [0, 5, 17, 21] {
            let got = r.reset(
                &key,
                &datagram(&cid, len.max(1))[..len],
                16,
                IpAddr::from([1, 1, 1, 1]),
                now,
                &mut rng,
                &mut out,
            );
            assert_eq!(got, Err(NoReset::TooShort), "{len}");
        }
    }

    #[test]
    fn the_secret_decides_the_token() {
        let a = ResetKey::new(Some(b"one")).unwrap();
        assert_eq!(
            a.token(b"cid"),
            ResetKey::new(Some(b"one")).unwrap().token(b"cid"),
            "another instance agrees"
        );
        assert_ne!(
            a.token(b"cid"),
            ResetKey::new(Some(b"two")).unwrap().token(b"cid")
        );
        assert_ne!(a.token(b"cid"), a.token(b"other cid"));
        assert_ne!(
            ResetKey::new(None).unwrap().token(b"cid"),
            ResetKey::new(None).unwrap().token(b"cid")
        );
    }

    #[test]
    fn resets_are_limited_per_source_and_in_total() {
        let key = ResetKey::new(None).unwrap();
        let (start, mut rng) = (Instant::now(), fastrand::Rng::with_seed(2));
        let mut out = [0u8; 64];
        let d = datagram(&[1; 16], 100);
        let mut r = Resetter::new(start);
        let one = IpAddr::from([192, 0, 2, 1]);
        assert!(r.reset(&key, &d, 16, one, start, &mut rng, &mut out).is_ok());
        assert_eq!(
            r.reset(
                &key,
                &d,
                16,
                one,
                start + Duration::from_millis(50),
                &mut rng,
                &mut out
            ),
            Err(NoReset::Limited)
        );
        assert!(r
            .reset(&key, &d, 16, one, start + PER_SOURCE, &mut rng, &mut out)
            .is_ok());
        // Many sources at once: the burst, then nothing until the bucket refills.
        let mut r = Resetter::new(start);
        let mut from_each = |sources: std::ops::Range<u32>, at: Instant| {
            sources
                .filter(|i| {
                    r.reset(
                        &key,
                        &d,
                        16,
                        IpAddr::from(i.to_be_bytes()),
                        at,
                        &mut rng,
                        &mut out,
                    )
                    .is_ok()
                })
                .count()
        };
        let sent = from_each(0..10_000, start);
        assert!(sent <= BURST as usize, "{sent}");
        assert!(
            sent > BURST as usize / 2,
            "{sent}: most sources have their own slot"
        );
        let more = from_each(10_000..20_000, start + Duration::from_millis(10));
        assert!(more <= 10, "10 ms refill {more}");
    }
}
