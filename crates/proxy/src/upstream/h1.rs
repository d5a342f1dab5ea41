//! HTTP/1.1 on the backend side: request heads out, response heads in (httparse), chunked bodies both
//! ways. Pure functions and small state machines, no I/O.

use std::net::IpAddr;

use qcc::{RequestHead, ResponseHead as H3Response};
use quiche::h3::{Header, NameValue};

/// Header fields that belong to one HTTP/1.1 hop and never cross the proxy (RFC 9110, 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
];

/// How a request body is framed towards the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UploadFraming {
    /// No body.
    None,
    /// `content-length` from the client.
    Length(u64),
    /// `transfer-encoding: chunked` (the client sent a body of unknown length).
    Chunked,
}

/// Where the request came from, for `option forwardfor`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr {
    /// The client's address.
    pub(crate) client: IpAddr,
}

/// The request head sent to the backend, and how its body is framed. Every byte of it comes from a
/// [`RequestHead`], which only the HTTP/3 parser builds after checking each value against the syntax of
/// the place it lands in here (token, path, authority, field value), or from the proxy itself.
pub(crate) fn encode_request(
    head: &RequestHead,
    end: bool,
    forwarded: Option<ClientAddr>,
) -> (Vec<u8>, UploadFraming) {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.path().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(head.authority().as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut xff: Option<Vec<u8>> = None;
    for h in head.headers() {
        let name = h.name();
        if HOP_BY_HOP.iter().any(|hop| hop.as_bytes() == name) {
            continue;
        }
        match name {
            // HTTP/2 and HTTP/3 may split cookies; HTTP/1.1 wants one field (RFC 9114, 4.2.1).
            b"cookie" => cookies.push(h.value()),
            b"x-forwarded-for" if forwarded.is_some() => xff = Some(h.value().to_vec()),
            _ => push_field(&mut out, name, h.value()),
        }
    }
    if !cookies.is_empty() {
        push_field(&mut out, b"cookie", &cookies.join(&b"; "[..]));
    }
    if let Some(fwd) = forwarded {
        let ip = fwd.client.to_string();
        let value = match xff {
            Some(mut prev) => {
                prev.extend_from_slice(b", ");
                prev.extend_from_slice(ip.as_bytes());
                prev
            }
            None => ip.clone().into_bytes(),
        };
        push_field(&mut out, b"x-forwarded-for", &value);
        let node = if fwd.client.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip
        };
        push_field(
            &mut out,
            b"forwarded",
            format!("for={node};proto=https;host=\"{}\"", head.authority()).as_bytes(),
        );
    }
    let framing = match head.content_length() {
        Some(0) => UploadFraming::None,
        Some(n) => UploadFraming::Length(n),
        None if end => UploadFraming::None,
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            UploadFraming::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    (out, framing)
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A chunk of request body in chunked encoding (`last` adds the terminating chunk).
pub(crate) fn encode_chunk(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    if last {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body (HEAD, 204, 304).
    Empty,
    /// `content-length`.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    /// Status and fields for the HTTP/3 client: names lower-case, hop-by-hop fields removed.
    pub(crate) head: H3Response,
    /// Body framing.
    pub(crate) framing: BodyFraming,
    /// The server allows the connection to be reused.
    pub(crate) keep_alive: bool,
}

/// Why a response cannot be proxied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    /// Not HTTP/1.x, or a broken head.
    #[error("malformed response head: {0}")]
    Malformed(String),
    /// Larger than we accept.
    #[error("response head larger than {0} bytes")]
    TooLarge(usize),
}

/// Largest response head accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// Parses a response head from the start of `buf`. `Ok(None)`: incomplete. On success returns the head and
/// its length in bytes. Interim 1xx responses (other than 101) are skipped by returning them with
/// `status < 200`; the caller drops them and parses again.
pub(crate) fn parse_response(
    buf: &[u8],
    request_method: &str,
) -> Result<Option<(ResponseHead, usize)>, ResponseError> {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ResponseError::TooLarge(MAX_HEAD))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ResponseError::Malformed(e.to_string())),
    };
    let status = resp
        .code
        .ok_or_else(|| ResponseError::Malformed("no status".into()))?;
    // httparse takes any three digits; HTTP/1.1 status codes are 100 to 999 (RFC 9110, 15), and an HTTP/3
    // `:status` must be one (found by the response_head fuzz target: a server's `099` panicked a worker).
    if status < 100 {
        return Err(ResponseError::Malformed(format!("status {status:03}")));
    }
    if status == 101 {
        return Err(ResponseError::Malformed(
            "protocol upgrade (101) cannot cross to HTTP/3".into(),
        ));
    }
    let http10 = resp.version == Some(0);
    let fields = &*resp.headers;
    let options = ConnectionOptions::of(fields);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    for f in fields {
        let value = || std::str::from_utf8(f.value).unwrap_or("").trim();
        if f.name.eq_ignore_ascii_case("content-length") {
            let value = value();
            let n = value
                .parse::<u64>()
                .map_err(|_| ResponseError::Malformed(format!("content-length '{value}'")))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(ResponseError::Malformed("conflicting content-length".into()));
            }
            content_length = Some(n);
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = value();
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(ResponseError::Malformed(format!("transfer-encoding '{value}'")));
            }
            chunked = true;
        }
    }
    let bytes = fields.iter().map(|f| f.name.len() + f.value.len()).sum();
    let mut head = H3Response::with_capacity(status, fields.len(), bytes);
    for f in fields {
        // `host` is hop-by-hop for requests only.
        let hop =
            HOP_BY_HOP.iter().any(|h| f.name.eq_ignore_ascii_case(h)) && !f.name.eq_ignore_ascii_case("host");
        if hop || options.lists(fields, f.name) {
            continue;
        }
        head.push(f.name.as_bytes(), f.value);
    }
    let no_body = request_method == "HEAD" || status < 200 || status == 204 || status == 304;
    let framing = if no_body {
        BodyFraming::Empty
    } else if chunked {
        BodyFraming::Chunked
    } else if let Some(n) = content_length {
        BodyFraming::Length(n)
    } else {
        BodyFraming::UntilClose
    };
    let keep_alive = !options.close && (!http10 || options.keep_alive) && framing != BodyFraming::UntilClose;
    Ok(Some((
        ResponseHead {
            head,
            framing,
            keep_alive,
        },
        len,
    )))
}

