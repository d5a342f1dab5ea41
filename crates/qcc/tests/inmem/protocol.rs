//! Protocol behaviour: malformed requests, handshake timeout, stream limits.

use std::time::Duration;

use qcc::codes;

use crate::harness::{pattern_vec, Pair, Setup};
use qcc::ServerConn;

#[test]
fn a_malformed_request_gets_h3_message_error_and_the_connection_lives_on() {
    let mut pair = Pair::established(Setup::default());
    let bad = pair.request_with("GET", "/bytes/10", None, &[("transfer-encoding", "chunked")]);
    let upper = pair.request_with("GET", "/bytes/10", None, &[(":foo", "1")]);
    let done = pair.run_until(|p| p.response(bad).reset.is_some() && p.response(upper).reset.is_some());
    assert!(done, "{:?} {:?}", pair.response(bad), pair.response(upper));
    assert_eq!(pair.response(bad).reset, Some(codes::H3_MESSAGE_ERROR));
    assert_eq!(pair.response(upper).reset, Some(codes::H3_MESSAGE_ERROR));
    assert!(
        pair.app.requests.is_empty(),
        "a malformed request reached the upper side"
    );
    let good = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(good).finished));
    assert_eq!(pair.response(good).body, pattern_vec(10));
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

/// Sends a header section exactly as given (quiche's client does not check it).
fn send_raw(pair: &mut Pair, fields: &[(&str, &str)]) -> u64 {
    let headers: Vec<quiche::h3::Header> = fields
        .iter()
        .map(|(n, v)| quiche::h3::Header::new(n.as_bytes(), v.as_bytes()))
        .collect();
    let h3 = pair.client_h3.as_mut().unwrap();
    let id = h3.send_request(&mut pair.client, &headers, true).unwrap();
    pair.client_state.responses.insert(id, Default::default());
    id
}

