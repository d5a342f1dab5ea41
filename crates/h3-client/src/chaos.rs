//! Chaos with quinn: connections that each draw a fate (complete; RESET_STREAM mid-upload; STOP_SENDING
//! mid-download; CONNECTION_CLOSE with responses unacknowledged; vanish without a word; open up to 100
//! streams and abort them; a request after GOAWAY), against the chaos origin's paths (`/ok/N`,
//! `/slow/N`, `/reset/N`, `/malformed/N`, `/hang/N`). Completed `/ok/N` bodies are checked byte for byte.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};
use h3::error::Code;

use crate::{tls_config, Options};

/// What a chaos run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosSummary {
    /// Requests started.
    pub requests: u64,
    /// Connections opened.
    pub connections: u64,
    /// `/ok/N` responses complete and byte-exact.
    pub verified: u64,
    /// `/ok/N` responses complete with a wrong body (must stay 0).
    pub corrupt: u64,
    /// Statuses received.
    pub statuses: BTreeMap<u16, u64>,
    /// Connections by fate.
    pub fates: BTreeMap<&'static str, u64>,
    /// Requests after GOAWAY that the client could not send.
    pub late_refused: u64,
    /// Connections that failed (counted, not fatal: the proxy's health is what is judged).
    pub client_errors: u64,
}

/// The chaos origin's body for `/ok/N`.
pub fn pattern(n: usize) -> Vec<u8> {
    qproxy_tests::pattern::bytes(qproxy_tests::pattern::Body::Chaos, n)
}

fn draw_path(rng: &mut fastrand::Rng) -> String {
    let kind = match rng.u32(0..100) {
        0..70 => "ok",
        70..80 => "slow",
        80..88 => "reset",
        88..94 => "malformed",
        _ => "hang",
    };
    let n = [0, 1, 1000, 30_000, 300_000][rng.usize(0..5)];
    format!("/{kind}/{n}")
}

const FATES: [(&str, u32); 7] = [
    ("complete", 53),
    ("reset_upload", 10),
    ("stop_download", 10),
    ("close_unacked", 10),
    ("vanish", 5),
    ("many_aborts", 10),
    ("after_goaway", 2),
];

fn draw_fate(rng: &mut fastrand::Rng) -> &'static str {
    let mut ticket = rng.u32(0..FATES.iter().map(|f| f.1).sum());
    for (fate, weight) in FATES {
        if ticket < weight {
            return fate;
        }
        ticket -= weight;
    }
    "complete"
}

type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

fn request(authority: &str, method: &str, path: &str, length: Option<usize>) -> Result<http::Request<()>> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"));
    if let Some(n) = length {
        req = req.header("content-length", n);
    }
    Ok(req.body(())?)
}

/// Sends one request (with `body`) and reads the whole response; records status and verification.
async fn exchange(
    mut send: Sender,
    authority: String,
    path: String,
    body: Option<Vec<u8>>,
    summary: Arc<Mutex<ChaosSummary>>,
) -> Result<()> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let mut stream = send
        .send_request(request(&authority, method, &path, body.as_ref().map(Vec::len))?)
        .await?;
    if let Some(b) = body {
        stream.send_data(Bytes::from(b)).await?;
    }
    stream.finish().await?;
    let response = stream.recv_response().await?;
    let status = response.status().as_u16();
    *summary.lock().unwrap().statuses.entry(status).or_default() += 1;
    let mut got = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        let n = chunk.remaining();
        got.extend_from_slice(&chunk.copy_to_bytes(n));
    }
    if let (Some(n), 200) = (path.strip_prefix("/ok/"), status) {
        let n: usize = n.parse().unwrap_or(0);
        let mut s = summary.lock().unwrap();
        if got == pattern(n) {
            s.verified += 1;
        } else {
            s.corrupt += 1;
        }
    }
    Ok(())
}

