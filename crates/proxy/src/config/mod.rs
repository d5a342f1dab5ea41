//! The configuration file: a subset of HAProxy's syntax (see `docs/configuration.md`).
//!
//! Every error names the file, the line and what was expected; nothing starts on a bad config.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod backend;
mod frontend;
mod initial;
mod keywords;
mod lexer;
mod log;
mod parser;
use parser::Parser;
#[cfg(test)]
mod tests;

pub use backend::{Backend, BackendSettings, Balance, HttpCheck, Observe, Reuse, Server, ServerOptions};
pub use initial::{canonical, Compare, InitialAction, InitialCond, InitialRule};
pub use log::{LogDest, LogFormat, LogTarget};

/// A configuration error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Timeouts of a proxy section (`timeout <name> <duration>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeout connect`: a backend TCP connection must be up within this (else 503).
    pub connect: Duration,
    /// `timeout server`: a backend must send something within this while a response is due (else 504).
    pub server: Duration,
    /// `timeout http-request`: a request head must be complete within this.
    pub http_request: Duration,
    /// `timeout http-keep-alive`: an idle connection gets GOAWAY after this.
    pub http_keep_alive: Duration,
    /// `timeout client-hs`: the QUIC handshake must complete within this.
    pub client_hs: Duration,
    /// `timeout queue`: a request waits this long at most for a server slot (503 after; default
    /// `timeout connect`).
    pub queue: Option<Duration>,
    /// `timeout check`: one health check must finish within this (default the server's `inter`).
    pub check: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            server: Duration::from_secs(30),
            http_request: Duration::from_secs(10),
            http_keep_alive: Duration::from_secs(60),
            client_hs: Duration::from_secs(10),
            queue: None,
            check: None,
        }
    }
}

/// `global` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `nbthread`: worker threads (`None`: one per CPU the process may use, see [`Global::workers`]).
    pub nbthread: Option<usize>,
    /// `server-id HEX`: the QUIC-LB server ID written into every connection ID (1 to 14 bytes).
    pub server_id: Option<Vec<u8>>,
    /// `log TARGET ... FACILITY`: where access lines are shipped (none: to standard error with the
    /// other log lines).
    pub logs: Vec<LogTarget>,
    /// `cluster-secret TEXT`: keys Retry and stateless reset tokens the same on every instance (none: a
    /// random key per process).
    pub cluster_secret: Option<Secret>,
    /// `quic-lb-key HEX`: the AES-128 key of QUIC-LB's encrypted mode (needs `server-id`).
    pub quic_lb_key: Option<LbKey>,
    /// Cleared by `tune.quic.disable-kernel-steering`: a reuseport program steers datagrams to their
    /// worker (without it, every misrouted datagram is handed over in user space).
    pub kernel_steering: bool,
    /// `maxconn`: HTTP/3 connections open at once over every frontend and worker (`None`: no limit);
    /// the Initial of one more is dropped before anything is allocated for it.
    pub maxconn: Option<usize>,
    /// `tune.quic.fe.sec.retry-threshold`: handshakes in progress on one bind above which new clients
    /// must first prove their address with a Retry round trip.
    pub retry_threshold: usize,
    /// `tune.quic.fe.sec.glitches-threshold`: protocol oddities one connection may commit before it is
    /// closed with H3_EXCESSIVE_LOAD (0: never).
    pub glitches_threshold: u32,
    /// `tune.quic.fe.stream.max-total`: requests one connection may carry over its life (0: no limit).
    pub max_total_requests: u64,
    /// `tune.http.maxhdr`: request header fields at most (431 past it).
    pub max_headers: usize,
    /// `tune.http.max-field-section-size`: a request field section's size at most.
    pub max_field_section_size: usize,
    /// `hard-stop-after`: a graceful stop ends by force after this.
    pub hard_stop_after: Option<Duration>,
    /// `tune.quic.fe.max-idle-timeout`.
    pub max_idle_timeout: Duration,
    /// `tune.quic.fe.stream.max-concurrent`.
    pub max_concurrent_streams: u64,
    /// `tune.quic.fe.stream.rxbuf`: request body read ahead per stream.
    pub stream_rxbuf: usize,
    /// `tune.quic.fe.stream.max-data`: per-stream QUIC receive window.
    pub stream_max_data: u64,
    /// `tune.quic.fe.conn.max-data`: per-connection QUIC receive window.
    pub conn_max_data: u64,
    /// `tune.quic.fe.conn.tx-buf`: Tx budget per connection (bytes held unsent or unacknowledged).
    pub conn_tx_buf: usize,
    /// `tune.quic.mem.tx-max`: the Tx bytes of all connections of the process together (0: no cap).
    pub tx_mem_max: usize,
    /// Cleared by `no-memory-trimming`: idle workers give freed memory back to the system.
    pub memory_trimming: bool,
    /// GSO on send (`tune.quic.disable-udp-gso` turns it off: one datagram per send call).
    pub udp_gso: bool,
}

impl Global {
    /// Worker threads to run: `nbthread`, else one per CPU the process may use (its affinity and
    /// cgroup quota, as `std::thread::available_parallelism` reads them), at most 64.
    /// With `quic-lb-key`, at most 32: the worker field of an encrypted ID is five bits.
    pub fn workers(&self) -> usize {
        let most = if self.quic_lb_key.is_some() { 32 } else { 64 };
        self.nbthread
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(most)))
    }
}

/// A QUIC-LB key: a secret, so neither `Debug` nor the logs show it.
#[derive(Clone, PartialEq, Eq)]
pub struct LbKey(pub [u8; 16]);

