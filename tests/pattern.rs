//! The bodies test origins send, so that clients check every byte. One function per origin, because
//! each origin has its own (the demo origin's is part of the product).

/// Which origin's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The demo origin's `/bytes/N` (`tools::demo`): byte `i` is `(i mod 65536) mod 251`, because it
    /// writes from one 64 KiB block.
    Demo,
    /// The chaos origin's `/ok/N` (e2e chaos suite, quinn chaos client): byte `i` is `i mod 251`.
    Chaos,
    /// The in-memory harness's `/bytes/N`: a multiplicative hash of the offset, so that a shifted or
    /// repeated block never matches by chance.
    Hashed,
}

/// Byte `i` of `body`.
pub fn byte(body: Body, i: u64) -> u8 {
    match body {
        Body::Demo => ((i % 65536) % 251) as u8,
        Body::Chaos => (i % 251) as u8,
        Body::Hashed => (i.wrapping_mul(2_654_435_761) >> 13) as u8,
    }
}

/// The first `n` bytes of `body`.
pub fn bytes(body: Body, n: usize) -> Vec<u8> {
    (0..n as u64).map(|i| byte(body, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_differ_where_the_origins_differ() {
        assert_eq!(bytes(Body::Demo, 300), bytes(Body::Chaos, 300));
        assert_ne!(byte(Body::Demo, 65536 + 1), byte(Body::Chaos, 65536 + 1));
        assert_ne!(bytes(Body::Hashed, 300), bytes(Body::Chaos, 300));
    }
}
