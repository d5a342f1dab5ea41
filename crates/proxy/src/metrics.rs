//! Prometheus metrics: names as constants (documented in `docs/metrics.md`), rendered from the layer
//! counters and the proxy's own.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use qcc::Snapshot;

/// Live HTTP/3 connections (qcc).
pub const CONNECTIONS: &str = "qproxy_quic_connections";
/// HTTP/3 connections accepted since start.
pub const CONNECTIONS_TOTAL: &str = "qproxy_quic_connections_total";
/// Released connections whose transport is still closing.
pub const CLOSING: &str = "qproxy_quic_closing_connections";
/// Live request streams (qcs).
pub const STREAMS: &str = "qproxy_h3_streams";
/// Request streams since start.
pub const STREAMS_TOTAL: &str = "qproxy_h3_streams_total";
/// Live stream descriptors, by phase (attached / released).
pub const DESCRIPTORS: &str = "qproxy_stream_descriptors";
/// Stream descriptors since start.
pub const DESCRIPTORS_TOTAL: &str = "qproxy_stream_descriptors_total";
/// Tx budget bytes in use over all connections.
pub const TX_BUDGET_BYTES: &str = "qproxy_tx_budget_bytes";
/// Times a stream waited for Tx budget room.
pub const TX_BUDGET_WAITS: &str = "qproxy_tx_budget_waits_total";
/// Wake-ups that found their target gone.
pub const STALE_WAKEUPS: &str = "qproxy_stale_wakeups_total";
/// Releases out of the documented order (must be 0).
pub const OUT_OF_ORDER: &str = "qproxy_out_of_order_releases_total";
/// Open TCP sockets to backends, by state (active: serving a request; idle: in the keep-alive pool).
pub const BACKEND_SOCKETS: &str = "qproxy_backend_sockets";
/// Backend exchanges in progress.
pub const EXCHANGES: &str = "qproxy_backend_exchanges";
/// Responses sent, by status class.
pub const REQUESTS_TOTAL: &str = "qproxy_http_requests_total";
/// Request body bytes received from clients.
pub const BYTES_IN: &str = "qproxy_http_request_bytes_total";
/// Response body bytes sent to clients.
pub const BYTES_OUT: &str = "qproxy_http_response_bytes_total";
/// Connection IDs the router knows (two per connection until it is gone).
pub const CID_ROUTES: &str = "qproxy_cid_routes";
/// Backend connection attempts that failed.
pub const CONNECT_ERRORS: &str = "qproxy_backend_connect_errors_total";

/// The proxy's own counters (the layers' are in `qcc::Counters`).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Open backend sockets (in use or idle).
    pub backend_sockets: AtomicU64,
    /// Of those, idle in the keep-alive pool.
    pub backend_sockets_idle: AtomicU64,
    /// Exchanges in progress.
    pub exchanges: AtomicU64,
    /// Responses by status class: index 0 for 1xx ... 4 for 5xx, 5 for "none" (aborted before a status).
    pub requests: [AtomicU64; 6],
    /// Request body bytes.
    pub bytes_in: AtomicU64,
    /// Response body bytes.
    pub bytes_out: AtomicU64,
    /// Failed backend connections.
    pub connect_errors: AtomicU64,
    /// Connection IDs in the router.
    pub cid_routes: AtomicU64,
}

