//! One request forwarded to one backend server, streaming both ways with backpressure.
//!
//! Every trigger (backend socket event, client body readable, Tx budget room) calls
//! [`Exchange::progress`], which does all it can and says whether the exchange goes on, finished, or
//! failed. Request body is pulled from the client only while less than [`UPLOAD_WINDOW`] waits for the
//! backend; response body is read from the backend only while the client's Tx budget takes it. Memory per
//! exchange is bounded by those two windows, whatever the body sizes.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use qcc::{codes, BodyRead, Connection, ResponseHead as H3Response, SendBody};
use quiche::h3::NameValue;

use super::h1::{self, BodyFraming, ChunkedDecoder, UploadFraming};
use super::BackendSocket;
use crate::telemetry::in_flight::InFlight;

/// Request bytes waiting for the backend before we stop reading the client.
pub(crate) const UPLOAD_WINDOW: usize = 256 * 1024;
/// Bytes read from a backend at once.
const READ_CHUNK: usize = 32 * 1024;

thread_local! {
    /// The worker's read buffer, zeroed once: a read copies out only the bytes that came (a fresh
    /// zeroed 32 KiB per read, most of which end in `WouldBlock`, cost more than the proxying).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// Why an exchange ended, in HAProxy's two-letter termination state style (first: who, second: when).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// `--`: normal end.
    Normal,
    /// `SC`: the backend refused or failed the connection (503).
    ConnectFailed,
    /// `sC`: the connection timed out (503).
    ConnectTimeout,
    /// `sH`: no complete response head in time (504).
    ServerTimeout,
    /// `SH`: the backend closed or reset before a complete head (502).
    ServerClosedEarly,
    /// `PH`: the response head was invalid (502).
    BadResponse,
    /// `SD`: the backend closed, reset or misbehaved during the body (client stream reset).
    ServerAbortedBody,
    /// `sD`: the backend stalled during the body (client stream reset).
    ServerTimeoutBody,
    /// `CD`: the client aborted (RESET_STREAM, STOP_SENDING, connection gone).
    ClientAborted,
    /// `sQ`: no server slot freed up within `timeout queue`, or the queue was full (503).
    QueueTimeout,
    /// `PR`: the proxy refused the request for its size (`tune.http.maxhdr`: 431).
    HeadTooLarge,
}

impl Termination {
    /// The two letters of the access log.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Termination::Normal => "--",
            Termination::ConnectFailed => "SC",
            Termination::ConnectTimeout => "sC",
            Termination::ServerTimeout => "sH",
            Termination::ServerClosedEarly => "SH",
            Termination::BadResponse => "PH",
            Termination::ServerAbortedBody => "SD",
            Termination::ServerTimeoutBody => "sD",
            Termination::ClientAborted => "CD",
            Termination::QueueTimeout => "sQ",
            Termination::HeadTooLarge => "PR",
        }
    }

    /// The status to answer with when no response head went out yet.
    pub(crate) fn status(self) -> u16 {
        match self {
            Termination::ConnectFailed | Termination::ConnectTimeout | Termination::QueueTimeout => 503,
            Termination::ServerTimeout | Termination::ServerTimeoutBody => 504,
            Termination::HeadTooLarge => 431,
            _ => 502,
        }
    }
}

/// What [`Exchange::progress`] concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Waiting for a socket or the client.
    Continue,
    /// The response is complete; the socket may be reused when `reusable`.
    Finished {
        /// The backend connection can serve another request.
        reusable: bool,
    },
    /// The exchange failed; the client got an error status or a stream reset.
    Failed(Termination),
    /// The attempt failed before anything reached the client or was consumed from it: the request may
    /// go to a server again ([`Exchange::into_retry`]).
    Retry(Termination),
    /// The server answered 425 (Too Early) to a request the proxy marked `Early-Data: 1`: nothing went to
    /// the client, and the request goes again once the client's handshake completes
    /// ([`Exchange::into_forward`]; RFC 8470, 5.2).
    TooEarly,
    /// The reused keep-alive connection had been closed by the server before any response byte, and
    /// sending the request again is safe (idempotent, or nothing of it was written): it goes again on a
    /// new connection, no retry spent, nothing shown to the client.
    ClosedAtReuse,
}