#[test]
fn smuggling_pseudo_headers_are_malformed_and_connect_is_rejected() {
    let mut pair = Pair::established(Setup::default());
    let base = |path: &'static str, authority: &'static str| {
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", authority),
            (":path", path),
        ]
    };
    let smuggle = send_raw(
        &mut pair,
        &base("/x HTTP/1.1\r\nhost: a\r\n\r\nGET /y", "localhost"),
    );
    let inject = send_raw(&mut pair, &base("/x", "localhost\r\nx-injected: 1"));
    let connect = send_raw(
        &mut pair,
        &[(":method", "CONNECT"), (":authority", "example.com:443")],
    );
    let ids = [smuggle, inject, connect];
    assert!(pair.run_until(|p| ids.iter().all(|id| p.response(*id).reset.is_some())));
    assert_eq!(pair.response(smuggle).reset, Some(codes::H3_MESSAGE_ERROR));
    assert_eq!(pair.response(inject).reset, Some(codes::H3_MESSAGE_ERROR));
    assert_eq!(pair.response(connect).reset, Some(codes::H3_REQUEST_REJECTED));
    assert!(
        pair.app.requests.is_empty(),
        "a refused request reached the upper side"
    );
    let good = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(good).finished));
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn a_body_longer_than_content_length_is_malformed() {
    let mut pair = Pair::established(Setup::default());
    let id = pair.request_with("POST", "/sink", Some(vec![1; 100]), &[]);
    assert!(pair.run_until(|p| p.response(id).finished));
    // Same again, but announcing fewer bytes than sent.
    let h3 = pair.client_h3.as_mut().unwrap();
    let headers = [
        quiche::h3::Header::new(b":method", b"POST"),
        quiche::h3::Header::new(b":scheme", b"https"),
        quiche::h3::Header::new(b":authority", b"localhost"),
        quiche::h3::Header::new(b":path", b"/sink"),
        quiche::h3::Header::new(b"content-length", b"10"),
    ];
    let liar = h3.send_request(&mut pair.client, &headers, false).unwrap();
    h3.send_body(&mut pair.client, liar, &[2; 50], true).unwrap();
    pair.client_state.responses.insert(liar, Default::default());
    assert!(pair.run_until(|p| p.response(liar).reset.is_some()));
    assert_eq!(pair.response(liar).reset, Some(codes::H3_MESSAGE_ERROR));
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn a_handshake_that_never_completes_is_closed_by_the_handshake_timer() {
    let mut setup = Setup::default();
    setup.limits.handshake_timeout = Duration::from_secs(2);
    // The server may not send CONNECTION_CLOSE past its anti-amplification limit: quiche's idle timer
    // then ends the closing transport.
    setup.params.max_idle_timeout = Duration::from_millis(500);
    let mut pair = Pair::new(setup);
    // Only the client's first flight arrives.
    assert!(pair.run_until(|p| p.server.is_some()));
    pair.net.drop_to_server = true;
    assert!(pair.run_until(|p| p.dead_seen));
    assert!(pair.live().is_none());
    let gone = pair.run_until(|p| matches!(p.server, Some(ServerConn::Closed)));
    assert!(gone, "{}", pair.describe());
    pair.assert_idle();
}

#[test]
fn requests_beyond_the_stream_limit_wait_for_credit_and_complete() {
    let mut setup = Setup::default();
    setup.params.max_streams_bidi = 4;
    let mut pair = Pair::established(setup);
    let ids: Vec<u64> = (0..20)
        .map(|_| pair.request("GET", "/bytes/2000", None))
        .collect();
    assert!(pair.run_until(|p| ids.iter().all(|id| p.response(*id).finished)));
    assert_eq!(pair.counters.snapshot().streams_total, 20);
    pair.with_server(|c, _| c.shutdown(std::time::Instant::now()));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn a_request_without_a_body_ends_with_its_head() {
    // The upper side learns from the head alone whether a body follows (`Event::Request::end`).
    let mut pair = Pair::established(Setup::default());
    let get = pair.request("GET", "/bytes/10", None);
    let post = pair.request("POST", "/echo", Some(b"hello".to_vec()));
    assert!(pair.run_until(|p| p.response(get).finished && p.response(post).finished));
    assert_eq!(pair.response(post).body, b"hello");
    assert_eq!(pair.app.ended_with_head, vec![get]);
    pair.shutdown_and_end();
}

#[test]
fn the_last_request_a_connection_may_carry_sends_goaway() {
    // `max_total_requests` (HAProxy's max-total-streams): the second request is the last; GOAWAY
    // goes out with it and both are answered.
    let mut setup = Setup::default();
    setup.limits.max_total_requests = 2;
    let mut pair = Pair::established(setup);
    let first = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(first).finished));
    pair.settle(Duration::from_millis(100));
    assert!(
        !pair.client_state.goaway,
        "GOAWAY after the first of two requests"
    );
    let second = pair.request("GET", "/bytes/10", None);
    assert!(
        pair.run_until(|p| p.response(second).finished && p.client_state.goaway),
        "{}",
        pair.describe()
    );
    assert_eq!(pair.response(second).status, Some(200));
    assert!(pair.run_to_end(), "{}", pair.describe());
    pair.assert_idle();
}

#[test]
fn a_request_behind_the_last_is_refused() {
    // `max_total_requests` 1 and two requests sent together: the first sends GOAWAY, the second is
    // refused with H3_REQUEST_REJECTED before the upper side sees it. (Here the refusal is
    // `track_opening`'s: each request came in its own datagram, after the GOAWAY; the same check in
    // `on_headers`, for a stream already opening when GOAWAY goes out, is not reached by this test.)
    let mut setup = Setup::default();
    setup.limits.max_total_requests = 1;
    let mut pair = Pair::established(setup);
    pair.net.hold_to_server = true;
    let first = pair.request("GET", "/bytes/10", None);
    let second = pair.request("GET", "/bytes/10", None);
    pair.net.hold_to_server = false;
    assert!(
        pair.run_until(|p| p.response(first).finished && p.response(second).reset.is_some()),
        "{}",
        pair.describe()
    );
    assert_eq!(pair.response(first).status, Some(200));
    assert_eq!(pair.response(second).reset, Some(codes::H3_REQUEST_REJECTED));
    assert_eq!(
        pair.app.requests.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![first],
        "the request past the GOAWAY reached the upper side"
    );
    assert!(pair.run_to_end(), "{}", pair.describe());
    pair.assert_idle();
}
