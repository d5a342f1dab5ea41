//! Requests on their way to a server: choosing the backend and the server, the backend queue when every
//! usable server is at its `maxconn`, retries after a failed attempt, and the exchanges' lifecycle with
//! their accounting (every `begin` on a frontend, backend or server has exactly one `end`).

use super::queue::Queued;
use super::sockets::Owner;
use super::*;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;
use std::os::fd::RawFd;

use mio::{Interest, Token};
use qcc::RequestHead;

use crate::config::Reuse;
use crate::frontend::rules::select_backend;
use crate::telemetry::access_log::AccessFacts;
use crate::telemetry::counters::EarlyData;
use crate::telemetry::counters::PoolEvent;
use crate::telemetry::in_flight::{InFlight, Origin};
use crate::upstream::balance::{hash_key, Load, Tier};
use crate::upstream::live::{BackendRuntime, Observed, ServerRuntime};
use crate::upstream::{
    h1, respond_error, BackendSocket, Exchange, ExchangeTimeouts, Forward, Step, Termination,
};
use crate::upstream::{PoolPolicy, Take};

/// One request's way to a server: where it goes and where it has been (everything but the request).
pub(super) struct Attempt {
    pub(super) conn: ConnHandle,
    pub(super) backend: Arc<BackendRuntime>,
    /// The balancing key (hashing algorithms).
    pub(super) key: Option<Vec<u8>>,
    /// Servers that failed this request, by index.
    pub(super) tried: Vec<usize>,
}

/// An exchange with its attempt and server.
pub(super) struct ActiveExchange {
    pub(super) attempt: Attempt,
    pub(super) server: Arc<ServerRuntime>,
    pub(super) exchange: Exchange,
    /// The backend's `http-reuse` when the exchange started (whether its socket may go back to the pool).
    pub(super) reuse: Reuse,
}