/// `timeout connect` and `timeout server` of the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExchangeTimeouts {
    /// Until the TCP connection is up.
    pub(crate) connect: Duration,
    /// Without a byte from the server while waiting for it.
    pub(crate) server: Duration,
}

/// A request as an exchange forwards it, kept whole so that a failed attempt can be replayed.
#[derive(Debug)]
pub(crate) struct Forward {
    /// The HTTP/3 stream it serves.
    pub(crate) stream: u64,
    /// The HTTP/1.1 request head.
    pub(crate) head: Bytes,
    /// How the body goes to the backend.
    pub(crate) upload: UploadFraming,
    /// The request's accounting and access-log facts (dropping it ends the request).
    pub(crate) request: InFlight,
    /// `timeout connect` and `timeout server`.
    pub(crate) timeouts: ExchangeTimeouts,
    /// `http-response set-header` of the frontend.
    pub(crate) set_headers: Arc<[(String, String)]>,
    /// A method that may be sent twice (RFC 9110, 9.2.2).
    pub(crate) idempotent: bool,
    /// Attempts left after this one (`retries`).
    pub(crate) retries_left: u32,
    /// The first request of its client connection (`http-reuse safe` opens a new connection for it).
    pub(crate) first: bool,
    /// Go on a new connection: a reused one turned out closed by the server.
    pub(crate) fresh: bool,
    /// Forwarded before the client's handshake completed: the proxy adds `Early-Data: 1` (RFC 8470,
    /// 5.1). False when the client sent that field itself (it then gets any 425 as it is).
    pub(crate) early_data: bool,
}

impl Forward {
    /// Is `method` idempotent (RFC 9110, 9.2.2)?
    pub(crate) fn is_idempotent(method: &str) -> bool {
        matches!(method, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE")
    }
}

/// The request head as a replay needs it again.
#[derive(Debug, Clone)]
struct Replay {
    head: Bytes,
    first: bool,
    upload: UploadFraming,
    idempotent: bool,
    retries_left: u32,
    early_data: bool,
}

/// The field that ends a head forwarded in early data, in place of the head's final empty line.
const EARLY_DATA_END: &[u8] = b"early-data: 1\r\n\r\n";

/// The bytes of `head` (which ends with an empty line) as they go out, with `Early-Data: 1` when asked.
fn head_out(head: &Bytes, early_data: bool) -> VecDeque<Bytes> {
    if early_data && head.ends_with(b"\r\n\r\n") {
        VecDeque::from([head.slice(..head.len() - 2), Bytes::from_static(EARLY_DATA_END)])
    } else {
        VecDeque::from([head.clone()])
    }
}

/// One request in flight to a backend server.
pub(crate) struct Exchange {
    /// The HTTP/3 stream it serves.
    pub(crate) stream: u64,
    replay: Option<Replay>,
    /// Server index within the backend.
    pub(crate) server: usize,
    /// The server's address (for the pool).
    pub(crate) addr: SocketAddr,
    /// The request's accounting and access-log facts (dropping it ends the request).
    pub(crate) request: InFlight,
    sock: BackendSocket,
    connected: bool,
    /// The socket came from the pool.
    reused: bool,
    /// Some request byte was written to the socket.
    wrote: bool,
    /// A read-side event came since the last read that found the socket empty. The socket is
    /// edge-triggered, so bytes that arrive later raise an event of their own: without one a read can only
    /// return `WouldBlock` (a writable edge, the server acknowledging the request, came before each
    /// response and cost a `recv` per request).
    unread: bool,
    connect_deadline: Instant,
    server_timeout: Duration,
    last_activity: Instant,
    // Request side.
    out: VecDeque<Bytes>,
    out_len: usize,
    upload: UploadFraming,
    client_done: bool,
    // Response side.
    head_buf: Vec<u8>,
    head_sent: bool,
    framing: BodyFraming,
    length_left: u64,
    chunked: ChunkedDecoder,
    backend_done: bool,
    keep_alive: bool,
    pending: VecDeque<Bytes>,
    finished: bool,
    /// A 425 answered a request marked `Early-Data: 1`.
    too_early: bool,
    set_headers: Arc<[(String, String)]>,
    timeouts: ExchangeTimeouts,
}

impl Exchange {
    /// Starts forwarding `forward` on `sock` (connecting, or connected when it came from the pool).
    pub(crate) fn new(
        forward: Forward,
        server: usize,
        addr: SocketAddr,
        sock: BackendSocket,
        connected: bool,
        now: Instant,
    ) -> Self {
        let Forward {
            stream,
            head,
            upload,
            mut request,
            timeouts,
            set_headers,
            idempotent,
            retries_left,
            early_data,
            first,
            fresh: _,
        } = forward;
        request.facts.connected_at = connected.then_some(now);
        let out = head_out(&head, early_data);
        Exchange {
            stream,
            replay: Some(Replay {
                head,
                first,
                upload,
                idempotent,
                retries_left,
                early_data,
            }),
            server,
            addr,
            request,
            sock,
            connected,
            reused: connected,
            wrote: false,
            unread: false,
            connect_deadline: now + timeouts.connect,
            server_timeout: timeouts.server,
            last_activity: now,
            out_len: out.iter().map(Bytes::len).sum(),
            out,
            upload,
            client_done: upload == UploadFraming::None,
            head_buf: Vec::new(),
            head_sent: false,
            framing: BodyFraming::Empty,
            length_left: 0,
            chunked: ChunkedDecoder::default(),
            backend_done: false,
            keep_alive: false,
            pending: VecDeque::new(),
            finished: false,
            too_early: false,
            set_headers,
            timeouts,
        }
    }

