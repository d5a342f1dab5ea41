//! Address validation with Retry (RFC 9000, 8.1.2), for binds with `quic-force-retry`: a stateless token
//! that binds the client's address and its original destination connection ID, authenticated with a
//! HMAC-SHA256 key (from `cluster-secret`, or per process) and valid for a few seconds. Nothing is kept per client until it proves
//! it receives at the address it claims.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::hmac;

/// Token format version, so that a future format is never mistaken for this one.
const MAGIC: &[u8; 4] = b"qpr1";
/// How long a token is accepted after it was issued.
const LIFETIME: Duration = Duration::from_secs(10);

/// Issues and checks Retry tokens.
pub(crate) struct RetryTokens {
    key: hmac::Key,
}

impl std::fmt::Debug for RetryTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryTokens")
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn signed_part(issued: u64, odcid: &[u8], peer: SocketAddr) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(MAGIC);
    msg.extend_from_slice(&issued.to_be_bytes());
    msg.push(odcid.len() as u8);
    msg.extend_from_slice(odcid);
    match peer.ip() {
        IpAddr::V4(v4) => msg.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => msg.extend_from_slice(&v6.octets()),
    }
    msg.extend_from_slice(&peer.port().to_be_bytes());
    msg
}

impl RetryTokens {
    /// With a key from `cluster-secret` (tokens then validate on every instance), or a random one.
    pub(crate) fn new(cluster_secret: Option<&[u8]>) -> Result<Self, ring::error::Unspecified> {
        let key = super::secret::key(cluster_secret, b"qproxy retry token")?;
        Ok(RetryTokens { key })
    }

    /// A token for `peer`, whose first Initial went to `odcid`.
    pub(crate) fn mint(&self, peer: SocketAddr, odcid: &[u8], now: SystemTime) -> Vec<u8> {
        let issued = secs(now);
        let mut token = signed_part(issued, odcid, peer);
        // The address is not carried: the client's must match when the token comes back.
        let address_len = match peer.ip() {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 16,
        } + 2;
        token.truncate(token.len() - address_len);
        token.extend_from_slice(hmac::sign(&self.key, &signed_part(issued, odcid, peer)).as_ref());
        token
    }

    /// The original destination CID when `token` was issued by us to `peer` and has not expired.
    pub(crate) fn validate(&self, peer: SocketAddr, token: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let rest = token.strip_prefix(MAGIC)?;
        let issued = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
        let len = usize::from(*rest.get(8)?);
        let odcid = rest.get(9..9 + len)?;
        let tag = rest.get(9 + len..)?;
        hmac::verify(&self.key, &signed_part(issued, odcid, peer), tag).ok()?;
        let age = secs(now).checked_sub(issued)?;
        (age <= LIFETIME.as_secs()).then(|| odcid.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_validates_only_for_its_address_key_and_lifetime() {
        let tokens = RetryTokens::new(None).unwrap();
        let peer: SocketAddr = "192.0.2.1:4433".parse().unwrap();
        let now = SystemTime::now();
        let token = tokens.mint(peer, b"original-dcid", now);
        assert_eq!(
            tokens.validate(peer, &token, now).as_deref(),
            Some(&b"original-dcid"[..])
        );
        assert_eq!(
            tokens.validate("192.0.2.1:4434".parse().unwrap(), &token, now),
            None
        );
        assert_eq!(
            tokens.validate("[2001:db8::1]:4433".parse().unwrap(), &token, now),
            None
        );
        assert_eq!(tokens.validate(peer, &token, now + Duration::from_secs(11)), None);
        assert_eq!(tokens.validate(peer, &token, now - Duration::from_secs(5)), None);
        let mut forged = token.clone();
        forged[6] ^= 1;
        assert_eq!(tokens.validate(peer, &forged, now), None);
        assert_eq!(tokens.validate(peer, &token[..20], now), None);
        assert_eq!(RetryTokens::new(None).unwrap().validate(peer, &token, now), None);
        assert_eq!(tokens.validate(peer, b"", now), None);
    }
}
