//! An HTTP/3 client built from implementations no one here wrote: quinn (QUIC), h3 (HTTP/3) and rustls
//! (TLS, verifying a given CA). qproxy's interop matrix runs it as `h3get`; the end-to-end tests call
//! [`run`] directly. [`load`] is the engine of `h3load`, the load generator of `cargo xtask bench`.
//!
//! Each connection sends every request concurrently. Options cover the interop runner's client-side
//! behaviours: ChaCha20 only, a forced key update, session resumption with 0-RTT, and a port change
//! (NAT rebinding) in the middle of the transfers or while the connection is idle before its requests.

pub mod chaos;
pub mod load;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes};

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's address.
    pub server: SocketAddr,
    /// The name to verify and send as `:authority` (with the port).
    pub name: String,
    /// PEM file with the CA to trust.
    pub ca: PathBuf,
    /// Connections, one after the other (resumption needs the second to follow the first).
    pub connections: usize,
    /// Offer TLS_CHACHA20_POLY1305_SHA256 only.
    pub chacha20: bool,
    /// Force a key update once the handshake is done.
    pub key_update: bool,
    /// From the second connection on, resume the session and send the requests as 0-RTT.
    pub resume: bool,
    /// Whether and when to move to a new local UDP port.
    pub rebind: Rebind,
    /// Send the requests one after the other, each once the one before was answered and this long
    /// has passed (instead of all at once).
    pub pause_between: Option<Duration>,
    /// Give up on a connection after this long.
    pub timeout: Duration,
}