    /// After [`Step::Retry`]: the socket to close and the request to send again, one retry spent.
    pub(crate) fn into_retry(self) -> (BackendSocket, Forward) {
        let (sock, mut forward) = self.into_forward();
        forward.retries_left = forward.retries_left.saturating_sub(1);
        (sock, forward)
    }

    /// After [`Step::TooEarly`]: the socket to close and the request to send again once the handshake
    /// completed, without `Early-Data: 1`; no retry spent.
    pub(crate) fn into_forward(self) -> (BackendSocket, Forward) {
        let replay = self
            .replay
            .expect("Step::Retry and Step::TooEarly keep the request");
        let mut request = self.request;
        request.facts.connected_at = None;
        let forward = Forward {
            stream: self.stream,
            head: replay.head,
            upload: replay.upload,
            request,
            timeouts: self.timeouts,
            set_headers: self.set_headers,
            idempotent: replay.idempotent,
            retries_left: replay.retries_left,
            early_data: false,
            first: replay.first,
            fresh: false,
        };
        (self.sock, forward)
    }

    /// May a failure for `why` be retried: nothing went to the client, nothing was taken from it, and
    /// the request either never reached the server or is idempotent.
    fn may_retry(&self, why: Termination) -> bool {
        let Some(replay) = &self.replay else {
            return false;
        };
        let untouched = !self.head_sent && self.head_buf.is_empty() && self.request.facts.bytes_in == 0;
        let retryable = match why {
            Termination::ConnectFailed | Termination::ConnectTimeout => true,
            Termination::ServerClosedEarly => replay.idempotent,
            _ => false,
        };
        replay.retries_left > 0 && untouched && retryable
    }

    /// A reused connection the server had closed (RFC 9112, 9.3.1: a client may retry on a new
    /// connection): nothing came back, and the request is idempotent or none of it was written.
    fn closed_at_reuse(&self, why: Termination) -> bool {
        let Some(replay) = &self.replay else {
            return false;
        };
        // Nothing reached the client, and no request body was taken from it (it could not be sent again).
        let replayable = !self.head_sent && self.head_buf.is_empty() && self.request.facts.bytes_in == 0;
        why == Termination::ServerClosedEarly
            && self.reused
            && replayable
            && (replay.idempotent || !self.wrote)
    }

    /// The socket's descriptor (its event token).
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.sock.fd()
    }

