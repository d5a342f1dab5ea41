//! Protocol behaviour: malformed requests, handshake timeout, stream limits, GOAWAY, glitches, and
//! how an ended connection is counted.

use std::time::{Duration, Instant};

use quiche::h3;

use qcc::{codes, AbortCause, Limits};

use crate::harness::{pattern_vec, Dir, Pair, Setup};
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
    // Shorter than the idle timeout, so the handshake timer is what ends it.
    setup.limits.handshake_timeout = Duration::from_millis(100);
    // The server may not send CONNECTION_CLOSE past its anti-amplification limit: quiche's idle timer
    // then ends the closing transport.
    setup.params.max_idle_timeout = Duration::from_millis(500);
    let mut pair = Pair::new(setup);
    // Only the client's first flight arrives.
    assert!(pair.run_until(|p| p.server.is_some()));
    pair.net.drop_to_server = true;
    assert!(pair.run_until(|p| p.dead_seen));
    assert!(pair.live().is_none());
    let Some(ServerConn::Closing(c)) = &pair.server else {
        panic!("not released: {}", pair.describe())
    };
    assert!(
        !c.transport().is_timed_out() && c.transport().local_error().is_some(),
        "the idle timer ended it, not the handshake timer"
    );
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

/// Bytes the server's transport has received so far.
fn server_received(pair: &Pair) -> u64 {
    match &pair.server {
        Some(ServerConn::Live(c)) => c.transport().stats().recv_bytes,
        _ => 0,
    }
}

#[test]
fn a_reset_after_the_fin_with_the_body_unread_aborts_the_request() {
    // quiche 0.30 drops the unread bytes of a stream reset after its FIN and reports nothing: the
    // request would wait for a body that is gone until the idle timeout. `Stream::rx_vanished` sees the
    // stream finished without its end reported. (No content-length: with one, the length check also
    // catches it.)
    let mut setup = Setup::default();
    setup.limits.stream_rx_buf = 4 * 1024;
    let mut pair = Pair::established(setup);
    pair.app.dont_read = true;
    let id = pair
        .client_h3
        .as_mut()
        .expect("HTTP/3 is up")
        .send_request(&mut pair.client, &post_head(), false)
        .unwrap();
    let body = vec![7; 48 * 1024];
    let mut written = 0;
    for _ in 0..1000 {
        if written == body.len() {
            break;
        }
        let h3 = pair.client_h3.as_mut().unwrap();
        match h3.send_body(&mut pair.client, id, &body[written..], true) {
            Ok(n) => written += n,
            Err(h3::Error::Done | h3::Error::StreamBlocked) => {}
            Err(e) => panic!("upload: {e}"),
        }
        pair.step();
    }
    assert_eq!(
        written,
        body.len(),
        "precondition: the whole body and its FIN were written"
    );
    assert!(
        pair.run_until(|p| server_received(p) > body.len() as u64),
        "precondition: the body reached the server: {}",
        pair.describe()
    );
    pair.settle(Duration::from_millis(50));
    assert!(pair.app.aborted.is_empty(), "{:?}", pair.app.aborted);
    pair.client_reset(id, codes::H3_REQUEST_CANCELLED);
    assert!(
        pair.run_until(|p| !p.app.aborted.is_empty()),
        "the request was never aborted: {}",
        pair.describe()
    );
    assert_eq!(pair.app.aborted, vec![(id, AbortCause::TransportDiscarded)]);
    assert!(pair.app.closed.is_empty());
    pair.shutdown_and_end();
}

/// A POST's head without content-length.
fn post_head() -> [h3::Header; 4] {
    [
        h3::Header::new(b":method", b"POST"),
        h3::Header::new(b":scheme", b"https"),
        h3::Header::new(b":authority", b"localhost"),
        h3::Header::new(b":path", b"/sink"),
    ]
}