/// The options of a response's `connection` fields (RFC 9110, 7.6.1), scanned once: most servers send
/// only `keep-alive` or `close`, and then no field needs the list searched again.
struct ConnectionOptions {
    close: bool,
    keep_alive: bool,
    /// Some other option: it names a field to drop, found by [`ConnectionOptions::lists`].
    others: bool,
}

impl ConnectionOptions {
    fn of(fields: &[httparse::Header<'_>]) -> Self {
        let mut options = ConnectionOptions {
            close: false,
            keep_alive: false,
            others: false,
        };
        for option in Self::iter(fields) {
            if option.eq_ignore_ascii_case("close") {
                options.close = true;
            } else if option.eq_ignore_ascii_case("keep-alive") {
                options.keep_alive = true;
            } else if !option.is_empty() {
                options.others = true;
            }
        }
        options
    }

    fn iter<'a>(fields: &'a [httparse::Header<'a>]) -> impl Iterator<Item = &'a str> + 'a {
        fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .flat_map(|f| std::str::from_utf8(f.value).unwrap_or("").split(','))
            .map(str::trim)
    }

    /// The field `name` is one of the options (so hop-by-hop).
    fn lists(&self, fields: &[httparse::Header<'_>], name: &str) -> bool {
        if self.others {
            return Self::iter(fields).any(|t| t.eq_ignore_ascii_case(name));
        }
        (self.close && name.eq_ignore_ascii_case("close"))
            || (self.keep_alive && name.eq_ignore_ascii_case("keep-alive"))
    }
}

/// Incremental decoder of a chunked body.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    /// The chunk size being read (hex digits may span reads).
    size: u64,
    size_digits: usize,
    trailers: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Inside a chunk extension, until LF.
    Ext,
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section, until an empty line.
    Trailers,
    Done,
}

/// What one call to [`ChunkedDecoder::decode`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Body bytes, as ranges of the input.
    pub(crate) data: Vec<std::ops::Range<usize>>,
    /// Bytes of the input consumed.
    pub(crate) consumed: usize,
    /// The last chunk and the trailer section are complete.
    pub(crate) done: bool,
}

