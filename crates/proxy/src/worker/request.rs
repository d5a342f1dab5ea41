//! Requests on their way to a server: choosing the backend and the server, the backend queue when every
//! usable server is at its `maxconn`, retries after a failed attempt, and the exchanges' lifecycle with
//! their accounting (every `begin` on a frontend, backend or server has exactly one `end`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Token};
use qcc::RequestHead;

use super::{mark_dirty, ConnKey, SlotConn, Worker, EXCHANGE_BASE};
use crate::frontend::rules::select_backend;
use crate::telemetry::access_log;
use crate::telemetry::prometheus::EarlyData;
use crate::upstream::balance::{hash_key, Load, Tier};
use crate::upstream::live::{BackendRuntime, FrontendRuntime, Observed, ServerRuntime};
use crate::upstream::{
    h1, respond_error, BackendSocket, Exchange, ExchangeInfo, ExchangeTimeouts, Forward, Step, Termination,
};

/// Where a request goes and where it has been: everything but the request itself.
pub(super) struct Route {
    pub(super) conn: ConnKey,
    frontend: Arc<FrontendRuntime>,
    backend: Arc<BackendRuntime>,
    /// The balancing key (hashing algorithms).
    key: Option<Vec<u8>>,
    /// Servers that failed this request, by index.
    tried: Vec<usize>,
}

/// A request waiting in a backend queue for a server slot.
pub(super) struct Queued {
    route: Route,
    forward: Forward,
    deadline: Instant,
}

impl Queued {
    /// Its connection.
    pub(super) fn conn(&self) -> ConnKey {
        self.route.conn
    }
}

/// A request that arrived in early data and waits for its connection's handshake to complete.
pub(super) struct AwaitingHandshake {
    route: Route,
    forward: Forward,
}

/// An exchange with its route and server.
pub(super) struct Running {
    pub(super) route: Route,
    pub(super) server: Arc<ServerRuntime>,
    pub(super) exchange: Exchange,
}

