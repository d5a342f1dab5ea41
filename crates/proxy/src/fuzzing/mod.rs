//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the fixed-seed slice of them that
//! `cargo test` runs on stable (`tests/fuzz_slice.rs`): every parser that reads bytes from outside, each
//! with the invariants its result must keep (a panic or a failed assertion is a finding), and the
//! connection layer fed by a client the input steers ([`connection`]). Not an API.

mod connection;

pub use connection::connection;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::frontend::retry_token::RetryTokens;
use crate::upstream::h1::{parse_response, ChunkedDecoder};

/// Fields that never cross to HTTP/3 (RFC 9114, 4.2): they are the hop's, not the message's. Listed here
/// from the RFC, not taken from qcs, so that a field dropped from qcs's own list is caught.
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

fn assert_not_connection_specific(name: &[u8]) {
    assert!(
        !CONNECTION_SPECIFIC.contains(&name),
        "{:?} crossed to HTTP/3",
        String::from_utf8_lossy(name)
    );
}

/// A configuration file: a configuration, or an error that names a line of the text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(Path::new("/fuzz/qproxy.cfg"), text) {
        assert!(
            e.line <= text.lines().count(),
            "line {} of {}: {}",
            e.line,
            text.lines().count(),
            e.message
        );
        assert!(!e.message.is_empty());
    }
}

/// A backend's response head: an accepted head is no longer than the input, and no hop-by-hop field
/// reaches the HTTP/3 client (RFC 9114, 4.2).
pub fn response_head(data: &[u8]) {
    for method in ["GET", "HEAD"] {
        if let Ok(Some((head, len))) = parse_response(data, method) {
            assert!(len <= data.len());
            for (name, _) in head.head.fields() {
                assert_not_connection_specific(name);
                assert!(
                    !name.iter().any(u8::is_ascii_uppercase),
                    "names are lower-case in HTTP/3"
                );
            }
        }
    }
}

/// A chunked body: decoded whole or split in two anywhere, the same bytes come out, and every range
/// lies within what was consumed.
pub fn chunked(data: &[u8]) {
    let decode = |parts: &[&[u8]]| -> Option<(Vec<u8>, bool)> {
        let mut decoder = ChunkedDecoder::default();
        let (mut body, mut done) = (Vec::new(), false);
        for part in parts {
            let mut input = *part;
            while !input.is_empty() && !done {
                let out = decoder.decode(input).ok()?;
                assert!(out.consumed <= input.len());
                for r in &out.data {
                    assert!(r.end <= out.consumed, "a range past the consumed bytes");
                    body.extend_from_slice(&input[r.clone()]);
                }
                done = out.done;
                if out.consumed == 0 {
                    break;
                }
                input = &input[out.consumed..];
            }
        }
        Some((body, done))
    };
    let whole = decode(&[data]);
    let at = data.first().map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let (a, b) = data.split_at(at);
    if let (Some(whole), Some(split)) = (&whole, decode(&[a, b])) {
        assert_eq!(whole, &split, "split at {at}");
    }
}

/// Retry tokens: bytes we did not mint never validate, and a token we mint validates back to its
/// original destination ID, only for its address, and only while fresh.
pub fn retry_token(data: &[u8]) {
    let tokens = RetryTokens::new(Some(b"a fuzzing cluster secret")).expect("a key");
    let peer: SocketAddr = "192.0.2.1:4433".parse().expect("an address");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    assert!(
        tokens.validate(peer, data, now).is_none(),
        "forged token accepted"
    );
    let odcid = &data[..data.len().min(20)];
    let token = tokens.mint(peer, odcid, now);
    assert_eq!(tokens.validate(peer, &token, now).as_deref(), Some(odcid));
    let other: SocketAddr = "192.0.2.2:4433".parse().expect("an address");
    assert!(
        tokens.validate(other, &token, now).is_none(),
        "a token for another address"
    );
    assert!(
        tokens
            .validate(peer, &token, now + Duration::from_secs(3600))
            .is_none(),
        "a stale token"
    );
}

/// An HTTP/3 request head (the fields as quiche decodes them: `data` is read as length-prefixed names
/// and values): an accepted head has a method and a path, no connection-specific field, lower-case
/// names, and no CR, LF or NUL anywhere.
pub fn request_head(data: &[u8]) {
    let mut fields = Vec::new();
    let mut rest = data;
    while let [n, tail @ ..] = rest {
        let (name, tail) = tail.split_at(usize::from(*n).min(tail.len()));
        let Some((v, tail)) = tail.split_first() else {
            break;
        };
        let (value, tail) = tail.split_at(usize::from(*v).min(tail.len()));
        fields.push(quiche::h3::Header::new(name, value));
        rest = tail;
    }
    let Ok(head) = qcc::RequestHead::parse(&fields) else {
        return;
    };
    assert!(!head.method().is_empty() && !head.path().is_empty());
    let bad = |s: &[u8]| s.iter().any(|b| matches!(b, b'\r' | b'\n' | 0));
    assert!(
        !bad(head.method().as_bytes()) && !bad(head.authority().as_bytes()) && !bad(head.path().as_bytes())
    );
    for field in head.headers() {
        use quiche::h3::NameValue;
        let (name, value) = (field.name(), field.value());
        assert!(
            !bad(name) && !bad(value),
            "CR, LF or NUL passed in {:?}",
            String::from_utf8_lossy(name)
        );
        assert!(!name.iter().any(u8::is_ascii_uppercase));
        assert_not_connection_specific(name);
    }
}
