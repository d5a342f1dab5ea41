//! Attacks from an independent client (aioquic), checked at the origin: an HTTP/1.1 server that keeps
//! every byte it receives. Pseudo-headers that would smuggle a request or inject a field, CONNECT, and
//! 0-RTT early data (RFC 8470).

use serde_json::Value;

use crate::harness::{aioquic, file, scratch, H3Result, Proxy};
use crate::origins::{recording, Recording};

/// H3_REQUEST_REJECTED and H3_MESSAGE_ERROR (RFC 9114, 8.1).
const REJECTED: u64 = 0x10b;
const MESSAGE_ERROR: u64 = 0x10e;

fn ca(proxy: &Proxy) -> String {
    proxy.dir.join("ca.pem").display().to_string()
}

fn server_line(origin: &Recording) -> String {
    format!("    server o1 {}\n", origin.addr)
}

/// A request with `:authority`, `:path` and the other fields given, everything else ordinary.
fn request<'a>(authority: &'a str, path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", authority),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    fields
}

/// Sends each header section as it is, one after the other on one connection.
fn send_raw(proxy: &Proxy, requests: &[Vec<(&str, &str)>]) -> Vec<H3Result> {
    let json = serde_json::to_string(requests).unwrap();
    let raw = file(&scratch(), "raw.json", json.as_bytes());
    aioquic(
        proxy.port,
        &["--ca", &ca(proxy), "--raw", raw.to_str().unwrap()],
        &[],
    )
}

#[test]
fn pseudo_header_attacks_and_connect_are_refused_and_the_connection_lives_on() {
    let origin = recording(false);
    let proxy = Proxy::start(&server_line(&origin), "    option forwardfor\n");
    let smuggle = "/x?a HTTP/1.1\r\nhost: localhost\r\n\r\nGET /x?smuggled";
    let attacks: Vec<(Vec<(&str, &str)>, u64)> = vec![
        (request("localhost", smuggle, &[]), MESSAGE_ERROR),
        (request("localhost\r\nx-injected: 1", "/x", &[]), MESSAGE_ERROR),
        (request("local host", "/x", &[]), MESSAGE_ERROR),
        (request("user@localhost", "/x", &[]), MESSAGE_ERROR),
        (request("localhost", "/a b c", &[]), MESSAGE_ERROR),
        (request("localhost", "/x#frag", &[]), MESSAGE_ERROR),
        (request("localhost", "x", &[]), MESSAGE_ERROR),
        (request("localhost", "/x", &[("x-a:b", "1")]), MESSAGE_ERROR),
        (
            request("localhost", "/x", &[("host", "elsewhere")]),
            MESSAGE_ERROR,
        ),
        (
            vec![
                (":method", "GET /x HTTP/1.1\r\nx:"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/x"),
            ],
            MESSAGE_ERROR,
        ),
        (
            vec![(":method", "CONNECT"), (":authority", "example.com:443")],
            REJECTED,
        ),
        (
            vec![
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", "/chat"),
            ],
            REJECTED,
        ),
    ];
    let mut requests: Vec<Vec<(&str, &str)>> = attacks.iter().map(|(r, _)| r.clone()).collect();
    // The same connection still serves an ordinary request after every refusal.
    requests.push(request("localhost", "/after?ok=1", &[]));
    let results = send_raw(&proxy, &requests);
    assert_eq!(results.len(), requests.len(), "{results:?}");
    for ((fields, code), got) in attacks.iter().zip(&results) {
        assert_eq!(
            (got.status, got.reset, got.error.as_deref()),
            (None, Some(*code), None),
            "{fields:?}: {}",
            got.line
        );
    }
    let last = results.last().unwrap();
    assert_eq!((last.status, last.reset), (Some(200), None), "{}", last.line);
    let heads = origin.heads();
    assert_eq!(heads.len(), 1, "the origin saw {heads:?}");
    assert!(
        heads[0].starts_with("GET /after?ok=1 HTTP/1.1\r\nhost: localhost\r\n"),
        "{}",
        heads[0]
    );
    let raw = origin.raw();
    for leaked in [
        "smuggled",
        "x-injected",
        "CONNECT",
        "example.com",
        "user@",
        "local host",
        "#frag",
        "elsewhere",
    ] {
        assert!(!raw.contains(leaked), "{leaked} reached the origin: {raw:?}");
    }
    assert_eq!(proxy.metrics()["qproxy_quic_connections_total"], 1);
    proxy.assert_gauges_return_to_zero();
}

/// The JSON line that reports resumption and early data, from `--resume`.
fn early_data_accepted(results: &[H3Result]) -> bool {
    let report: Vec<Value> = results
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.line).ok())
        .filter(|v| v.get("early_data").is_some())
        .collect();
    assert_eq!(report.len(), 1, "{results:?}");
    assert_eq!(report[0]["resumed"], true, "{results:?}");
    report[0]["early_data"] == true
}

