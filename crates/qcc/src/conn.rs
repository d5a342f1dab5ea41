//! One HTTP/3 server connection.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use qc_stream::{Counters, Live, Object, RoomSink, TxBudget, TxBufFactory};
use qcs::{codes, BodyRead, Flush, ResponseHead, Stream, StreamError, Transport};
use quiche::h3::{self, Header};
use quiche::{ConnectionId, RecvInfo};

use crate::table::StreamTable;
use crate::wakeup::{RoomFlag, Waker};
use crate::{AbortCause, Closing, Error, Event, Limits, ServerConfig};

/// A datagram to send, written into the caller's buffer by `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes written.
    pub len: usize,
    /// Destination.
    pub to: SocketAddr,
    /// Local address to send from.
    pub from: SocketAddr,
    /// When to send it: quiche's pacer spreads a flight over the round trip (now when not paced).
    pub at: Instant,
}

/// What `send_body` did with the bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum SendBody {
    /// Queued; they go out with the next `poll_transmit`.
    Queued,
    /// The connection's Tx budget is full: the bytes come back. Try again after `Event::Writable`.
    Blocked(Bytes),
}

/// What a released connection leaves behind.
#[must_use = "the closing transport must be driven until it is closed"]
pub struct Released {
    /// The transport, closing: drive it until `is_closed`, then drop it.
    pub closing: Closing,
    /// Streams that were still open, with their upper handles: the upper side drops what serves them.
    pub orphans: Vec<(u64, Option<u64>)>,
}

/// Counts the connection and catches a drop that bypassed `release`.
struct LiveToken {
    live: Live,
    released: bool,
}

impl Drop for LiveToken {
    // Accounting only.
    fn drop(&mut self) {
        if !self.released && !std::thread::panicking() {
            self.live
                .counters()
                .out_of_order("connection dropped without release");
        }
    }
}

#[derive(Debug, Default)]
struct Timers {
    handshake: Option<Instant>,
    /// No request in progress since then (keep-alive).
    idle_since: Option<Instant>,
}

/// One HTTP/3 server connection: the transport, the stream table, wait lists, timers and wake-ups.
///
/// Drive it like quinn-proto: feed input with `handle_datagram` / `handle_timeout`, then drain
/// `poll_transmit` until `None`, then `poll_event` until `None`, then arm a timer at `poll_timeout`.
/// After `Event::Dead`, call [`Connection::release`]: it is the only way a connection ends.
pub struct Connection {
    live: LiveToken,
    streams: StreamTable,
    /// Request streams with bytes but no complete header section yet, and when they were first seen.
    opening: BTreeMap<u64, Instant>,
    timers: Timers,
    wakeup: Arc<RoomFlag>,
    h3: Option<h3::Connection>,
    h3_config: Arc<h3::Config>,
    /// `conn{id=...}`: the caller enters it around its work on this connection, so every event (this
    /// crate's and the caller's) carries the connection's id.
    span: tracing::Span,
    /// Boxed: quiche's connection is large, and a `Connection` moves (into slabs, into `Closing`).
    transport: Box<Transport>,
    budget: TxBudget,
    limits: Limits,
    events: VecDeque<Event>,
    goaway: Option<u64>,
    close_requested: bool,
    dead_reported: bool,
    /// The client's protocol oddities so far (see [`Connection::glitch`]).
    glitches: u32,
    /// Requests accepted over the connection's life (for `max_total_requests`).
    requests: u64,
}

fn is_client_bidi(id: u64) -> bool {
    id.is_multiple_of(4)
}

