//! One request stream.

use bytes::{BufMut, Bytes, BytesMut};
use qc_stream::{AttachedDesc, Live, Object, ReleasedDesc, TxBudget};
use quiche::h3::{self, Header};
use quiche::Shutdown;

use crate::head::{parse_trailers, sanitize};
use crate::{RequestHead, ResponseHead, State, StreamError, Transport};

/// What [`Stream::read_body`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyRead {
    /// Request body bytes.
    Data(Bytes),
    /// The request body is complete; trailers when the client sent some.
    End(Option<Vec<Header>>),
    /// Nothing now; a readable event comes when there is more.
    Pending,
}

/// What [`Stream::flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued went to the transport; the response is not complete yet.
    Idle,
    /// The transport is out of credit (flow control or congestion): try again later.
    Blocked,
    /// The response is complete: FIN (with or without trailers) went to the transport.
    Finished,
}

/// Refuses a request stream that gets no `Stream` (after GOAWAY, a timed-out head, a released
/// connection): STOP_SENDING and RESET_STREAM with H3_REQUEST_REJECTED, so the client may retry it.
pub fn refuse(conn: &mut Transport, id: u64) {
    // Errors mean "already shut": nothing more to do.
    let _ = conn.stream_shutdown(id, Shutdown::Read, crate::codes::H3_REQUEST_REJECTED);
    let _ = conn.stream_shutdown(id, Shutdown::Write, crate::codes::H3_REQUEST_REJECTED);
}

/// Largest chunk read from the transport at once.
const READ_CHUNK: usize = 16 * 1024;

/// One HTTP/3 request stream.
pub struct Stream {
    id: u64,
    state: State,
    /// Counted in the stream gauge while it lives. A stream dropped without `release` drops its
    /// attached descriptor too, which counts the out-of-order release.
    _live: Live,
    upper: Option<u64>,
    // Rx side.
    rx: crate::rx::RxBuf,
    /// The transport may hold more body than the Rx buffer had room for ("demux blocked").
    rx_blocked: bool,
    rx_fin: bool,
    rx_total: u64,
    content_length: Option<u64>,
    trailers_in: Option<Vec<Header>>,
    /// A readable event went up and the upper side has not seen `Pending` since.
    readable_notified: bool,
    // Tx side.
    desc: Option<AttachedDesc>,
    head_out: Option<ResponseHead>,
    head_sent: bool,
    trailers_out: Option<Vec<Header>>,
    fin_queued: bool,
    fin_sent: bool,
}

impl Stream {
    /// A stream for `id` whose body bytes are charged to `budget`, reading at most `rx_cap` bytes ahead
    /// of the upper side.
    pub fn new(id: u64, budget: &TxBudget, rx_cap: usize) -> Self {
        Stream {
            id,
            state: State::Idle,
            _live: budget.counters().count(Object::Stream),
            upper: None,
            rx: crate::rx::RxBuf::new(rx_cap),
            rx_blocked: false,
            rx_fin: false,
            rx_total: 0,
            content_length: None,
            trailers_in: None,
            readable_notified: false,
            desc: Some(AttachedDesc::new(id, budget)),
            head_out: None,
            head_sent: false,
            trailers_out: None,
            fin_queued: false,
            fin_sent: false,
        }
    }

    /// The QUIC stream ID.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Links the upper side (an opaque handle the connection hands back in events).
    pub fn set_upper(&mut self, upper: u64) {
        self.upper = Some(upper);
    }

    /// Accepts the request's header section: the stream opens (or is half-closed remote at once when no
    /// body follows).
    pub fn on_request_headers(
        &mut self,
        list: &[Header],
        more_frames: bool,
    ) -> Result<RequestHead, StreamError> {
        let head = RequestHead::parse(list)?;
        self.content_length = head.content_length();
        self.state = State::Open;
        if !more_frames {
            self.on_remote_fin()?;
        }
        Ok(head)
    }

    /// Accepts a second header section: the request's trailers, which end the request.
    pub fn on_trailers(&mut self, list: &[Header]) -> Result<(), StreamError> {
        if self.trailers_in.is_some() {
            return Err(StreamError::Malformed("a second trailer section"));
        }
        self.trailers_in = Some(parse_trailers(list)?);
        Ok(())
    }

    /// The transport reported the request complete (all body read and FIN received).
    pub fn on_remote_fin(&mut self) -> Result<(), StreamError> {
        if self.rx_fin {
            return Ok(());
        }
        if self.content_length.is_some_and(|len| len != self.rx_total) {
            return Err(StreamError::Malformed("body length differs from content-length"));
        }
        self.rx_fin = true;
        self.rx_blocked = false;
        self.state = self.state.on_remote_fin();
        Ok(())
    }