impl std::fmt::Debug for LbKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LbKey(..)")
    }
}

/// A secret from the configuration: neither `Debug` nor the logs show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            nbthread: None,
            maxconn: None,
            server_id: None,
            quic_lb_key: None,
            cluster_secret: None,
            logs: Vec::new(),
            kernel_steering: true,
            hard_stop_after: None,
            retry_threshold: 100,
            glitches_threshold: 1000,
            max_headers: 101,
            max_total_requests: 0,
            max_field_section_size: 32 * 1024,
            max_idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 100,
            stream_rxbuf: 256 * 1024,
            stream_max_data: 1024 * 1024,
            conn_max_data: 16 * 1024 * 1024,
            conn_tx_buf: 4 * 1024 * 1024,
            tx_mem_max: 1 << 30,
            memory_trimming: true,
            udp_gso: true,
        }
    }
}

/// An HTTP/3 listener: `bind quic4@ADDR:PORT ssl crt FILE [key FILE] [alpn h3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicBind {
    /// Address and port.
    pub addr: SocketAddr,
    /// PEM with the certificate chain (and the key, unless `key` names another file).
    pub cert: PathBuf,
    /// PEM with the private key.
    pub key: PathBuf,
    /// `quic-force-retry`: every new connection first proves its address with a Retry round trip.
    pub force_retry: bool,
    /// `allow-0rtt`: accept 0-RTT early data (off by default: early data can be replayed).
    pub allow_0rtt: bool,
    /// `quic-cc-algo`: the congestion controller of its connections.
    pub cc_algo: CcAlgo,
}

/// `quic-cc-algo` of a bind, as HAProxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CcAlgo {
    /// CUBIC (RFC 9438), the default. quiche does not pace with it.
    #[default]
    Cubic,
    /// NewReno (RFC 9002).
    NewReno,
    /// BBRv2 (quiche's gcongestion), which paces its flights.
    Bbr,
}

/// What a frontend does with a request that arrives in 0-RTT early data, before the handshake completes
/// (RFC 8470). Only binds with `allow-0rtt` receive any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyDataPolicy {
    /// `http-request wait-for-handshake`: every early request waits for the handshake.
    pub wait_for_handshake: bool,
    /// `early-data-methods M ...`: the methods forwarded before the handshake completes (with
    /// `Early-Data: 1`); the others wait for it. Default: GET HEAD OPTIONS.
    pub methods: Vec<String>,
}

impl Default for EarlyDataPolicy {
    fn default() -> Self {
        EarlyDataPolicy {
            wait_for_handshake: false,
            methods: ["GET", "HEAD", "OPTIONS"].map(String::from).to_vec(),
        }
    }
}

impl EarlyDataPolicy {
    /// May a request with `method` go to a server before the handshake completes?
    pub fn forwards_early(&self, method: &str) -> bool {
        !self.wait_for_handshake && self.methods.iter().any(|m| m == method)
    }
}

/// A condition of `use_backend NAME if|unless { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acl {
    /// `path_beg P1 [P2 ...]`.
    PathBeg(Vec<String>),
    /// `path P1 [P2 ...]` (exact).
    Path(Vec<String>),
    /// `hdr(NAME) [-i] V1 [V2 ...]`; `host` compares without the port.
    Hdr {
        /// Header name, lower-case.
        name: String,
        /// Accepted values.
        values: Vec<String>,
        /// `-i`: compare case-insensitively.
        ignore_case: bool,
    },
}

/// `use_backend NAME if|unless { ACL }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The backend to use.
    pub backend: String,
    /// The condition.
    pub acl: Acl,
    /// `unless` instead of `if`.
    pub negate: bool,
}

/// An HTTP/3 frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub binds: Vec<QuicBind>,
    /// `default_backend`.
    pub default_backend: Option<String>,
    /// `use_backend` rules, in order.
    pub rules: Vec<Rule>,
    /// `http-response set-header NAME VALUE`.
    pub set_response_headers: Arc<[(String, String)]>,
    /// Timeouts (from `defaults`, then its own).
    pub timeouts: Timeouts,
    /// `option forwardfor`: add X-Forwarded-For and Forwarded.
    pub forwardfor: bool,
    /// `option jsonlog`: access lines as JSON objects.
    pub json_log: bool,
    /// `maxconn`: its HTTP/3 connections open at once (`None`: no limit but the global one).
    pub maxconn: Option<usize>,
    /// `quic-initial` rules, in order.
    pub quic_initial: Vec<InitialRule>,
    /// 0-RTT: `http-request wait-for-handshake` and `early-data-methods`.
    pub early_data: EarlyDataPolicy,
}

/// A stats frontend: `bind ADDR:PORT` (TCP) and `http-request use-service prometheus-exporter if { path /metrics }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsFrontend {
    /// Its name.
    pub name: String,
    /// Where it listens (TCP).
    pub addr: SocketAddr,
    /// The path that serves Prometheus text (`prometheus-exporter if { path ... }`).
    pub metrics_path: Option<String>,
    /// The path that serves the JSON view (`stats uri`).
    pub stats_path: Option<String>,
}

/// A whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `global`.
    pub global: Global,
    /// HTTP/3 frontends.
    pub frontends: Vec<Frontend>,
    /// Backends.
    pub backends: Vec<Backend>,
    /// Stats frontends.
    pub stats: Vec<StatsFrontend>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and checks configuration text; `file` is only used in errors and to resolve relative paths.
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        Parser::new(file).run(text)
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}
