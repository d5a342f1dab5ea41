//! The proxy's own counters (the layers' are `qcc::Counters`; per-object ones are `traffic::Traffic`),
//! and the enums that index them: status classes, QUIC Retry outcomes, early-data actions.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::config::InitialAction;

/// The class of a status sent to a client; `None` when the request ended before any status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No status went out.
    None,
}

impl StatusClass {
    /// Every class, in counter order.
    pub(crate) const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::None,
    ];

    /// The class of `status`.
    pub(crate) fn of(status: Option<u16>) -> Self {
        match status {
            Some(100..=199) => StatusClass::Informational,
            Some(200..=299) => StatusClass::Success,
            Some(300..=399) => StatusClass::Redirection,
            Some(400..=499) => StatusClass::ClientError,
            Some(500..=599) => StatusClass::ServerError,
            _ => StatusClass::None,
        }
    }

    /// The label value: `1xx` ... `5xx`, `none`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::None => "none",
        }
    }
}

/// What became of a QUIC Retry on a `quic-force-retry` bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryOutcome {
    /// A Retry packet went out.
    Sent,
    /// A token came back valid.
    Validated,
    /// A token was refused (forged, expired, another address).
    Rejected,
}

impl RetryOutcome {
    /// Every outcome, in counter order.
    pub(crate) const ALL: [RetryOutcome; 3] = [
        RetryOutcome::Sent,
        RetryOutcome::Validated,
        RetryOutcome::Rejected,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            RetryOutcome::Sent => "sent",
            RetryOutcome::Validated => "validated",
            RetryOutcome::Rejected => "rejected",
        }
    }
}

/// What happened to a request that arrived in 0-RTT early data (RFC 8470).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EarlyData {
    /// Forwarded before the handshake completed, with `Early-Data: 1`.
    Forwarded,
    /// Held until the handshake completed (a method not in `early-data-methods`, or
    /// `http-request wait-for-handshake`).
    Held,
    /// Answered 425 (Too Early) by the server and sent again once the handshake completed.
    Replayed,
}

impl EarlyData {
    /// Every action, in counter order.
    pub(crate) const ALL: [EarlyData; 3] = [EarlyData::Forwarded, EarlyData::Held, EarlyData::Replayed];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EarlyData::Forwarded => "forwarded",
            EarlyData::Held => "held",
            EarlyData::Replayed => "replayed",
        }
    }
}

/// What happened to a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolEvent {
    /// A new connection was opened.
    New,
    /// An idle connection served another request.
    Reused,
    /// An idle connection was closed by the purge.
    Purged,
    /// A reused connection turned out closed by the server; its request went again on a new one.
    ClosedByServer,
    /// An idle connection the server closed (or that had bytes out of turn) left the pool.
    ClosedIdle,
}

impl PoolEvent {
    /// Every event, in counter order.
    pub(crate) const ALL: [PoolEvent; 5] = [
        PoolEvent::New,
        PoolEvent::Reused,
        PoolEvent::Purged,
        PoolEvent::ClosedByServer,
        PoolEvent::ClosedIdle,
    ];

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            PoolEvent::New => "new",
            PoolEvent::Reused => "reused",
            PoolEvent::Purged => "purged",
            PoolEvent::ClosedByServer => "closed_by_server",
            PoolEvent::ClosedIdle => "closed_idle",
        }
    }
}

/// One worker's counters: the layers' and the proxy's own.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkerCounters {
    /// The layers' (connections, streams, descriptors, budget).
    pub(crate) layers: Arc<qcc::Counters>,
    /// The proxy's.
    pub(crate) proxy: Arc<ProxyCounters>,
}

/// What the stats show of each worker apart: how the load spreads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WorkerFigures {
    /// Its live connections.
    pub(crate) connections: u64,
    /// Datagrams it received from its sockets.
    pub(crate) datagrams_received: u64,
}

impl WorkerFigures {
    /// A worker's figures from its counters.
    pub(crate) fn of(layers: &qcc::Snapshot, proxy: &ProxyCounters) -> Self {
        WorkerFigures {
            connections: layers.connections_live,
            datagrams_received: proxy.udp_datagrams_received.load(Relaxed),
        }
    }
}