    /// Once the exchange is over: the socket (for the pool, or to close) and the request to end.
    pub(crate) fn into_parts(self) -> (BackendSocket, InFlight) {
        (self.sock, self.request)
    }

    /// When the exchange times out, if it can.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if !self.connected {
            return Some(self.connect_deadline);
        }
        // A client too slow to take the response is not the server's fault.
        let waiting_for_server = !self.backend_done && self.pending.is_empty();
        waiting_for_server.then(|| self.last_activity + self.server_timeout)
    }

    /// The deadline passed.
    pub(crate) fn on_timeout(&mut self, conn: &mut Connection) -> Step {
        let why = if !self.connected {
            Termination::ConnectTimeout
        } else if !self.head_sent {
            Termination::ServerTimeout
        } else {
            Termination::ServerTimeoutBody
        };
        self.fail(conn, why)
    }

    /// Does everything that can be done now. `readable`: a socket event said bytes may have come.
    pub(crate) fn progress(&mut self, conn: &mut Connection, now: Instant, readable: bool) -> Step {
        if self.finished {
            return Step::Finished {
                reusable: self.reusable(),
            };
        }
        if !self.connected {
            match self.sock.stream().take_error() {
                Ok(Some(_)) | Err(_) => return self.fail(conn, Termination::ConnectFailed),
                Ok(None) => {}
            }
            match self.sock.stream().peer_addr() {
                Ok(_) => {
                    self.connected = true;
                    self.request.facts.connected_at = Some(now);
                    self.last_activity = now;
                }
                Err(e) if e.kind() == ErrorKind::NotConnected => return Step::Continue,
                Err(_) => return self.fail(conn, Termination::ConnectFailed),
            }
        }
        self.unread |= readable;
        // Edge-triggered on both sides: keep moving request body until the client has nothing more now or
        // the backend socket is full, else no event would ever resume the upload.
        loop {
            let client_has_more = self.pull_upload(conn);
            match self.write_out(now) {
                Ok(true) if client_has_more => continue,
                Ok(_) => break,
                Err(why) => return self.fail(conn, why),
            }
        }
        if let Err(why) = self.read_backend(conn, now) {
            return self.fail(conn, why);
        }
        if self.too_early {
            self.finished = true;
            self.keep_alive = false;
            return Step::TooEarly;
        }
        if self.backend_done && self.pending.is_empty() && !self.finished {
            let trailers = (self.framing == BodyFraming::Chunked)
                .then(|| self.chunked.trailers())
                .filter(|t| !t.is_empty());
            if self.framing != BodyFraming::Empty && conn.finish(self.stream, trailers).is_err() {
                return self.fail(conn, Termination::ClientAborted);
            }
            self.finished = true;
        }
        if self.finished {
            return Step::Finished {
                reusable: self.reusable(),
            };
        }
        Step::Continue
    }

    /// A writable edge can move it: the connect is pending or request bytes wait for room. Otherwise
    /// the edge only says the server acknowledged what it got (one per request), and nothing is to do.
    pub(crate) fn awaits_writable(&self) -> bool {
        !self.connected || self.out_len > 0
    }

    fn reusable(&self) -> bool {
        self.keep_alive && self.client_done && self.out_len == 0 && self.head_buf.is_empty()
    }

    /// Moves request body from the client to the backend buffer, within [`UPLOAD_WINDOW`]. Returns true
    /// when it stopped only because the window was full (the client may have more right now).
    fn pull_upload(&mut self, conn: &mut Connection) -> bool {
        while !self.client_done {
            if self.out_len >= UPLOAD_WINDOW {
                return true;
            }
            match conn.read_body(self.stream, 64 * 1024) {
                Ok(BodyRead::Data(data)) => {
                    self.request.facts.bytes_in += data.len() as u64;
                    let framed = match self.upload {
                        UploadFraming::Chunked => Bytes::from(h1::encode_chunk(&data, false)),
                        _ => data,
                    };
                    self.out_len += framed.len();
                    self.out.push_back(framed);
                }
                Ok(BodyRead::End(trailers)) => {
                    self.client_done = true;
                    if self.upload == UploadFraming::Chunked {
                        let mut last = b"0\r\n".to_vec();
                        for t in trailers.unwrap_or_default() {
                            last.extend_from_slice(t.name());
                            last.extend_from_slice(b": ");
                            last.extend_from_slice(t.value());
                            last.extend_from_slice(b"\r\n");
                        }
                        last.extend_from_slice(b"\r\n");
                        self.out_len += last.len();
                        self.out.push_back(Bytes::from(last));
                    }
                }
                Ok(BodyRead::Pending) | Err(_) => return false,
            }
        }
        false
    }

    /// Writes buffered request bytes to the backend. Returns true when the buffer drained.
    fn write_out(&mut self, now: Instant) -> Result<bool, Termination> {
        while let Some(front) = self.out.front_mut() {
            match self.sock.stream_mut().write(front) {
                Ok(0) => return Err(self.server_failure()),
                Ok(n) => {
                    self.wrote = true;
                    self.out_len -= n;
                    self.last_activity = now;
                    if n == front.len() {
                        self.out.pop_front();
                    } else {
                        let _ = front.split_to(n);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A server may answer early and close its read side; keep reading its response.
                Err(_) if self.head_sent || !self.head_buf.is_empty() => {
                    self.out.clear();
                    self.out_len = 0;
                    self.keep_alive = false;
                    return Ok(false);
                }
                Err(_) => return Err(self.server_failure()),
            }
        }
        Ok(true)
    }

    fn server_failure(&self) -> Termination {
        if self.head_sent {
            Termination::ServerAbortedBody
        } else {
            Termination::ServerClosedEarly
        }
    }

    /// Hands queued response body to the client; false when its Tx budget is full.
    fn flush_pending(&mut self, conn: &mut Connection) -> Result<bool, Termination> {
        while let Some(data) = self.pending.pop_front() {
            let len = data.len() as u64;
            match conn.send_body(self.stream, data) {
                Ok(SendBody::Queued) => self.request.facts.bytes_out += len,
                Ok(SendBody::Blocked(data)) => {
                    self.pending.push_front(data);
                    return Ok(false);
                }
                Err(_) => return Err(Termination::ClientAborted),
            }
        }
        Ok(true)
    }

    fn read_backend(&mut self, conn: &mut Connection, now: Instant) -> Result<(), Termination> {
        loop {
            if !self.flush_pending(conn)? || self.backend_done || !self.unread {
                return Ok(());
            }
            let read = SCRATCH.with_borrow_mut(|scratch| {
                self.sock
                    .stream_mut()
                    .read(scratch)
                    .map(|n| Bytes::copy_from_slice(&scratch[..n]))
            });
            let buf = match read {
                Ok(buf) => buf,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.unread = false;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(self.server_failure()),
            };
            self.last_activity = now;
            if buf.is_empty() {
                return self.on_backend_eof();
            }
            let data = if self.head_sent {
                buf
            } else {
                // Most heads come whole in one read: parsed where they were read, no copy.
                let input = if self.head_buf.is_empty() {
                    buf
                } else {
                    self.head_buf.extend_from_slice(&buf);
                    Bytes::from(std::mem::take(&mut self.head_buf))
                };
                match self.parse_head(conn, now, input)? {
                    Some(rest) => rest,
                    None if self.too_early => return Ok(()),
                    None => continue,
                }
            };
            self.take_body(data)?;
        }
    }

    fn on_backend_eof(&mut self) -> Result<(), Termination> {
        self.keep_alive = false;
        match (self.head_sent, self.framing) {
            (false, _) => Err(Termination::ServerClosedEarly),
            (true, BodyFraming::UntilClose) => {
                self.backend_done = true;
                Ok(())
            }
            (true, _) if self.backend_done => Ok(()),
            (true, _) => Err(Termination::ServerAbortedBody),
        }
    }

    /// Parses the response head from `input` once complete and returns the body bytes that followed
    /// it; an incomplete head waits in `head_buf` for more.
    fn parse_head(
        &mut self,
        conn: &mut Connection,
        now: Instant,
        mut input: Bytes,
    ) -> Result<Option<Bytes>, Termination> {
        loop {
            let parsed = h1::parse_response(&input, &self.request.facts.method).map_err(|e| {
                tracing::debug!(stream = self.stream, error = %e, "bad backend response");
                Termination::BadResponse
            })?;
            let Some((head, len)) = parsed else {
                self.head_buf = input.to_vec();
                return Ok(None);
            };
            let _ = input.split_to(len);
            let status = head.head.status();
            if status < 200 {
                continue; // Interim response (100 Continue): not forwarded.
            }
            // RFC 8470, 5.2: a 425 to a request the proxy itself marked `Early-Data: 1` is not the
            // client's to see; the request goes again after the handshake, if no body was consumed.
            let marked = self.replay.as_ref().is_some_and(|r| r.early_data);
            if status == 425 && marked && self.request.facts.bytes_in == 0 {
                self.too_early = true;
                return Ok(None);
            }
            let mut out = head.head;
            for (name, value) in self.set_headers.iter() {
                out.set(name.as_bytes(), value.as_bytes());
            }
            let end = head.framing == BodyFraming::Empty;
            conn.send_response(self.stream, out, end)
                .map_err(|_| Termination::ClientAborted)?;
            self.head_sent = true;
            self.request.facts.status = Some(status);
            self.request.facts.head_at = Some(now);
            self.framing = head.framing;
            self.keep_alive = head.keep_alive;
            match head.framing {
                BodyFraming::Empty => self.backend_done = true,
                BodyFraming::Length(n) => {
                    self.length_left = n;
                    self.backend_done = n == 0;
                }
                BodyFraming::Chunked | BodyFraming::UntilClose => {}
            }
            return Ok(Some(input));
        }
    }

    fn take_body(&mut self, data: Bytes) -> Result<(), Termination> {
        if data.is_empty() {
            return Ok(());
        }
        if self.backend_done {
            // Bytes past the end of the response: the connection is out of step.
            self.keep_alive = false;
            return Ok(());
        }
        match self.framing {
            BodyFraming::Empty => self.keep_alive = false,
            BodyFraming::Length(_) => {
                let take = (self.length_left.min(data.len() as u64)) as usize;
                if take < data.len() {
                    self.keep_alive = false;
                }
                self.length_left -= take as u64;
                self.pending.push_back(data.slice(..take));
                self.backend_done = self.length_left == 0;
            }
            BodyFraming::Chunked => {
                let decoded = self
                    .chunked
                    .decode(&data)
                    .map_err(|_| Termination::ServerAbortedBody)?;
                for range in decoded.data {
                    if !range.is_empty() {
                        self.pending.push_back(data.slice(range));
                    }
                }
                if decoded.done {
                    self.backend_done = true;
                    if decoded.consumed < data.len() {
                        self.keep_alive = false;
                    }
                }
            }
            BodyFraming::UntilClose => self.pending.push_back(data),
        }
        Ok(())
    }

    /// Ends the exchange on an error: a retry when allowed, an error status if no head went out, else a
    /// stream reset.
    pub(crate) fn fail(&mut self, conn: &mut Connection, why: Termination) -> Step {
        self.finished = true;
        self.keep_alive = false;
        if why == Termination::ClientAborted {
            return Step::Failed(why);
        }
        if self.closed_at_reuse(why) {
            return Step::ClosedAtReuse;
        }
        if self.may_retry(why) {
            return Step::Retry(why);
        }
        if self.head_sent {
            let _ = conn.reset_stream(self.stream, codes::H3_INTERNAL_ERROR);
        } else {
            let status = why.status();
            respond_error(conn, self.stream, status);
            self.request.facts.status = Some(status);
        }
        Step::Failed(why)
    }
}

/// Answers a stream with an error status and a short text body.
pub(crate) fn respond_error(conn: &mut Connection, stream: u64, status: u16) {
    let reason = match status {
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{status} {reason}\n");
    let head = H3Response::new(status)
        .with_header("content-type", "text/plain")
        .with_header("content-length", body.len().to_string())
        .with_header("cache-control", "no-cache");
    if conn.send_response(stream, head, false).is_ok() {
        let _ = conn.send_body(stream, Bytes::from(body));
        let _ = conn.finish(stream, None);
    }
}
