//! The access log: one line per request, in a fixed format (`docs/configuration.md`, "Logs").
//!
//! `CLIENT CONN STREAM "METHOD AUTHORITY PATH" STATUS BYTES_IN BYTES_OUT BACKEND/SERVER Tc/Tr/Tt TERMINATION`
//! with timings in milliseconds from the request head: Tc until the backend connection was up, Tr until
//! the response head, Tt until the end; -1 for a step never reached.

use std::time::Instant;

use crate::upstream::ExchangeInfo;

fn ms(from: Instant, to: Option<Instant>) -> i64 {
    to.map_or(-1, |t| t.saturating_duration_since(from).as_millis() as i64)
}

/// Writes one access line (tracing target `qproxy::access`, level info).
pub(crate) fn log(
    client: &str,
    conn: &str,
    stream: u64,
    info: &ExchangeInfo,
    server: &str,
    termination: &str,
    now: Instant,
) {
    let status = info.status.map_or("-".to_string(), |s| s.to_string());
    tracing::info!(
        target: "qproxy::access",
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