impl Connection {
    /// Accepts a connection whose first Initial packet came from `peer` to `local`. `waker`, if any, is
    /// how the connection asks the event loop to process it again (e.g. when Tx budget room appears).
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        config: &mut ServerConfig,
        scid: &ConnectionId<'_>,
        odcid: Option<&ConnectionId<'_>>,
        local: SocketAddr,
        peer: SocketAddr,
        counters: Arc<Counters>,
        waker: Option<Arc<dyn Waker>>,
        now: Instant,
    ) -> Result<Self, Error> {
        let conn = Box::new(quiche::accept_with_buf_factory::<TxBufFactory>(
            scid,
            odcid,
            local,
            peer,
            &mut config.quic,
        )?);
        let span = tracing::info_span!("conn", id = %conn.trace_id());
        let limits = &config.limits;
        let budget = TxBudget::with_pool(limits.tx_budget, limits.tx_pool.clone(), counters.clone());
        let wakeup = Arc::new(RoomFlag::new(waker));
        let sink: Weak<dyn RoomSink> = Arc::downgrade(&wakeup) as Weak<dyn RoomSink>;
        budget.attach_sink(sink);
        Ok(Connection {
            live: LiveToken {
                live: counters.count(Object::Connection),
                released: false,
            },
            streams: StreamTable::default(),
            opening: BTreeMap::new(),
            timers: Timers {
                handshake: Some(now + config.limits.handshake_timeout),
                idle_since: None,
            },
            wakeup,
            h3: None,
            h3_config: config.h3.clone(),
            span,
            transport: conn,
            budget,
            limits: config.limits.clone(),
            events: VecDeque::new(),
            goaway: None,
            close_requested: false,
            dead_reported: false,
            glitches: 0,
            requests: 0,
        })
    }

    // ---- getters ----

    /// The transport, for statistics and addresses.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The connection's id (the hex of the connection ID it chose), as logs and the access line show it.
    pub fn trace_id(&self) -> &str {
        self.transport.trace_id()
    }

    /// The client's address as the transport has it: the peer of the active path once that path is
    /// validated (RFC 9000, 9). A datagram from a new address changes nothing until quiche has migrated
    /// the connection to it and the client proved it receives there; a forged or replayed datagram
    /// with the connection's ID never does.
    pub fn validated_peer(&self) -> Option<SocketAddr> {
        let active = self.transport.path_stats().find(|p| p.active)?;
        let (local, peer) = (active.local_addr, active.peer_addr);
        self.transport
            .is_path_validated(local, peer)
            .ok()?
            .then_some(peer)
    }

    /// The `conn{id=...}` span to enter around work on this connection.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// True once the handshake completed.
    pub fn is_established(&self) -> bool {
        self.transport.is_established()
    }

    /// Request streams alive.
    pub fn live_streams(&self) -> usize {
        self.streams.len()
    }

    /// Tx budget bytes in use on this connection.
    pub fn tx_budget_in_use(&self) -> usize {
        self.budget.in_use()
    }

    /// True when the connection has nothing more to do but be released.
    pub fn is_dead(&self) -> bool {
        self.transport.is_closed()
            || self.transport.is_draining()
            || self.close_requested
            || (self.goaway.is_some() && self.streams.is_empty() && self.opening.is_empty())
    }

    /// The transport's own next timer, measured by quiche against the real monotonic clock.
    pub fn transport_timeout(&self, now: Instant) -> Option<Instant> {
        self.transport.timeout().map(|d| now + d)
    }

    /// The connection layer's own next timer (handshake, http-request, keep-alive), on the caller's clock.
    pub fn own_timeout(&self) -> Option<Instant> {
        [
            self.timers.handshake,
            self.http_request_deadline(),
            self.keep_alive_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When `handle_timeout` must run next: the earlier of [`Connection::own_timeout`] and
    /// [`Connection::transport_timeout`].
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.own_timeout()
            .into_iter()
            .chain(self.transport_timeout(now))
            .min()
    }

    fn http_request_deadline(&self) -> Option<Instant> {
        self.opening
            .values()
            .min()
            .map(|t| *t + self.limits.http_request_timeout)
    }

    fn keep_alive_deadline(&self) -> Option<Instant> {
        if self.goaway.is_some() || self.h3.is_none() {
            return None;
        }
        self.timers.idle_since.map(|t| t + self.limits.keep_alive_timeout)
    }

    // ---- input ----

    /// Feeds one received datagram. Errors are the transport's verdict on it; the connection reports
    /// `Event::Dead` if it cannot go on.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<usize, Error> {
        let res = self.transport.recv(buf, RecvInfo { from, to });
        self.process(now);
        match res {
            Ok(n) => Ok(n),
            Err(quiche::Error::Done) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Fires the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transport.on_timeout();
        self.retry_flow_blocked(true);
        if self.timers.handshake.is_some_and(|t| t <= now) && !self.transport.is_established() {
            tracing::debug!("handshake timeout");
            self.timers.handshake = None;
            self.close_with(false, 0x0, "handshake timeout");
        }
        if self.http_request_deadline().is_some_and(|t| t <= now) {
            let limit = self.limits.http_request_timeout;
            let expired: Vec<u64> = self
                .opening
                .iter()
                .filter(|(_, t)| **t + limit <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                self.opening.remove(&id);
                self.refuse(id);
                self.glitch("request head not sent in time");
            }
        }
        if self.keep_alive_deadline().is_some_and(|t| t <= now) {
            self.shutdown(now);
        }
        self.process(now);
    }

    fn process(&mut self, now: Instant) {
        if self.h3.is_none() && (self.transport.is_established() || self.transport.is_in_early_data()) {
            match h3::Connection::with_transport(&mut self.transport, &self.h3_config) {
                Ok(h3) => self.h3 = Some(h3),
                Err(e) => self.close_with(true, codes::wire_code(&e), "HTTP/3 setup failed"),
            }
        }
        if self.transport.is_established() {
            self.timers.handshake = None;
        }
        if self.h3.is_some() {
            // Before HTTP/3 reads them: a stream whose head is incomplete leaves quiche's readable set
            // once HTTP/3 has buffered its bytes.
            self.track_opening(now);
            self.poll_h3();
            self.check_transport();
            self.resume_rx();
            self.retry_flow_blocked(false);
        }
        self.handle_room();
        self.streams.sweep_descs();
        self.timers.idle_since = match (
            self.streams.is_empty() && self.opening.is_empty(),
            self.timers.idle_since,
        ) {
            (true, Some(t)) => Some(t),
            (true, None) => Some(now),
            (false, _) => None,
        };
        self.report_dead();
    }

    /// Moves flow-blocked streams back to the send list: after an input, those whose send capacity
    /// changed (credit may have come back); after the transport's timers, all of them, so that no
    /// stream can wait on a capacity that came back to the same figure while data was in flight.
    fn retry_flow_blocked(&mut self, all: bool) {
        let transport = &mut self.transport;
        let wait = &mut self.streams.wait;
        wait.flow.retain(|id, then| {
            let still = !all && transport.stream_capacity(*id) == Ok(*then);
            if !still {
                wait.send.insert(*id);
            }
            still
        });
    }

    fn poll_h3(&mut self) {
        loop {
            let Some(h3) = self.h3.as_mut() else { return };
            match h3.poll(&mut self.transport) {
                Ok((id, event)) => self.on_h3_event(id, event),
                Err(h3::Error::Done) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/3 connection error");
                    self.close_with(true, codes::wire_code(&e), "HTTP/3 error");
                    return;
                }
            }
        }
    }

    fn on_h3_event(&mut self, id: u64, event: h3::Event) {
        match event {
            h3::Event::Headers { list, more_frames } => self.on_headers(id, &list, more_frames),
            h3::Event::Data => self.fill_rx(id),
            h3::Event::Finished => {
                let Some(stream) = self.streams.get_mut(id) else {
                    return;
                };
                if let Some(code) = stream.peer_reset_code(&mut self.transport) {
                    let unanswered = !stream.response_started();
                    self.end_stream(id, Some(AbortCause::PeerReset(code)), codes::H3_REQUEST_CANCELLED);
                    if unanswered {
                        self.glitch("request reset before its response");
                    }
                    return;
                }
                if stream.rx_blocked() {
                    // Body we never read went with a RESET_STREAM after the FIN: a truncated request,
                    // never one that ended (without content-length nothing else would tell).
                    self.fail_stream(id, StreamError::Gone);
                    return;
                }
                match stream.on_remote_fin() {
                    Ok(()) => self.after_rx(id),
                    Err(e) => self.fail_stream(id, e),
                }
            }
            h3::Event::Reset(code) => {
                if let Some(stream) = self.streams.get_mut(id) {
                    let unanswered = !stream.response_started();
                    self.end_stream(id, Some(AbortCause::PeerReset(code)), codes::H3_REQUEST_CANCELLED);
                    if unanswered {
                        self.glitch("request reset before its response");
                    }
                }
            }
            h3::Event::PriorityUpdate => {
                if let Some(h3) = self.h3.as_mut() {
                    let _ = h3.take_last_priority_update(id);
                }
            }
            h3::Event::GoAway => self.events.push_back(Event::GoAway),
        }
    }

    fn on_headers(&mut self, id: u64, list: &[Header], more_frames: bool) {
        if let Some(stream) = self.streams.get_mut(id) {
            match stream.on_trailers(list) {
                Ok(()) => self.after_rx(id),
                Err(e) => self.fail_stream(id, e),
            }
            return;
        }
        self.opening.remove(&id);
        if self.streams.was_released(id) {
            // Rule 6: a released ID is never opened again, whatever a late frame says.
            tracing::debug!(stream = id, "header section for a released stream ignored");
            return;
        }
        if !is_client_bidi(id) || self.goaway.is_some_and(|g| id >= g) {
            self.refuse(id);
            self.glitch("request on a stream that cannot carry one");
            return;
        }
        let mut stream = Stream::new(id, &self.budget, self.limits.stream_rx_buf);
        let parsed = stream.on_request_headers(list, more_frames);
        // A RESET_STREAM right behind the head (the rapid-reset shape) is checked here, once per request,
        // not in `transport_verdict`, which runs on every send and every input.
        let verdict = match stream.peer_reset_code(&mut self.transport) {
            Some(code) => Some(StreamError::PeerReset(code)),
            None => stream.transport_verdict(&mut self.transport),
        };
        self.streams.insert(stream);
        if let Some(verdict) = verdict {
            // STOP_SENDING came before (or with) the request (HAProxy #2563, #2372): nobody wants the
            // answer, so the request never reaches the upper side.
            tracing::debug!(stream = id, reason = %verdict, "request already stopped");
            self.streams
                .release(id, &mut self.transport, codes::H3_REQUEST_CANCELLED);
            // The rapid-reset shape (CVE-2023-44487): a request cancelled in the packet that opened it.
            self.glitch("request cancelled as it opened");
            return;
        }
        match parsed {
            Ok(head) => {
                self.events.push_back(Event::Request {
                    stream: id,
                    head,
                    end: !more_frames,
                });
                self.requests += 1;
                let most = self.limits.max_total_requests;
                if most > 0 && self.requests >= most {
                    // Its last: GOAWAY lets the ones in flight finish, and the client opens a new
                    // connection for the next (as HAProxy's max-total-streams).
                    self.send_goaway();
                }
            }
            Err(e) => {
                // The upper side never saw this request: release it without an event, with the code the
                // RFC names (H3_MESSAGE_ERROR when malformed, H3_REQUEST_REJECTED for CONNECT).
                tracing::debug!(stream = id, error = %e, "request refused");
                let code = e.stream_code().unwrap_or(codes::H3_MESSAGE_ERROR);
                self.streams.release(id, &mut self.transport, code);
                self.glitch("malformed request");
            }
        }
    }

    fn fill_rx(&mut self, id: u64) {
        let (Some(h3), Some(stream)) = (self.h3.as_mut(), self.streams.get_mut(id)) else {
            return;
        };
        match stream.fill_rx(h3, &mut self.transport) {
            Ok(_) => self.after_rx(id),
            Err(e) => self.fail_stream(id, e),
        }
    }

    /// After the Rx side moved: keep the recv list and the readable event up to date.
    fn after_rx(&mut self, id: u64) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        let (blocked, readable) = (stream.rx_blocked(), stream.take_readable());
        if blocked {
            self.streams.wait.recv.insert(id);
        } else {
            self.streams.wait.recv.remove(&id);
        }
        if readable {
            self.events.push_back(Event::Readable { stream: id });
        }
    }

    fn resume_rx(&mut self) {
        let waiting: Vec<u64> = self.streams.wait.recv.iter().copied().collect();
        for id in waiting {
            if self.streams.get_mut(id).is_some_and(|s| s.wants_rx()) {
                self.fill_rx(id);
            }
        }
    }

    /// Streams with bytes in the transport but no request yet are "opening": the http-request timer
    /// watches them.
    fn track_opening(&mut self, now: Instant) {
        let readable: Vec<u64> = self
            .transport
            .readable()
            .filter(|id| is_client_bidi(*id))
            .collect();
        for id in readable {
            if !self.streams.contains(id) {
                if let Err(quiche::Error::StreamReset(_)) = self.transport.stream_discard(id, 0) {
                    // Reset before its head was whole, often in the packet that opened it: the
                    // rapid-reset shape (CVE-2023-44487). quiche dropped its bytes; HTTP/3 never sees it.
                    self.opening.remove(&id);
                    self.refuse(id);
                    self.glitch("request cancelled as it opened");
                } else if self.goaway.is_some_and(|g| id >= g) {
                    self.refuse(id);
                } else {
                    self.opening.entry(id).or_insert(now);
                }
            }
        }
    }

    /// Aborts that quiche does not report as HTTP/3 events: STOP_SENDING shows on the next write, and a
    /// RESET_STREAM after the client's FIN empties the stream without a word.
    fn check_transport(&mut self) {
        for id in self.streams.ids() {
            let Some(stream) = self.streams.get_mut(id) else {
                continue;
            };
            let verdict = if stream.rx_vanished(&self.transport) {
                Some(StreamError::Gone)
            } else if !stream.response_done() {
                stream.transport_verdict(&mut self.transport)
            } else {
                None
            };
            if let Some(verdict) = verdict {
                self.fail_stream(id, verdict);
            }
        }
    }

    fn handle_room(&mut self) {
        if self.wakeup.take_room() {
            for id in std::mem::take(&mut self.streams.wait.budget) {
                self.events.push_back(Event::Writable { stream: id });
            }
        }
    }

    /// Refuses a stream the connection will not serve (after GOAWAY, or a timed-out request head).
    fn refuse(&mut self, id: u64) {
        qcs::refuse(&mut self.transport, id);
    }

    fn fail_stream(&mut self, id: u64, error: StreamError) {
        if matches!(error, StreamError::Malformed(_) | StreamError::Rejected(_)) {
            self.glitch("malformed request part");
        }
        match error.stream_code() {
            Some(code) => {
                let cause = match error {
                    StreamError::Malformed(what) => AbortCause::Malformed(what),
                    StreamError::Rejected(what) => AbortCause::Rejected(what),
                    StreamError::Stopped(c) => AbortCause::PeerStopSending(c),
                    StreamError::PeerReset(c) => AbortCause::PeerReset(c),
                    StreamError::Gone => AbortCause::TransportDiscarded,
                    StreamError::Connection(_) => unreachable!("connection errors have no stream code"),
                };
                self.end_stream(id, Some(cause), code);
            }
            None => {
                let wire = match &error {
                    StreamError::Connection(e) => codes::wire_code(e),
                    _ => codes::H3_INTERNAL_ERROR,
                };
                self.close_with(true, wire, "HTTP/3 stream error");
            }
        }
    }

    /// Ends a stream through the table and tells the upper side.
    fn end_stream(&mut self, id: u64, cause: Option<AbortCause>, code: u64) {
        if let Some(upper) = self.streams.release(id, &mut self.transport, code) {
            self.events.push_back(match cause {
                Some(cause) => Event::StreamAborted {
                    stream: id,
                    upper,
                    cause,
                },
                None => Event::StreamClosed { stream: id, upper },
            });
        }
    }

    /// Counts a protocol oddity of the client (HAProxy's "glitches": a malformed or refused request, a
    /// request reset before its response, a head that never came). Browsers cancel requests too, so one
    /// is no offence; past `glitches_threshold` the connection is closed with H3_EXCESSIVE_LOAD, the
    /// RFC's code for a peer that generates excessive load.
    fn glitch(&mut self, what: &str) {
        self.glitches += 1;
        self.live.live.counters().count_glitch();
        let threshold = self.limits.glitches_threshold;
        if threshold > 0 && self.glitches >= threshold && !self.close_requested {
            tracing::debug!(
                glitches = self.glitches,
                last = what,
                "closing a connection for its glitches"
            );
            self.live.live.counters().count_glitch_close();
            self.close_with(true, codes::H3_EXCESSIVE_LOAD, "excessive load");
        }
    }

    fn close_with(&mut self, app: bool, code: u64, reason: &str) {
        let _ = self.transport.close(app, code, reason.as_bytes());
        self.close_requested = true;
    }

    fn report_dead(&mut self) {
        if !self.dead_reported && self.is_dead() {
            self.dead_reported = true;
            self.events.push_back(Event::Dead);
        }
    }

    // ---- output ----

    /// Writes the next datagram to send into `out`, or returns `None` when there is nothing to send now.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        self.flush_streams();
        let sent = match self.transport.send(out) {
            Ok((len, info)) => Some(Transmit {
                len,
                to: info.to,
                from: info.from,
                at: info.at,
            }),
            Err(quiche::Error::Done) => None,
            Err(e) => {
                tracing::debug!(error = %e, "send failed");
                self.close_with(false, 0x1, "internal error");
                None
            }
        };
        if sent.is_none() {
            self.streams.sweep_descs();
            self.process_output_side(now);
        }
        sent
    }

    /// Bookkeeping after the transport has nothing more to send.
    fn process_output_side(&mut self, now: Instant) {
        self.handle_room();
        if self.streams.is_empty() && self.opening.is_empty() && self.timers.idle_since.is_none() {
            self.timers.idle_since = Some(now);
        }
        self.report_dead();
    }

    fn flush_streams(&mut self) {
        let ids: Vec<u64> = self.streams.wait.send.iter().copied().collect();
        for id in ids {
            let (Some(h3), Some(stream)) = (self.h3.as_mut(), self.streams.get_mut(id)) else {
                self.streams.wait.send.remove(&id);
                continue;
            };
            match stream.flush(h3, &mut self.transport) {
                Ok(Flush::Idle) => {
                    self.streams.wait.send.remove(&id);
                }
                Ok(Flush::Blocked) => {
                    self.streams.wait.send.remove(&id);
                    let capacity = self.transport.stream_capacity(id).unwrap_or(0);
                    self.streams.wait.flow.insert(id, capacity);
                }
                Ok(Flush::Finished) => {
                    self.streams.wait.send.remove(&id);
                    // The response is complete: a request still coming is stopped with H3_NO_ERROR.
                    self.end_stream(id, None, codes::H3_NO_ERROR);
                }
                Err(e) => self.fail_stream(id, e),
            }
        }
    }

    /// The next event for the upper side.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- calls to answer ----

    fn stream(&mut self, id: u64) -> Result<&mut Stream, Error> {
        self.streams.get_mut(id).ok_or(Error::StreamGone(id))
    }

    /// Links an opaque upper handle to a stream; events about the stream carry it.
    pub fn set_upper(&mut self, stream: u64, upper: u64) -> Result<(), Error> {
        self.stream(stream)?.set_upper(upper);
        Ok(())
    }

    /// Queues the response head. `end`: no body follows.
    pub fn send_response(&mut self, stream: u64, head: ResponseHead, end: bool) -> Result<(), Error> {
        self.stream(stream)?.send_head(head, end);
        self.streams.wait.send.insert(stream);
        Ok(())
    }

    /// Queues response body, charged to the connection's Tx budget.
    pub fn send_body(&mut self, stream: u64, data: Bytes) -> Result<SendBody, Error> {
        match self.stream(stream)?.send_body(data) {
            Ok(()) => {
                self.streams.wait.send.insert(stream);
                Ok(SendBody::Queued)
            }
            Err(data) => {
                self.streams.wait.budget.insert(stream);
                Ok(SendBody::Blocked(data))
            }
        }
    }

    /// Ends the response, with trailers if any.
    pub fn finish(&mut self, stream: u64, trailers: Option<Vec<Header>>) -> Result<(), Error> {
        self.stream(stream)?.finish(trailers);
        self.streams.wait.send.insert(stream);
        Ok(())
    }

    /// Takes request body: up to `max` bytes, the end (with trailers), or `Pending`.
    pub fn read_body(&mut self, stream: u64, max: usize) -> Result<BodyRead, Error> {
        let read = self.stream(stream)?.read_body(max);
        if self.streams.get_mut(stream).is_some_and(|s| s.wants_rx()) {
            self.fill_rx(stream);
        }
        Ok(read)
    }

    /// Aborts a stream from the upper side (RESET_STREAM and STOP_SENDING with `code`) and releases it.
    /// Returns its upper handle.
    pub fn reset_stream(&mut self, stream: u64, code: u64) -> Result<Option<u64>, Error> {
        self.streams
            .release(stream, &mut self.transport, code)
            .ok_or(Error::StreamGone(stream))
    }

    /// Graceful shutdown: GOAWAY, refuse new requests, let the ones in progress finish.
    pub fn shutdown(&mut self, _now: Instant) {
        self.send_goaway();
        self.report_dead();
    }

    /// GOAWAY after the highest request seen (refusing the streams opened past it), or a close when
    /// HTTP/3 is not up yet.
    fn send_goaway(&mut self) {
        if self.goaway.is_some() {
            return;
        }
        let id = self.streams.max_request_id.map_or(0, |m| m + 4);
        match self.h3.as_mut() {
            Some(h3) => {
                self.goaway = Some(id);
                match h3.send_goaway(&mut self.transport, id) {
                    Ok(()) | Err(h3::Error::Done | h3::Error::StreamBlocked) => {}
                    // The peer stopped our control stream (HAProxy #2006): a connection error, not a crash.
                    Err(e) => {
                        tracing::debug!(error = %e, "GOAWAY failed");
                        self.close_with(true, codes::H3_CLOSED_CRITICAL_STREAM, "control stream closed");
                    }
                }
                let late: Vec<u64> = self.opening.range(id..).map(|(id, _)| *id).collect();
                for id in late {
                    self.opening.remove(&id);
                    self.refuse(id);
                }
            }
            None => self.close_with(true, codes::H3_NO_ERROR, "shutdown"),
        }
    }

    /// Closes at once with an application error code.
    pub fn close(&mut self, code: u64, reason: &str) {
        self.close_with(true, code, reason);
        self.report_dead();
    }

    // ---- the release ----

    /// Ends the connection, in the order of `docs/release-order.md` (rule 3):
    /// 1. stop the timers;
    /// 2. release every stream through the table, while the budget and the wake-up machinery are valid;
    /// 3. detach the Tx budget's room sink (the surviving descriptors' notification path);
    /// 4. drop the wake-up handle;
    /// 5. free the HTTP/3 state;
    /// 6. hand the transport to [`Closing`], which sends CONNECTION_CLOSE once every descriptor is drained
    ///    (or at once if the transport is already closing).
    pub fn release(self, _now: Instant) -> Released {
        let Connection {
            mut live,
            mut streams,
            opening,
            timers,
            wakeup,
            h3,
            transport: mut conn,
            budget,
            ..
        } = self;
        drop((timers, opening));
        let orphans = streams.release_all(&mut conn, codes::H3_REQUEST_CANCELLED);
        budget.detach_sink();
        drop(wakeup);
        drop(h3);
        let counters = live.live.counters().clone();
        live.released = true;
        drop(live);
        Released {
            closing: Closing::new(conn, streams.take_descs(), counters),
            orphans,
        }
    }

    /// The release with steps 2 and 4 swapped and step 3 skipped: the 2.9.6 order. Exists only to prove
    /// that the counters catch it.
    #[cfg(feature = "test-hooks")]
    pub fn release_in_wrong_order(self, _now: Instant) -> Released {
        let Connection {
            mut live,
            mut streams,
            wakeup,
            h3,
            transport: mut conn,
            ..
        } = self;
        drop(wakeup);
        let orphans = streams.release_all(&mut conn, codes::H3_REQUEST_CANCELLED);
        drop(h3);
        let counters = live.live.counters().clone();
        live.released = true;
        drop(live);
        Released {
            closing: Closing::new(conn, streams.take_descs(), counters),
            orphans,
        }
    }
}

impl Connection {
    /// Which wait lists hold a stream: send, flow control, Tx budget, Rx. For tests.
    #[cfg(feature = "test-hooks")]
    pub fn wait_lists_of(&self, stream: u64) -> [bool; 4] {
        self.streams.wait.membership(stream)
    }

    /// Streams whose request head has started but is not complete. For tests.
    #[cfg(feature = "test-hooks")]
    pub fn opening_streams(&self) -> Vec<u64> {
        self.opening.keys().copied().collect()
    }

    /// The counters this connection reports to.
    pub fn counters(&self) -> &Arc<Counters> {
        self.live.live.counters()
    }

    /// True when events wait for `poll_event`.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("trace_id", &self.transport.trace_id())
            .field("streams", &self.streams)
            .field("opening", &self.opening)
            .field("goaway", &self.goaway)
            .finish_non_exhaustive()
    }
}