impl Worker {
    /// A request head arrived on `stream`.
    pub(super) fn on_request(
        &mut self,
        index: usize,
        stream: u64,
        head: RequestHead,
        end: bool,
        now: Instant,
    ) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        slot.requests += 1;
        let first = slot.requests == 1;
        let slot = &self.slots[index];
        let ServerConn::Live(live) = &slot.conn else {
            return;
        };
        // Before the handshake completes the request came in 0-RTT early data, which anyone who captured
        // it can replay (RFC 8470); once it completed, a replayed connection can no longer get here.
        let early = !live.is_established();
        let config = self.config.clone();
        let f = self.listeners[slot.listener].frontend;
        let frontend = &config.frontends[f];
        let facts = AccessFacts {
            method: head.method().to_string(),
            authority: head.authority().to_string(),
            path: head.path().to_string(),
            started: now,
            connected_at: None,
            head_at: None,
            status: None,
            bytes_in: 0,
            bytes_out: 0,
        };
        let conn = ConnHandle {
            index,
            serial: slot.serial,
        };
        let mut request = InFlight::begin(
            self.proxy.clone(),
            self.runtime.frontends[f].clone(),
            Origin {
                client: slot.peer,
                conn: slot.trace.clone(),
                span: &slot.span,
            },
            stream,
            facts,
        );
        if head.headers().len() > config.global.max_headers {
            // RFC 9114, 4.2.2: a field section larger than we are willing to handle gets 431, and the
            // connection lives on.
            let why = Termination::HeadTooLarge;
            self.respond_error(conn, stream, why.status(), &mut request);
            request.finish(why, Arc::from("-"));
            return;
        }
        let Some(b) = select_backend(&config, frontend, &head) else {
            return self.answer_without_backend(conn, stream, request);
        };
        let backend = &config.backends[b];
        let backend_rt = self.runtime.backends[b].backend.clone();
        request.enter_backend(backend_rt.clone());
        let forwarded = (frontend.forwardfor || backend.forwardfor).then_some(h1::ClientAddr {
            client: slot.peer.ip(),
        });
        let key = hash_key(&backend.settings.balance, &head, slot.peer.ip());
        let (encoded, upload) = h1::encode_request(&head, end, forwarded);
        let forward = Forward {
            stream,
            head: Bytes::from(encoded),
            upload,
            idempotent: Forward::is_idempotent(head.method()),
            request,
            timeouts: ExchangeTimeouts {
                connect: backend.timeouts.connect,
                server: backend.timeouts.server,
            },
            set_headers: frontend.set_response_headers.clone(),
            retries_left: backend.settings.retries,
            early_data: false,
            first,
            fresh: false,
        };
        let attempt = Attempt {
            conn,
            backend: backend_rt,
            key,
            tried: Vec::new(),
        };
        if !early {
            return self.dispatch(attempt, forward, now);
        }
        if !frontend.early_data.forwards_early(head.method()) {
            self.proxy.count_early(EarlyData::Held);
            return self.await_handshake(attempt, forward);
        }
        self.proxy.count_early(EarlyData::Forwarded);
        let mut forward = forward;
        // A client that sent Early-Data itself is an intermediary that gets any 425 as it is (RFC 8470,
        // 5.2); the field is forwarded as it came.
        forward.early_data = head.header("early-data").is_none();
        self.dispatch(attempt, forward, now);
    }

    /// Sends a request to a server, queues it when every usable server is full, or answers 503.
    pub(super) fn dispatch(&mut self, attempt: Attempt, forward: Forward, now: Instant) {
        let config = self.config.clone();
        let Some(b) = config.backend(&attempt.backend.name) else {
            return self.fail_request(attempt, forward, Termination::ConnectFailed, None);
        };
        let backend = &config.backends[b];
        let view = &self.runtime.backends[b];
        if view.servers_up() == 0 {
            return self.fail_request(attempt, forward, Termination::ConnectFailed, None);
        }
        let loads = self.loads(b, &attempt.tried);
        match self.balancers[b].pick(&loads, attempt.key.as_deref()) {
            Some(s) => self.start_exchange(attempt, forward, b, s, now),
            None => {
                let queue = self.queues.entry(backend.name.clone()).or_default();
                if queue.len() >= backend.queue_limit() {
                    return self.fail_request(attempt, forward, Termination::QueueTimeout, None);
                }
                attempt.backend.queued.fetch_add(1, Relaxed);
                queue.push_back(Queued {
                    attempt,
                    forward,
                    deadline: now + backend.queue_timeout(),
                });
            }
        }
    }

    /// The balancer's view of backend `b`: a server is usable when in the serving tier (backups only
    /// while no active server is UP), UP, below its `maxconn` and, on a retry, not one that failed
    /// already (with `redispatch`) or the one that failed (without).
    pub(super) fn loads(&self, b: usize, tried: &[usize]) -> Vec<Load> {
        let settings = &self.config.backends[b].settings;
        let servers = &self.runtime.backends[b].servers;
        let backup = |i: usize| servers[i].config.options.backup;
        let tier = Tier::of(
            (0..servers.len()).map(|i| (servers[i].is_up(), backup(i))),
            settings.allbackups,
        );
        let open = |i: usize| tier.admits(i, backup(i)) && servers[i].is_up() && servers[i].has_room();
        let allowed = |i: usize| match (tried.last(), settings.redispatch) {
            (None, _) => true,
            (Some(last), false) => i == *last,
            // Another server when there is one; the same ones again when all have failed.
            (Some(_), true) => {
                !tried.contains(&i) || (0..servers.len()).all(|j| !open(j) || tried.contains(&j))
            }
        };
        (0..servers.len())
            .map(|i| Load {
                usable: open(i) && allowed(i),
                active: servers[i].traffic.active(),
            })
            .collect()
    }

    pub(super) fn start_exchange(
        &mut self,
        attempt: Attempt,
        forward: Forward,
        b: usize,
        s: usize,
        now: Instant,
    ) {
        let server = self.runtime.backends[b].servers[s].clone();
        if !server.try_begin() {
            // Another worker took the last slot since the balancer looked: another server, or the queue.
            return self.dispatch(attempt, forward, now);
        }
        let addr = server.addr();
        let reuse = self.config.backends[b].settings.reuse;
        let take = match (reuse, forward.first) {
            _ if forward.fresh => Take::Fresh,
            (Reuse::Never, _) | (Reuse::Safe, true) => Take::Fresh,
            (Reuse::Aggressive, true) => Take::Proven,
            _ => Take::Any,
        };
        // A request that may not go twice checks that its idle connection is still open; the others
        // go again on a new one if it turns out closed (Step::ClosedAtReuse).
        let verify = !forward.idempotent;
        let (sock, connected) = match self.pool.checkout(addr, take, verify) {
            Some(sock) => (sock, true),
            None => match TcpStream::connect(addr) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let mut sock = BackendSocket::new(stream, self.proxy.clone());
                    let token = Token(SOCKET_BASE + sock.fd() as usize);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self.poll.registry().register(sock.stream_mut(), token, interest) {
                        tracing::warn!(error = %e, "registering a backend socket failed");
                    }
                    (sock, false)
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "backend connect failed");
                    server.traffic.abandon();
                    self.observe(&server, Observed::ConnectError);
                    let mut attempt = attempt;
                    attempt.tried.push(s);
                    if forward.retries_left > 0 {
                        let mut forward = forward;
                        forward.retries_left -= 1;
                        return self.redispatch(attempt, forward, now);
                    }
                    return self.fail_request(attempt, forward, Termination::ConnectFailed, Some(&server));
                }
            },
        };
        let stream = forward.stream;
        let conn = attempt.conn;
        let fd = sock.fd();
        let exchange = Exchange::new(forward, s, addr, sock, connected, now);
        let ex = self.exchanges.insert(ActiveExchange {
            attempt,
            server,
            exchange,
            reuse,
        });
        self.owners.set(fd, Owner::Exchange(ex));
        if let Some(slot) = self.slots.slot_mut(conn) {
            slot.exchanges.insert(stream, ex);
        }
        self.proxy.exchanges.fetch_add(1, Relaxed);
        self.progress_exchange(ex, false);
    }

    /// An event on the backend socket `fd`, for whoever has it now. `readable`: bytes, a close or an
    /// error may be waiting.
    pub(super) fn on_backend_event(&mut self, fd: usize, readable: bool) {
        match self.owners.get(fd) {
            Owner::Exchange(ex) => {
                // A stale event (queued before the socket changed hands) may name a reused index.
                let current = self.exchanges.get(ex).filter(|r| r.exchange.fd() as usize == fd);
                if current.is_some_and(|r| readable || r.exchange.awaits_writable()) {
                    self.progress_exchange(ex, readable);
                }
            }
            // A writable edge (the server acknowledged our last bytes) says nothing about a close: only
            // a read-side or error event is worth a `peek`.
            Owner::Pool if readable => self.pool.on_event(fd as RawFd),
            Owner::Pool => {}
            Owner::None => {}
        }
    }

    /// Counts a retry and sends the request again.
    pub(super) fn redispatch(&mut self, attempt: Attempt, forward: Forward, now: Instant) {
        attempt.backend.retries.fetch_add(1, Relaxed);
        let config = self.config.clone();
        let redispatch = config
            .backend(&attempt.backend.name)
            .is_some_and(|b| config.backends[b].settings.redispatch);
        if redispatch {
            attempt.backend.redispatches.fetch_add(1, Relaxed);
        }
        self.dispatch(attempt, forward, now);
    }

    /// Moves an exchange on. `readable`: a socket event said bytes may be waiting.
    pub(super) fn progress_exchange(&mut self, ex: usize, readable: bool) {
        let now = Instant::now();
        let Some(running) = self.exchanges.get_mut(ex) else {
            return;
        };
        let _entered = running.exchange.request.span.clone().entered();
        let key = running.attempt.conn;
        let Some(slot) = self.slots.slot_mut(key) else {
            self.proxy.stale_handles.fetch_add(1, Relaxed);
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let ServerConn::Live(conn) = &mut slot.conn else {
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let step = running.exchange.progress(conn, now, readable);
        mark_dirty(&mut self.dirty, slot, key.index);
        self.after_step(ex, step, now);
    }

    pub(super) fn timeout_exchange(&mut self, ex: usize, now: Instant) {
        let Some(running) = self.exchanges.get_mut(ex) else {
            return;
        };
        let _entered = running.exchange.request.span.clone().entered();
        let key = running.attempt.conn;
        let Some(slot) = self.slots.slot_mut(key) else {
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let ServerConn::Live(conn) = &mut slot.conn else {
            // Its connection is closing: nobody waits for the answer. Skipping it would leave a past
            // deadline behind, and the loop would spin on it.
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let step = running.exchange.on_timeout(conn);
        mark_dirty(&mut self.dirty, slot, key.index);
        self.after_step(ex, step, now);
    }

    pub(super) fn after_step(&mut self, ex: usize, step: Step, now: Instant) {
        match step {
            Step::Continue => {}
            Step::Finished { reusable } => self.end_exchange(ex, Termination::Normal, reusable),
            Step::Failed(why) => self.end_exchange(ex, why, false),
            Step::Retry(why) => self.retry_exchange(ex, why, now),
            Step::TooEarly => self.replay_after_handshake(ex, now),
            Step::ClosedAtReuse => self.resend_fresh(ex, now),
        }
    }

    /// The server had closed the reused connection: the request goes again on a new one, to the server
    /// the balancer picks; no retry spent, no error counted against the server.
    fn resend_fresh(&mut self, ex: usize, now: Instant) {
        let Some((attempt, _, exchange)) = self.take_back(ex) else {
            return;
        };
        self.proxy.count_pool(PoolEvent::ClosedByServer);
        let (sock, mut forward) = exchange.into_forward();
        drop(sock);
        forward.fresh = true;
        self.dispatch(attempt, forward, now);
    }

    /// An exchange whose request goes again: out of the tables, and no longer in flight on its server
    /// (it ends wherever it goes next, counted there).
    pub(super) fn take_back(&mut self, ex: usize) -> Option<(Attempt, Arc<ServerRuntime>, Exchange)> {
        let ActiveExchange {
            attempt,
            server,
            exchange,
            ..
        } = self.unlink(ex)?;
        server.traffic.abandon();
        Some((attempt, server, exchange))
    }

    /// Takes an exchange out of the tables (socket deregistered, stream unlinked).
    pub(super) fn unlink(&mut self, ex: usize) -> Option<ActiveExchange> {
        let running = self.exchanges.try_remove(ex)?;
        self.proxy.exchanges.fetch_sub(1, Relaxed);
        // The socket stays registered: it goes to the pool, or closing it leaves epoll.
        self.owners.set(running.exchange.fd(), Owner::None);
        let key = running.attempt.conn;
        if let Some(slot) = self.slots.slot_mut(key) {
            slot.exchanges.remove(&running.exchange.stream);
        }
        Some(running)
    }

    pub(super) fn retry_exchange(&mut self, ex: usize, why: Termination, now: Instant) {
        let Some((mut attempt, server, exchange)) = self.take_back(ex) else {
            return;
        };
        let outcome = match why {
            Termination::ConnectFailed | Termination::ConnectTimeout => Observed::ConnectError,
            _ => Observed::ResponseError,
        };
        self.observe(&server, outcome);
        tracing::debug!(server = %server.name(), why = why.code(), "retrying a request");
        attempt.tried.push(exchange.server);
        let (sock, forward) = exchange.into_retry();
        drop(sock);
        self.redispatch(attempt, forward, now);
        self.drain_queue(&server.backend, now);
    }

    /// What traffic showed about a server: its `observe` streaks, and the connect-error counters (the
    /// server's and the proxy's), which move together here only.
    pub(super) fn observe(&self, server: &ServerRuntime, what: Observed) {
        if what == Observed::ConnectError {
            self.proxy.connect_errors.fetch_add(1, Relaxed);
        }
        server.observe(what);
    }

    /// Removes an exchange: its socket goes back to the pool when reusable, else it is closed; the
    /// request ends.
    pub(super) fn end_exchange(&mut self, ex: usize, why: Termination, reusable: bool) {
        let Some(ActiveExchange {
            attempt,
            server,
            exchange,
            reuse,
        }) = self.unlink(ex)
        else {
            return;
        };
        let facts = &exchange.request.facts;
        let outcome = match why {
            Termination::ConnectFailed | Termination::ConnectTimeout => Observed::ConnectError,
            Termination::Normal if facts.status.is_some_and(|s| s < 500) => Observed::Fine,
            Termination::ClientAborted => Observed::Fine,
            _ => Observed::ResponseError,
        };
        self.observe(&server, outcome);
        let response_time = facts.head_at.map(|t| t - facts.started);
        server
            .traffic
            .end(facts.status, (facts.bytes_in, facts.bytes_out), response_time);
        let addr = exchange.addr;
        let (mut sock, request) = exchange.into_parts();
        request.finish(why, server.label.clone());
        if reusable && self.run == Run::Serving && reuse != Reuse::Never {
            sock.count_served();
            self.owners.set(sock.fd(), Owner::Pool);
            self.pool
                .checkin(addr, sock, PoolPolicy::of(&server.config.options), Instant::now());
        }
        self.drain_queue(&server.backend, Instant::now());
        self.share_free_slot(&attempt.backend);
    }

    /// A server slot of `backend` came free: when other workers queue for it (the backend's count is
    /// over this worker's own queue), they are told, so the slot is not left to this worker's queue
    /// alone (`maxconn` counts every worker's requests).
    fn share_free_slot(&self, backend: &BackendRuntime) {
        if self.mailboxes.len() == 1 || backend.queued.load(Relaxed) == 0 {
            return;
        }
        let mine = self.queues.get(&backend.name).map_or(0, |q| q.len() as u64);
        if backend.queued.load(Relaxed) <= mine {
            return;
        }
        let name: Arc<str> = backend.name.as_str().into();
        for worker in (0..self.mailboxes.len()).filter(|&w| w != self.me) {
            self.mailboxes
                .order(worker, inbox::Control::DrainQueue(name.clone()));
        }
    }

    /// Answers a request that never reached a server with the error `why` calls for, and ends it.
    pub(super) fn fail_request(
        &mut self,
        attempt: Attempt,
        forward: Forward,
        why: Termination,
        server: Option<&ServerRuntime>,
    ) {
        let mut request = forward.request;
        if why != Termination::ClientAborted {
            self.respond_error(attempt.conn, forward.stream, why.status(), &mut request);
        }
        let at = server.map_or_else(|| Arc::from(attempt.backend.name.as_str()), |s| s.label.clone());
        request.finish(why, at);
    }

    /// Answers 503 to a request no backend rule matched, and ends it.
    pub(super) fn answer_without_backend(&mut self, conn: ConnHandle, stream: u64, mut request: InFlight) {
        let why = Termination::ConnectFailed;
        self.respond_error(conn, stream, why.status(), &mut request);
        request.finish(why, Arc::from("-"));
    }

    /// Sends an error status on a live connection's stream, as the request's status.
    fn respond_error(&mut self, conn: ConnHandle, stream: u64, status: u16, request: &mut InFlight) {
        let Some(slot) = self.slots.slot_mut(conn) else {
            return;
        };
        if let ServerConn::Live(c) = &mut slot.conn {
            respond_error(c, stream, status);
            request.facts.status = Some(status);
            mark_dirty(&mut self.dirty, slot, conn.index);
        }
    }
}
