//! Request and response heads, validated against RFC 9114, 4.1.2 and 4.3.

use quiche::h3::{Header, NameValue};

use crate::{syntax, StreamError};

/// Header fields that are specific to a connection and must not appear in HTTP/3 (RFC 9114, 4.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// A request's head, validated: the only way to build one is [`RequestHead::parse`], so whatever holds
/// one holds a method, authority, path and fields that may be written into an HTTP/1.1 request as they
/// are (no whitespace or control character where a line is split, no CR or LF anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    method: String,
    https: bool,
    authority: String,
    path: String,
    headers: Vec<Header>,
    content_length: Option<u64>,
}

fn check_field(name: &[u8], value: &[u8]) -> Result<(), StreamError> {
    // Field names are tokens, lower-case in HTTP/3 (RFC 9114, 4.2).
    if !syntax::is_token(name) || name.iter().any(u8::is_ascii_uppercase) {
        return Err(StreamError::Malformed("invalid field name"));
    }
    if !syntax::is_field_value(value) {
        return Err(StreamError::Malformed("invalid field value"));
    }
    if CONNECTION_SPECIFIC.contains(&name) {
        return Err(StreamError::Malformed("connection-specific field"));
    }
    if name == b"te" && value != b"trailers" {
        return Err(StreamError::Malformed("te other than trailers"));
    }
    Ok(())
}

/// Text of a value the syntax checks accepted (ASCII by then).
fn ascii(value: Vec<u8>) -> Result<String, StreamError> {
    String::from_utf8(value).map_err(|_| StreamError::Malformed("pseudo-header is not text"))
}

#[derive(Default)]
struct Pseudo {
    method: Option<Vec<u8>>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    protocol: Option<Vec<u8>>,
}

impl Pseudo {
    fn set(&mut self, name: &[u8], value: &[u8]) -> Result<(), StreamError> {
        let slot = match name {
            b"method" => &mut self.method,
            b"scheme" => &mut self.scheme,
            b"authority" => &mut self.authority,
            b"path" => &mut self.path,
            // Extended CONNECT (RFC 9220): recognised so that it is refused, not called malformed.
            b"protocol" => &mut self.protocol,
            _ => return Err(StreamError::Malformed("unknown pseudo-header")),
        };
        if slot.replace(value.to_vec()).is_some() {
            return Err(StreamError::Malformed("duplicate pseudo-header"));
        }
        Ok(())
    }
}

impl RequestHead {
    /// Validates a request's header section (RFC 9114, 4.1.2, 4.2 and 4.3.1; RFC 9110; RFC 3986).
    ///
    /// A malformed request is [`StreamError::Malformed`]; CONNECT and extended CONNECT, which qproxy does
    /// not tunnel, are [`StreamError::Rejected`].
    pub fn parse(list: &[Header]) -> Result<Self, StreamError> {
        let mut pseudo = Pseudo::default();
        let mut headers = Vec::with_capacity(list.len());
        let mut host: Option<&[u8]> = None;
        let mut content_length = None;
        for field in list {
            let (name, value) = (field.name(), field.value());
            if let Some(name) = name.strip_prefix(b":") {
                if !headers.is_empty() {
                    return Err(StreamError::Malformed("pseudo-header after a regular field"));
                }
                pseudo.set(name, value)?;
                continue;
            }
            check_field(name, value)?;
            if name == b"host" && host.replace(value).is_some() {
                return Err(StreamError::Malformed("more than one host field"));
            }
            if name == b"content-length" {
                let len = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(StreamError::Malformed("invalid content-length"))?;
                if content_length.replace(len).is_some_and(|prev| prev != len) {
                    return Err(StreamError::Malformed("conflicting content-length"));
                }
            }
            headers.push(field.clone());
        }
        let method = pseudo.method.ok_or(StreamError::Malformed("missing :method"))?;
        if !syntax::is_token(&method) {
            return Err(StreamError::Malformed("invalid :method"));
        }
        if method == b"CONNECT" {
            return Err(StreamError::Rejected("CONNECT: qproxy does not tunnel"));
        }
        if pseudo.protocol.is_some() {
            return Err(StreamError::Malformed(":protocol without CONNECT"));
        }
        let scheme = pseudo.scheme.ok_or(StreamError::Malformed("missing :scheme"))?;
        let https = if scheme.eq_ignore_ascii_case(b"https") {
            true
        } else if scheme.eq_ignore_ascii_case(b"http") {
            false
        } else {
            return Err(StreamError::Malformed(":scheme other than https or http"));
        };
        let path = pseudo.path.ok_or(StreamError::Malformed("missing :path"))?;
        let asterisk = path == b"*" && method == b"OPTIONS";
        if !asterisk && !syntax::is_origin_path(&path) {
            return Err(StreamError::Malformed("invalid :path"));
        }
        // http and https have a mandatory, non-empty authority; :authority and host agree when both
        // are present (RFC 9114, 4.3.1).
        let authority = match (pseudo.authority, host) {
            (Some(a), Some(h)) if a != h => return Err(StreamError::Malformed(":authority and host differ")),
            (Some(a), _) => a,
            (None, Some(h)) => h.to_vec(),
            (None, None) => return Err(StreamError::Malformed("missing :authority and host")),
        };
        if !syntax::is_authority(&authority) {
            return Err(StreamError::Malformed("invalid :authority or host"));
        }
        Ok(RequestHead {
            method: ascii(method)?,
            https,
            authority: ascii(authority)?,
            path: ascii(path)?,
            headers,
            content_length,
        })
    }

