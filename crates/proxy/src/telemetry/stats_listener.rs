//! The stats listener, on its own small thread: Prometheus text at the `prometheus-exporter` path and a
//! JSON view at `stats uri` (what `qproxy top` reads), over plain HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use qcc::Counters;
use serde_json::{json, Value};

use crate::config::StatsFrontend;
use crate::telemetry::prometheus::{render, ProxyCounters};
use crate::telemetry::traffic::{TrafficSnapshot, STATUS_CLASSES};
use crate::upstream::live::{Runtime, SharedRuntime};

/// What the stats listener reads.
#[derive(Clone)]
pub(crate) struct Sources {
    /// The layers' counters.
    pub(crate) layers: Arc<Counters>,
    /// The proxy's own counters.
    pub(crate) proxy: Arc<ProxyCounters>,
    /// Frontends, backends and servers.
    pub(crate) runtime: SharedRuntime,
}

/// Binds the stats frontend's address and serves it until the process ends.
pub(crate) fn spawn(frontend: &StatsFrontend, sources: Sources) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(frontend.addr)?;
    let local = listener.local_addr()?;
    let paths = (frontend.metrics_path.clone(), frontend.stats_path.clone());
    std::thread::Builder::new()
        .name("qproxy-stats".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &paths, &sources);
            }
        })?;
    Ok(local)
}

fn serve(
    mut stream: TcpStream,
    (metrics, stats): &(Option<String>, Option<String>),
    sources: &Sources,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let runtime = sources.runtime.read().clone();
    let (status, kind, body) = if metrics.as_deref() == Some(path) {
        let text = render(&sources.layers.snapshot(), &sources.proxy, &runtime);
        ("200 OK", "text/plain; version=0.0.4", text)
    } else if stats.as_deref() == Some(path) {
        let view = json_view(&sources.layers, &sources.proxy, &runtime);
        ("200 OK", "application/json", view.to_string())
    } else {
        let served: Vec<&str> = metrics.iter().chain(stats).map(String::as_str).collect();
        (
            "404 Not Found",
            "text/plain",
            format!("not found; this listener serves {}\n", served.join(" and ")),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

fn traffic(t: &TrafficSnapshot) -> Value {
    let requests: serde_json::Map<String, Value> = STATUS_CLASSES
        .iter()
        .zip(t.requests)
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    let answered: u64 = t.response_time_buckets.iter().sum();
    json!({
        "requests": requests,
        "requests_total": t.total(),
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        "active": t.active,
        "response_time_avg_ms": if answered == 0 { 0.0 } else { t.response_time_sum * 1000.0 / answered as f64 },
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// The JSON view of `stats uri`.
pub(crate) fn json_view(layers: &Counters, proxy: &ProxyCounters, runtime: &Runtime) -> Value {
    let s = layers.snapshot();
    let frontends: Vec<Value> = runtime
        .frontends
        .iter()
        .map(|f| merge(json!({ "name": f.name }), traffic(&f.traffic.snapshot())))
        .collect();
    let backends: Vec<Value> = runtime
        .backends
        .iter()
        .map(|b| {
            let servers: Vec<Value> = b
                .servers
                .iter()
                .map(|srv| {
                    let o = &srv.config.options;
                    merge(
                        json!({
                            "name": srv.name(),
                            "addr": srv.addr().to_string(),
                            "state": if srv.is_up() { "UP" } else { "DOWN" },
                            "weight": o.weight,
                            "backup": o.backup,
                            "maxconn": o.maxconn,
                            "checked": o.check,
                            "last_check": srv.last_check(),
                            "checks_passed": srv.checks_passed.load(Relaxed),
                            "checks_failed": srv.checks_failed.load(Relaxed),
                            "went_down": srv.went_down.load(Relaxed),
                            "connect_errors": srv.connect_errors.load(Relaxed),
                        }),
                        traffic(&srv.traffic.snapshot()),
                    )
                })
                .collect();
            merge(
                json!({
                    "name": b.backend.name,
                    "servers_up": b.servers_up(),
                    "queued": b.backend.queued.load(Relaxed),
                    "retries": b.backend.retries.load(Relaxed),
                    "redispatches": b.backend.redispatches.load(Relaxed),
                    "servers": servers,
                }),
                traffic(&b.backend.traffic.snapshot()),
            )
        })
        .collect();
    json!({
        "live": {
            "connections": s.connections_live,
            "closing": s.closing_live,
            "streams": s.streams_live,
            "descriptors_attached": s.descs_attached_live,
            "descriptors_released": s.descs_released_live,
            "tx_budget_bytes": s.tx_budget_bytes,
            "exchanges": proxy.exchanges.load(Relaxed),
            "backend_sockets": proxy.backend_sockets.load(Relaxed),
        },
        "stale_wakeups": s.stale_wakeups,
        "out_of_order_releases": s.out_of_order_releases,
        "connections_total": s.connections_total,
        "frontends": frontends,
        "backends": backends,
    })
}
