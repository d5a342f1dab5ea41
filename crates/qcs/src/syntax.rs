//! Character rules for what a request may carry to an HTTP/1.1 backend: tokens (RFC 9110, 5.6.2), field
//! values (RFC 9110, 5.5), the authority (RFC 3986, 3.2) and the path with its query (RFC 3986, 3.3–3.4).
//!
//! Whatever passes these checks can be written into a request line or a field line without changing its
//! framing: no whitespace, no control character, no byte above 0x7e where a line is split on spaces.

/// `tchar` (RFC 9110, 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `unreserved` (RFC 3986, 2.3).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// `sub-delims` (RFC 3986, 2.2).
fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// Bytes that RFC 3986 excludes from a path and query but that browsers send unescaped (the WHATWG URL
/// standard leaves them out of its percent-encode sets), as HAProxy and nginx accept them. None of them
/// is whitespace, a control character or a delimiter of an HTTP/1.1 request line or field.
fn is_browser_leftover(b: u8) -> bool {
    b"[]{}|\\^`".contains(&b)
}

/// `1*tchar`: a method or a field name.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| is_tchar(*b))
}

/// A field value: visible characters, spaces, tabs and obs-text; no other control character (CR, LF and
/// NUL included) and no DEL (RFC 9110, 5.5).
pub(crate) fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|b| *b == b'\t' || (*b >= b' ' && *b != 0x7f))
}

/// Every `%` starts `pct-encoded`: two hexadecimal digits follow.
fn percent_encoding_is_valid(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = |j: usize| s.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// `:path` of an `http` or `https` request (RFC 9114, 4.3.1): `/` then `path-abempty [ "?" query ]`, or
/// `*` for OPTIONS. No space, control character, `#` (a fragment is never sent) or non-ASCII byte.
pub(crate) fn is_origin_path(s: &[u8]) -> bool {
    s.first() == Some(&b'/')
        && s.iter()
            .all(|b| is_unreserved(*b) || is_sub_delim(*b) || b":@/?%".contains(b) || is_browser_leftover(*b))
        && percent_encoding_is_valid(s)
}

/// `host [ ":" port ]` (RFC 3986, 3.2.2–3.2.3) with a non-empty host (RFC 9110, 4.2.1) and no userinfo
/// (RFC 9114, 4.3.1): a reg-name or IPv4 address, or an IP literal in brackets.
pub(crate) fn is_authority(s: &[u8]) -> bool {
    let (host, port) = match s.first() {
        Some(b'[') => {
            let Some(end) = s.iter().position(|b| *b == b']') else {
                return false;
            };
            let literal = &s[1..end];
            let ok = !literal.is_empty()
                && literal
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(b) || b == &b'v' || b == &b'V');
            if !ok {
                return false;
            }
            (&s[..=end], &s[end + 1..])
        }
        _ => match s.iter().position(|b| *b == b':') {
            Some(colon) => (&s[..colon], &s[colon..]),
            None => (s, &[][..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let host_ok = host.starts_with(b"[")
        || (!host.is_empty()
            && host
                .iter()
                .all(|b| is_unreserved(*b) || is_sub_delim(*b) || *b == b'%')
            && percent_encoding_is_valid(host));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        for ok in ["GET", "M-SEARCH", "x-custom_1"] {
            assert!(is_token(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "GET ",
            "G\tET",
            "a:b",
            "a\r\nb",
            "caf\u{e9}",
            "(x)",
            "a/b",
            "a\"b",
        ] {
            assert!(!is_token(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn field_values() {
        assert!(is_field_value(b"text/html; q=0.9\tx"));
        assert!(is_field_value(&[b'a', 0x80, 0xff]));
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"a\x01b", b"a\x7fb"] {
            assert!(!is_field_value(bad), "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        for ok in [
            "/",
            "/x?a=1&b=%2F",
            "/a/b;c=d/@:!$'()*+,",
            "/q?json={}",
            "/a|b^c[1]`\\",
        ] {
            assert!(is_origin_path(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "x",
            "*",
            "/x?a HTTP/1.1\r\nhost: localhost\r\n\r\nGET /x?smuggled",
            "/a b",
            "/a\tb",
            "/a#frag",
            "/a\"b",
            "/<script>",
            "/caf\u{e9}",
            "/%zz",
            "/%4",
            "/a\x7f",
        ] {
            assert!(!is_origin_path(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn authorities() {
        for ok in [
            "localhost",
            "localhost:4433",
            "a.example",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "xn--caf-dma.test",
            "a%41b",
        ] {
            assert!(is_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":443",
            "local host",
            "user@localhost",
            "localhost\r\nx-injected: 1",
            "localhost:44a",
            "localhost:123456",
            "a:1:2",
            "[::1",
            "[]",
            "[::1]x",
            "[zz]",
            "a\"b",
            "a/b",
            "caf\u{e9}",
            "a%zz",
        ] {
            assert!(!is_authority(bad.as_bytes()), "{bad:?}");
        }
    }
}
