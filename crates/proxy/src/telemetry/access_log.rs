//! The access log: one line per request, in a fixed format (`docs/configuration.md`, "Logs").
//!
//! `CLIENT CONN STREAM "METHOD AUTHORITY PATH" STATUS BYTES_IN BYTES_OUT BACKEND/SERVER Tc/Tr/Tt TERMINATION`
//! with timings in milliseconds from the request head: Tc until the backend connection was up, Tr until
//! the response head, Tt until the end; -1 for a step never reached.

use std::net::SocketAddr;
use std::time::Instant;

/// What the access line reports about a request.
#[derive(Debug, Clone)]
pub(crate) struct AccessFacts {
    /// `:method`.
    pub(crate) method: String,
    /// `:authority`.
    pub(crate) authority: String,
    /// `:path`.
    pub(crate) path: String,
    /// When the request head arrived.
    pub(crate) started: Instant,
    /// When the backend connection was up.
    pub(crate) connected_at: Option<Instant>,
    /// When the response head arrived.
    pub(crate) head_at: Option<Instant>,
    /// The status sent to the client.
    pub(crate) status: Option<u16>,
    /// Request body bytes.
    pub(crate) bytes_in: u64,
    /// Response body bytes.
    pub(crate) bytes_out: u64,
}

fn ms(from: Instant, to: Option<Instant>) -> i64 {
    to.map_or(-1, |t| t.saturating_duration_since(from).as_millis() as i64)
}

/// Writes one access line (tracing target `qproxy::access`, level info).
pub(crate) fn log(
    client: SocketAddr,
    conn: &str,
    stream: u64,
    info: &AccessFacts,
    server: &str,
    termination: &str,
    now: Instant,
) {
    // Formatted by the macro only when the line is enabled: nothing is built with the log off.
    let status = Status(info.status);
    tracing::info!(
        target: super::log_buffer::ACCESS_TARGET,
        "{client} {conn} {stream} \"{} {} {}\" {status} {} {} {server} {}/{}/{} {termination}",
        info.method,
        info.authority,
        info.path,
        info.bytes_in,
        info.bytes_out,
        ms(info.started, info.connected_at),
        ms(info.started, info.head_at),
        ms(info.started, Some(now)),
    );
}

/// A status, or `-` when none was sent.
struct Status(Option<u16>);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(s) => write!(f, "{s}"),
            None => f.write_str("-"),
        }
    }
}
