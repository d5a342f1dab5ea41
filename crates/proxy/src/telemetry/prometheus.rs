//! Prometheus metrics: names as constants (documented in `docs/metrics.md`), rendered from the layer
//! counters, the proxy's own, and the live state of frontends, backends and servers.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use qcc::{Snapshot, CLOSE_CAUSES};

use crate::telemetry::traffic::{TrafficSnapshot, RESPONSE_TIME_BUCKETS, STATUS_CLASSES};
use crate::upstream::live::Runtime;

/// Live HTTP/3 connections (qcc).
pub(crate) const CONNECTIONS: &str = "qproxy_quic_connections";
/// HTTP/3 connections accepted since start.
pub(crate) const CONNECTIONS_TOTAL: &str = "qproxy_quic_connections_total";
/// Released connections whose transport is still closing.
pub(crate) const CLOSING: &str = "qproxy_quic_closing_connections";
/// Live request streams (qcs).
pub(crate) const STREAMS: &str = "qproxy_h3_streams";
/// Request streams since start.
pub(crate) const STREAMS_TOTAL: &str = "qproxy_h3_streams_total";
/// Live stream descriptors, by phase (attached / released).
pub(crate) const DESCRIPTORS: &str = "qproxy_stream_descriptors";
/// Stream descriptors since start.
pub(crate) const DESCRIPTORS_TOTAL: &str = "qproxy_stream_descriptors_total";
/// Tx budget bytes in use over all connections.
pub(crate) const TX_BUDGET_BYTES: &str = "qproxy_tx_budget_bytes";
/// Times a stream waited for Tx budget room.
pub(crate) const TX_BUDGET_WAITS: &str = "qproxy_tx_budget_waits_total";
/// Wake-ups that found their target gone.
pub(crate) const STALE_WAKEUPS: &str = "qproxy_stale_wakeups_total";
/// Releases out of the documented order (must be 0).
pub(crate) const OUT_OF_ORDER: &str = "qproxy_out_of_order_releases_total";
/// Open TCP sockets to backends, by state (active: serving a request; idle: in the keep-alive pool).
pub(crate) const BACKEND_SOCKETS: &str = "qproxy_backend_sockets";
/// Backend exchanges in progress.
pub(crate) const EXCHANGES: &str = "qproxy_backend_exchanges";
/// Responses sent, by status class.
pub(crate) const REQUESTS_TOTAL: &str = "qproxy_http_requests_total";
/// Request body bytes received from clients.
pub(crate) const BYTES_IN: &str = "qproxy_http_request_bytes_total";
/// Response body bytes sent to clients.
pub(crate) const BYTES_OUT: &str = "qproxy_http_response_bytes_total";
/// Connection IDs the router knows (two per connection until it is gone).
pub(crate) const CID_ROUTES: &str = "qproxy_cid_routes";
/// Times an idle worker gave freed memory back to the system.
pub(crate) const MEMORY_TRIMS: &str = "qproxy_memory_trims_total";
/// Backend connection attempts that failed.
pub(crate) const CONNECT_ERRORS: &str = "qproxy_backend_connect_errors_total";
/// Ended QUIC connections by handshake result (`result="ok"|"failed"`).
pub(crate) const HANDSHAKES: &str = "qproxy_quic_handshakes_total";
/// Ended QUIC connections by cause.
pub(crate) const CLOSES: &str = "qproxy_quic_closed_connections_total";
/// Retry tokens by outcome (`result="sent"|"validated"|"rejected"`), for `quic-force-retry` binds.
pub(crate) const RETRIES: &str = "qproxy_quic_retries_total";
/// Requests received in 0-RTT early data, by what was done with them (`action=...`, [`EarlyData`]).
pub(crate) const EARLY_DATA: &str = "qproxy_early_data_requests_total";
/// QUIC packets declared lost.
pub(crate) const PACKETS_LOST: &str = "qproxy_quic_packets_lost_total";
/// QUIC packets retransmitted.
pub(crate) const PACKETS_RETRANSMITTED: &str = "qproxy_quic_packets_retransmitted_total";
/// Requests per frontend, backend or server, by status class (prefix `qproxy_{frontend,backend,server}_`).
pub(crate) const OBJECT_RESPONSES: &str = "http_responses_total";
/// Request body bytes per object.
pub(crate) const OBJECT_BYTES_IN: &str = "bytes_in_total";
/// Response body bytes per object.
pub(crate) const OBJECT_BYTES_OUT: &str = "bytes_out_total";
/// Requests in flight per object.
pub(crate) const OBJECT_CURRENT: &str = "current_requests";
/// Time from request to response head, per object (histogram).
pub(crate) const OBJECT_RESPONSE_TIME: &str = "response_time_seconds";
/// Requests waiting in a backend's queue.
pub(crate) const BACKEND_QUEUE: &str = "qproxy_backend_current_queue";
/// Retries per backend.
pub(crate) const BACKEND_RETRIES: &str = "qproxy_backend_retries_total";
/// Retries sent to another server, per backend.
pub(crate) const BACKEND_REDISPATCHES: &str = "qproxy_backend_redispatches_total";
/// Active (non-backup) servers UP per backend.
pub(crate) const BACKEND_SERVERS_UP: &str = "qproxy_backend_active_servers";
/// Backup servers UP per backend.
pub(crate) const BACKEND_BACKUPS_UP: &str = "qproxy_backend_backup_servers";
/// 1 when a server is UP, 0 when DOWN.
pub(crate) const SERVER_UP: &str = "qproxy_server_up";
/// Health checks per server (`result="passed"|"failed"`).
pub(crate) const SERVER_CHECKS: &str = "qproxy_server_check_results_total";
/// Times a server went DOWN.
pub(crate) const SERVER_DOWN_TRANSITIONS: &str = "qproxy_server_down_transitions_total";
/// Failed connections per server.
pub(crate) const SERVER_CONNECT_ERRORS: &str = "qproxy_server_connect_errors_total";

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
    /// Every action, in the order of [`ProxyCounters::early_data`].
    pub(crate) const ALL: [EarlyData; 3] = [EarlyData::Forwarded, EarlyData::Held, EarlyData::Replayed];

    /// The metric label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            EarlyData::Forwarded => "forwarded",
            EarlyData::Held => "held",
            EarlyData::Replayed => "replayed",
        }
    }
}