    /// `:method`, a token.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// `:scheme`: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// `:authority` (or the `host` field when `:authority` is absent): `host[:port]`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `:path`: `/` and RFC 3986 path and query characters, or `*` for OPTIONS.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The regular fields, in order: names lower-case tokens, values without CR, LF, NUL or other
    /// control characters, no connection-specific field.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The `content-length` field, when present.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The value of the first regular field called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name() == name.as_bytes())
            .map(|h| h.value())
    }
}

/// Fields that frame or route a request: a trailer section may not carry them (RFC 9110, 6.5.1), and a
/// backend that merges trailers into the head must never see them there.
const NOT_IN_TRAILERS: [&[u8]; 2] = [b"content-length", b"host"];

/// Validates a trailer section: regular fields only.
pub(crate) fn parse_trailers(list: &[Header]) -> Result<Vec<Header>, StreamError> {
    for field in list {
        if field.name().starts_with(b":") {
            return Err(StreamError::Malformed("pseudo-header in trailers"));
        }
        check_field(field.name(), field.value())?;
        if NOT_IN_TRAILERS.contains(&field.name()) {
            return Err(StreamError::Malformed("framing or routing field in trailers"));
        }
    }
    Ok(list.to_vec())
}

/// May a field named `name` (lower-case) go out on HTTP/3: not a pseudo-header, not connection-specific.
pub(crate) fn may_go_out(name: &[u8]) -> bool {
    !(name.starts_with(b":") || CONNECTION_SPECIFIC.contains(&name) || name == b"te")
}

