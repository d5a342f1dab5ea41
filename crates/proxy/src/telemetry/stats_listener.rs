//! The stats listener, on its own small thread: Prometheus text at the `prometheus-exporter` path and a
//! JSON view at `stats uri` (what `qproxy top` reads), over plain HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::config::StatsFrontend;
use crate::telemetry::counters::{ProxyCounters, WorkerCounters, WorkerFigures};
use crate::telemetry::families::Inputs;
use crate::telemetry::json::json_view;
use crate::telemetry::prometheus::render;
use crate::upstream::live::{Runtime, SharedRuntime};

/// What the stats listener reads.
#[derive(Clone)]
pub(crate) struct StatsInputs {
    /// Every worker's counters, by worker index.
    pub(crate) workers: Arc<[WorkerCounters]>,
    /// Frontends, backends and servers.
    pub(crate) runtime: SharedRuntime,
}

/// Binds the stats frontend's address and serves it until the process ends.
pub(crate) fn spawn(frontend: &StatsFrontend, sources: StatsInputs) -> std::io::Result<SocketAddr> {
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

/// Calls `f` with every worker's counters summed, and each worker's figures.
fn with_inputs<T>(sources: &StatsInputs, runtime: &Runtime, f: impl FnOnce(&Inputs<'_>) -> T) -> T {
    let mut layers = qcc::Snapshot::default();
    let mut workers = Vec::with_capacity(sources.workers.len());
    for w in sources.workers.iter() {
        let snapshot = w.layers.snapshot();
        layers += &snapshot;
        workers.push(WorkerFigures::of(&snapshot, &w.proxy));
    }
    let proxy = ProxyCounters::sum(sources.workers.iter().map(|w| &*w.proxy));
    f(&Inputs {
        layers: &layers,
        proxy: &proxy,
        runtime,
        workers: &workers,
    })
}

fn serve(
    mut stream: TcpStream,
    (metrics, stats): &(Option<String>, Option<String>),
    sources: &StatsInputs,
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
        let text = with_inputs(sources, &runtime, render);
        ("200 OK", "text/plain; version=0.0.4", text)
    } else if stats.as_deref() == Some(path) {
        let view = with_inputs(sources, &runtime, json_view);
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
