//! Every metric family, once: its name, type, help, label names, where its samples come from, and its
//! place in the JSON view. The Prometheus renderer and the JSON view both read [`FAMILIES`]; a test
//! holds it against `docs/metrics.md` (a family added without its doc line fails it).

use std::sync::atomic::Ordering::Relaxed;

use qcc::{CloseCause, Snapshot};

use crate::config::InitialAction;
use crate::telemetry::counters::{
    EarlyData, PoolEvent, ProxyCounters, RetryOutcome, StatusClass, WorkerFigures,
};
use crate::telemetry::traffic::TrafficSnapshot;
use crate::upstream::live::{BackendView, Runtime, ServerRuntime};

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    /// The `# TYPE` word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What samples are read from, at one moment.
pub(crate) struct Inputs<'a> {
    /// The layers' counters.
    pub(crate) layers: &'a Snapshot,
    /// The proxy's own.
    pub(crate) proxy: &'a ProxyCounters,
    /// Frontends, backends and servers.
    pub(crate) runtime: &'a Runtime,
    /// Each worker's figures, by worker index.
    pub(crate) workers: &'a [WorkerFigures],
}

/// One sample: its labels (`name="value",...`, empty for none) and its value.
pub(crate) type Sample = (String, u64);

/// Where a family's samples come from.
pub(crate) enum Source {
    /// Computed from the inputs.
    Values(fn(&Inputs<'_>) -> Vec<Sample>),
    /// One family per kind of object (`KIND` in the name and help stands for `frontend`, `backend`,
    /// `server`), from each object's traffic counters.
    Traffic(TrafficValue),
}

/// Which part of an object's traffic a per-object family shows.
pub(crate) enum TrafficValue {
    /// One sample per status class (`code` label).
    ByClass,
    /// One value.
    Value(fn(&TrafficSnapshot) -> u64),
    /// The response-time histogram.
    ResponseTime,
}

/// Where a family appears in the JSON view of `stats uri`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Json {
    /// Not there (per-object state has its own shape there).
    No,
    /// In the `live` object under this key (`KEY_LABELVALUE` for labelled samples): a gauge that is
    /// zero when the proxy is idle.
    Live(&'static str),
    /// At the top level under this key.
    Top(&'static str),
}

/// One metric family.
pub(crate) struct Family {
    /// Its name.
    pub(crate) name: &'static str,
    /// Its type.
    pub(crate) kind: Kind,
    /// Its `# HELP` text.
    pub(crate) help: &'static str,
    /// The names of its labels (besides `proxy` and `server` on per-object families).
    pub(crate) labels: &'static [&'static str],
    /// Where its samples come from.
    pub(crate) source: Source,
    /// Where the JSON view shows it.
    pub(crate) json: Json,
}

fn one(v: u64) -> Vec<Sample> {
    vec![(String::new(), v)]
}

fn per_worker(inputs: &Inputs<'_>, value: impl Fn(&WorkerFigures) -> u64) -> Vec<Sample> {
    let sample = |(w, f)| (format!("worker=\"{w}\""), value(f));
    inputs.workers.iter().enumerate().map(sample).collect()
}

fn labelled<T: Copy>(
    label: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    value: impl Fn(T) -> u64,
) -> Vec<Sample> {
    all.iter()
        .map(|x| (format!("{label}=\"{}\"", name(*x)), value(*x)))
        .collect()
}

/// A label value with `\`, `"` and newlines escaped.
pub(crate) fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `proxy="NAME"` label of a frontend or backend.
pub(crate) fn proxy_label(name: &str) -> String {
    format!("proxy=\"{}\"", label_value(name))
}

/// The `proxy="BACKEND",server="NAME"` labels of a server.
pub(crate) fn server_label(s: &ServerRuntime) -> String {
    format!(
        "proxy=\"{}\",server=\"{}\"",
        label_value(&s.backend),
        label_value(s.name())
    )
}

fn per_backend(i: &Inputs<'_>, get: fn(&BackendView) -> u64) -> Vec<Sample> {
    i.runtime
        .backends
        .iter()
        .map(|b| (proxy_label(&b.backend.name), get(b)))
        .collect()
}

fn per_server(i: &Inputs<'_>, get: fn(&ServerRuntime) -> u64) -> Vec<Sample> {
    i.runtime
        .backends
        .iter()
        .flat_map(|b| b.servers.iter())
        .map(|s| (server_label(s), get(s)))
        .collect()
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    source: fn(&Inputs<'_>) -> Vec<Sample>,
) -> Family {
    Family {
        name,
        kind,
        help,
        labels: &[],
        source: Source::Values(source),
        json: Json::No,
    }
}

const fn traffic(name: &'static str, kind: Kind, help: &'static str, value: TrafficValue) -> Family {
    Family {
        name,
        kind,
        help,
        labels: &[],
        source: Source::Traffic(value),
        json: Json::No,
    }
}

const fn with_labels(f: Family, labels: &'static [&'static str]) -> Family {
    Family { labels, ..f }
}

const fn in_json(f: Family, json: Json) -> Family {
    Family { json, ..f }
}

use Kind::{Counter, Gauge, Histogram};

/// Every family, in exposition order.
pub(crate) const FAMILIES: &[Family] = &[
    in_json(family("qproxy_quic_connections", Gauge, "Live HTTP/3 connections.", |i| one(i.layers.connections_live)), Json::Live("connections")),
    in_json(family("qproxy_quic_connections_total", Counter, "HTTP/3 connections accepted.", |i| one(i.layers.connections_total)), Json::Top("connections_total")),
    in_json(family("qproxy_quic_closing_connections", Gauge, "Released connections still closing.", |i| one(i.layers.closing_live)), Json::Live("closing")),
    in_json(family("qproxy_h3_streams", Gauge, "Live HTTP/3 request streams.", |i| one(i.layers.streams_live)), Json::Live("streams")),
    family("qproxy_h3_streams_total", Counter, "HTTP/3 request streams opened.", |i| one(i.layers.streams_total)),
    in_json(
        with_labels(
            family("qproxy_stream_descriptors", Gauge, "Live stream descriptors by phase.", |i| {
                vec![
                    ("phase=\"attached\"".into(), i.layers.descs_attached_live),
                    ("phase=\"released\"".into(), i.layers.descs_released_live),
                ]
            }),
            &["phase"],
        ),
        Json::Live("descriptors"),
    ),
    family("qproxy_stream_descriptors_total", Counter, "Stream descriptors created.", |i| one(i.layers.descs_total)),
    in_json(family("qproxy_tx_budget_bytes", Gauge, "Tx budget bytes in use.", |i| one(i.layers.tx_budget_bytes)), Json::Live("tx_budget_bytes")),
    family("qproxy_tx_budget_waits_total", Counter, "Streams refused by a full Tx budget.", |i| one(i.layers.tx_budget_waits)),
    family("qproxy_tx_pool_waits_total", Counter, "Of those, streams refused because the Tx bytes of all connections reached tune.quic.mem.tx-max.", |i| one(i.layers.tx_pool_waits)),
    family("qproxy_tx_room_notices_total", Counter, "Connections told that freed Tx bytes made room for a refused stream.", |i| one(i.layers.tx_room_notices)),
    family("qproxy_quic_glitches_total", Counter, "Client protocol oddities counted against their connections (malformed or refused requests, requests reset before their response, heads that never came).", |i| one(i.layers.glitches)),
    family("qproxy_quic_glitch_closes_total", Counter, "Connections closed with H3_EXCESSIVE_LOAD for passing tune.quic.fe.sec.glitches-threshold.", |i| one(i.layers.glitch_closes)),
    in_json(family("qproxy_stale_wakeups_total", Counter, "Tx budget room notifications whose sink was gone.", |i| one(i.layers.stale_wakeups)), Json::Top("stale_wakeups")),
    family("qproxy_stale_handles_total", Counter, "Backend events for an exchange whose client connection was gone.", |i| one(i.proxy.stale_handles.load(Relaxed))),
    in_json(family("qproxy_out_of_order_releases_total", Counter, "Out-of-order releases (must be 0).", |i| one(i.layers.out_of_order_releases)), Json::Top("out_of_order_releases")),
    with_labels(
        family("qproxy_quic_handshakes_total", Counter, "Ended QUIC connections by handshake result.", |i| {
            vec![
                ("result=\"ok\"".into(), i.layers.handshakes_ok),
                ("result=\"failed\"".into(), i.layers.handshakes_failed),
            ]
        }),
        &["result"],
    ),
    with_labels(
        family("qproxy_quic_closed_connections_total", Counter, "Ended QUIC connections by cause.", |i| {
            labelled("cause", &CloseCause::ALL, CloseCause::as_str, |c| i.layers.closes[c as usize])
        }),
        &["cause"],
    ),
    family("qproxy_quic_packets_lost_total", Counter, "QUIC packets declared lost.", |i| one(i.layers.packets_lost)),
    family("qproxy_quic_packets_retransmitted_total", Counter, "QUIC packets retransmitted.", |i| one(i.layers.packets_retransmitted)),
    in_json(
        with_labels(
            family("qproxy_backend_sockets", Gauge, "Open backend TCP sockets by state.", |i| {
                let (open, idle) = (i.proxy.backend_sockets.load(Relaxed), i.proxy.backend_sockets_idle.load(Relaxed));
                vec![
                    ("state=\"active\"".into(), open.saturating_sub(idle)),
                    ("state=\"idle\"".into(), idle),
                ]
            }),
            &["state"],
        ),
        Json::Live("backend_sockets"),
    ),
    in_json(family("qproxy_backend_exchanges", Gauge, "Backend exchanges in progress.", |i| one(i.proxy.exchanges.load(Relaxed))), Json::Live("exchanges")),
    with_labels(
        family("qproxy_http_requests_total", Counter, "Requests answered, by status class.", |i| {
            labelled("class", &StatusClass::ALL, StatusClass::label, |c| i.proxy.requests(c))
        }),
        &["class"],
    ),
    family("qproxy_http_request_bytes_total", Counter, "Request body bytes from clients.", |i| one(i.proxy.bytes_in.load(Relaxed))),
    family("qproxy_http_response_bytes_total", Counter, "Response body bytes to clients.", |i| one(i.proxy.bytes_out.load(Relaxed))),
    with_labels(
        family("qproxy_backend_connections_total", Counter, "Backend connections: opened, reused, purged, found closed at reuse.", |i| {
            labelled("event", &PoolEvent::ALL, PoolEvent::label, |e| i.proxy.pool(e))
        }),
        &["event"],
    ),
    with_labels(
        family("qproxy_udp_datagrams_total", Counter, "UDP datagrams received and sent.", |i| {
            vec![
                ("direction=\"received\"".into(), i.proxy.udp_datagrams_received.load(Relaxed)),
                ("direction=\"sent\"".into(), i.proxy.udp_datagrams_sent.load(Relaxed)),
            ]
        }),
        &["direction"],
    ),
    with_labels(
        family("qproxy_udp_syscalls_total", Counter, "UDP receive and send calls (batched: fewer than datagrams).", |i| {
            vec![
                ("direction=\"received\"".into(), i.proxy.udp_recv_calls.load(Relaxed)),
                ("direction=\"sent\"".into(), i.proxy.udp_send_calls.load(Relaxed)),
            ]
        }),
        &["direction"],
    ),
    with_labels(
        family("qproxy_quic_stateless_resets_total", Counter, "Stateless resets for short-header datagrams of unknown connections: sent, or not sent over the per-source or total rate.", |i| {
            vec![
                ("result=\"sent\"".into(), i.proxy.resets_sent.load(Relaxed)),
                ("result=\"limited\"".into(), i.proxy.resets_limited.load(Relaxed)),
            ]
        }),
        &["result"],
    ),
    with_labels(
        family("qproxy_quic_refused_connections_total", Counter, "New connections refused at the global maxconn or their frontend's (their Initial dropped).", |i| {
            vec![
                ("limit=\"global\"".into(), i.proxy.refused_maxconn.load(Relaxed)),
                ("limit=\"frontend\"".into(), i.proxy.refused_frontend_maxconn.load(Relaxed)),
            ]
        }),
        &["limit"],
    ),
    with_labels(
        family("qproxy_quic_datagrams_handed_off_total", Counter, "Datagrams a worker received for another worker's connection: handed to it, or dropped with its backlog full.", |i| {
            vec![
                ("result=\"delivered\"".into(), i.proxy.handed_off.load(Relaxed)),
                ("result=\"dropped\"".into(), i.proxy.handed_off_dropped.load(Relaxed)),
            ]
        }),
        &["result"],
    ),
    with_labels(
        in_json(family("qproxy_worker_connections", Gauge, "Live HTTP/3 connections per worker.", |i| per_worker(i, |w| w.connections)), Json::Live("worker_connections")),
        &["worker"],
    ),
    with_labels(
        in_json(family("qproxy_worker_datagrams_received_total", Counter, "UDP datagrams each worker received from its sockets.", |i| per_worker(i, |w| w.datagrams_received)), Json::Top("worker_datagrams_received")),
        &["worker"],
    ),
    family("qproxy_udp_paced_total", Counter, "Datagrams held until their pacing time.", |i| one(i.proxy.udp_paced.load(Relaxed))),
    family("qproxy_backend_connect_errors_total", Counter, "Failed backend connections.", |i| one(i.proxy.connect_errors.load(Relaxed))),
    in_json(family("qproxy_cid_routes", Gauge, "Connection IDs in the router.", |i| one(i.proxy.cid_routes.load(Relaxed))), Json::Live("cid_routes")),
    family("qproxy_memory_trims_total", Counter, "Times an idle worker gave freed memory back to the system.", |i| one(i.proxy.memory_trims.load(Relaxed))),
    with_labels(
        family("qproxy_quic_initial_rules_total", Counter, "New clients a quic-initial rule decided for, by action.", |i| {
            labelled("action", &InitialAction::ALL, InitialAction::as_str, |a| i.proxy.initial_rules(a))
        }),
        &["action"],
    ),
    with_labels(
        family("qproxy_quic_retries_total", Counter, "Retry packets sent and their tokens' fate.", |i| {
            labelled("result", &RetryOutcome::ALL, RetryOutcome::label, |o| i.proxy.retries(o))
        }),
        &["result"],
    ),
    with_labels(
        family(
            "qproxy_early_data_requests_total",
            Counter,
            "Requests received in 0-RTT early data: forwarded with Early-Data: 1, held until the handshake, or replayed after a 425.",
            |i| labelled("action", &EarlyData::ALL, EarlyData::label, |a| i.proxy.early(a)),
        ),
        &["action"],
    ),
    with_labels(traffic("qproxy_KIND_http_responses_total", Counter, "Requests per KIND, by status class.", TrafficValue::ByClass), &["code"]),
    traffic("qproxy_KIND_bytes_in_total", Counter, "Request body bytes per KIND.", TrafficValue::Value(|t| t.bytes_in)),
    traffic("qproxy_KIND_bytes_out_total", Counter, "Response body bytes per KIND.", TrafficValue::Value(|t| t.bytes_out)),
    traffic("qproxy_KIND_current_requests", Gauge, "Requests in flight per KIND.", TrafficValue::Value(|t| t.active)),
    with_labels(traffic("qproxy_KIND_response_time_seconds", Histogram, "Time from request to response head per KIND.", TrafficValue::ResponseTime), &["le"]),
    family("qproxy_backend_current_queue", Gauge, "Requests waiting for a server slot.", |i| per_backend(i, |b| b.backend.queued.load(Relaxed))),
    family("qproxy_backend_retries_total", Counter, "Retries after a failed attempt.", |i| per_backend(i, |b| b.backend.retries.load(Relaxed))),
    family("qproxy_backend_redispatches_total", Counter, "Retries sent to another server.", |i| per_backend(i, |b| b.backend.redispatches.load(Relaxed))),
    family("qproxy_backend_active_servers", Gauge, "Active (non-backup) servers UP.", |i| per_backend(i, |b| b.servers_up_of(false) as u64)),
    family("qproxy_backend_backup_servers", Gauge, "Backup servers UP.", |i| per_backend(i, |b| b.servers_up_of(true) as u64)),
    family("qproxy_server_up", Gauge, "1 when the server is UP, 0 when DOWN.", |i| per_server(i, |s| u64::from(s.is_up()))),
    with_labels(
        family("qproxy_server_check_results_total", Counter, "Health checks by result.", |i| {
            i.runtime
                .backends
                .iter()
                .flat_map(|b| b.servers.iter())
                .flat_map(|s| {
                    let l = server_label(s);
                    [
                        (format!("{l},result=\"passed\""), s.checks_passed.load(Relaxed)),
                        (format!("{l},result=\"failed\""), s.checks_failed.load(Relaxed)),
                    ]
                })
                .collect()
        }),
        &["result"],
    ),
    family("qproxy_server_down_transitions_total", Counter, "Times the server went DOWN.", |i| per_server(i, |s| s.went_down.load(Relaxed))),
    family("qproxy_server_connect_errors_total", Counter, "Failed connections to the server.", |i| per_server(i, |s| s.connect_errors.load(Relaxed))),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        std::fs::read_to_string(path).expect("docs/metrics.md")
    }

    /// The table rows of docs/metrics.md: (name, type column, labels column).
    fn documented() -> Vec<(String, String, String)> {
        docs()
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix("`qproxy_")?.strip_suffix('`')?;
                Some((
                    format!("qproxy_{name}"),
                    cells.get(2)?.to_string(),
                    cells.get(3)?.to_string(),
                ))
            })
            .collect()
    }

    #[test]
    fn every_family_is_documented_with_its_type_and_labels() {
        let rows = documented();
        for f in FAMILIES {
            let row = rows.iter().find(|(name, ..)| name == f.name);
            let Some((_, kind, labels)) = row else {
                panic!("{} is not in docs/metrics.md", f.name);
            };
            assert!(
                kind.starts_with(f.kind.as_str()),
                "{}: documented as {kind}, is a {}",
                f.name,
                f.kind.as_str()
            );
            for label in f.labels {
                assert!(
                    labels.contains(&format!("{label}=")),
                    "{}: label {label} is not documented",
                    f.name
                );
            }
        }
    }

    #[test]
    fn every_documented_metric_is_rendered() {
        for (name, ..) in documented() {
            assert!(
                FAMILIES.iter().any(|f| f.name == name),
                "docs/metrics.md documents {name}, which no family renders"
            );
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, f) in FAMILIES.iter().enumerate() {
            assert!(
                FAMILIES[i + 1..].iter().all(|g| g.name != f.name),
                "{} twice",
                f.name
            );
        }
    }
}