/// The proxy's own counters (the layers' are in `qcc::Counters`).
#[derive(Debug, Default)]
pub(crate) struct ProxyCounters {
    /// Open backend sockets (in use or idle).
    pub(crate) backend_sockets: AtomicU64,
    /// Of those, idle in the keep-alive pool.
    pub(crate) backend_sockets_idle: AtomicU64,
    /// Exchanges in progress.
    pub(crate) exchanges: AtomicU64,
    /// Responses by status class: index 0 for 1xx ... 4 for 5xx, 5 for "none" (aborted before a status).
    pub(crate) requests: [AtomicU64; 6],
    /// Request body bytes.
    pub(crate) bytes_in: AtomicU64,
    /// Response body bytes.
    pub(crate) bytes_out: AtomicU64,
    /// Failed backend connections.
    pub(crate) connect_errors: AtomicU64,
    /// Connection IDs in the router.
    pub(crate) cid_routes: AtomicU64,
    /// Retry packets sent, tokens validated, tokens rejected.
    pub(crate) retries: [AtomicU64; 3],
    /// Idle-time memory trims.
    pub(crate) memory_trims: AtomicU64,
    /// Early-data requests, by [`EarlyData`] action (count with [`ProxyCounters::count_early`]).
    early_data: [AtomicU64; 3],
}

impl ProxyCounters {
    /// Counts one early-data request and what was done with it.
    pub(crate) fn count_early(&self, action: EarlyData) {
        self.early_data[action as usize].fetch_add(1, Relaxed);
    }

    /// Early-data requests that saw `action`.
    pub(crate) fn early(&self, action: EarlyData) -> u64 {
        self.early_data[action as usize].load(Relaxed)
    }

    /// Counts one finished request.
    pub(crate) fn count_request(&self, status: Option<u16>, bytes_in: u64, bytes_out: u64) {
        let class = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        self.requests[class].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }
}

