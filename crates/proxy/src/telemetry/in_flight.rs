//! A request's accounting, from its head to its access line. [`InFlight::begin`] counts it on its
//! frontend (and [`InFlight::enter_backend`] on its backend); `Drop` ends it on both, counts its status and
//! writes its access line: exactly once, whatever path the request took (answered, failed, queued and
//! dropped, held for a handshake that never came, or released with its connection).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use crate::telemetry::access_log::{self, AccessFacts};
use crate::telemetry::counters::ProxyCounters;
use crate::upstream::live::{BackendRuntime, FrontendRuntime};
use crate::upstream::Termination;

/// The connection a request came on: the client's address, the connection's id and its span.
pub(crate) struct Origin<'a> {
    /// The client's address.
    pub(crate) client: SocketAddr,
    /// The connection's id (its trace id).
    pub(crate) conn: Arc<str>,
    /// The connection's `conn{id}` span.
    pub(crate) span: &'a tracing::Span,
}

/// One request being served. Moves with the request (into a queue, an exchange, a retry); dropping it
/// ends the request.
#[derive(Debug)]
pub(crate) struct InFlight {
    proxy: Arc<ProxyCounters>,
    frontend: Arc<FrontendRuntime>,
    backend: Option<Arc<BackendRuntime>>,
    client: SocketAddr,
    conn: Arc<str>,
    stream: u64,
    /// `stream{id=...}` inside the connection's span: entered around work on this request.
    pub(crate) span: tracing::Span,
    /// What the access line reports; the exchange keeps it up to date.
    pub(crate) facts: AccessFacts,
    /// How it ended, and where (`backend/server`, the backend, or `-`); until set, a client abort.
    end: Option<(Termination, Arc<str>)>,
}

impl InFlight {
    /// A request on stream `stream` of the connection `from`, counted on `frontend`.
    pub(crate) fn begin(
        proxy: Arc<ProxyCounters>,
        frontend: Arc<FrontendRuntime>,
        from: Origin<'_>,
        stream: u64,
        facts: AccessFacts,
    ) -> Self {
        let Origin {
            client,
            conn,
            span: conn_span,
        } = from;
        frontend.traffic.begin();
        let span = tracing::debug_span!(parent: conn_span, "stream", id = stream);
        InFlight {
            span,
            proxy,
            frontend,
            backend: None,
            client,
            conn,
            stream,
            facts,
            end: None,
        }
    }

    /// The request goes to `backend`: counted there too, until it ends.
    pub(crate) fn enter_backend(&mut self, backend: Arc<BackendRuntime>) {
        debug_assert!(self.backend.is_none(), "a request has one backend");
        backend.traffic.begin();
        self.backend = Some(backend);
    }

    /// Ends the request: `why`, at `at` (`backend/server`, the backend, or `-`).
    pub(crate) fn finish(mut self, why: Termination, at: Arc<str>) {
        self.end = Some((why, at));
    }
}

impl Drop for InFlight {
    // Accounting only: counters and the access line.
    fn drop(&mut self) {
        let f = &self.facts;
        let response_time = f.head_at.map(|t| t - f.started);
        let bytes = (f.bytes_in, f.bytes_out);
        self.frontend.traffic.end(f.status, bytes, response_time);
        if let Some(backend) = &self.backend {
            backend.traffic.end(f.status, bytes, response_time);
        }
        self.proxy.count_request(f.status, f.bytes_in, f.bytes_out);
        if !access_log::wanted() {
            return;
        }
        let (why, at) = match &self.end {
            Some((why, at)) => (*why, &**at),
            None => (
                Termination::ClientAborted,
                self.backend.as_ref().map_or("-", |b| b.name.as_str()),
            ),
        };
        let end = access_log::Ending {
            client: self.client,
            conn: &self.conn,
            stream: self.stream,
            frontend: &self.frontend.name,
            server: at,
            termination: why.code(),
            now: Instant::now(),
        };
        access_log::log(f, &end, self.frontend.json_log.load(Relaxed));
    }
}
