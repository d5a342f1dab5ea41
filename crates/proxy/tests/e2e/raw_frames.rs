//! Scenarios 32 to 41: frames no well-behaved client writes, sent by a raw client on aioquic
//! (`raw_frames.py`) in the packets they must share, encrypted with the connection's keys. Each is the
//! shape of a crash or leak fix in HAProxy's QUIC code (commit ids of haproxy/haproxy) or nginx's. Each
//! test asserts the case's precondition (its frames went out together), the answer the RFC names, that the
//! proxy serves the next request, and that every live-object gauge returns to zero.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{aioquic, aioquic_script, Proxy};
use crate::origins::{counting, Counting};

/// Transport error codes (RFC 9000, 20.1).
const FLOW_CONTROL_ERROR: u64 = 0x03;
const FINAL_SIZE_ERROR: u64 = 0x06;
const PROTOCOL_VIOLATION: u64 = 0x0a;

fn start() -> (Counting, Proxy) {
    let origin = counting("raw", Duration::ZERO);
    let proxy = Proxy::start(&format!("    server o1 {}\n", origin.addr), "");
    (origin, proxy)
}

/// Runs one case of `raw_frames.py`: its JSON report.
fn run(proxy: &Proxy, case: &str) -> Value {
    aioquic_script(proxy, "raw_frames.py", &["--case", case])
}

/// The case's frames went out in one 1-RTT packet.
fn sent_together(report: &Value) {
    assert!(
        report["packet"].is_u64(),
        "precondition: the frames were not sent: {report}"
    );
}

/// The connection lived on: a GET after the case was answered, and no close came.
fn lived_on(report: &Value) {
    assert_eq!(report["closed_with"], Value::Null, "{report}");
    assert_eq!(report["after"], 200, "{report}");
}

fn closed_with(report: &Value, code: u64) {
    assert_eq!(report["closed_with"], code, "{report}");
}

/// A fresh connection is served, then every gauge returns to zero.
fn proxy_lives_on(proxy: &Proxy) {
    let url = proxy.url("/next");
    let results = aioquic(
        proxy.port,
        &["--ca", proxy.dir.join("ca.pem").to_str().unwrap()],
        &[url],
    );
    assert_eq!(results[0].status, Some(200), "{results:?}");
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn scenario_32_stream_data_short_of_a_frame_and_its_reset_in_one_packet() {
    // 83ae0c250 (HAProxy looped forever on the incomplete frame).
    let (origin, proxy) = start();
    let report = run(&proxy, "stream_then_reset");
    sent_together(&report);
    lived_on(&report);
    assert!(
        !origin.paths().iter().any(|p| p == "/raw"),
        "the reset request reached the origin"
    );
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_33_a_client_hello_in_small_reordered_crypto_frames() {
    // 4c1120639: "chaos protection" as Chrome and ngtcp2 send it.
    let (_origin, proxy) = start();
    let report = run(&proxy, "crypto_chaos");
    assert!(
        report["crypto_frames"].as_u64() >= Some(8),
        "precondition: a cut ClientHello: {report}"
    );
    lived_on(&report);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_34_a_crypto_frame_far_past_any_buffer() {
    // c3a4a4d16. quiche refuses the Initial (CRYPTO_BUFFER_EXCEEDED) and, since no packet of the
    // connection was processed yet, forgets it without a word (no state, no amplification): each of the
    // client's attempts is a failed handshake, and nothing stays behind.
    let (_origin, proxy) = start();
    let report = run(&proxy, "crypto_huge_offset");
    assert!(
        report["crypto_frames"].as_u64() > Some(8),
        "precondition: {report}"
    );
    assert_eq!(report["connected"], false, "{report}");
    assert!(proxy.metrics()["qproxy_quic_handshakes_total{result=\"failed\"}"] >= 1);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_35_a_frame_type_in_an_over_long_varint() {
    // 8e16fd2cf. RFC 9000, 12.4: an endpoint MAY treat it as a PROTOCOL_VIOLATION; quiche reads the
    // value (PING) and goes on, which the RFC allows as well.
    let (_origin, proxy) = start();
    let report = run(&proxy, "overlong_frame_type");
    sent_together(&report);
    lived_on(&report);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_36_an_ack_ecn_frame() {
    let (_origin, proxy) = start();
    let report = run(&proxy, "ack_ecn");
    sent_together(&report);
    lived_on(&report);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_37_a_new_token_frame_from_the_client() {
    // RFC 9000, 19.7: a server MUST treat it as a PROTOCOL_VIOLATION.
    let (_origin, proxy) = start();
    let report = run(&proxy, "new_token");
    sent_together(&report);
    closed_with(&report, PROTOCOL_VIOLATION);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_38_a_reset_whose_final_size_exceeds_the_credit() {
    // nginx e3548e305.
    let (_origin, proxy) = start();
    let report = run(&proxy, "reset_beyond_credit");
    sent_together(&report);
    closed_with(&report, FLOW_CONTROL_ERROR);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_39_a_final_size_that_changes() {
    // nginx 269cdf780: two FINs at different sizes in one packet.
    let (_origin, proxy) = start();
    let report = run(&proxy, "final_size_change");
    sent_together(&report);
    closed_with(&report, FINAL_SIZE_ERROR);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_40_a_final_size_that_changes_after_the_stream_closed() {
    // The same once the request is answered, while our ACK of the response's FIN is held back: quiche
    // still knows the stream's final size and closes with FINAL_SIZE_ERROR; the stream is never taken
    // for a new one.
    let (origin, proxy) = start();
    let report = run(&proxy, "final_size_change_after_close");
    sent_together(&report);
    assert_eq!(
        report["acks_between"], 0,
        "precondition: the FIN was acknowledged: {report}"
    );
    closed_with(&report, FINAL_SIZE_ERROR);
    served_once(&origin);
    proxy_lives_on(&proxy);
}

#[test]
fn scenario_41_a_reset_for_a_stream_over_on_both_sides() {
    // The same once the server has our ACK of its FIN: quiche has forgotten the stream, ignores the late
    // RESET_STREAM (RFC 9000 3.5 lets a closed stream's frames be ignored), never opens the stream again,
    // and the connection lives on.
    let (origin, proxy) = start();
    let report = run(&proxy, "final_size_change_after_forgotten");
    sent_together(&report);
    assert!(
        report["acks_between"].as_u64() >= Some(1),
        "precondition: the FIN was not acknowledged first: {report}"
    );
    lived_on(&report);
    served_once(&origin);
    proxy_lives_on(&proxy);
}

fn served_once(origin: &Counting) {
    assert_eq!(
        origin.paths().iter().filter(|p| *p == "/raw").count(),
        1,
        "the raw request was not served exactly once"
    );
}