    /// Reads request body from the transport into the Rx buffer, as far as it has room. Returns whether
    /// anything arrived.
    pub fn fill_rx(&mut self, h3: &mut h3::Connection, conn: &mut Transport) -> Result<bool, StreamError> {
        let mut got = false;
        while !self.rx_fin {
            let room = self.rx.room();
            if room == 0 {
                // The transport may hold more: wait until the upper side drains us ("demux blocked").
                // Not when it holds nothing more, so that "blocked" means body left in the transport.
                self.rx_blocked = !conn.stream_finished(self.id);
                return Ok(got);
            }
            let want = room.min(READ_CHUNK);
            let mut buf = BytesMut::with_capacity(want);
            match h3.recv_body_buf(conn, self.id, (&mut buf).limit(want)) {
                Ok(n) => {
                    debug_assert_eq!(n, buf.len());
                    self.rx_total += n as u64;
                    if self.content_length.is_some_and(|len| self.rx_total > len) {
                        return Err(StreamError::Malformed("body longer than content-length"));
                    }
                    self.rx.push(buf.freeze());
                    got = true;
                }
                Err(h3::Error::Done) => break,
                Err(e) => return Err(e.into()),
            }
        }
        self.rx_blocked = false;
        Ok(got)
    }

    /// True when the transport may hold body that did not fit and the Rx buffer has room again.
    pub fn wants_rx(&self) -> bool {
        self.rx_blocked && self.rx.room() > 0
    }

    /// True when the Rx side was blocked by a full buffer with body left in the transport. The transport
    /// reporting the end now means that body is gone: quiche 0.30 drops the unread bytes of a stream
    /// reset after its FIN and reports a clean end.
    pub fn rx_blocked(&self) -> bool {
        self.rx_blocked
    }

    /// Whether a readable event should go up now (data or end waiting, none sent since the last `Pending`).
    pub fn take_readable(&mut self) -> bool {
        let ready = !self.rx.is_empty() || self.rx_fin;
        if ready && !self.readable_notified {
            self.readable_notified = true;
            return true;
        }
        false
    }

    /// The upper side takes request body: up to `max` bytes, or the end.
    pub fn read_body(&mut self, max: usize) -> BodyRead {
        if let Some(data) = self.rx.take(max.max(1)) {
            return BodyRead::Data(data);
        }
        if self.rx_fin {
            return BodyRead::End(self.trailers_in.take());
        }
        self.readable_notified = false;
        BodyRead::Pending
    }

    /// Queues the response head; [`Stream::flush`] sends it. `end` means no body follows.
    pub fn send_head(&mut self, head: ResponseHead, end: bool) {
        debug_assert!(
            !self.head_sent && self.head_out.is_none(),
            "response head sent twice"
        );
        self.head_out = Some(head);
        self.fin_queued |= end;
    }

    /// Queues response body. When the Tx budget is full the bytes come back: the caller waits for room.
    pub fn send_body(&mut self, data: Bytes) -> Result<(), Bytes> {
        debug_assert!(!self.fin_queued, "body after the end of the response");
        self.desc
            .as_mut()
            .expect("an unreleased stream has its descriptor")
            .push(data)
    }

    /// Queues the end of the response, with trailers if any.
    pub fn finish(&mut self, trailers: Option<Vec<Header>>) {
        self.trailers_out = trailers.map(|t| sanitize(&t)).filter(|t| !t.is_empty());
        self.fin_queued = true;
    }

    /// Bytes queued for the transport and not accepted yet.
    pub fn queued_tx(&self) -> usize {
        self.desc.as_ref().map_or(0, |d| d.queued())
    }

