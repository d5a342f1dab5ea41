//! HMAC keys for the stateless parts of the protocol (Retry tokens, stateless reset tokens): derived from
//! `cluster-secret` when it is set, so that every instance of a fleet (and an instance after a restart)
//! agrees on them; random for this process otherwise. Each use has a key of its own.

use ring::hmac;

/// The key for `label` (what it is for), from the cluster secret or at random.
pub(crate) fn key(
    cluster_secret: Option<&[u8]>,
    label: &[u8],
) -> Result<hmac::Key, ring::error::Unspecified> {
    match cluster_secret {
        Some(secret) => {
            let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), label);
            Ok(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
        }
        None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()),
    }
}
