//! What the worker steers a connection by: its next deadline, whether it is dead, its stream count,
//! its client's address and its name in the logs. The worker's own tests reach these only end to end.

use std::time::{Duration, Instant};

use qcc::codes;

use crate::harness::{Pair, Setup, CLIENT};

#[test]
fn the_next_deadline_is_the_earlier_of_the_connections_and_the_transports() {
    // The connection's keep-alive timer far away: the transport's timer comes first.
    let mut setup = Setup::default();
    setup.limits.keep_alive_timeout = Duration::from_secs(300);
    let mut pair = Pair::established(setup);
    let now = Instant::now();
    let c = pair.live().unwrap();
    let ours = c.own_timeout().expect("an idle connection's keep-alive timer");
    let next = c.poll_timeout(now).expect("a deadline");
    assert!(
        next < ours && c.transport_timeout(now).is_some(),
        "the transport's timer is the earlier"
    );
    // A HEADERS frame whose length promises more than arrives: the request's http-request timer runs,
    // and the next deadline is no later than it.
    pair.client
        .stream_send(0, &[0x01, 0x40, 0x80, 0x00], false)
        .unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![0])));
    let now = Instant::now();
    let c = pair.live().unwrap();
    let ours = c.own_timeout().expect("the http-request timer");
    assert!(
        ours > now && ours < now + Duration::from_secs(300),
        "the http-request timer is the connection's next, and not due yet"
    );
    assert!(c.poll_timeout(now).is_some_and(|next| next <= ours));
}

#[test]
fn a_client_close_makes_the_connection_dead_at_once_not_after_draining() {
    let mut pair = Pair::established(Setup::default());
    pair.auto_release = false;
    pair.client.close(true, codes::H3_NO_ERROR, b"").unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.transport().is_draining())));
    let c = pair.live().unwrap();
    assert!(!c.transport().is_closed(), "the draining period already ended");
    assert!(c.is_dead() && pair.dead_seen);
    pair.release_server();
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn live_streams_counts_the_requests_in_progress() {
    let mut pair = Pair::established(Setup::default());
    assert_eq!(pair.live().unwrap().live_streams(), 0);
    let ids: Vec<u64> = (0..3).map(|_| pair.request("GET", "/hold", None)).collect();
    assert!(pair.run_until(|p| p.app.requests.len() == 3));
    assert_eq!(pair.live().unwrap().live_streams(), 3);
    pair.with_server(|c, app| app.reset(c, ids[0], codes::H3_REQUEST_CANCELLED));
    assert_eq!(pair.live().unwrap().live_streams(), 2);
    pair.release_server();
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn the_client_address_is_known_once_its_path_is_validated() {
    let pair = Pair::established(Setup::default());
    let c = pair.live().unwrap();
    assert_eq!(c.validated_peer(), Some(CLIENT.parse().unwrap()));
    // The connection's name in the logs is the hex of the connection ID it chose.
    let hex: String = c
        .transport()
        .source_id()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(c.trace_id(), hex);
}