/// The proxy's own counters.
#[derive(Debug, Default)]
pub(crate) struct ProxyCounters {
    /// Open backend sockets (in use or idle).
    pub(crate) backend_sockets: AtomicU64,
    /// Of those, idle in the keep-alive pool.
    pub(crate) backend_sockets_idle: AtomicU64,
    /// Exchanges in progress.
    pub(crate) exchanges: AtomicU64,
    /// Request body bytes.
    pub(crate) bytes_in: AtomicU64,
    /// Response body bytes.
    pub(crate) bytes_out: AtomicU64,
    /// Failed backend connections.
    pub(crate) connect_errors: AtomicU64,
    /// Connection IDs in the router.
    pub(crate) cid_routes: AtomicU64,
    /// Idle-time memory trims.
    pub(crate) memory_trims: AtomicU64,
    /// Exchanges whose client connection was gone when an event came for them (a connection's release
    /// ends its exchanges first, so this stays 0).
    pub(crate) stale_handles: AtomicU64,
    /// UDP datagrams received.
    pub(crate) udp_datagrams_received: AtomicU64,
    /// UDP datagrams sent.
    pub(crate) udp_datagrams_sent: AtomicU64,
    /// Datagrams held until their pacing time.
    pub(crate) udp_paced: AtomicU64,
    /// Receive calls that brought datagrams (each may bring many: recvmmsg, GRO).
    pub(crate) udp_recv_calls: AtomicU64,
    /// Send calls (each may carry many datagrams: GSO).
    pub(crate) udp_send_calls: AtomicU64,
    /// Datagrams received by this worker for another's connection, and handed to it.
    pub(crate) handed_off: AtomicU64,
    /// New connections whose Initial was dropped at the global `maxconn`.
    pub(crate) refused_maxconn: AtomicU64,
    /// New connections whose Initial was dropped at their frontend's `maxconn`.
    pub(crate) refused_frontend_maxconn: AtomicU64,
    /// Stateless resets sent for datagrams of unknown connections.
    pub(crate) resets_sent: AtomicU64,
    /// Stateless resets not sent: over the per-source or total rate.
    pub(crate) resets_limited: AtomicU64,
    /// Datagrams for another worker's connection dropped because its backlog was full (or it had
    /// stopped).
    pub(crate) handed_off_dropped: AtomicU64,
    requests: [AtomicU64; StatusClass::ALL.len()],
    retries: [AtomicU64; RetryOutcome::ALL.len()],
    initial_rules: [AtomicU64; InitialAction::ALL.len()],
    early_data: [AtomicU64; EarlyData::ALL.len()],
    pool: [AtomicU64; PoolEvent::ALL.len()],
}