/// Resumes a session and sends one request in 0-RTT (after one ordinary connection that asks the same).
fn resume(proxy: &Proxy, extra: &[&str]) -> Vec<H3Result> {
    let ca = ca(proxy);
    let mut args = vec!["--ca", ca.as_str(), "--resume"];
    args.extend_from_slice(extra);
    let results = aioquic(proxy.port, &args, &[proxy.url("/early")]);
    for r in results.iter().filter(|r| !r.line.contains("early_data")) {
        assert_eq!(r.status, Some(200), "{}", r.line);
    }
    results
}

fn marked(heads: &[String]) -> usize {
    heads
        .iter()
        .filter(|h| h.to_ascii_lowercase().contains("\r\nearly-data: 1\r\n"))
        .count()
}

#[test]
fn zero_rtt_is_refused_on_binds_without_allow_0rtt() {
    let origin = recording(false);
    let proxy = Proxy::start(&server_line(&origin), "");
    let results = resume(&proxy, &[]);
    assert!(
        !early_data_accepted(&results),
        "0-RTT accepted without allow-0rtt"
    );
    let heads = origin.heads();
    assert_eq!((heads.len(), marked(&heads)), (2, 0), "{heads:?}");
    let m = proxy.metrics();
    assert_eq!(m["qproxy_early_data_requests_total{action=\"forwarded\"}"], 0);
    assert_eq!(m["qproxy_early_data_requests_total{action=\"held\"}"], 0);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn early_gets_carry_early_data_and_a_post_waits_for_the_handshake() {
    let origin = recording(false);
    let proxy = Proxy::start_bind("allow-0rtt", &server_line(&origin), "");
    let results = resume(&proxy, &[]);
    assert!(early_data_accepted(&results));
    let heads = origin.heads();
    assert_eq!((heads.len(), marked(&heads)), (2, 1), "{heads:?}");
    assert!(
        marked(&heads[1..2]) == 1,
        "the resumed GET is the marked one: {heads:?}"
    );

    let body = file(&scratch(), "up", b"not to be replayed");
    let results = resume(&proxy, &["--method", "POST", "--data", body.to_str().unwrap()]);
    assert!(early_data_accepted(&results));
    let heads = origin.heads();
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert!(heads[3].starts_with("POST /early "), "{}", heads[3]);
    assert_eq!(
        marked(&heads[2..]),
        0,
        "a POST went out before the handshake: {heads:?}"
    );
    assert!(origin.raw().ends_with("not to be replayed"));
    let m = proxy.metrics();
    assert_eq!(m["qproxy_early_data_requests_total{action=\"forwarded\"}"], 1);
    assert_eq!(m["qproxy_early_data_requests_total{action=\"held\"}"], 1);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn wait_for_handshake_holds_every_early_request() {
    let origin = recording(false);
    let proxy = Proxy::start_bind(
        "allow-0rtt",
        &server_line(&origin),
        "    http-request wait-for-handshake\n",
    );
    let results = resume(&proxy, &[]);
    assert!(early_data_accepted(&results));
    let heads = origin.heads();
    assert_eq!((heads.len(), marked(&heads)), (2, 0), "{heads:?}");
    assert_eq!(
        proxy.metrics()["qproxy_early_data_requests_total{action=\"held\"}"],
        1
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_425_is_replayed_after_the_handshake_not_shown_to_the_client() {
    let origin = recording(true);
    let proxy = Proxy::start_bind("allow-0rtt", &server_line(&origin), "");
    let results = resume(&proxy, &[]);
    assert!(early_data_accepted(&results));
    // First connection: one GET. Resumed one: the GET in early data (425), then the same GET unmarked.
    let heads = origin.heads();
    assert_eq!(heads.len(), 3, "{heads:?}");
    assert_eq!((marked(&heads[1..2]), marked(&heads[2..])), (1, 0), "{heads:?}");
    assert!(heads[2].starts_with("GET /early HTTP/1.1\r\n"), "{}", heads[2]);
    let m = proxy.metrics();
    assert_eq!(m["qproxy_early_data_requests_total{action=\"replayed\"}"], 1);
    assert_eq!(m["qproxy_http_requests_total{class=\"4xx\"}"], 0, "{m:?}");
    proxy.assert_gauges_return_to_zero();
}

/// Rapid reset over HTTP/3 (CVE-2023-44487): a client that opens and cancels requests in a tight loop
/// passes `tune.quic.fe.sec.glitches-threshold` and is closed with H3_EXCESSIVE_LOAD, and its requests
/// never reached the backend (each was cancelled in the datagram that opened it).
#[test]
fn a_rapid_reset_client_is_closed_and_costs_the_backend_nothing() {
    let origin = crate::origins::counting("rapid", std::time::Duration::ZERO);
    let proxy = Proxy::start_with(
        &format!("    server o1 {}\n", origin.addr),
        "",
        "    tune.quic.fe.sec.glitches-threshold 50\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let report = &crate::harness::rapid_reset(&proxy, 400);
    let m = proxy.metrics();
    let glitches = (
        m["qproxy_quic_glitches_total"],
        m["qproxy_quic_glitch_closes_total"],
    );
    assert_eq!(
        report["closed_with"],
        0x107,
        "H3_EXCESSIVE_LOAD: {report}, glitches {glitches:?}, served {}",
        origin.served()
    );
    assert!(
        report["sent"].as_u64().unwrap() < 400,
        "closed before the loop ended: {report}"
    );
    assert_eq!(m["qproxy_quic_glitch_closes_total"], 1, "{m:?}");
    assert!(m["qproxy_quic_glitches_total"] >= 50, "{m:?}");
    assert_eq!(origin.served(), 0, "a cancelled request reached the backend");
    proxy.assert_gauges_return_to_zero();
}

/// Field limits: more header fields than `tune.http.maxhdr` get 431 and the connection lives on (RFC
/// 9114, 4.2.2); a field section over `tune.http.max-field-section-size` closes the connection with
/// H3_EXCESSIVE_LOAD (quiche's rule: it will not decode it). Neither reaches the origin.
#[test]
fn too_many_fields_get_431_and_an_oversized_section_closes_with_excessive_load() {
    let origin = recording(false);
    let proxy = Proxy::start_with(
        &server_line(&origin),
        "",
        "    tune.http.maxhdr 5\n    tune.http.max-field-section-size 2k\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    const FIELDS: [(&str, &str); 6] = [
        ("x-f0", "v"),
        ("x-f1", "v"),
        ("x-f2", "v"),
        ("x-f3", "v"),
        ("x-f4", "v"),
        ("x-f5", "v"),
    ];
    let results = send_raw(
        &proxy,
        &[
            request("localhost", "/six", &FIELDS),
            request("localhost", "/five", &FIELDS[..5]),
        ],
    );
    let statuses: Vec<Option<u16>> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(431), Some(200)], "{results:?}");
    let heads = origin.heads();
    assert!(
        heads.iter().all(|h| !h.contains("/six")) && heads.iter().any(|h| h.contains("/five")),
        "{heads:?}"
    );
    let refused = |log: &str| log.contains("\"GET localhost /six\" 431 ") && log.contains(" PR");
    let log = proxy.log_when(refused);
    assert!(refused(&log), "{log}");

    let big = "a".repeat(4096);
    let results = send_raw(&proxy, &[request("localhost", "/big", &[("x-big", &big)])]);
    let error = results[0].error.clone().unwrap_or_default();
    assert!(
        results[0].status.is_none() && error.contains("0x107"),
        "closed with H3_EXCESSIVE_LOAD: {results:?}"
    );
    assert!(origin.heads().iter().all(|h| !h.contains("/big")));
    proxy.assert_gauges_return_to_zero();
}