/// Prometheus text being written: one family (HELP, TYPE, samples) at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }

    fn labelled(&mut self, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
        self.family(name, kind, help);
        for (labels, value) in samples {
            self.sample(name, labels, value);
        }
    }

    /// The request families of one kind of object (frontend, backend, server).
    fn traffic(&mut self, kind: &str, objects: &[(String, TrafficSnapshot)]) {
        let name = |suffix: &str| format!("qproxy_{kind}_{suffix}");
        let n = name(OBJECT_RESPONSES);
        self.family(&n, "counter", &format!("Requests per {kind}, by status class."));
        for (labels, t) in objects {
            for (class, count) in STATUS_CLASSES.iter().zip(t.requests) {
                self.sample(&n, &format!("{labels},code=\"{class}\""), count);
            }
        }
        for (suffix, kind_, help, get) in [
            (
                OBJECT_BYTES_IN,
                "counter",
                "Request body bytes",
                (|t| t.bytes_in) as fn(&TrafficSnapshot) -> u64,
            ),
            (OBJECT_BYTES_OUT, "counter", "Response body bytes", |t| {
                t.bytes_out
            }),
            (OBJECT_CURRENT, "gauge", "Requests in flight", |t| t.active),
        ] {
            let n = name(suffix);
            self.family(&n, kind_, &format!("{help} per {kind}."));
            for (labels, t) in objects {
                self.sample(&n, labels, get(t));
            }
        }
        let n = name(OBJECT_RESPONSE_TIME);
        self.family(
            &n,
            "histogram",
            &format!("Time from request to response head per {kind}."),
        );
        for (labels, t) in objects {
            let mut cumulative = 0;
            for (i, count) in t.response_time_buckets.iter().enumerate() {
                cumulative += count;
                let le = RESPONSE_TIME_BUCKETS
                    .get(i)
                    .map_or("+Inf".to_string(), |b| b.to_string());
                self.sample(
                    &format!("{n}_bucket"),
                    &format!("{labels},le=\"{le}\""),
                    cumulative,
                );
            }
            self.sample(&format!("{n}_sum"), labels, t.response_time_sum);
            self.sample(&format!("{n}_count"), labels, cumulative);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition (format 0.0.4).
pub(crate) fn render(layers: &Snapshot, proxy: &ProxyCounters, runtime: &Runtime) -> String {
    let mut e = Exposition {
        out: String::with_capacity(16 * 1024),
    };
    let s = layers;
    e.one(
        CONNECTIONS,
        "gauge",
        "Live HTTP/3 connections.",
        s.connections_live,
    );
    e.one(
        CONNECTIONS_TOTAL,
        "counter",
        "HTTP/3 connections accepted.",
        s.connections_total,
    );
    e.one(
        CLOSING,
        "gauge",
        "Released connections still closing.",
        s.closing_live,
    );
    e.one(STREAMS, "gauge", "Live HTTP/3 request streams.", s.streams_live);
    e.one(
        STREAMS_TOTAL,
        "counter",
        "HTTP/3 request streams opened.",
        s.streams_total,
    );
    e.labelled(
        DESCRIPTORS,
        "gauge",
        "Live stream descriptors by phase.",
        &[
            ("phase=\"attached\"".into(), s.descs_attached_live),
            ("phase=\"released\"".into(), s.descs_released_live),
        ],
    );
    e.one(
        DESCRIPTORS_TOTAL,
        "counter",
        "Stream descriptors created.",
        s.descs_total,
    );
    e.one(
        TX_BUDGET_BYTES,
        "gauge",
        "Tx budget bytes in use.",
        s.tx_budget_bytes,
    );
    e.one(
        TX_BUDGET_WAITS,
        "counter",
        "Streams refused by a full Tx budget.",
        s.tx_budget_waits,
    );
    e.one(
        STALE_WAKEUPS,
        "counter",
        "Wake-ups whose target was gone.",
        s.stale_wakeups,
    );
    e.one(
        OUT_OF_ORDER,
        "counter",
        "Out-of-order releases (must be 0).",
        s.out_of_order_releases,
    );
    e.labelled(
        HANDSHAKES,
        "counter",
        "Ended QUIC connections by handshake result.",
        &[
            ("result=\"ok\"".into(), s.handshakes_ok),
            ("result=\"failed\"".into(), s.handshakes_failed),
        ],
    );
    let closes: Vec<(String, u64)> = CLOSE_CAUSES
        .iter()
        .zip(s.closes)
        .map(|(cause, n)| (format!("cause=\"{cause}\""), n))
        .collect();
    e.labelled(CLOSES, "counter", "Ended QUIC connections by cause.", &closes);
    e.one(
        PACKETS_LOST,
        "counter",
        "QUIC packets declared lost.",
        s.packets_lost,
    );
    e.one(
        PACKETS_RETRANSMITTED,
        "counter",
        "QUIC packets retransmitted.",
        s.packets_retransmitted,
    );
    let p = proxy;
    let (open, idle) = (
        p.backend_sockets.load(Relaxed),
        p.backend_sockets_idle.load(Relaxed),
    );
    e.labelled(
        BACKEND_SOCKETS,
        "gauge",
        "Open backend TCP sockets by state.",
        &[
            ("state=\"active\"".into(), open.saturating_sub(idle)),
            ("state=\"idle\"".into(), idle),
        ],
    );
    e.one(
        EXCHANGES,
        "gauge",
        "Backend exchanges in progress.",
        p.exchanges.load(Relaxed),
    );
    let classes: Vec<(String, u64)> = STATUS_CLASSES
        .iter()
        .zip(&p.requests)
        .map(|(class, c)| (format!("class=\"{class}\""), c.load(Relaxed)))
        .collect();
    e.labelled(
        REQUESTS_TOTAL,
        "counter",
        "Requests answered, by status class.",
        &classes,
    );
    e.one(
        BYTES_IN,
        "counter",
        "Request body bytes from clients.",
        p.bytes_in.load(Relaxed),
    );
    e.one(
        BYTES_OUT,
        "counter",
        "Response body bytes to clients.",
        p.bytes_out.load(Relaxed),
    );
    e.one(
        CONNECT_ERRORS,
        "counter",
        "Failed backend connections.",
        p.connect_errors.load(Relaxed),
    );
    e.one(
        CID_ROUTES,
        "gauge",
        "Connection IDs in the router.",
        p.cid_routes.load(Relaxed),
    );
    e.one(
        MEMORY_TRIMS,
        "counter",
        "Times an idle worker gave freed memory back to the system.",
        p.memory_trims.load(Relaxed),
    );
    let retries: Vec<(String, u64)> = ["sent", "validated", "rejected"]
        .iter()
        .zip(&p.retries)
        .map(|(r, n)| (format!("result=\"{r}\""), n.load(Relaxed)))
        .collect();
    e.labelled(
        RETRIES,
        "counter",
        "Retry packets sent and their tokens' fate.",
        &retries,
    );
    let early: Vec<(String, u64)> = EarlyData::ALL
        .iter()
        .map(|a| (format!("action=\"{}\"", a.label()), p.early(*a)))
        .collect();
    e.labelled(
        EARLY_DATA,
        "counter",
        "Requests received in 0-RTT early data: forwarded with Early-Data: 1, held until the handshake, or replayed after a 425.",
        &early,
    );

    let frontends: Vec<(String, TrafficSnapshot)> = runtime
        .frontends
        .iter()
        .map(|f| (format!("proxy=\"{}\"", label(&f.name)), f.traffic.snapshot()))
        .collect();
    e.traffic("frontend", &frontends);
    let backend_label = |name: &str| format!("proxy=\"{}\"", label(name));
    let backends: Vec<(String, TrafficSnapshot)> = runtime
        .backends
        .iter()
        .map(|b| (backend_label(&b.backend.name), b.backend.traffic.snapshot()))
        .collect();
    e.traffic("backend", &backends);
    let per_backend = |get: &dyn Fn(&crate::upstream::live::BackendView) -> u64| -> Vec<(String, u64)> {
        runtime
            .backends
            .iter()
            .map(|b| (backend_label(&b.backend.name), get(b)))
            .collect()
    };
    e.labelled(
        BACKEND_QUEUE,
        "gauge",
        "Requests waiting for a server slot.",
        &per_backend(&|b| b.backend.queued.load(Relaxed)),
    );
    e.labelled(
        BACKEND_RETRIES,
        "counter",
        "Retries after a failed attempt.",
        &per_backend(&|b| b.backend.retries.load(Relaxed)),
    );
    e.labelled(
        BACKEND_REDISPATCHES,
        "counter",
        "Retries sent to another server.",
        &per_backend(&|b| b.backend.redispatches.load(Relaxed)),
    );
    e.labelled(
        BACKEND_SERVERS_UP,
        "gauge",
        "Active (non-backup) servers UP.",
        &per_backend(&|b| b.servers_up_of(false) as u64),
    );
    e.labelled(
        BACKEND_BACKUPS_UP,
        "gauge",
        "Backup servers UP.",
        &per_backend(&|b| b.servers_up_of(true) as u64),
    );
    let servers: Vec<_> = runtime
        .backends
        .iter()
        .flat_map(|b| b.servers.iter())
        .map(|s| {
            (
                format!("proxy=\"{}\",server=\"{}\"", label(&s.backend), label(s.name())),
                s.clone(),
            )
        })
        .collect();
    let traffic: Vec<(String, TrafficSnapshot)> = servers
        .iter()
        .map(|(l, s)| (l.clone(), s.traffic.snapshot()))
        .collect();
    e.traffic("server", &traffic);
    let per_server = |get: &dyn Fn(&crate::upstream::live::ServerRuntime) -> u64| -> Vec<(String, u64)> {
        servers.iter().map(|(l, s)| (l.clone(), get(s))).collect()
    };
    e.labelled(
        SERVER_UP,
        "gauge",
        "1 when the server is UP, 0 when DOWN.",
        &per_server(&|s| u64::from(s.is_up())),
    );
    let checks: Vec<(String, u64)> = servers
        .iter()
        .flat_map(|(l, s)| {
            [
                (format!("{l},result=\"passed\""), s.checks_passed.load(Relaxed)),
                (format!("{l},result=\"failed\""), s.checks_failed.load(Relaxed)),
            ]
        })
        .collect();
    e.labelled(SERVER_CHECKS, "counter", "Health checks by result.", &checks);
    e.labelled(
        SERVER_DOWN_TRANSITIONS,
        "counter",
        "Times the server went DOWN.",
        &per_server(&|s| s.went_down.load(Relaxed)),
    );
    e.labelled(
        SERVER_CONNECT_ERRORS,
        "counter",
        "Failed connections to the server.",
        &per_server(&|s| s.connect_errors.load(Relaxed)),
    );
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn renders_every_family_once_with_help_and_type() {
        let p = ProxyCounters::default();
        p.count_request(Some(503), 1, 2);
        p.count_request(None, 0, 0);
        let config = Config::parse(
            std::path::Path::new("t.cfg"),
            &format!(
                "frontend web\n bind quic4@127.0.0.1:1 ssl crt {}\n default_backend app\nbackend app\n server \"a\\\"b\" 127.0.0.1:1\n",
                std::env::current_exe().unwrap().display()
            ),
        )
        .unwrap();
        let runtime = Runtime::new(&config, None);
        runtime.backends[0].servers[0].traffic.begin();
        runtime.backends[0].servers[0].traffic.end(
            Some(200),
            (5, 7),
            Some(std::time::Duration::from_millis(30)),
        );
        let text = render(
            &Snapshot {
                streams_live: 3,
                closes: [0, 4, 0, 0, 0],
                ..Snapshot::default()
            },
            &p,
            &runtime,
        );
        assert!(text.contains("qproxy_h3_streams 3\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"none\"} 1\n"));
        assert!(text.contains("qproxy_quic_closed_connections_total{cause=\"peer_no_error\"} 4\n"));
        let server = "proxy=\"app\",server=\"a\\\"b\"";
        assert!(
            text.contains(&format!(
                "qproxy_server_http_responses_total{{{server},code=\"2xx\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "qproxy_server_response_time_seconds_bucket{{{server},le=\"0.025\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "qproxy_server_response_time_seconds_bucket{{{server},le=\"0.05\"}} 1\n"
        )));
        assert!(text.contains(&format!("qproxy_server_up{{{server}}} 1\n")));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
    }
}