impl ProxyCounters {
    /// The sum of every worker's counters (each worker has its own: no cache line is shared on the
    /// packet path).
    pub(crate) fn sum<'a>(all: impl IntoIterator<Item = &'a ProxyCounters>) -> ProxyCounters {
        let total = ProxyCounters::default();
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Relaxed), Relaxed);
        };
        let add_all = |to: &[AtomicU64], from: &[AtomicU64]| to.iter().zip(from).for_each(|(t, f)| add(t, f));
        for c in all {
            let ProxyCounters {
                backend_sockets,
                backend_sockets_idle,
                exchanges,
                bytes_in,
                bytes_out,
                connect_errors,
                cid_routes,
                memory_trims,
                stale_handles,
                udp_datagrams_received,
                udp_datagrams_sent,
                udp_paced,
                udp_recv_calls,
                udp_send_calls,
                handed_off,
                handed_off_dropped,
                refused_maxconn,
                refused_frontend_maxconn,
                resets_sent,
                resets_limited,
                requests,
                retries,
                initial_rules,
                early_data,
                pool,
            } = c;
            add(&total.backend_sockets, backend_sockets);
            add(&total.backend_sockets_idle, backend_sockets_idle);
            add(&total.exchanges, exchanges);
            add(&total.bytes_in, bytes_in);
            add(&total.bytes_out, bytes_out);
            add(&total.connect_errors, connect_errors);
            add(&total.cid_routes, cid_routes);
            add(&total.memory_trims, memory_trims);
            add(&total.stale_handles, stale_handles);
            add(&total.udp_datagrams_received, udp_datagrams_received);
            add(&total.udp_datagrams_sent, udp_datagrams_sent);
            add(&total.udp_paced, udp_paced);
            add(&total.udp_recv_calls, udp_recv_calls);
            add(&total.udp_send_calls, udp_send_calls);
            add(&total.handed_off, handed_off);
            add(&total.handed_off_dropped, handed_off_dropped);
            add(&total.refused_maxconn, refused_maxconn);
            add(&total.refused_frontend_maxconn, refused_frontend_maxconn);
            add(&total.resets_sent, resets_sent);
            add(&total.resets_limited, resets_limited);
            add_all(&total.requests, requests);
            add_all(&total.retries, retries);
            add_all(&total.initial_rules, initial_rules);
            add_all(&total.early_data, early_data);
            add_all(&total.pool, pool);
        }
        total
    }

    /// Counts one finished request.
    pub(crate) fn count_request(&self, status: Option<u16>, bytes_in: u64, bytes_out: u64) {
        self.requests[StatusClass::of(status) as usize].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }

    /// Requests finished in `class`.
    pub(crate) fn requests(&self, class: StatusClass) -> u64 {
        self.requests[class as usize].load(Relaxed)
    }

    /// Counts one QUIC Retry event.
    pub(crate) fn count_retry(&self, outcome: RetryOutcome) {
        self.retries[outcome as usize].fetch_add(1, Relaxed);
    }

    /// A `quic-initial` rule decided `action` for a new client.
    pub(crate) fn count_initial_rule(&self, action: InitialAction) {
        self.initial_rules[action as usize].fetch_add(1, Relaxed);
    }

    /// New clients a `quic-initial` rule gave `action`.
    pub(crate) fn initial_rules(&self, action: InitialAction) -> u64 {
        self.initial_rules[action as usize].load(Relaxed)
    }

    /// Retry events with `outcome`.
    pub(crate) fn retries(&self, outcome: RetryOutcome) -> u64 {
        self.retries[outcome as usize].load(Relaxed)
    }

    /// Counts one backend connection event.
    pub(crate) fn count_pool(&self, event: PoolEvent) {
        self.pool[event as usize].fetch_add(1, Relaxed);
    }

    /// Backend connection events of one kind.
    pub(crate) fn pool(&self, event: PoolEvent) -> u64 {
        self.pool[event as usize].load(Relaxed)
    }

    /// Counts one early-data request and what was done with it.
    pub(crate) fn count_early(&self, action: EarlyData) {
        self.early_data[action as usize].fetch_add(1, Relaxed);
    }

    /// Early-data requests that saw `action`.
    pub(crate) fn early(&self, action: EarlyData) -> u64 {
        self.early_data[action as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_adds_every_field_of_every_worker() {
        let (a, b) = (ProxyCounters::default(), ProxyCounters::default());
        a.count_request(Some(200), 3, 4);
        b.count_request(Some(200), 10, 20);
        b.count_pool(PoolEvent::Reused);
        a.handed_off.fetch_add(2, Relaxed);
        b.handed_off.fetch_add(5, Relaxed);
        b.udp_send_calls.fetch_add(9, Relaxed);
        let total = ProxyCounters::sum([&a, &b]);
        assert_eq!(total.requests(StatusClass::Success), 2);
        assert_eq!(total.bytes_in.load(Relaxed), 13);
        assert_eq!(total.bytes_out.load(Relaxed), 24);
        assert_eq!(total.pool(PoolEvent::Reused), 1);
        assert_eq!(total.handed_off.load(Relaxed), 7);
        assert_eq!(total.udp_send_calls.load(Relaxed), 9);
    }

    #[test]
    fn statuses_land_in_their_class() {
        let cases = [
            (Some(101), "1xx"),
            (Some(204), "2xx"),
            (Some(304), "3xx"),
            (Some(425), "4xx"),
            (Some(503), "5xx"),
            (None, "none"),
            (Some(99), "none"),
            (Some(600), "none"),
        ];
        for (status, label) in cases {
            assert_eq!(StatusClass::of(status).label(), label, "{status:?}");
        }
        for (i, class) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(*class as usize, i);
        }
    }
}