#[test]
fn a_request_reset_after_its_head_is_aborted_as_reset_not_ended() {
    // The head went without FIN and nothing follows; then the client resets: the upper side learns of
    // the reset, never an end. (Here quiche's HTTP/3 layer reports `Reset`; `Stream::peer_reset_code`
    // guards the `Finished` it can report instead, a shape this test does not build.)
    let mut pair = Pair::established(Setup::default());
    let h3 = pair.client_h3.as_mut().expect("HTTP/3 is up");
    let id = h3.send_request(&mut pair.client, &post_head(), false).unwrap();
    assert!(
        pair.run_until(|p| p.app.requests.iter().any(|(s, _)| *s == id)),
        "precondition: the upper side has the request: {}",
        pair.describe()
    );
    pair.settle(Duration::from_millis(50));
    pair.client_reset(id, codes::H3_REQUEST_CANCELLED);
    assert!(
        pair.run_until(|p| !p.app.aborted.is_empty() || !p.app.closed.is_empty()),
        "{}",
        pair.describe()
    );
    assert_eq!(
        pair.app.aborted,
        vec![(id, AbortCause::PeerReset(codes::H3_REQUEST_CANCELLED))]
    );
    pair.shutdown_and_end();
}

/// Each ended connection is counted by who closed it and how: H3_NO_ERROR is a clean end, an
/// application or transport error is not, whichever side closed.
#[test]
fn an_ended_connection_is_counted_by_who_closed_it_and_how() {
    use qcc::CloseCause;
    type End = fn(&mut Pair);
    let ends: [(&str, End, CloseCause); 4] = [
        (
            "client H3_NO_ERROR",
            |p| p.client.close(true, codes::H3_NO_ERROR, b"").unwrap(),
            CloseCause::PeerNoError,
        ),
        (
            "client H3_REQUEST_CANCELLED",
            |p| p.client.close(true, codes::H3_REQUEST_CANCELLED, b"").unwrap(),
            CloseCause::PeerError,
        ),
        (
            "our GOAWAY, then close",
            |p| p.with_server(|c, _| c.shutdown(std::time::Instant::now())),
            CloseCause::LocalNoError,
        ),
        (
            "our H3_INTERNAL_ERROR",
            |p| p.with_server(|c, _| c.close(codes::H3_INTERNAL_ERROR, "test")),
            CloseCause::LocalError,
        ),
    ];
    for (what, end, cause) in ends {
        let mut pair = Pair::established(Setup::default());
        end(&mut pair);
        assert!(pair.run_to_end(), "{what}: {}", pair.describe());
        let closes = pair.counters.snapshot().closes;
        let mut want = [0; CloseCause::ALL.len()];
        want[cause as usize] = 1;
        assert_eq!(closes, want, "{what}: counted as {closes:?}");
        pair.assert_idle();
    }
}

#[test]
fn a_request_reset_before_its_response_is_a_glitch_and_after_it_is_not() {
    let mut pair = Pair::established(Setup::default());
    // Bodies larger than the windows, so each reset comes before the request's FIN.
    let answered = pair.request("POST", "/echo", Some(vec![7; 4 << 20]));
    assert!(pair.run_until(|p| p.response(answered).status == Some(200)));
    assert!(pair.client_state.uploading(answered));
    pair.client_reset(answered, codes::H3_REQUEST_CANCELLED);
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.live_streams() == 0)));
    assert_eq!(
        pair.counters.snapshot().glitches,
        0,
        "a reset after the response began"
    );
    let unanswered = pair.request("POST", "/stall", Some(vec![7; 4 << 20]));
    assert!(pair.run_until(|p| p.app.requests.iter().any(|(id, _)| *id == unanswered)));
    assert!(pair.client_state.uploading(unanswered));
    pair.client_reset(unanswered, codes::H3_REQUEST_CANCELLED);
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.live_streams() == 0)));
    assert_eq!(
        pair.counters.snapshot().glitches,
        1,
        "a reset before any response"
    );
    pair.shutdown_and_end();
}