    /// Hands queued head, body, trailers and FIN to the transport, as far as its credit goes.
    pub fn flush(&mut self, h3: &mut h3::Connection, conn: &mut Transport) -> Result<Flush, StreamError> {
        if self.fin_sent {
            return Ok(Flush::Finished);
        }
        if let Some(head) = self.head_out.take() {
            let end = self.fin_queued && self.queued_tx() == 0 && self.trailers_out.is_none();
            let sent = h3.send_response(conn, self.id, &head.to_refs(), end);
            match sent {
                Ok(()) => {
                    self.head_sent = true;
                    if end {
                        self.on_local_fin();
                        return Ok(Flush::Finished);
                    }
                }
                Err(h3::Error::StreamBlocked | h3::Error::Done) => {
                    self.head_out = Some(head);
                    return self.blocked_or_gone(conn);
                }
                Err(e) => return Err(e.into()),
            }
        }
        if !self.head_sent {
            return Ok(Flush::Idle);
        }
        let desc = self
            .desc
            .as_mut()
            .expect("an unreleased stream has its descriptor");
        while let Some(mut buf) = desc.pop_front() {
            let len = buf.len();
            let fin = self.fin_queued && desc.queued() == 0 && self.trailers_out.is_none();
            match h3.send_body_zc(conn, self.id, &mut buf, fin) {
                Ok(n) => {
                    if n < len {
                        // `buf` now holds the part the transport did not take.
                        desc.push_front(buf);
                        return Ok(Flush::Blocked);
                    }
                    if fin {
                        self.on_local_fin();
                        return Ok(Flush::Finished);
                    }
                }
                Err(h3::Error::Done | h3::Error::StreamBlocked) => {
                    desc.push_front(buf);
                    return self.blocked_or_gone(conn);
                }
                Err(e) => {
                    desc.push_front(buf);
                    return Err(e.into());
                }
            }
        }
        if !self.fin_queued {
            return Ok(Flush::Idle);
        }
        let sent = match self.trailers_out.take() {
            Some(trailers) => match h3.send_additional_headers(conn, self.id, &trailers, true, true) {
                Ok(()) => true,
                Err(h3::Error::StreamBlocked | h3::Error::Done) => {
                    self.trailers_out = Some(trailers);
                    false
                }
                Err(e) => return Err(e.into()),
            },
            None => match h3.send_body(conn, self.id, b"", true) {
                Ok(_) => true,
                Err(h3::Error::Done | h3::Error::StreamBlocked) => false,
                Err(e) => return Err(e.into()),
            },
        };
        if !sent {
            return self.blocked_or_gone(conn);
        }
        self.on_local_fin();
        Ok(Flush::Finished)
    }

    /// True when the transport finished the request side without the HTTP/3 layer reporting its end: a
    /// RESET_STREAM that followed the client's FIN made quiche 0.30 drop the unread bytes silently.
    pub fn rx_vanished(&self, conn: &Transport) -> bool {
        !self.rx_fin && conn.stream_finished(self.id)
    }

    /// quiche answers `Done` both for "no credit now" and for a stream it already discarded.
    fn blocked_or_gone(&self, conn: &mut Transport) -> Result<Flush, StreamError> {
        match self.transport_verdict(conn) {
            Some(e) => Err(e),
            None => Ok(Flush::Blocked),
        }
    }

    /// Whether the transport refuses to send on this stream any more: stopped by the peer (with its code)
    /// or already discarded.
    pub fn transport_verdict(&self, conn: &mut Transport) -> Option<StreamError> {
        match conn.stream_capacity(self.id) {
            Ok(_) => None,
            Err(quiche::Error::StreamStopped(code)) => Some(StreamError::Stopped(code)),
            Err(_) => Some(StreamError::Gone),
        }
    }

    fn on_local_fin(&mut self) {
        self.fin_sent = true;
        self.state = self.state.on_local_fin();
    }

    /// The peer's RESET_STREAM code, if the request side was reset. quiche's HTTP/3 layer reports a reset
    /// stream as finished first; this tells the two apart.
    pub fn peer_reset_code(&self, conn: &mut Transport) -> Option<u64> {
        match conn.stream_discard(self.id, 0) {
            Err(quiche::Error::StreamReset(code)) => Some(code),
            _ => None,
        }
    }

    /// True once the response head went to quiche.
    pub fn response_started(&self) -> bool {
        self.head_sent
    }

    /// True when the response is complete.
    pub fn response_done(&self) -> bool {
        self.fin_sent
    }

    /// True when the request is complete.
    pub fn request_done(&self) -> bool {
        self.rx_fin
    }

    /// The peer reset the request (RESET_STREAM): the stream is aborted.
    /// Aborts the stream: RESET_STREAM unless the response is complete, STOP_SENDING unless the request is.
    /// Idempotent.
    pub fn abort(&mut self, conn: &mut Transport, code: u64) {
        if !self.fin_sent {
            // Errors mean "already shut": nothing more to do.
            let _ = conn.stream_shutdown(self.id, Shutdown::Write, code);
        }
        if !self.rx_fin {
            let _ = conn.stream_shutdown(self.id, Shutdown::Read, code);
        }
        self.state = State::Reset;
    }

    /// Ends the stream: releases its descriptor (trimming unsent bytes) and returns it with the upper
    /// handle. Only the connection's stream table calls this, after detaching the stream from every wait
    /// list.
    #[must_use = "the released descriptor belongs in the connection's descriptor table"]
    pub fn release(mut self) -> (ReleasedDesc, Option<u64>) {
        let desc = self.desc.take().expect("a stream is released once").release();
        (desc, self.upper)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("state", &self.state)
            .field("rx_fin", &self.rx_fin)
            .field("rx_total", &self.rx_total)
            .field("rx_blocked", &self.rx_blocked)
            .field("head_sent", &self.head_sent)
            .field("fin_queued", &self.fin_queued)
            .field("fin_sent", &self.fin_sent)
            .field("queued_tx", &self.queued_tx())
            .finish_non_exhaustive()
    }
}