/// The queues of a worker, one per backend name.
pub(super) type Queues = std::collections::HashMap<String, VecDeque<Queued>>;

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
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let SlotConn::Live(live) = &slot.conn else {
            return;
        };
        // Before the handshake completes the request came in 0-RTT early data, which anyone who captured
        // it can replay (RFC 8470); once it completed, a replayed connection can no longer get here.
        let early = !live.is_established();
        let config = self.config.clone();
        let f = self.listeners[slot.listener].frontend;
        let frontend = &config.frontends[f];
        let frontend_rt = self.runtime.frontends[f].clone();
        frontend_rt.traffic.begin();
        let info = ExchangeInfo {
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
        let conn = ConnKey {
            index,
            serial: slot.serial,
        };
        let Some(b) = select_backend(&config, frontend, &head) else {
            self.answer_without_backend(conn, stream, info, &frontend_rt);
            return;
        };
        let backend = &config.backends[b];
        let backend_rt = self.runtime.backends[b].backend.clone();
        backend_rt.traffic.begin();
        let forwarded = (frontend.forwardfor || backend.forwardfor).then_some(h1::Forwarded {
            client: slot.peer.ip(),
        });
        let key = hash_key(&backend.settings.balance, &head, slot.peer.ip());
        let (request, upload) = h1::encode_request(&head, end, forwarded);
        let forward = Forward {
            stream,
            head: Bytes::from(request),
            upload,
            idempotent: Forward::is_idempotent(head.method()),
            info,
            timeouts: ExchangeTimeouts {
                connect: backend.timeouts.connect,
                server: backend.timeouts.server,
            },
            set_headers: frontend.set_response_headers.clone(),
            retries_left: backend.settings.retries,
            early_data: false,
        };
        let route = Route {
            conn,
            frontend: frontend_rt,
            backend: backend_rt,
            key,
            tried: Vec::new(),
        };
        if !early {
            return self.dispatch(route, forward, now);
        }
        if !frontend.early_data.forwards_early(head.method()) {
            self.proxy.count_early(EarlyData::Held);
            return self.await_handshake(route, forward);
        }
        self.proxy.count_early(EarlyData::Forwarded);
        let mut forward = forward;
        // A client that sent Early-Data itself is an intermediary that gets any 425 as it is (RFC 8470,
        // 5.2); the field is forwarded as it came.
        forward.early_data = head.header("early-data").is_none();
        self.dispatch(route, forward, now);
    }

    /// Holds a request until its connection's handshake completes ([`Worker::after_handshake`]).
    fn await_handshake(&mut self, route: Route, forward: Forward) {
        match self.slots.get_mut(route.conn.index) {
            Some(slot) if slot.serial == route.conn.serial => {
                slot.awaiting_handshake.push(AwaitingHandshake { route, forward });
            }
            _ => self.fail_request(route, forward, Termination::ClientAborted, None),
        }
    }

    /// The connection's handshake completed: the requests held for it go to their servers.
    pub(super) fn after_handshake(&mut self, index: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let established = matches!(&slot.conn, SlotConn::Live(c) if c.is_established());
        if !established || slot.awaiting_handshake.is_empty() {
            return;
        }
        for held in std::mem::take(&mut slot.awaiting_handshake) {
            self.dispatch(held.route, held.forward, now);
        }
    }

    /// Drops the requests held for the handshake of a connection (`stream: None`) or of one stream.
    pub(super) fn drop_awaiting(&mut self, index: usize, stream: Option<u64>) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let (gone, kept) = std::mem::take(&mut slot.awaiting_handshake)
            .into_iter()
            .partition(|h| stream.is_none_or(|s| s == h.forward.stream));
        slot.awaiting_handshake = kept;
        for held in gone {
            self.fail_request(held.route, held.forward, Termination::ClientAborted, None);
        }
    }

    /// Sends a request to a server, queues it when every usable server is full, or answers 503.
    fn dispatch(&mut self, route: Route, forward: Forward, now: Instant) {
        let config = self.config.clone();
        let Some(b) = config.backend(&route.backend.name) else {
            return self.fail_request(route, forward, Termination::ConnectFailed, None);
        };
        let backend = &config.backends[b];
        let view = &self.runtime.backends[b];
        if view.servers_up() == 0 {
            return self.fail_request(route, forward, Termination::ConnectFailed, None);
        }
        let loads = self.loads(b, &route.tried);
        match self.balancers[b].pick(&loads, route.key.as_deref()) {
            Some(s) => self.start_exchange(route, forward, b, s, now),
            None => {
                let queue = self.queues.entry(backend.name.clone()).or_default();
                if queue.len() >= backend.queue_limit() {
                    return self.fail_request(route, forward, Termination::QueueTimeout, None);
                }
                route.backend.queued.fetch_add(1, Relaxed);
                queue.push_back(Queued {
                    route,
                    forward,
                    deadline: now + backend.queue_timeout(),
                });
            }
        }
    }

    /// The balancer's view of backend `b`: a server is usable when in the serving tier (backups only
    /// while no active server is UP), UP, below its `maxconn` and, on a retry, not one that failed
    /// already (with `redispatch`) or the one that failed (without).
    fn loads(&self, b: usize, tried: &[usize]) -> Vec<Load> {
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

    fn start_exchange(&mut self, route: Route, forward: Forward, b: usize, s: usize, now: Instant) {
        let server = self.runtime.backends[b].servers[s].clone();
        let addr = server.addr();
        let (sock, connected) = match self.pool.checkout(addr) {
            Some(sock) => (sock, true),
            None => match TcpStream::connect(addr) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    (BackendSocket::new(stream, self.proxy.clone()), false)
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "backend connect failed");
                    self.proxy.connect_errors.fetch_add(1, Relaxed);
                    server.observe(Observed::ConnectError);
                    let mut route = route;
                    route.tried.push(s);
                    if forward.retries_left > 0 {
                        let mut forward = forward;
                        forward.retries_left -= 1;
                        return self.redispatch(route, forward, now);
                    }
                    return self.fail_request(route, forward, Termination::ConnectFailed, Some(&server));
                }
            },
        };
        server.traffic.begin();
        let stream = forward.stream;
        let conn = route.conn;
        let exchange = Exchange::new(forward, s, addr, sock, connected, now);
        let ex = self.exchanges.insert(Running {
            route,
            server,
            exchange,
        });
        if let Some(slot) = self.slots.get_mut(conn.index) {
            slot.exchanges.insert(stream, ex);
        }
        self.proxy.exchanges.fetch_add(1, Relaxed);
        let registry = self.poll.registry();
        let sock = self.exchanges[ex].exchange.socket_mut().stream_mut();
        if let Err(e) = registry.register(
            sock,
            Token(EXCHANGE_BASE + ex),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(error = %e, "registering a backend socket failed");
        }
        self.progress_exchange(ex);
    }

    /// Counts a retry and sends the request again.
    fn redispatch(&mut self, route: Route, forward: Forward, now: Instant) {
        route.backend.retries.fetch_add(1, Relaxed);
        let config = self.config.clone();
        let redispatch = config
            .backend(&route.backend.name)
            .is_some_and(|b| config.backends[b].settings.redispatch);
        if redispatch {
            route.backend.redispatches.fetch_add(1, Relaxed);
        }
        self.dispatch(route, forward, now);
    }

    pub(super) fn progress_exchange(&mut self, ex: usize) {
        let now = Instant::now();
        let Some(running) = self.exchanges.get_mut(ex) else {
            return;
        };
        let key = running.route.conn;
        let Some(slot) = self.slots.get_mut(key.index).filter(|s| s.serial == key.serial) else {
            self.counters.stale_wakeup();
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let SlotConn::Live(conn) = &mut slot.conn else {
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let step = running.exchange.progress(conn, now);
        mark_dirty(&mut self.dirty, slot, key.index);
        self.after_step(ex, step, now);
    }

    pub(super) fn timeout_exchange(&mut self, ex: usize, now: Instant) {
        let Some(running) = self.exchanges.get_mut(ex) else {
            return;
        };
        let key = running.route.conn;
        let Some(slot) = self.slots.get_mut(key.index).filter(|s| s.serial == key.serial) else {
            self.end_exchange(ex, Termination::ClientAborted, false);
            return;
        };
        let SlotConn::Live(conn) = &mut slot.conn else {
            return;
        };
        let step = running.exchange.on_timeout(conn);
        mark_dirty(&mut self.dirty, slot, key.index);
        self.after_step(ex, step, now);
    }

    fn after_step(&mut self, ex: usize, step: Step, now: Instant) {
        match step {
            Step::Continue => {}
            Step::Finished { reusable } => self.end_exchange(ex, Termination::Normal, reusable),
            Step::Failed(why) => self.end_exchange(ex, why, false),
            Step::Retry(why) => self.retry_exchange(ex, why, now),
            Step::TooEarly => self.replay_after_handshake(ex, now),
        }
    }

    /// A server answered 425 (Too Early) to a request marked `Early-Data: 1`: the request goes again,
    /// unmarked, once the client's handshake completed (RFC 8470, 5.2); the 425 never reaches the client.
    fn replay_after_handshake(&mut self, ex: usize, now: Instant) {
        let Some(Running {
            route,
            server,
            exchange,
        }) = self.unlink(ex)
        else {
            return;
        };
        server.traffic.abandon();
        server.observe(Observed::Fine);
        self.proxy.count_early(EarlyData::Replayed);
        let (sock, forward) = exchange.into_forward();
        drop(sock);
        let conn = route.conn;
        self.await_handshake(route, forward);
        self.after_handshake(conn.index, now);
        self.drain_queue(&server.backend, now);
    }

    /// Takes an exchange out of the tables (socket deregistered, stream unlinked).
    fn unlink(&mut self, ex: usize) -> Option<Running> {
        let mut running = self.exchanges.try_remove(ex)?;
        self.proxy.exchanges.fetch_sub(1, Relaxed);
        let _ = self
            .poll
            .registry()
            .deregister(running.exchange.socket_mut().stream_mut());
        let key = running.route.conn;
        if let Some(slot) = self.slots.get_mut(key.index).filter(|s| s.serial == key.serial) {
            slot.exchanges.remove(&running.exchange.stream);
        }
        Some(running)
    }

    fn retry_exchange(&mut self, ex: usize, why: Termination, now: Instant) {
        let Some(Running {
            mut route,
            server,
            exchange,
        }) = self.unlink(ex)
        else {
            return;
        };
        server.traffic.abandon();
        server.observe(match why {
            Termination::ConnectFailed | Termination::ConnectTimeout => Observed::ConnectError,
            _ => Observed::ResponseError,
        });
        if matches!(why, Termination::ConnectFailed | Termination::ConnectTimeout) {
            self.proxy.connect_errors.fetch_add(1, Relaxed);
        }
        tracing::debug!(server = %server.name(), why = why.code(), "retrying a request");
        route.tried.push(exchange.server);
        let (sock, forward) = exchange.into_retry();
        drop(sock);
        self.redispatch(route, forward, now);
        self.drain_queue(&server.backend, now);
    }

    /// Removes an exchange: its socket goes back to the pool when reusable, else it is closed.
    pub(super) fn end_exchange(&mut self, ex: usize, why: Termination, reusable: bool) {
        let Some(Running {
            route,
            server,
            exchange,
        }) = self.unlink(ex)
        else {
            return;
        };
        let info = exchange.info.clone();
        let observed = match why {
            Termination::ConnectFailed | Termination::ConnectTimeout => Observed::ConnectError,
            Termination::Normal if info.status.is_some_and(|s| s < 500) => Observed::Fine,
            Termination::ClientAborted => Observed::Fine,
            _ => Observed::ResponseError,
        };
        server.observe(observed);
        if why == Termination::ConnectFailed {
            self.proxy.connect_errors.fetch_add(1, Relaxed);
        }
        let response_time = info.head_at.map(|t| t - info.started);
        let bytes = (info.bytes_in, info.bytes_out);
        server.traffic.end(info.status, bytes, response_time);
        let server_name = format!("{}/{}", server.backend, server.name());
        self.close_request(&route, exchange.stream, &info, &server_name, why, response_time);
        let addr = exchange.addr;
        let sock = exchange.into_socket();
        if reusable && self.stop_deadline.is_none() {
            self.pool.checkin(addr, sock, Instant::now());
        }
        self.drain_queue(&server.backend, Instant::now());
    }

    /// The end of a request's accounting on its frontend and backend, and its access-log line.
    fn close_request(
        &self,
        route: &Route,
        stream: u64,
        info: &ExchangeInfo,
        server: &str,
        why: Termination,
        response_time: Option<std::time::Duration>,
    ) {
        let bytes = (info.bytes_in, info.bytes_out);
        route.frontend.traffic.end(info.status, bytes, response_time);
        route.backend.traffic.end(info.status, bytes, response_time);
        self.proxy
            .count_request(info.status, info.bytes_in, info.bytes_out);
        let (peer, trace) = match self
            .slots
            .get(route.conn.index)
            .filter(|s| s.serial == route.conn.serial)
        {
            Some(slot) => (slot.peer.to_string(), slot.trace.as_str()),
            None => ("-".into(), "-"),
        };
        access_log::log(&peer, trace, stream, info, server, why.code(), Instant::now());
    }

    /// Answers a request that never reached a server with the error `why` calls for.
    fn fail_request(
        &mut self,
        route: Route,
        forward: Forward,
        why: Termination,
        server: Option<&ServerRuntime>,
    ) {
        let mut info = forward.info;
        let status = why.status();
        let key = route.conn;
        let answer = why != Termination::ClientAborted;
        if let Some(slot) = self
            .slots
            .get_mut(key.index)
            .filter(|s| s.serial == key.serial && answer)
        {
            if let SlotConn::Live(conn) = &mut slot.conn {
                respond_error(conn, forward.stream, status);
                info.status = Some(status);
                mark_dirty(&mut self.dirty, slot, key.index);
            }
        }
        let name = server.map_or_else(
            || route.backend.name.clone(),
            |s| format!("{}/{}", s.backend, s.name()),
        );
        self.close_request(&route, forward.stream, &info, &name, why, None);
    }

    /// Answers 503 to a request no backend rule matched.
    fn answer_without_backend(
        &mut self,
        conn: ConnKey,
        stream: u64,
        mut info: ExchangeInfo,
        frontend: &FrontendRuntime,
    ) {
        let why = Termination::ConnectFailed;
        let Some(slot) = self.slots.get_mut(conn.index) else {
            return;
        };
        if let SlotConn::Live(c) = &mut slot.conn {
            respond_error(c, stream, why.status());
            info.status = Some(why.status());
        }
        frontend.traffic.end(info.status, (0, 0), None);
        self.proxy.count_request(info.status, 0, 0);
        access_log::log(
            &slot.peer.to_string(),
            &slot.trace,
            stream,
            &info,
            "-",
            why.code(),
            Instant::now(),
        );
    }

    // ---------------------------------------------------------------- the queues

    /// Starts queued requests of backend `name` while a server has room; drops those whose client left.
    pub(super) fn drain_queue(&mut self, name: &str, now: Instant) {
        loop {
            let Some(front) = self.queues.get_mut(name).and_then(VecDeque::pop_front) else {
                return;
            };
            front.route.backend.queued.fetch_sub(1, Relaxed);
            if !self.is_live(front.route.conn) {
                self.fail_request(front.route, front.forward, Termination::ClientAborted, None);
                continue;
            }
            let Some(b) = self.config.backend(name) else {
                self.fail_request(front.route, front.forward, Termination::ConnectFailed, None);
                continue;
            };
            let loads = self.loads(b, &front.route.tried);
            let key = front.route.key.clone();
            match self.balancers[b].pick(&loads, key.as_deref()) {
                Some(s) => self.start_exchange(front.route, front.forward, b, s, now),
                None => {
                    front.route.backend.queued.fetch_add(1, Relaxed);
                    if let Some(queue) = self.queues.get_mut(name) {
                        queue.push_front(front);
                    }
                    return;
                }
            }
        }
    }

    /// The earliest queue deadline. Queues are FIFO with one timeout per backend, so their fronts expire
    /// first (after a reload changed `timeout queue`, later entries wait for the front: at most the old
    /// timeout).
    pub(super) fn queue_deadline(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| q.front().map(|e| e.deadline))
            .min()
    }

    /// Answers 503 to queued requests past `timeout queue`.
    pub(super) fn expire_queues(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|e| e.deadline <= now) {
                expired.extend(queue.pop_front());
            }
        }
        for e in expired {
            e.route.backend.queued.fetch_sub(1, Relaxed);
            self.fail_request(e.route, e.forward, Termination::QueueTimeout, None);
        }
    }

    /// Drops the queued requests of a connection (`stream: None`) or of one of its streams.
    pub(super) fn unqueue(&mut self, conn: ConnKey, stream: Option<u64>) {
        let mut gone = Vec::new();
        for queue in self.queues.values_mut() {
            while let Some(pos) = queue
                .iter()
                .position(|e| e.route.conn == conn && stream.is_none_or(|s| s == e.forward.stream))
            {
                if let Some(e) = queue.remove(pos) {
                    gone.push(e);
                }
            }
        }
        for e in gone {
            e.route.backend.queued.fetch_sub(1, Relaxed);
            self.fail_request(e.route, e.forward, Termination::ClientAborted, None);
        }
    }

    fn is_live(&self, conn: ConnKey) -> bool {
        self.slots
            .get(conn.index)
            .is_some_and(|s| s.serial == conn.serial && matches!(s.conn, SlotConn::Live(_)))
    }
}
