//! One keyword table per section. Each row names a keyword (with its aliases) and the function that
//! reads it; the parser dispatches through the table and its errors list the table's keywords, so a
//! keyword cannot be parsed without being offered in errors, and a test holds every table against
//! `docs/configuration.md`.

use std::time::Duration;

use super::lexer::{duration_arg, need, no_more, size_arg, Res};
use super::parser::Parser;
use super::{LbKey, Secret, Timeouts};

/// Reads one keyword's line.
pub(super) type Handler = fn(&mut Parser, &[String]) -> Res<()>;

/// One row of a section's table.
pub(super) struct Keyword {
    /// The name, then its aliases (legacy HAProxy names).
    pub(super) names: &'static [&'static str],
    /// Reads the line.
    pub(super) handle: Handler,
    /// Accepted for compatibility with HAProxy configurations and ignored: not offered in errors.
    pub(super) ignored: bool,
}

const fn kw(names: &'static [&'static str], handle: Handler) -> Keyword {
    Keyword {
        names,
        handle,
        ignored: false,
    }
}

const fn ignored(names: &'static [&'static str]) -> Keyword {
    Keyword {
        names,
        handle: |_, _| Ok(()),
        ignored: true,
    }
}

/// `a, b or c`: the keywords a table offers.
pub(super) fn expected(table: &[Keyword]) -> String {
    let names: Vec<&str> = table.iter().filter(|k| !k.ignored).map(|k| k.names[0]).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Reads `args` (whose word `at` is the keyword) with the row of `table` that names it.
pub(super) fn dispatch(
    p: &mut Parser,
    table: &[Keyword],
    at: usize,
    args: &[String],
    unknown: &str,
) -> Res<()> {
    let word = args[at].as_str();
    match table.iter().find(|k| k.names.contains(&word)) {
        Some(k) => (k.handle)(p, args),
        None => Err(format!(
            "{unknown} '{word}'{}; expected {}",
            p.section_name(),
            expected(table)
        )),
    }
}

fn set_size<T>(args: &[String], slot: &mut T, from: impl Fn(u64) -> T) -> Res<()> {
    *slot = from(size_arg(args, 1, "a size")?);
    no_more(args, 2)
}

fn count(args: &[String], what: &str, min: u64, max: u64) -> Res<u64> {
    let raw = need(args, 1, what)?;
    let n = raw.parse().ok().filter(|n| (min..=max).contains(n));
    let n = n.ok_or(format!("expected {what} from {min} to {max}, found '{raw}'"))?;
    no_more(args, 2)?;
    Ok(n)
}

/// `0a1B` -> `[0x0a, 0x1b]`; `None` unless an even number of hex digits.
fn hex_bytes(raw: &str) -> Option<Vec<u8>> {
    let raw = raw.strip_prefix("0x").unwrap_or(raw);
    if !raw.len().is_multiple_of(2) || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
        .collect()
}

/// `global`.
pub(super) const GLOBAL: &[Keyword] = &[
    kw(&["nbthread"], |p, args| {
        p.global.nbthread = Some(count(args, "a thread count", 1, 64)? as usize);
        Ok(())
    }),
    kw(&["server-id"], |p, args| {
        let raw = need(args, 1, "a server ID in hex")?;
        let id = hex_bytes(raw)
            .filter(|id| (1..=14).contains(&id.len()))
            .ok_or(format!(
                "expected a server ID of 1 to 14 bytes in hex (e.g. 0a1b), found '{raw}'"
            ))?;
        p.global.server_id = Some(id);
        no_more(args, 2)
    }),
    kw(&["cluster-secret"], |p, args| {
        let secret = need(args, 1, "a secret")?;
        if secret.len() < 16 {
            return Err("expected a cluster-secret of at least 16 characters".into());
        }
        p.global.cluster_secret = Some(Secret(secret.as_bytes().to_vec()));
        no_more(args, 2)
    }),
    kw(&["quic-lb-key"], |p, args| {
        let raw = need(args, 1, "a QUIC-LB key in hex")?;
        let key = hex_bytes(raw)
            .and_then(|k| <[u8; 16]>::try_from(k).ok())
            .ok_or("expected a 16-byte AES-128 key as 32 hex digits")?;
        p.global.quic_lb_key = Some(LbKey(key));
        p.lb_key_line = p.line;
        no_more(args, 2)
    }),
    kw(&["tune.quic.disable-kernel-steering"], |p, args| {
        p.global.kernel_steering = false;
        no_more(args, 1)
    }),
    kw(&["hard-stop-after"], |p, args| {
        p.global.hard_stop_after = Some(duration_arg(args, 1, "a duration")?);
        no_more(args, 2)
    }),
    kw(
        &[
            "tune.quic.fe.max-idle-timeout",
            "tune.quic.frontend.max-idle-timeout",
        ],
        |p, args| {
            p.global.max_idle_timeout = duration_arg(args, 1, "a duration")?;
            no_more(args, 2)
        },
    ),
    kw(
        &[
            "tune.quic.fe.stream.max-concurrent",
            "tune.quic.frontend.max-streams-bidi",
        ],
        |p, args| {
            p.global.max_concurrent_streams = count(args, "a stream count", 1, u64::from(u32::MAX))?;
            Ok(())
        },
    ),
    kw(&["tune.quic.fe.stream.rxbuf"], |p, args| {
        set_size(args, &mut p.global.stream_rxbuf, |n| n as usize)
    }),
    kw(&["tune.quic.fe.stream.max-data"], |p, args| {
        set_size(args, &mut p.global.stream_max_data, |n| n)
    }),
    kw(&["tune.quic.fe.conn.max-data"], |p, args| {
        set_size(args, &mut p.global.conn_max_data, |n| n)
    }),
    kw(&["tune.quic.fe.conn.tx-buf"], |p, args| {
        set_size(args, &mut p.global.conn_tx_buf, |n| n as usize)
    }),
    // HAProxy 3.3 renamed tune.quic.frontend.max-tx-mem; both mean the process-wide cap.
    kw(
        &["tune.quic.mem.tx-max", "tune.quic.frontend.max-tx-mem"],
        |p, args| set_size(args, &mut p.global.tx_mem_max, |n| n as usize),
    ),
    kw(&["tune.quic.disable-udp-gso"], |p, args| {
        p.global.udp_gso = false;
        no_more(args, 1)
    }),
    kw(&["no-memory-trimming"], |p, args| {
        p.global.memory_trimming = false;
        no_more(args, 1)
    }),
    kw(&["maxconn"], |p, args| {
        p.global.maxconn = Some(count(args, "a connection count", 1, 10_000_000)? as usize);
        Ok(())
    }),
    kw(
        &[
            "tune.quic.fe.sec.glitches-threshold",
            "tune.quic.frontend.glitches-threshold",
        ],
        |p, args| {
            p.global.glitches_threshold = count(args, "a glitch count (0: no limit)", 0, 1_000_000)? as u32;
            Ok(())
        },
    ),
    kw(&["tune.quic.fe.stream.max-total"], |p, args| {
        p.global.max_total_requests = count(args, "a request count (0: no limit)", 0, u64::MAX)?;
        Ok(())
    }),
    kw(&["tune.http.maxhdr"], |p, args| {
        p.global.max_headers = count(args, "a header count", 1, 32_767)? as usize;
        Ok(())
    }),
    kw(&["tune.http.max-field-section-size"], |p, args| {
        p.global.max_field_section_size = size_arg(args, 1, "a size")? as usize;
        no_more(args, 2)
    }),
    kw(
        &["tune.quic.fe.sec.retry-threshold", "tune.quic.retry-threshold"],
        |p, args| {
            p.global.retry_threshold =
                count(args, "a count of handshakes in progress", 1, 10_000_000)? as usize;
            Ok(())
        },
    ),
    kw(&["log"], |p, args| {
        p.global.logs.push(super::log::target(args)?);
        Ok(())
    }),
    ignored(&["daemon", "master-worker", "user", "group", "chroot", "pidfile"]),
];

fn mode(_: &mut Parser, args: &[String]) -> Res<()> {
    match need(args, 1, "a mode")? {
        "http" => no_more(args, 2),
        other => Err(format!("mode '{other}' is not supported; expected mode http")),
    }
}

fn timeout(p: &mut Parser, args: &[String]) -> Res<()> {
    let names = || TIMEOUTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let which = need(args, 1, &format!("a timeout name ({})", names()))?;
    let d = duration_arg(args, 2, &format!("the value of 'timeout {which}'"))?;
    no_more(args, 3)?;
    let Some((_, set)) = TIMEOUTS.iter().find(|(n, _)| *n == which) else {
        return Err(format!("unknown timeout '{which}'; expected {}", names()));
    };
    set(p.timeouts_mut(), d);
    Ok(())
}

fn option(p: &mut Parser, args: &[String]) -> Res<()> {
    need(args, 1, "an option name")?;
    let word = args[1].as_str();
    match OPTIONS.iter().find(|k| k.names.contains(&word)) {
        Some(k) => (k.handle)(p, args),
        None => Err(format!("unknown option '{word}'; expected {}", expected(OPTIONS))),
    }
}

/// `timeout NAME DURATION`, in every section but `global`.
/// Sets one timeout.
type SetTimeout = fn(&mut Timeouts, Duration);

pub(super) const TIMEOUTS: &[(&str, SetTimeout)] = &[
    ("connect", |t, d| t.connect = d),
    ("server", |t, d| t.server = d),
    // Accepted for HAProxy configurations: on QUIC the client's silence is bounded by
    // tune.quic.fe.max-idle-timeout, and a draining connection by hard-stop-after.
    ("client", |_, _| {}),
    ("http-request", |t, d| t.http_request = d),
    ("http-keep-alive", |t, d| t.http_keep_alive = d),
    ("client-fin", |_, _| {}),
    ("client-hs", |t, d| t.client_hs = d),
    ("queue", |t, d| t.queue = Some(d)),
    ("check", |t, d| t.check = Some(d)),
];

/// `option NAME ...`: what each option sets, in the sections it belongs to.
pub(super) const OPTIONS: &[Keyword] = &[
    kw(&["forwardfor"], |p, args| {
        *p.forwardfor_mut() = true;
        no_more(args, 2)
    }),
    kw(&["redispatch"], |p, args| {
        p.settings_mut("redispatch")?.redispatch = true;
        no_more(args, 2)
    }),
    kw(&["allbackups"], |p, args| {
        p.settings_mut("allbackups")?.allbackups = true;
        no_more(args, 2)
    }),
    kw(&["httpchk"], |p, args| p.settings_mut("httpchk")?.httpchk(args)),
    kw(&["jsonlog"], |p, args| {
        *p.json_log_mut()? = true;
        no_more(args, 2)
    }),
    // HAProxy defaults that describe what qproxy always does.
    ignored(&["http-keep-alive", "httplog", "dontlognull", "http-server-close"]),
];

/// `defaults`.
pub(super) const DEFAULTS: &[Keyword] = &[
    kw(&["timeout"], timeout),
    kw(&["option"], option),
    kw(&["mode"], mode),
    kw(&["balance"], |p, args| p.settings_mut("balance")?.balance(args)),
    kw(&["retries"], |p, args| p.settings_mut("retries")?.retries(args)),
    kw(&["default-server"], |p, args| {
        p.settings_mut("default-server")?.default_server.parse(args, 1)
    }),
    kw(&["http-check"], |p, args| {
        p.settings_mut("http-check")?.http_check(args)
    }),
    kw(&["http-reuse"], |p, args| {
        p.settings_mut("http-reuse")?.http_reuse(args)
    }),
    kw(&["log"], log_global),
    kw(&["maxconn"], frontend_maxconn),
];

/// `maxconn N` of a frontend (or of every frontend, in `defaults`).
fn frontend_maxconn(p: &mut Parser, args: &[String]) -> Res<()> {
    *p.maxconn_mut()? = Some(count(args, "a connection count", 1, 10_000_000)? as usize);
    Ok(())
}

/// `log global` where HAProxy lets a proxy use the global targets (which qproxy applies to every
/// frontend); a target of its own is refused rather than ignored.
fn log_global(_: &mut Parser, args: &[String]) -> Res<()> {
    match need(args, 1, "'global'")? {
        "global" => no_more(args, 2),
        _ => Err(
            "only 'log global' here: put log targets in the global section, which every frontend ships to"
                .into(),
        ),
    }
}

/// `frontend` (HTTP/3, or stats with a TCP bind).
pub(super) const FRONTEND: &[Keyword] = &[
    kw(&["bind"], Parser::bind),
    kw(&["default_backend"], Parser::default_backend),
    kw(&["use_backend"], Parser::use_backend),
    kw(&["quic-initial"], Parser::quic_initial),
    kw(&["http-response"], Parser::http_response),
    kw(&["http-request"], Parser::http_request),
    kw(&["early-data-methods"], Parser::early_data_methods),
    kw(&["stats"], Parser::stats),
    kw(&["timeout"], timeout),
    kw(&["option"], option),
    kw(&["mode"], mode),
    kw(&["log"], log_global),
    kw(&["maxconn"], frontend_maxconn),
];

/// `backend`.
pub(super) const BACKEND: &[Keyword] = &[
    kw(&["server"], |p, args| p.backend_mut().server_line(args)),
    kw(&["default-server"], |p, args| {
        p.settings_mut("default-server")?.default_server.parse(args, 1)
    }),
    kw(&["balance"], |p, args| p.settings_mut("balance")?.balance(args)),
    kw(&["retries"], |p, args| p.settings_mut("retries")?.retries(args)),
    kw(&["http-check"], |p, args| {
        p.settings_mut("http-check")?.http_check(args)
    }),
    kw(&["http-reuse"], |p, args| {
        p.settings_mut("http-reuse")?.http_reuse(args)
    }),
    kw(&["timeout"], timeout),
    kw(&["option"], option),
    kw(&["mode"], mode),
    kw(&["log"], log_global),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        std::fs::read_to_string(path).expect("docs/configuration.md")
    }

    /// `word` stands in the docs as code: `` `word` `` or `` `word ARGS...` ``.
    fn documented(doc: &str, word: &str) -> bool {
        doc.contains(&format!("`{word}`")) || doc.contains(&format!("`{word} "))
    }

    #[test]
    fn every_keyword_of_every_table_is_documented() {
        let doc = docs();
        let tables: [(&str, &[Keyword]); 5] = [
            ("global", GLOBAL),
            ("defaults", DEFAULTS),
            ("frontend", FRONTEND),
            ("backend", BACKEND),
            ("option", OPTIONS),
        ];
        for (section, table) in tables {
            for k in table {
                for name in k.names {
                    let word = if section == "option" {
                        format!("option {name}")
                    } else {
                        name.to_string()
                    };
                    let bare = if section == "option" && k.ignored {
                        name.to_string()
                    } else {
                        word.clone()
                    };
                    assert!(
                        documented(&doc, &word) || documented(&doc, &bare),
                        "{section}: '{word}' is not in docs/configuration.md"
                    );
                }
            }
        }
        for (name, _) in TIMEOUTS {
            assert!(
                documented(&doc, name) || doc.contains(&format!("timeout {name}")),
                "timeout {name} is not documented"
            );
        }
    }

    #[test]
    fn errors_offer_what_the_tables_hold() {
        assert_eq!(
            expected(OPTIONS),
            "forwardfor, redispatch, allbackups, httpchk or jsonlog"
        );
        assert!(
            expected(GLOBAL).ends_with("tune.quic.fe.sec.retry-threshold or log"),
            "{}",
            expected(GLOBAL)
        );
        assert!(
            !expected(GLOBAL).contains("daemon"),
            "ignored keywords are not offered"
        );
    }
}