impl ProxyCounters {
    /// Counts one finished request.
    pub fn count_request(&self, status: Option<u16>, bytes_in: u64, bytes_out: u64) {
        let class = match status {
            Some(s @ 100..=599) => usize::from(s / 100 - 1),
            _ => 5,
        };
        self.requests[class].fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
    }
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The Prometheus text exposition (format 0.0.4).
pub fn render(layers: &Snapshot, proxy: &ProxyCounters) -> String {
    let mut out = String::with_capacity(4096);
    let s = layers;
    metric(
        &mut out,
        CONNECTIONS,
        "gauge",
        "Live HTTP/3 connections.",
        &[("", s.connections_live)],
    );
    metric(
        &mut out,
        CONNECTIONS_TOTAL,
        "counter",
        "HTTP/3 connections accepted.",
        &[("", s.connections_total)],
    );
    metric(
        &mut out,
        CLOSING,
        "gauge",
        "Released connections still closing.",
        &[("", s.closing_live)],
    );
    metric(
        &mut out,
        STREAMS,
        "gauge",
        "Live HTTP/3 request streams.",
        &[("", s.streams_live)],
    );
    metric(
        &mut out,
        STREAMS_TOTAL,
        "counter",
        "HTTP/3 request streams opened.",
        &[("", s.streams_total)],
    );
    metric(
        &mut out,
        DESCRIPTORS,
        "gauge",
        "Live stream descriptors by phase.",
        &[
            ("phase=\"attached\"", s.descs_attached_live),
            ("phase=\"released\"", s.descs_released_live),
        ],
    );
    metric(
        &mut out,
        DESCRIPTORS_TOTAL,
        "counter",
        "Stream descriptors created.",
        &[("", s.descs_total)],
    );
    metric(
        &mut out,
        TX_BUDGET_BYTES,
        "gauge",
        "Tx budget bytes in use.",
        &[("", s.tx_budget_bytes)],
    );
    metric(
        &mut out,
        TX_BUDGET_WAITS,
        "counter",
        "Streams refused by a full Tx budget.",
        &[("", s.tx_budget_waits)],
    );
    metric(
        &mut out,
        STALE_WAKEUPS,
        "counter",
        "Wake-ups whose target was gone.",
        &[("", s.stale_wakeups)],
    );
    metric(
        &mut out,
        OUT_OF_ORDER,
        "counter",
        "Out-of-order releases (must be 0).",
        &[("", s.out_of_order_releases)],
    );
    let p = proxy;
    let (open, idle) = (
        p.backend_sockets.load(Relaxed),
        p.backend_sockets_idle.load(Relaxed),
    );
    metric(
        &mut out,
        BACKEND_SOCKETS,
        "gauge",
        "Open backend TCP sockets by state.",
        &[
            ("state=\"active\"", open.saturating_sub(idle)),
            ("state=\"idle\"", idle),
        ],
    );
    metric(
        &mut out,
        EXCHANGES,
        "gauge",
        "Backend exchanges in progress.",
        &[("", p.exchanges.load(Relaxed))],
    );
    let classes = [
        "class=\"1xx\"",
        "class=\"2xx\"",
        "class=\"3xx\"",
        "class=\"4xx\"",
        "class=\"5xx\"",
        "class=\"none\"",
    ];
    let samples: Vec<(&str, u64)> = classes
        .iter()
        .zip(&p.requests)
        .map(|(l, c)| (*l, c.load(Relaxed)))
        .collect();
    metric(
        &mut out,
        REQUESTS_TOTAL,
        "counter",
        "Requests answered, by status class.",
        &samples,
    );
    metric(
        &mut out,
        BYTES_IN,
        "counter",
        "Request body bytes from clients.",
        &[("", p.bytes_in.load(Relaxed))],
    );
    metric(
        &mut out,
        BYTES_OUT,
        "counter",
        "Response body bytes to clients.",
        &[("", p.bytes_out.load(Relaxed))],
    );
    metric(
        &mut out,
        CONNECT_ERRORS,
        "counter",
        "Failed backend connections.",
        &[("", p.connect_errors.load(Relaxed))],
    );
    metric(
        &mut out,
        CID_ROUTES,
        "gauge",
        "Connection IDs in the router.",
        &[("", p.cid_routes.load(Relaxed))],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_once_with_help_and_type() {
        let p = ProxyCounters::default();
        p.count_request(Some(503), 1, 2);
        p.count_request(None, 0, 0);
        let text = render(
            &Snapshot {
                streams_live: 3,
                ..Snapshot::default()
            },
            &p,
        );
        assert!(text.contains("qproxy_h3_streams 3\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"5xx\"} 1\n"));
        assert!(text.contains("qproxy_http_requests_total{class=\"none\"} 1\n"));
        assert!(text.contains("qproxy_stream_descriptors{phase=\"released\"} 0\n"));
        for name in [
            CONNECTIONS,
            STREAMS,
            DESCRIPTORS,
            TX_BUDGET_BYTES,
            BACKEND_SOCKETS,
            OUT_OF_ORDER,
        ] {
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1, "{name}");
        }
    }
}
