//! `h3load`'s engine, on the same quinn + h3 + rustls stack as `h3get`: N connections × M concurrent
//! request streams on one path, for a fixed request count or a duration, optionally paced to a total rate
//! and optionally reconnecting after K requests per connection; or ([`hold`]) connections (and streams)
//! opened and kept open, in phases a controller steps through, for memory measurements.
//!
//! Every loop ends by itself: at the request count, at the deadline (the duration, else the timeout), or
//! when the controller's input ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::{tls_config, Options};

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// What to load and how.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server's address.
    pub server: SocketAddr,
    /// The name to verify and send in `:authority`.
    pub name: String,
    /// PEM file with the certificate (or CA) to trust.
    pub ca: PathBuf,
    /// Connections at the same time.
    pub connections: usize,
    /// Concurrent request streams per connection (in [`hold`]: streams opened per connection).
    pub streams: usize,
    /// Stop after this many requests in all.
    pub requests: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Start requests at this total rate (requests per second) instead of as fast as possible.
    pub rate: Option<f64>,
    /// Close a connection and open a new one after this many requests on it.
    pub per_connection: Option<u64>,
    /// The path every request asks for.
    pub path: String,
    /// Runtime threads (1: a current-thread runtime).
    pub threads: usize,
    /// The bound on the whole run.
    pub timeout: Duration,
}

impl LoadOptions {
    /// One connection, one stream, `requests` GETs of `path` on `server` as `localhost`, trusting `ca`.
    pub fn new(server: SocketAddr, ca: PathBuf, path: impl Into<String>, requests: u64) -> Self {
        LoadOptions {
            server,
            name: "localhost".into(),
            ca,
            connections: 1,
            streams: 1,
            requests: Some(requests),
            duration: None,
            rate: None,
            per_connection: None,
            path: path.into(),
            threads: 1,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered with a 2xx status and read to the end.
    pub requests: u64,
    /// Requests or connections that failed.
    pub errors: u64,
    /// Connections established.
    pub connections: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// From the first connection attempt to the last answer.
    pub elapsed: Duration,
    /// Latency of every completed request (from sending its head to its body's end), sorted, in µs.
    pub latencies_us: Vec<u32>,
    /// The first failure, as an example.
    pub first_error: Option<String>,
}

impl LoadReport {
    /// The `p`-th percentile (0 < p <= 100) of the latencies, in µs.
    pub fn percentile(&self, p: f64) -> Option<u32> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        Some(self.latencies_us[rank.clamp(1, n) - 1])
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let secs = self.elapsed.as_secs_f64();
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "connections": self.connections,
            "bytes": self.bytes,
            "elapsed_s": secs,
            "req_per_s": if secs > 0.0 { self.requests as f64 / secs } else { 0.0 },
            "p50_us": self.percentile(50.0),
            "p90_us": self.percentile(90.0),
            "p99_us": self.percentile(99.0),
            "max_us": self.latencies_us.last(),
            "first_error": self.first_error,
        })
    }
}