impl ChunkedDecoder {
    fn end_of_size_line(&mut self) -> Result<(), ResponseError> {
        if self.size_digits == 0 {
            return Err(ResponseError::Malformed("empty chunk size".into()));
        }
        self.state = if self.size == 0 {
            ChunkState::Trailers
        } else {
            ChunkState::Data(self.size)
        };
        self.size = 0;
        self.size_digits = 0;
        Ok(())
    }

    /// Decodes as much of `input` as it can.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Decoded, ResponseError> {
        let mut out = Decoded::default();
        let mut i = 0;
        while i < input.len() && self.state != ChunkState::Done {
            let b = input[i];
            match self.state {
                ChunkState::Size => {
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            self.size_digits += 1;
                            if self.size_digits > 15 {
                                return Err(ResponseError::Malformed("chunk size too large".into()));
                            }
                            self.size = self.size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
                        }
                        b';' | b' ' | b'\t' => self.state = ChunkState::Ext,
                        b'\r' => {}
                        b'\n' => self.end_of_size_line()?,
                        _ => return Err(ResponseError::Malformed(format!("bad chunk size byte {b:#x}"))),
                    }
                    i += 1;
                }
                ChunkState::Ext => {
                    if b == b'\n' {
                        self.end_of_size_line()?;
                    }
                    i += 1;
                }
                ChunkState::Data(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(input.len() - i);
                    out.data.push(i..i + take);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataCr => {
                    self.state = match b {
                        b'\r' => ChunkState::DataLf,
                        b'\n' => ChunkState::Size,
                        _ => return Err(ResponseError::Malformed("missing CRLF after chunk data".into())),
                    };
                    i += 1;
                }
                ChunkState::DataLf => {
                    if b != b'\n' {
                        return Err(ResponseError::Malformed("missing LF after chunk data".into()));
                    }
                    self.state = ChunkState::Size;
                    i += 1;
                }
                ChunkState::Trailers => {
                    self.trailers.push(b);
                    i += 1;
                    if self.trailers.len() > MAX_HEAD {
                        return Err(ResponseError::TooLarge(MAX_HEAD));
                    }
                    let t = &self.trailers;
                    if t == b"\r\n" || t == b"\n" || t.ends_with(b"\r\n\r\n") || t.ends_with(b"\n\n") {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => unreachable!("the loop stops at Done"),
            }
        }
        out.consumed = i;
        out.done = self.state == ChunkState::Done;
        Ok(out)
    }

