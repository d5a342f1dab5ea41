//! Request and response heads, validated against RFC 9114, 4.1.2 and 4.3.

use quiche::h3::{Header, NameValue};

use crate::StreamError;

/// Header fields that are specific to a connection and must not appear in HTTP/3 (RFC 9114, 4.2).
const CONNECTION_SPECIFIC: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// A request's pseudo-header fields and regular fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`.
    pub method: String,
    /// `:scheme` (empty for CONNECT).
    pub scheme: String,
    /// `:authority`, or the `host` field when `:authority` is absent.
    pub authority: String,
    /// `:path` (empty for CONNECT).
    pub path: String,
    /// The regular fields, in order, names lower-case.
    pub headers: Vec<Header>,
    /// The `content-length` field, when present.
    pub content_length: Option<u64>,
}

fn text(value: &[u8], what: &'static str) -> Result<String, StreamError> {
    String::from_utf8(value.to_vec()).map_err(|_| StreamError::Malformed(what))
}

fn check_field(name: &[u8], value: &[u8]) -> Result<(), StreamError> {
    if name.is_empty()
        || name
            .iter()
            .any(|b| b.is_ascii_uppercase() || *b <= b' ' || *b == 0x7f)
    {
        return Err(StreamError::Malformed("invalid field name"));
    }
    if value.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
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

impl RequestHead {
    /// Validates a request's header section.
    pub fn parse(list: &[Header]) -> Result<Self, StreamError> {
        let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
        let mut headers = Vec::with_capacity(list.len());
        let mut host = None;
        let mut content_length = None;
        for field in list {
            let (name, value) = (field.name(), field.value());
            if let Some(pseudo) = name.strip_prefix(b":") {
                if !headers.is_empty() {
                    return Err(StreamError::Malformed("pseudo-header after a regular field"));
                }
                let slot = match pseudo {
                    b"method" => &mut method,
                    b"scheme" => &mut scheme,
                    b"authority" => &mut authority,
                    b"path" => &mut path,
                    _ => return Err(StreamError::Malformed("unknown pseudo-header")),
                };
                if slot.replace(text(value, "pseudo-header is not text")?).is_some() {
                    return Err(StreamError::Malformed("duplicate pseudo-header"));
                }
                continue;
            }
            check_field(name, value)?;
            if name == b"host" {
                host = Some(text(value, "host is not text")?);
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
        let method = method
            .filter(|m| !m.is_empty())
            .ok_or(StreamError::Malformed("missing :method"))?;
        if method == "CONNECT" {
            if scheme.is_some() || path.is_some() {
                return Err(StreamError::Malformed(":scheme or :path in CONNECT"));
            }
            let authority = authority.ok_or(StreamError::Malformed("CONNECT without :authority"))?;
            return Ok(RequestHead {
                method,
                scheme: String::new(),
                authority,
                path: String::new(),
                headers,
                content_length,
            });
        }
        let scheme = scheme
            .filter(|s| !s.is_empty())
            .ok_or(StreamError::Malformed("missing :scheme"))?;
        let path = path
            .filter(|p| !p.is_empty())
            .ok_or(StreamError::Malformed("missing :path"))?;
        let authority = match (authority, host) {
            (Some(a), Some(h)) if a != h => return Err(StreamError::Malformed(":authority and host differ")),
            (Some(a), _) => a,
            (None, Some(h)) => h,
            (None, None) if scheme == "http" || scheme == "https" => {
                return Err(StreamError::Malformed("missing :authority and host"))
            }
            (None, None) => String::new(),
        };
        Ok(RequestHead {
            method,
            scheme,
            authority,
            path,
            headers,
            content_length,
        })
    }

    /// The value of the first regular field called `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name() == name.as_bytes())
            .map(|h| h.value())
    }
}

/// Validates a trailer section: regular fields only.
pub(crate) fn parse_trailers(list: &[Header]) -> Result<Vec<Header>, StreamError> {
    for field in list {
        if field.name().starts_with(b":") {
            return Err(StreamError::Malformed("pseudo-header in trailers"));
        }
        check_field(field.name(), field.value())?;
    }
    Ok(list.to_vec())
}

/// A response's status and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code, 100 to 599.
    pub status: u16,
    /// Regular fields. Names are lower-cased and connection-specific fields dropped on the way out.
    pub headers: Vec<Header>,
}

impl ResponseHead {
    /// A response with `status` and no field.
    pub fn new(status: u16) -> Self {
        ResponseHead {
            status,
            headers: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn with_header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push(Header::new(name.as_bytes(), value.as_ref()));
        self
    }

    /// The header section as sent: `:status` first, names lower-case, no connection-specific field.
    pub(crate) fn to_fields(&self) -> Vec<Header> {
        let mut out = Vec::with_capacity(self.headers.len() + 1);
        out.push(Header::new(b":status", self.status.to_string().as_bytes()));
        out.extend(sanitize(&self.headers));
        out
    }
}

/// Fields as they may go out on HTTP/3: lower-case names, no connection-specific or pseudo field.
pub(crate) fn sanitize(fields: &[Header]) -> Vec<Header> {
    fields
        .iter()
        .filter_map(|h| {
            let name = h.name().to_ascii_lowercase();
            let drop =
                name.starts_with(b":") || CONNECTION_SPECIFIC.contains(&name.as_slice()) || name == b"te";
            (!drop).then(|| Header::new(&name, h.value()))
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
            (head.method.as_str(), head.authority.as_str(), head.path.as_str()),
            ("GET", "a.test", "/x")
        );
        assert_eq!(head.content_length, Some(12));
        assert_eq!(head.header("content-length"), Some(&b"12"[..]));
    }

    #[test]
    fn rejects_what_rfc_9114_calls_malformed() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            vec![(":scheme", "https"), (":authority", "a"), (":path", "/")],
            vec![(":method", "GET"), (":authority", "a"), (":path", "/")],
            vec![(":method", "GET"), (":scheme", "https"), (":authority", "a")],
            [&BASE[..], &[(":method", "PUT")]].concat(),
            [&BASE[..], &[("x", "1"), (":foo", "1")]].concat(),
            [&BASE[..], &[("Upper", "1")]].concat(),
            [&BASE[..], &[("transfer-encoding", "chunked")]].concat(),
            [&BASE[..], &[("te", "gzip")]].concat(),
            [&BASE[..], &[("content-length", "1x")]].concat(),
            [&BASE[..], &[("content-length", "1"), ("content-length", "2")]].concat(),
            [&BASE[..], &[("x", "a\r\nb")]].concat(),
            [&BASE[..], &[("host", "other")]].concat(),
        ];
        for case in cases {
            assert!(req(&case).is_err(), "accepted {case:?}");
        }
    }

    #[test]
    fn connect_needs_authority_only() {
        assert!(req(&[(":method", "CONNECT"), (":authority", "a:443")]).is_ok());
        assert!(req(&[(":method", "CONNECT"), (":authority", "a:443"), (":path", "/")]).is_err());
    }

    #[test]
    fn response_fields_are_sanitized() {
        let head = ResponseHead::new(200)
            .with_header("Content-Type", "text/plain")
            .with_header("connection", "close");
        let fields = head.to_fields();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].name(), b":status");
        assert_eq!(fields[1].name(), b"content-type");
    }
}