/// Trailer fields as they may go out on HTTP/3: lower-case names, no connection-specific or pseudo field.
pub(crate) fn sanitize(fields: &[Header]) -> Vec<Header> {
    fields
        .iter()
        .filter_map(|h| {
            let name = h.name().to_ascii_lowercase();
            may_go_out(&name).then(|| Header::new(&name, h.value()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(fields: &[(&str, &str)]) -> Result<RequestHead, StreamError> {
        let list: Vec<Header> = fields
            .iter()
            .map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes()))
            .collect();
        RequestHead::parse(&list)
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "a.test"),
        (":path", "/x"),
    ];

    #[test]
    fn accepts_a_plain_request() {
        let mut f = BASE.to_vec();
        f.push(("content-length", "12"));
        let head = req(&f).unwrap();
        assert_eq!(
            (head.method(), head.scheme(), head.authority(), head.path()),
            ("GET", "https", "a.test", "/x")
        );
        assert_eq!(head.content_length(), Some(12));
        assert_eq!(head.header("content-length"), Some(&b"12"[..]));
        let options = req(&[
            (":method", "OPTIONS"),
            (":scheme", "https"),
            (":authority", "a"),
            (":path", "*"),
        ]);
        assert_eq!(options.unwrap().path(), "*");
        let host_only = req(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("host", "b:8080"),
        ]);
        assert_eq!(host_only.unwrap().authority(), "b:8080");
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        BASE.iter()
            .map(|(n, v)| if *n == name { (*n, value) } else { (*n, *v) })
            .collect()
    }

    fn malformed(case: &[(&str, &str)]) -> bool {
        matches!(req(case), Err(StreamError::Malformed(_)))
    }

    #[test]
    fn rejects_what_rfc_9114_calls_malformed() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![(":scheme", "https"), (":authority", "a"), (":path", "/")],
            vec![(":method", "GET"), (":authority", "a"), (":path", "/")],
            vec![(":method", "GET"), (":scheme", "https"), (":authority", "a")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/")],
            [&BASE[..], &[(":method", "PUT")]].concat(),
            [&BASE[..], &[("x", "1"), (":foo", "1")]].concat(),
            [&BASE[..], &[("Upper", "1")]].concat(),
            [&BASE[..], &[("transfer-encoding", "chunked")]].concat(),
            [&BASE[..], &[("te", "gzip")]].concat(),
            [&BASE[..], &[("content-length", "1x")]].concat(),
            [&BASE[..], &[("content-length", "+5")]].concat(),
            [&BASE[..], &[("content-length", "1"), ("content-length", "2")]].concat(),
            [&BASE[..], &[("x", "a\r\nb")]].concat(),
            [&BASE[..], &[("x", "a\x01b")]].concat(),
            [&BASE[..], &[("host", "other")]].concat(),
            [&BASE[..], &[("host", "a.test"), ("host", "a.test")]].concat(),
            [&BASE[..], &[("x:y", "1")]].concat(),
            [&BASE[..], &[("x y", "1")]].concat(),
            [&BASE[..], &[(":protocol", "websocket")]].concat(),
        ];
        for case in cases {
            assert!(malformed(&case), "accepted {case:?}");
        }
    }

    #[test]
    fn pseudo_header_values_cannot_break_an_http1_request() {
        let attacks = [
            (":path", "/x?a HTTP/1.1\r\nhost: localhost\r\n\r\nGET /x?smuggled"),
            (":path", "/a b"),
            (":path", "/a#b"),
            (":path", "x"),
            (":path", ""),
            (":path", "*"),
            (":path", "/%zz"),
            (":authority", "localhost\r\nx-injected: 1"),
            (":authority", "local host"),
            (":authority", "user@localhost"),
            (":authority", ""),
            (":authority", "a/b"),
            (":method", "GET /x HTTP/1.1\r\n"),
            (":method", "G ET"),
            (":method", ""),
            (":scheme", "ftp"),
            (":scheme", "https\r\n"),
        ];
        for (name, value) in attacks {
            assert!(malformed(&with(name, value)), "accepted {name}: {value:?}");
        }
    }

    #[test]
    fn connect_and_extended_connect_are_rejected_not_malformed() {
        for case in [
            vec![(":method", "CONNECT"), (":authority", "example.com:443")],
            vec![
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", "a"),
                (":path", "/chat"),
            ],
        ] {
            let err = req(&case).unwrap_err();
            assert!(matches!(err, StreamError::Rejected(_)), "{case:?}: {err}");
            assert_eq!(err.stream_code(), Some(crate::codes::H3_REQUEST_REJECTED));
        }
    }

    #[test]
    fn trailers_carry_no_framing_or_routing_field() {
        let fields = |n: &str, v: &str| vec![Header::new(n.as_bytes(), v.as_bytes())];
        assert!(parse_trailers(&fields("x-checksum", "abc")).is_ok());
        for (n, v) in [
            ("content-length", "1"),
            ("host", "b"),
            (":path", "/"),
            ("x", "a\nb"),
            ("X", "1"),
        ] {
            assert!(parse_trailers(&fields(n, v)).is_err(), "{n}");
        }
    }

    #[test]
    fn trailers_go_out_lower_case_without_connection_fields() {
        let out = sanitize(&[
            Header::new(b"X-Sum", b"1"),
            Header::new(b"Connection", b"close"),
            Header::new(b":status", b"200"),
        ]);
        let names: Vec<&[u8]> = out.iter().map(|h| h.name()).collect();
        assert_eq!(names, [&b"x-sum"[..]]);
    }

    #[test]
    fn keeps_the_regular_fields_in_order_and_a_host_that_agrees() {
        let mut f = BASE.to_vec();
        f.extend([("host", "a.test"), ("x-b", "2"), ("x-a", "1")]);
        let head = req(&f).unwrap();
        let fields: Vec<(&[u8], &[u8])> = head.headers().iter().map(|h| (h.name(), h.value())).collect();
        assert_eq!(
            fields,
            [(&b"host"[..], &b"a.test"[..]), (b"x-b", b"2"), (b"x-a", b"1")]
        );
    }
}