#[test]
fn a_request_below_the_goaway_id_that_arrives_after_it_is_still_served() {
    // RFC 9114, 5.2: the requests below a GOAWAY's ID may still be processed. Request 0's datagram is
    // held back; request 4 arrives, and GOAWAY goes out before anything else (ID 8). Request 0, first
    // seen after it, is served, not refused as a late one.
    let mut pair = Pair::established(Setup::default());
    pair.net.hold_to_server = true;
    let early = pair.request("GET", "/bytes/10", None);
    pair.step();
    let early_flight = pair.net.take(Dir::ToServer);
    assert!(!early_flight.is_empty());
    // A long answer keeps the connection from ending (GOAWAY and no stream left) before request 0 arrives.
    let late = pair.request("GET", "/bytes/1000000", None);
    assert!(early < late);
    pair.client_flight_to_server();
    assert!(pair.app.requests.iter().any(|(id, _)| *id == late));
    pair.with_server(|c, _| c.shutdown(Instant::now()));
    pair.net.put_back(Dir::ToServer, early_flight);
    pair.net.hold_to_server = false;
    assert!(
        pair.run_until(|p| p.response(early).finished || p.response(early).reset.is_some()),
        "{}",
        pair.describe()
    );
    assert_eq!(
        pair.client_state.goaway_id,
        Some(late + 4),
        "GOAWAY names the stream after the last"
    );
    assert_eq!(
        pair.response(early).status,
        Some(200),
        "{:?}",
        pair.response(early)
    );
    assert!(pair.run_until(|p| p.response(late).finished));
    assert!(pair.run_to_end(), "{}", pair.describe());
    pair.assert_idle();
}

#[test]
fn a_connection_is_closed_at_its_glitch_threshold_once_and_not_before() {
    // Five malformed requests in one flight against a threshold of 3: the third closes the connection
    // with H3_EXCESSIVE_LOAD, and the two behind it do not count a second close.
    let mut setup = Setup::default();
    setup.limits.glitches_threshold = 3;
    let mut pair = Pair::established(setup);
    let malformed =
        |pair: &mut Pair| pair.request_with("GET", "/bytes/10", None, &[("transfer-encoding", "chunked")]);
    pair.net.hold_to_server = true;
    malformed(&mut pair);
    malformed(&mut pair);
    pair.net.hold_to_server = false;
    assert!(pair.run_until(|p| p.counters.snapshot().glitches == 2));
    assert!(
        pair.live().is_some_and(|c| !c.is_dead()),
        "closed before its threshold"
    );
    pair.net.hold_to_server = true;
    for _ in 0..3 {
        malformed(&mut pair);
    }
    pair.net.hold_to_server = false;
    assert!(pair.run_to_end(), "{}", pair.describe());
    assert_eq!(
        pair.client.peer_error().map(|e| e.error_code),
        Some(codes::H3_EXCESSIVE_LOAD)
    );
    assert_eq!(pair.counters.snapshot().glitch_closes, 1);
    pair.assert_idle();
}

#[test]
fn without_a_glitch_threshold_glitches_close_nothing() {
    let mut setup = Setup::default();
    setup.limits.glitches_threshold = 0;
    let mut pair = Pair::established(setup);
    for _ in 0..5 {
        pair.request_with("GET", "/bytes/10", None, &[("transfer-encoding", "chunked")]);
    }
    assert!(pair.run_until(|p| p.counters.snapshot().glitches == 5));
    pair.serves_another_request();
    pair.shutdown_and_end();
    assert_eq!(pair.counters.snapshot().glitch_closes, 0);
}

#[test]
fn each_request_head_has_its_own_http_request_timer() {
    // Two heads left incomplete, the second opened 6 s after the first: at the first's 10 s the first is
    // refused, the second waits for its own.
    let mut pair = Pair::established(Setup::default());
    let timeout = Limits::default().http_request_timeout;
    assert_eq!(timeout, Duration::from_secs(10));
    // A HEADERS frame whose length promises more than arrives.
    let partial = [0x01, 0x40, 0x80, 0x00];
    pair.client.stream_send(0, &partial, false).unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![0])));
    let first_deadline = pair.live().unwrap().own_timeout().unwrap();
    assert!(
        first_deadline > pair.clock.now(),
        "the http-request timer is already due"
    );
    let later = pair.clock.now() + Duration::from_secs(6);
    pair.clock.jump_to(later);
    pair.client.stream_send(4, &partial, false).unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![0, 4])));
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() != vec![0, 4])));
    assert_eq!(
        pair.live().unwrap().opening_streams(),
        vec![4],
        "the second head's timer fired with the first's"
    );
    assert!(pair.clock.now() >= first_deadline);
    pair.release_server();
    assert!(pair.run_to_end());
    pair.assert_idle();
}