impl Options {
    /// One connection to `server` as `localhost`, trusting `ca`, nothing special, 60 s at most.
    pub fn new(server: SocketAddr, ca: PathBuf) -> Self {
        Options {
            server,
            name: "localhost".into(),
            ca,
            connections: 1,
            chacha20: false,
            key_update: false,
            resume: false,
            rebind: Rebind::Never,
            pause_between: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A port change (NAT rebinding) on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebind {
    /// Keep the port.
    Never,
    /// Once the handshake is over and the connection has been idle a moment, before any request: a NAT
    /// binding that timed out on an idle connection.
    WhileIdle,
    /// Once this many response bytes arrived (over all requests), with data in flight.
    AfterBytes(u64),
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`.
    pub path: String,
    /// A body, sent with its length.
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Request {
            method: "GET".into(),
            path: path.into(),
            body: None,
        }
    }
}

/// One request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The connection (0-based).
    pub conn: usize,
    /// The request's index in the list.
    pub index: usize,
    /// The status, when a response came.
    pub status: Option<u16>,
    /// The response body.
    pub body: Vec<u8>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// What one connection did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    /// The session was resumed (0-RTT keys were available).
    pub resumed: bool,
    /// The server accepted the 0-RTT data.
    pub early_data: bool,
    /// The local port moved during the transfers.
    pub rebound: bool,
    /// Its requests.
    pub answers: Vec<Answer>,
}

pub(crate) fn tls_config(options: &Options) -> Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&options.ca).with_context(|| format!("reading {}", options.ca.display()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let mut provider = rustls::crypto::ring::default_provider();
    // QUIC's Initial packets always use AES-128-GCM; the handshake and 1-RTT keys use what TLS agrees.
    let initial = provider
        .cipher_suites
        .iter()
        .find(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        .and_then(|s| s.tls13())
        .and_then(|s| s.quic_suite())
        .context("no AES-128-GCM suite for Initial packets")?;
    if options.chacha20 {
        provider
            .cipher_suites
            .retain(|s| s.suite() == rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.enable_early_data = true;
    let quic = quinn::crypto::rustls::QuicClientConfig::with_initial(Arc::new(tls), initial)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(10).try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Runs `requests` on `options.connections` connections; one report per connection.
pub fn run(options: &Options, requests: &[Request]) -> Result<Vec<ConnectionReport>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let bind = crate::any_local(options.server);
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(tls_config(options)?);
        let mut reports = Vec::new();
        for c in 0..options.connections.max(1) {
            let resume = options.resume && c > 0;
            let report = tokio::time::timeout(
                options.timeout,
                connection(&endpoint, options, c, resume, requests),
            )
            .await
            .unwrap_or_else(|_| bail!("connection {c} timed out after {:?}", options.timeout))?;
            reports.push(report);
        }
        endpoint.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        Ok(reports)
    })
}

/// Any local address of `server`'s family, port 0: the kernel picks the source address for the route to
/// the server (loopback, or another interface in a network namespace).
pub fn any_local(server: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if server.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

/// Moves the endpoint to a new local port.
fn rebind(endpoint: &quinn::Endpoint, server: SocketAddr) -> Result<()> {
    let to = crate::any_local(server);
    endpoint.rebind(UdpSocket::bind(to)?)?;
    Ok(())
}

async fn connection(
    endpoint: &quinn::Endpoint,
    options: &Options,
    c: usize,
    resume: bool,
    requests: &[Request],
) -> Result<ConnectionReport> {
    let connecting = endpoint.connect(options.server, &options.name)?;
    let (conn, resumed, accepted) = if resume {
        match connecting.into_0rtt() {
            Ok((conn, accepted)) => (conn, true, Some(accepted)),
            Err(connecting) => (connecting.await.context("QUIC handshake")?, false, None),
        }
    } else {
        (connecting.await.context("QUIC handshake")?, false, None)
    };
    if options.key_update {
        conn.force_key_update();
    }
    let (mut driver, send_request) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    let drive = tokio::spawn(async move {
        let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    if options.rebind == Rebind::WhileIdle {
        // Long enough for the handshake's last flights to be acknowledged: nothing is in flight.
        tokio::time::sleep(Duration::from_millis(50)).await;
        rebind(endpoint, options.server)?;
    }
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut answers = Vec::new();
    for (index, request) in requests.iter().cloned().enumerate() {
        if let Some(pause) = options.pause_between {
            if let Some(previous) = tasks.pop() {
                answers.push(previous.await?);
                tokio::time::sleep(pause).await;
            }
        }
        let mut send_request = send_request.clone();
        let (authority, received) = (
            format!("{}:{}", options.name, options.server.port()),
            received.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut answer = Answer {
                conn: c,
                index,
                status: None,
                body: Vec::new(),
                error: None,
            };
            let outcome: Result<()> = async {
                let mut req = http::Request::builder()
                    .method(request.method.as_str())
                    .uri(format!("https://{authority}{}", request.path));
                if let Some(b) = &request.body {
                    req = req.header("content-length", b.len());
                }
                let mut stream = send_request.send_request(req.body(())?).await?;
                if let Some(b) = request.body {
                    stream.send_data(Bytes::from(b)).await?;
                }
                stream.finish().await?;
                let response = stream.recv_response().await?;
                answer.status = Some(response.status().as_u16());
                while let Some(mut chunk) = stream.recv_data().await? {
                    let n = chunk.remaining();
                    received.fetch_add(n as u64, Ordering::Relaxed);
                    answer.body.extend_from_slice(&chunk.copy_to_bytes(n));
                }
                Ok(())
            }
            .await;
            answer.error = outcome.err().map(|e| format!("{e:#}"));
            answer
        }));
    }
    let rebound = match options.rebind {
        Rebind::AfterBytes(after) => {
            while received.load(Ordering::Relaxed) < after && !tasks.iter().all(|t| t.is_finished()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            rebind(endpoint, options.server)?;
            true
        }
        Rebind::WhileIdle => true,
        Rebind::Never => false,
    };
    for task in tasks {
        answers.push(task.await?);
    }
    let early_data = match accepted {
        Some(accepted) => accepted.await,
        None => false,
    };
    drop(send_request);
    conn.close(0x100u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(2), drive).await;
    Ok(ConnectionReport {
        resumed,
        early_data,
        rebound,
        answers,
    })
}
