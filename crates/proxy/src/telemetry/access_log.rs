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

/// Where a request came from and how it ended, beside its facts.
pub(crate) struct Ending<'a> {
    /// The client's address.
    pub(crate) client: SocketAddr,
    /// The connection's id.
    pub(crate) conn: &'a str,
    /// The request's stream.
    pub(crate) stream: u64,
    /// Its frontend.
    pub(crate) frontend: &'a str,
    /// `backend/server`, the backend, or `-`.
    pub(crate) server: &'a str,
    /// The termination code.
    pub(crate) termination: &'a str,
    /// When it ended.
    pub(crate) now: Instant,
}

/// Some access line would be written (a `log` target, or the tracing target enabled): else a request's
/// end builds nothing, not even the clock reading of its last timing.
pub(crate) fn wanted() -> bool {
    super::log_ship::active()
        || tracing::enabled!(target: super::log_buffer::ACCESS_TARGET, tracing::Level::INFO)
}

/// Writes one access line (`json`: as a JSON object): to the `log` targets when there are, else as a
/// tracing event (target `qproxy::access`, level info) with the other log lines.
pub(crate) fn log(info: &AccessFacts, end: &Ending<'_>, json: bool) {
    let line = Line { info, end, json };
    if super::log_ship::active() {
        super::log_ship::ship(line);
    } else {
        // Formatted by the macro only when the line is enabled: nothing is built with the log off.
        tracing::info!(target: super::log_buffer::ACCESS_TARGET, "{line}");
    }
}

/// An access line, formatted where it is written (no allocation of its own).
struct Line<'a> {
    info: &'a AccessFacts,
    end: &'a Ending<'a>,
    json: bool,
}

impl std::fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (info, e) = (self.info, self.end);
        let (tc, tr, tt) = (
            ms(info.started, info.connected_at),
            ms(info.started, info.head_at),
            ms(info.started, Some(e.now)),
        );
        if !self.json {
            return write!(
                f,
                "{} {} {} \"{} {} {}\" {} {} {} {} {tc}/{tr}/{tt} {}",
                e.client,
                e.conn,
                e.stream,
                info.method,
                info.authority,
                info.path,
                Status(info.status),
                info.bytes_in,
                info.bytes_out,
                e.server,
                e.termination,
            );
        }
        let status = info.status.map_or(-1, i32::from);
        write!(
            f,
            "{{\"client\":\"{}\",\"conn\":{},\"stream\":{},\"frontend\":{},\"method\":{},\"authority\":{},\"path\":{},\"status\":{status},\"bytes_in\":{},\"bytes_out\":{},\"server\":{},\"tc_ms\":{tc},\"tr_ms\":{tr},\"tt_ms\":{tt},\"termination\":{}}}",
            e.client,
            Json(e.conn),
            e.stream,
            Json(e.frontend),
            Json(&info.method),
            Json(&info.authority),
            Json(&info.path),
            info.bytes_in,
            info.bytes_out,
            Json(e.server),
            Json(e.termination),
        )
    }
}

/// A JSON string: quoted, with quotes, backslashes and control characters escaped.
struct Json<'a>(&'a str);

impl std::fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if u32::from(c) < 0x20 || c == '\u{7f}' => write!(f, "\\u{:04x}", u32::from(c))?,
                c => std::fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> AccessFacts {
        let started = Instant::now();
        AccessFacts {
            method: "GET".into(),
            authority: "example.com".into(),
            path: "/a\"b\\c\u{1}".into(),
            started,
            connected_at: Some(started + std::time::Duration::from_millis(2)),
            head_at: None,
            status: Some(502),
            bytes_in: 3,
            bytes_out: 40,
        }
    }

    fn ending(now: Instant) -> Ending<'static> {
        Ending {
            client: "127.0.0.1:4000".parse().unwrap(),
            conn: "c1",
            stream: 8,
            frontend: "web",
            server: "app/s1",
            termination: "SH--",
            now,
        }
    }

    #[test]
    fn the_json_line_is_one_object_with_every_field_escaped() {
        let info = facts();
        let end = ending(info.started + std::time::Duration::from_millis(9));
        let text = Line {
            info: &info,
            end: &end,
            json: true,
        }
        .to_string();
        let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(
            (
                v["status"].as_i64(),
                v["tc_ms"].as_i64(),
                v["tr_ms"].as_i64(),
                v["tt_ms"].as_i64()
            ),
            (Some(502), Some(2), Some(-1), Some(9))
        );
        assert_eq!(
            (v["frontend"].as_str(), v["server"].as_str(), v["client"].as_str()),
            (Some("web"), Some("app/s1"), Some("127.0.0.1:4000"))
        );
        assert_eq!(
            (
                v["bytes_in"].as_u64(),
                v["bytes_out"].as_u64(),
                v["stream"].as_u64()
            ),
            (Some(3), Some(40), Some(8))
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn the_default_line_keeps_its_fixed_format() {
        let info = facts();
        let end = ending(info.started + std::time::Duration::from_millis(9));
        let text = Line {
            info: &info,
            end: &end,
            json: false,
        }
        .to_string();
        assert_eq!(
            text,
            "127.0.0.1:4000 c1 8 \"GET example.com /a\"b\\c\u{1}\" 502 3 40 app/s1 2/-1/9 SH--"
        );
    }
}