    /// The trailer fields, once done (names lower-case).
    pub(crate) fn trailers(&self) -> Vec<Header> {
        let text = String::from_utf8_lossy(&self.trailers);
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| Header::new(n.trim().to_ascii_lowercase().as_bytes(), v.trim().as_bytes()))
            .filter(|h| {
                !HOP_BY_HOP.iter().any(|hop| hop.as_bytes() == h.name()) && h.name() != b"content-length"
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)], cl: Option<u64>) -> RequestHead {
        let len = cl.map(|n| n.to_string());
        let pseudo = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "app.test"),
            (":path", "/up?x=1"),
        ];
        let list: Vec<Header> = pseudo
            .iter()
            .chain(fields)
            .map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes()))
            .chain(len.map(|n| Header::new(b"content-length", n.as_bytes())))
            .collect();
        RequestHead::parse(&list).unwrap()
    }

    #[test]
    fn request_heads_map_pseudo_headers_drop_hop_by_hop_and_join_cookies() {
        let h = head(
            &[
                ("cookie", "a=1"),
                ("te", "trailers"),
                ("cookie", "b=2"),
                ("x-forwarded-for", "10.0.0.1"),
                ("accept", "*/*"),
            ],
            None,
        );
        let fwd = ClientAddr {
            client: "192.0.2.7".parse().unwrap(),
        };
        let (bytes, framing) = encode_request(&h, false, Some(fwd));
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("POST /up?x=1 HTTP/1.1\r\nhost: app.test\r\n"),
            "{text}"
        );
        assert!(text.contains("cookie: a=1; b=2\r\n"));
        assert!(!text.contains("te:"));
        assert!(text.contains("x-forwarded-for: 10.0.0.1, 192.0.2.7\r\n"));
        assert!(text.contains("forwarded: for=192.0.2.7;proto=https;host=\"app.test\"\r\n"));
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert_eq!(framing, UploadFraming::Chunked);
        assert_eq!(
            encode_request(&head(&[], Some(5)), false, None).1,
            UploadFraming::Length(5)
        );
        assert_eq!(
            encode_request(&head(&[], None), true, None).1,
            UploadFraming::None
        );
    }

    #[test]
    fn a_status_below_100_is_a_malformed_head_not_a_panic() {
        // The response_head fuzz target's first find: httparse reads `099` as 99.
        for raw in [
            &b"HTTP/1.0 099 Co\r\n\r\n"[..],
            b"HTTP/1.1 000 X\r\n\r\n",
            b"HTTP/1.1 042 X\r\n\r\n",
        ] {
            let err = parse_response(raw, "GET").unwrap_err();
            assert!(
                matches!(err, ResponseError::Malformed(ref m) if m.starts_with("status 0")),
                "{err}"
            );
        }
        assert_eq!(
            parse_response(b"HTTP/1.1 100 Continue\r\n\r\n", "GET")
                .unwrap()
                .unwrap()
                .0
                .head
                .status(),
            100
        );
    }

    #[test]
    fn response_heads_are_parsed_and_filtered() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nServer: t\r\n\r\nhello";
        let (h, len) = parse_response(raw, "GET").unwrap().unwrap();
        assert_eq!(len, raw.len() - 5);
        assert_eq!(h.head.status(), 200);
        assert_eq!(h.framing, BodyFraming::Length(5));
        assert!(h.keep_alive);
        let names: Vec<&[u8]> = h.head.fields().map(|(name, _)| name).collect();
        assert_eq!(names, vec![&b"content-length"[..], b"server"]);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", "GET").unwrap(),
            None
        );
        let (h, _) = parse_response(b"HTTP/1.0 200 OK\r\n\r\n", "GET")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (BodyFraming::UntilClose, false));
        // Only `close` or `keep-alive` listed: a field of that name is still the option's, not the client's.
        let raw = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-A: 1\r\n\r\n";
        let (h, _) = parse_response(raw, "GET").unwrap().unwrap();
        assert!(
            h.keep_alive,
            "an HTTP/1.0 server that says keep-alive keeps the connection"
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\nClose: x\r\nX-A: 1\r\n\r\n";
        let (h, _) = parse_response(raw, "GET").unwrap().unwrap();
        assert!(!h.keep_alive);
        let names: Vec<&[u8]> = h.head.fields().map(|(name, _)| name).collect();
        assert_eq!(names, vec![&b"content-length"[..], b"x-a"]);
        let (h, _) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", "GET").is_err());
        assert!(parse_response(b"HTTP/1.1 101 Switching\r\n\r\n", "GET").is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let body = b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nx-sum: 23\r\n\r\n";
        let expect = b"Wikipedia in \r\n\r\nchunks.";
        for split in 1..body.len() {
            let mut dec = ChunkedDecoder::default();
            let mut got = Vec::new();
            let mut done = false;
            for part in [&body[..split], &body[split..]] {
                let d = dec.decode(part).unwrap();
                assert_eq!(d.consumed, part.len());
                for r in d.data {
                    got.extend_from_slice(&part[r]);
                }
                done = d.done;
            }
            assert_eq!(got, expect, "split at {split}");
            assert!(done);
            assert_eq!(dec.trailers(), vec![Header::new(b"x-sum", b"23")]);
        }
        assert!(ChunkedDecoder::default().decode(b"zz\r\n").is_err());
    }

    #[test]
    fn chunks_are_encoded() {
        assert_eq!(encode_chunk(b"hello", false), b"5\r\nhello\r\n");
        assert_eq!(encode_chunk(b"", true), b"0\r\n\r\n");
    }
}