/// Plays `fate` on a new connection; returns how many requests it started. The connection's endpoint and
/// runtime belong to the caller, which drops them unpolled after `vanish`.
async fn play(
    fate: &'static str,
    options: &Options,
    endpoint: &quinn::Endpoint,
    rng: &mut fastrand::Rng,
    budget: u64,
    summary: &Arc<Mutex<ChaosSummary>>,
) -> Result<u64> {
    let conn = endpoint
        .connect(options.server, &options.name)?
        .await
        .context("QUIC handshake")?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let drive = tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let authority = format!("{}:{}", options.name, options.server.port());
    let wait = options.timeout;
    let started = match fate {
        "complete" => {
            let count = budget.clamp(1, rng.u64(1..=5));
            let mut tasks = Vec::new();
            for _ in 0..count {
                let body = (rng.u32(0..5) == 0).then(|| {
                    let n = if rng.bool() { 100 } else { 0 };
                    (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>()
                });
                let task = exchange(
                    send.clone(),
                    authority.clone(),
                    draw_path(rng),
                    body,
                    summary.clone(),
                );
                tasks.push(tokio::spawn(tokio::time::timeout(wait, task)));
            }
            for task in tasks {
                let _ = task.await;
            }
            count
        }
        "reset_upload" => {
            let mut send = send.clone();
            let mut stream = send
                .send_request(request(&authority, "POST", "/ok/10", Some(200_000))?)
                .await?;
            stream.send_data(Bytes::from(vec![b'x'; 16 * 1024])).await?;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..50))).await;
            stream.stop_stream(Code::H3_REQUEST_CANCELLED);
            1
        }
        "stop_download" | "close_unacked" | "vanish" => {
            let mut send = send.clone();
            let mut stream = send
                .send_request(request(&authority, "GET", "/ok/3000000", None)?)
                .await?;
            stream.finish().await?;
            if fate == "close_unacked" {
                let other = exchange(
                    send.clone(),
                    authority.clone(),
                    draw_path(rng),
                    None,
                    summary.clone(),
                );
                tokio::spawn(other);
            }
            let first_data = tokio::time::timeout(wait, async {
                stream.recv_response().await?;
                stream.recv_data().await.map(|_| ())
            })
            .await;
            match fate {
                "stop_download" => {
                    // Dropping the unfinished receive stream makes quinn send STOP_SENDING; h3-quinn's own
                    // stop_sending panics while h3 has a read of the stream in flight.
                    let _ = first_data;
                    drop(stream);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                "close_unacked" => conn.close(0x100u32.into(), b"client leaves"),
                // vanish: return at once; the caller drops everything without polling again.
                _ => return Ok(1),
            }
            1 + u64::from(fate == "close_unacked")
        }
        "after_goaway" => {
            let first = exchange(
                send.clone(),
                authority.clone(),
                "/ok/10".into(),
                None,
                summary.clone(),
            );
            let _ = tokio::time::timeout(wait, first).await;
            // Past the proxy's `timeout http-keep-alive` (1 s in the chaos set-up): GOAWAY has come.
            tokio::time::sleep(Duration::from_millis(1300)).await;
            let late = exchange(
                send.clone(),
                authority.clone(),
                "/ok/10".into(),
                None,
                summary.clone(),
            );
            if !matches!(
                tokio::time::timeout(Duration::from_secs(2), late).await,
                Ok(Ok(()))
            ) {
                summary.lock().unwrap().late_refused += 1;
            }
            2
        }
        _ => {
            // many_aborts
            let n = budget.clamp(1, 100);
            let mut streams = Vec::new();
            for _ in 0..n {
                let mut send = send.clone();
                let mut stream = send
                    .send_request(request(&authority, "GET", "/ok/100000", None)?)
                    .await?;
                stream.finish().await?;
                streams.push(stream);
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(0..50))).await;
            // As in stop_download: dropped unfinished streams get STOP_SENDING.
            drop(streams);
            tokio::time::sleep(Duration::from_millis(20)).await;
            n
        }
    };
    drop(send);
    conn.close(0x100u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), drive).await;
    Ok(started)
}

/// One connection with a random fate, on its own endpoint and runtime.
fn one_connection(
    options: &Options,
    rng: &mut fastrand::Rng,
    budget: u64,
    summary: &Arc<Mutex<ChaosSummary>>,
) -> u64 {
    let fate = draw_fate(rng);
    *summary.lock().unwrap().fates.entry(fate).or_default() += 1;
    let result = (|| -> Result<u64> {
        // A current-thread runtime polls the endpoint only inside block_on: after `vanish` returns,
        // nothing is sent again, not even a CONNECTION_CLOSE, like a client that lost its network.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let bind = crate::any_local(options.server);
        let started = runtime.block_on(async {
            let mut endpoint = quinn::Endpoint::client(bind)?;
            endpoint.set_default_client_config(tls_config(options)?);
            let started = tokio::time::timeout(
                options.timeout * 2,
                play(fate, options, &endpoint, rng, budget, summary),
            )
            .await
            .context("connection timed out")??;
            if fate != "vanish" {
                endpoint.wait_idle().await;
            }
            anyhow::Ok(started)
        })?;
        drop(runtime);
        Ok(started)
    })();
    result.unwrap_or_else(|_| {
        summary.lock().unwrap().client_errors += 1;
        1
    })
}

/// Runs about `requests` requests over connections with random fates, `concurrency` at a time.
pub fn chaos(options: &Options, requests: u64, concurrency: usize, seed: u64) -> ChaosSummary {
    let summary = Arc::new(Mutex::new(ChaosSummary::default()));
    let left = Arc::new(Mutex::new(requests));
    let mut seeds = fastrand::Rng::with_seed(seed);
    std::thread::scope(|scope| {
        for _ in 0..concurrency.max(1) {
            let (summary, left) = (summary.clone(), left.clone());
            let mut rng = fastrand::Rng::with_seed(seeds.u64(..));
            scope.spawn(move || loop {
                let budget = *left.lock().unwrap();
                if budget == 0 {
                    return;
                }
                let started = one_connection(options, &mut rng, budget, &summary);
                let mut l = left.lock().unwrap();
                *l = l.saturating_sub(started);
                let mut s = summary.lock().unwrap();
                s.connections += 1;
                s.requests += started;
            });
        }
    });
    let summary = summary.lock().unwrap().clone();
    summary
}
