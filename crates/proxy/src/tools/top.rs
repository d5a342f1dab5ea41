//! `qproxy top --stats URL`: a refreshing terminal table of backends and servers (state, requests in
//! flight, request rate, errors, checks), the live objects of every layer and each worker's connections
//! and datagram rate, read from `stats uri`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossterm::{cursor, execute, terminal};
use serde_json::Value;

/// Fetches the JSON view at `url` (`http://HOST:PORT/PATH`).
pub fn fetch(url: &str) -> Result<Value> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("expected an http:// URL such as http://127.0.0.1:8404/stats, found '{url}'")
    })?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{url}: {}", head.lines().next().unwrap_or(""));
    }
    serde_json::from_str(body)
        .with_context(|| format!("{url} did not answer JSON (is it the 'stats uri' path?)"))
}

/// `v[key]` as a number, 0 when absent.
fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `v[key]` as text, empty when absent.
fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Renders one screen; `previous` holds the request totals of the last screen, for rates.
pub fn screen(view: &Value, previous: &mut HashMap<String, u64>, elapsed: Duration) -> String {
    let mut out = String::new();
    let live = &view["live"];
    let _ = writeln!(
        out,
        "qproxy  connections {}  closing {}  streams {}  descriptors {}+{}  tx budget {} B  exchanges {}  backend sockets {} (+{} idle)  stale wake-ups {}  out-of-order {}\n",
        u64_at(live, "connections"),
        u64_at(live, "closing"),
        u64_at(live, "streams"),
        u64_at(live, "descriptors_attached"),
        u64_at(live, "descriptors_released"),
        u64_at(live, "tx_budget_bytes"),
        u64_at(live, "exchanges"),
        u64_at(live, "backend_sockets_active"),
        u64_at(live, "backend_sockets_idle"),
        u64_at(view, "stale_wakeups"),
        u64_at(view, "out_of_order_releases"),
    );
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut rate = |key: String, total: u64| {
        let before = previous.insert(key, total);
        before.map_or(0.0, |b| total.saturating_sub(b) as f64 / secs)
    };
    let mut workers = String::new();
    for w in (0..).take_while(|w| live.get(format!("worker_connections_{w}")).is_some()) {
        let datagrams = format!("worker_datagrams_received_{w}");
        let _ = write!(
            workers,
            "  {w}: {} conns {:.0} dgram/s",
            u64_at(live, &format!("worker_connections_{w}")),
            rate(datagrams.clone(), u64_at(view, &datagrams)),
        );
    }
    if !workers.is_empty() {
        let _ = writeln!(out, "workers{workers}\n");
    }
    let _ = writeln!(
        out,
        "{:<24} {:<5} {:>6} {:>6} {:>8} {:>10} {:>8} {:>8}  LAST CHECK",
        "BACKEND/SERVER", "STATE", "WEIGHT", "ACTIVE", "QUEUED", "REQ/S", "5XX", "AVG MS"
    );
    for b in view["backends"].as_array().into_iter().flatten() {
        let name = str_at(b, "name");
        let _ = writeln!(
            out,
            "{:<24} {:<5} {:>6} {:>6} {:>8} {:>10.1} {:>8} {:>8.1}",
            name,
            format!("{}up", u64_at(b, "servers_up")),
            "",
            u64_at(b, "active"),
            u64_at(b, "queued"),
            rate(name.to_string(), u64_at(b, "requests_total")),
            u64_at(&b["requests"], "5xx"),
            b["response_time_avg_ms"].as_f64().unwrap_or(0.0),
        );
        for srv in b["servers"].as_array().into_iter().flatten() {
            let key = format!("{name}/{}", str_at(srv, "name"));
            let backup = if srv["backup"] == true { " (backup)" } else { "" };
            let _ = writeln!(
                out,
                "  {:<22} {:<5} {:>6} {:>6} {:>8} {:>10.1} {:>8} {:>8.1}  {}",
                format!("{}{backup}", str_at(srv, "name")),
                str_at(srv, "state"),
                u64_at(srv, "weight"),
                u64_at(srv, "active"),
                "",
                rate(key, u64_at(srv, "requests_total")),
                u64_at(&srv["requests"], "5xx"),
                srv["response_time_avg_ms"].as_f64().unwrap_or(0.0),
                str_at(srv, "last_check"),
            );
        }
    }
    out
}

/// Runs `top`: one screen with `once`, else a screen every `interval` until interrupted.
pub fn run(url: &str, interval: Duration, once: bool) -> Result<()> {
    let mut previous = HashMap::new();
    let mut last = Instant::now();
    let mut stdout = std::io::stdout();
    loop {
        let view = fetch(url)?;
        let text = screen(&view, &mut previous, last.elapsed());
        last = Instant::now();
        if once {
            print!("{text}");
            return Ok(());
        }
        execute!(
            stdout,
            terminal::Clear(terminal::ClearType::All),
            cursor::MoveTo(0, 0)
        )?;
        print!("{}", text.replace('\n', "\r\n"));
        stdout.flush()?;
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_shows_servers_states_and_rates() {
        let view = serde_json::json!({
            "live": {"connections": 2, "streams": 5, "worker_connections_0": 1, "worker_connections_1": 1},
            "worker_datagrams_received_0": 10,
            "worker_datagrams_received_1": 30,
            "stale_wakeups": 0,
            "out_of_order_releases": 0,
            "backends": [{
                "name": "app", "servers_up": 1, "active": 3, "queued": 4, "requests_total": 100,
                "requests": {"5xx": 2}, "response_time_avg_ms": 1.5,
                "servers": [
                    {"name": "a", "state": "UP", "weight": 2, "active": 3, "requests_total": 60, "requests": {"5xx": 0}, "last_check": "passed: Layer4 check passed in 0 ms"},
                    {"name": "b", "backup": true, "state": "DOWN", "weight": 1, "active": 0, "requests_total": 40, "requests": {"5xx": 2}, "last_check": "failed: Layer4 connection problem"}
                ]
            }]
        });
        let mut previous = HashMap::new();
        let first = screen(&view, &mut previous, Duration::from_secs(1));
        assert!(first.contains("connections 2"));
        assert!(first
            .lines()
            .any(|l| l.contains(" b (backup) ") && l.contains("DOWN") && l.contains("connection problem")));
        assert!(
            first.contains("workers  0: 1 conns 0 dgram/s  1: 1 conns 0 dgram/s"),
            "{first}"
        );
        let mut later = view.clone();
        later["backends"][0]["servers"][0]["requests_total"] = 80.into();
        later["worker_datagrams_received_1"] = 50.into();
        let second = screen(&later, &mut previous, Duration::from_secs(2));
        assert!(second.contains("1: 1 conns 10 dgram/s"), "{second}");
        let a = second.lines().find(|l| l.trim_start().starts_with("a ")).unwrap();
        assert!(a.contains("10.0"), "{a}");
    }
}