/// The budget and the counters every task shares.
struct Shared {
    next: AtomicU64,
    limit: u64,
    start: Instant,
    deadline: Instant,
    rate: Option<f64>,
    requests: AtomicU64,
    errors: AtomicU64,
    connections: AtomicU64,
    bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn new(options: &LoadOptions) -> Self {
        let start = Instant::now();
        let bound = options.duration.unwrap_or(options.timeout).min(options.timeout);
        Shared {
            next: AtomicU64::new(0),
            limit: options.requests.unwrap_or(u64::MAX),
            start,
            deadline: start + bound,
            rate: options.rate.filter(|r| *r > 0.0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    fn exhausted(&self) -> bool {
        Instant::now() >= self.deadline || self.next.load(Ordering::Relaxed) >= self.limit
    }

    /// Takes the next request from the budget, waiting for its start time when paced.
    async fn take(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.limit {
            return false;
        }
        if let Some(rate) = self.rate {
            let at = self.start + Duration::from_secs_f64(i as f64 / rate);
            if at >= self.deadline {
                return false;
            }
            tokio::time::sleep_until(at).await;
        }
        true
    }

    fn error(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(|| format!("{e:#}"));
    }

    fn report(&self, mut latencies_us: Vec<u32>) -> LoadReport {
        latencies_us.sort_unstable();
        LoadReport {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            elapsed: self.start.elapsed(),
            latencies_us,
            first_error: self.first_error.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    Ok(if threads > 1 {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    })
}

/// Client endpoints (UDP sockets), at most 16, that the connections take in turn.
fn endpoints(options: &LoadOptions) -> Result<Vec<quinn::Endpoint>> {
    let mut tls = Options::new(options.server, options.ca.clone());
    tls.name = options.name.clone();
    let mut config = tls_config(&tls)?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
    transport.keep_alive_interval(Some(Duration::from_secs(5)));
    config.transport_config(Arc::new(transport));
    let bind = crate::any_local(options.server);
    (0..options.connections.clamp(1, 16))
        .map(|_| {
            let mut endpoint = quinn::Endpoint::client(bind)?;
            endpoint.set_default_client_config(config.clone());
            Ok(endpoint)
        })
        .collect()
}

/// A connection with its HTTP/3 layer; the driver task ends with the connection.
struct Conn {
    quic: quinn::Connection,
    send: Sender,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    async fn open(endpoint: &quinn::Endpoint, options: &LoadOptions) -> Result<Conn> {
        let quic = endpoint
            .connect(options.server, &options.name)?
            .await
            .context("QUIC handshake")?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .context("HTTP/3 setup")?;
        let driver = tokio::spawn(async move {
            let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Conn { quic, send, driver })
    }

    fn close(self) {
        drop(self.send);
        self.quic.close(0x100u32.into(), b"done");
        self.driver.abort();
    }
}

fn uri(options: &LoadOptions) -> Result<http::Uri> {
    Ok(format!(
        "https://{}:{}{}",
        options.name,
        options.server.port(),
        options.path
    )
    .parse()?)
}

/// Sends a GET of `uri` (head only, finished) and returns its stream.
async fn start_request(
    send: &mut Sender,
    uri: &http::Uri,
) -> Result<h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>> {
    let mut stream = send
        .send_request(http::Request::get(uri.clone()).body(())?)
        .await?;
    stream.finish().await?;
    Ok(stream)
}

/// Reads a response to its end: the body size, or an error for a status other than 2xx.
async fn read_response(
    mut stream: h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
) -> Result<u64> {
    let response = stream.recv_response().await?;
    anyhow::ensure!(response.status().is_success(), "status {}", response.status());
    let mut n = 0u64;
    while let Some(mut chunk) = stream.recv_data().await? {
        let len = chunk.remaining();
        chunk.advance(len);
        n += len as u64;
    }
    Ok(n)
}

/// One stream slot of a connection: requests one after the other until the budget, the connection's
/// share or the connection ends. Returns the latencies.
async fn stream_worker(
    mut send: Sender,
    quic: quinn::Connection,
    shared: Arc<Shared>,
    on_conn: Arc<AtomicU64>,
    options: Arc<LoadOptions>,
    uri: http::Uri,
    mut reserved: bool,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    loop {
        if let Some(k) = options.per_connection {
            if on_conn.fetch_add(1, Ordering::Relaxed) >= k {
                break;
            }
        }
        if !std::mem::take(&mut reserved) && !shared.take().await {
            break;
        }
        let started = std::time::Instant::now();
        let outcome = async { read_response(start_request(&mut send, &uri).await?).await }.await;
        match outcome {
            Ok(n) => {
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                shared.requests.fetch_add(1, Ordering::Relaxed);
                shared.bytes.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                shared.error(&e);
                if quic.close_reason().is_some() {
                    break;
                }
            }
        }
    }
    latencies
}

/// One connection slot: a connection and its stream workers, opened again whenever they end (the
/// per-connection share reached, or the connection lost) while budget remains.
async fn connection_worker(
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    options: Arc<LoadOptions>,
    uri: http::Uri,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    while !shared.exhausted() {
        // With a share per connection, its first request is taken before connecting, so that no
        // connection is opened for nothing at the end of the budget.
        let reserved = options.per_connection.is_some();
        if reserved && !shared.take().await {
            break;
        }
        let conn = match Conn::open(&endpoint, &options).await {
            Ok(conn) => conn,
            Err(e) => {
                shared.error(&e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let on_conn = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..options.streams.max(1))
            .map(|s| {
                tokio::spawn(stream_worker(
                    conn.send.clone(),
                    conn.quic.clone(),
                    shared.clone(),
                    on_conn.clone(),
                    options.clone(),
                    uri.clone(),
                    reserved && s == 0,
                ))
            })
            .collect();
        for worker in workers {
            if let Ok(l) = worker.await {
                latencies.extend(l);
            }
        }
        conn.close();
    }
    latencies
}

/// Runs the load and reports what it did.
pub fn run(options: &LoadOptions) -> Result<LoadReport> {
    let options = Arc::new(options.clone());
    let uri = uri(&options)?;
    runtime(options.threads)?.block_on(async {
        let endpoints = endpoints(&options)?;
        let shared = Arc::new(Shared::new(&options));
        let workers: Vec<_> = (0..options.connections.max(1))
            .map(|c| {
                tokio::spawn(connection_worker(
                    endpoints[c % endpoints.len()].clone(),
                    shared.clone(),
                    options.clone(),
                    uri.clone(),
                ))
            })
            .collect();
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await?);
        }
        let report = shared.report(latencies);
        for endpoint in &endpoints {
            endpoint.close(0u32.into(), b"done");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for endpoint in &endpoints {
                endpoint.wait_idle().await;
            }
        })
        .await;
        Ok(report)
    })
}

/// Opens `options.connections` connections (32 handshakes at a time) and calls `phase("connected")`;
/// after the next `go` (or its end, or the timeout) opens `options.streams` requests on each and calls
/// `phase("streams_sent")` once they are sent; after the next `go` waits up to 10 s for their answers,
/// closes everything and reports. With no streams, the report follows the first `go`.
pub fn hold(
    options: &LoadOptions,
    mut go: futures::channel::mpsc::UnboundedReceiver<()>,
    phase: impl Fn(&str, Value),
) -> Result<LoadReport> {
    let options = Arc::new(options.clone());
    let uri = uri(&options)?;
    runtime(options.threads)?.block_on(async {
        let endpoints = endpoints(&options)?;
        let shared = Arc::new(Shared::new(&options));
        let opened: Vec<Result<Conn>> = futures::stream::iter(0..options.connections)
            .map(|c| Conn::open(&endpoints[c % endpoints.len()], &options))
            .buffer_unordered(32)
            .collect()
            .await;
        let mut conns = Vec::new();
        for conn in opened {
            match conn {
                Ok(conn) => conns.push(conn),
                Err(e) => shared.error(&e),
            }
        }
        shared.connections.store(conns.len() as u64, Ordering::Relaxed);
        let errors = || shared.errors.load(Ordering::Relaxed);
        phase(
            "connected",
            json!({"connections": conns.len(), "errors": errors()}),
        );
        let _ = tokio::time::timeout_at(shared.deadline, go.next()).await;
        let mut pending = Vec::new();
        if options.streams > 0 {
            for conn in &mut conns {
                for _ in 0..options.streams {
                    match start_request(&mut conn.send, &uri).await {
                        Ok(stream) => pending.push(tokio::spawn(read_response(stream))),
                        Err(e) => shared.error(&e),
                    }
                }
            }
            phase(
                "streams_sent",
                json!({"streams": pending.len(), "errors": errors()}),
            );
            let _ = tokio::time::timeout_at(shared.deadline, go.next()).await;
        }
        let answers_by = Instant::now() + Duration::from_secs(10);
        for task in pending {
            match tokio::time::timeout_at(answers_by, task).await {
                Ok(Ok(Ok(n))) => {
                    shared.requests.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Ok(Err(e))) => shared.error(&e),
                Ok(Err(e)) => shared.error(&e.into()),
                Err(_) => shared.error(&anyhow::anyhow!("no answer within 10 s")),
            }
        }
        let report = shared.report(Vec::new());
        for conn in conns {
            conn.close();
        }
        for endpoint in &endpoints {
            endpoint.close(0u32.into(), b"done");
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for endpoint in &endpoints {
                endpoint.wait_idle().await;
            }
        })
        .await;
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let report = LoadReport {
            latencies_us: (1..=100).collect(),
            ..LoadReport::default()
        };
        assert_eq!(report.percentile(50.0), Some(50));
        assert_eq!(report.percentile(99.0), Some(99));
        assert_eq!(report.percentile(100.0), Some(100));
        assert_eq!(LoadReport::default().percentile(50.0), None);
    }
}
