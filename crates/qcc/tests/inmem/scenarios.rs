//! The 19 release scenarios of `docs/release-order.md`, one test each (from real HAProxy QUIC crash
//! and leak reports). Each asserts: no panic, the client sees the right error or completion, and every
//! live counter is back to zero once the connection is gone.

use std::time::{Duration, Instant};

use qcc::{codes, AbortCause};

use crate::harness::{pattern_vec, Dir, Knobs, Pair, Setup};
use qcc::ServerConn;

fn setup_with(f: impl FnOnce(&mut Setup)) -> Setup {
    let mut setup = Setup::default();
    f(&mut setup);
    setup
}

fn peer_close_code(pair: &Pair) -> Option<u64> {
    pair.client.peer_error().map(|e| e.error_code)
}

#[test]
fn scenario_01_release_while_tx_budget_exhausted_and_streams_wait_for_room() {
    let mut pair = Pair::established(setup_with(|s| s.limits.tx_budget = 64 * 1024));
    let ids: Vec<u64> = (0..8)
        .map(|_| pair.request("GET", "/bytes/1000000", None))
        .collect();
    assert!(pair.run_until(|p| p.app.requests.len() == 8 && p.app.blocked_sends > 0));
    // The client's acknowledgements stop: the budget stays full of unacknowledged and queued bytes.
    pair.net.drop_to_server = true;
    for _ in 0..20 {
        pair.step();
    }
    let conn = pair.live().unwrap();
    assert!(
        conn.tx_budget_in_use() >= 60 * 1024,
        "budget not exhausted: {}",
        conn.tx_budget_in_use()
    );
    let notices_before = pair.counters.snapshot().tx_room_notices;
    pair.release_server();
    // Releasing the streams freed their queued bytes while the sink was still attached: the notice
    // reached it (a sink detached first, or dropped, would not count it).
    let snap = pair.counters.snapshot();
    assert!(
        snap.tx_room_notices > notices_before,
        "no room notification: {snap:?}"
    );
    assert_eq!(
        (snap.stale_wakeups, snap.out_of_order_releases),
        (0, 0),
        "{snap:?}"
    );
    pair.net.drop_to_server = false;
    assert!(pair.run_to_end());
    // The congestion window is full of unacknowledged data: RESET_STREAM may not fit before
    // CONNECTION_CLOSE, which ends every stream anyway. No response may look complete.
    for id in ids {
        let r = pair.response(id);
        assert!(
            !r.finished || r.reset == Some(codes::H3_REQUEST_CANCELLED),
            "stream {id}: {:?}",
            r.reset
        );
        assert!(r.body.len() < 1_000_000, "stream {id} completed");
    }
    assert_eq!(peer_close_code(&pair), Some(codes::H3_NO_ERROR));
    assert_eq!(pair.orphans.len(), 8);
    pair.assert_idle();
}

#[test]
fn scenario_02_stream_destroyed_with_unsent_data_during_a_connection_error() {
    let mut pair = Pair::established(setup_with(|s| {
        s.client_stream_window = 64 * 1024;
        s.limits.tx_budget = 1024 * 1024;
    }));
    pair.client_state.dont_read = true;
    for _ in 0..4 {
        pair.request("GET", "/bytes/500000", None);
    }
    // Each stream may only send 64 KiB: the rest sits in the descriptors, unsent, until the budget is
    // full and streams wait for room (the precondition HAProxy 2.9.6's release order fails).
    assert!(pair.run_until(|p| {
        p.app.blocked_sends > 0 && p.live().is_some_and(|c| c.tx_budget_in_use() > 900 * 1024)
    }));
    assert!(pair.counters.snapshot().tx_budget_waits > 0);
    pair.with_server(|c, _| c.close(codes::H3_INTERNAL_ERROR, "backend exploded"));
    assert!(pair.run_to_end());
    assert_eq!(peer_close_code(&pair), Some(codes::H3_INTERNAL_ERROR));
    pair.assert_idle();
}

#[test]
fn scenario_03_stop_sending_as_the_very_first_frame_of_a_stream() {
    let mut pair = Pair::established(Setup::default());
    // Stream 0 exists on the client only as a STOP_SENDING: no request, no HEADERS.
    pair.client.stream_priority(0, 127, true).unwrap();
    pair.client
        .stream_shutdown(0, quiche::Shutdown::Read, codes::H3_REQUEST_CANCELLED)
        .unwrap();
    pair.settle(Duration::from_millis(50));
    assert!(pair.live().is_some_and(|c| c.live_streams() == 0));
    // Now the request comes on that same stream: nobody wants its answer, so it never reaches the upper
    // side, and the connection lives on.
    let id = pair.request("GET", "/bytes/100000", None);
    assert_eq!(id, 0);
    let next = pair.request("GET", "/bytes/1000", None);
    assert!(pair.run_until(|p| p.response(next).finished));
    assert_eq!(pair.response(next).body, pattern_vec(1000));
    assert_eq!(
        pair.app.requests.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![next]
    );
    assert_eq!(
        pair.counters.snapshot().streams_total,
        2,
        "stream 0 was opened and released"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_04_stop_sending_arrives_before_headers() {
    let mut pair = Pair::established(Setup::default());
    pair.net.hold_to_server = true;
    let id = pair.request("GET", "/bytes/50000", None);
    pair.step();
    let headers = pair.net.take(Dir::ToServer);
    pair.client_stop_sending(id, 0x10c);
    pair.step();
    let stop = pair.net.take(Dir::ToServer);
    assert!(!headers.is_empty() && !stop.is_empty());
    pair.net.put_back(Dir::ToServer, stop);
    pair.net.put_back(Dir::ToServer, headers);
    pair.net.hold_to_server = false;
    let next = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(next).finished));
    assert_eq!(
        pair.app.requests.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![next]
    );
    assert_eq!(
        pair.counters.snapshot().streams_total,
        2,
        "the stopped stream was opened and released"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_05_new_stream_after_goaway_is_refused_and_the_connection_lives_on() {
    let mut pair = Pair::established(Setup::default());
    let held = pair.request("GET", "/hold", None);
    assert!(pair.run_until(|p| p.app.requests.len() == 1));
    pair.net.hold_to_client = true; // The client has not seen the GOAWAY when it sends its next request.
    pair.with_server(|c, _| c.shutdown(Instant::now()));
    let late = pair.request("GET", "/bytes/10", None);
    pair.step();
    pair.step();
    pair.net.hold_to_client = false;
    assert!(pair.run_until(|p| p.response(late).reset.is_some()));
    assert_eq!(pair.response(late).reset, Some(codes::H3_REQUEST_REJECTED));
    assert!(pair.client_state.goaway);
    assert_eq!(
        pair.app.requests.len(),
        1,
        "the late request reached the upper side"
    );
    // The held request still finishes the connection's life: reset it, then the connection ends.
    pair.with_server(|c, app| app.reset(c, held, codes::H3_REQUEST_CANCELLED));
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn scenario_05_new_stream_after_release_is_refused_and_packets_still_acknowledged() {
    let mut pair = Pair::established(Setup::default());
    pair.net.hold_to_client = true;
    let first = pair.request("GET", "/bytes/3000", None);
    assert!(pair.run_until(|p| p.app.closed.contains(&first)));
    pair.with_server(|c, _| c.shutdown(Instant::now()));
    // No request left: the connection was released; its descriptor waits for acknowledgements.
    assert!(matches!(pair.server, Some(ServerConn::Closing(_))));
    let snap = pair.counters.snapshot();
    assert_eq!((snap.closing_live, snap.descs_released_live), (1, 1), "{snap:?}");
    let late = pair.request("GET", "/bytes/10", None);
    pair.step();
    pair.net.hold_to_client = false;
    assert!(pair.run_to_end());
    assert_eq!(pair.response(first).body, pattern_vec(3000));
    assert_eq!(pair.response(late).reset, Some(codes::H3_REQUEST_REJECTED));
    assert_eq!(peer_close_code(&pair), Some(codes::H3_NO_ERROR));
    pair.assert_idle();
}

#[test]
fn scenario_06_stop_sending_on_the_control_stream_then_goaway() {
    let mut pair = Pair::established(Setup::default());
    pair.settle(Duration::from_millis(50));
    // The server's answers are held back: the client cannot close first, so the server is still live
    // when it sends GOAWAY on the control stream the client stopped (HAProxy #2006).
    pair.net.hold_to_client = true;
    // Server-initiated unidirectional stream 3 is the server's HTTP/3 control stream.
    pair.client
        .stream_shutdown(3, quiche::Shutdown::Read, codes::H3_NO_ERROR)
        .unwrap();
    for _ in 0..10 {
        pair.step();
    }
    let conn = pair.live_mut().expect("the server is live when it shuts down");
    assert!(!conn.is_dead(), "the server closed before its GOAWAY");
    conn.shutdown(Instant::now());
    pair.dispatch_server_events();
    pair.net.hold_to_client = false;
    assert!(pair.run_to_end());
    // The server's own close: GOAWAY failed on the stopped stream and became a connection error.
    let code = pair.client.peer_error().map(|e| e.error_code);
    assert_eq!(
        code,
        Some(codes::H3_CLOSED_CRITICAL_STREAM),
        "{}",
        pair.describe()
    );
    pair.assert_idle();
}

#[test]
fn scenario_07_flow_control_frames_queued_when_the_connection_is_released() {
    // Windows of 4 KiB: the client's whole flight fits in quiche's initial congestion window, so
    // credit alone holds it back.
    const WINDOW: u64 = 4 * 1024;
    let mut pair = Pair::established(setup_with(|s| {
        s.params.initial_max_data = WINDOW;
        s.params.initial_max_stream_data = WINDOW;
    }));
    let id = pair.request("POST", "/sink", Some(vec![1; 256 * 1024]));
    // Run until the client's credit is spent (a DATA frame header no longer fits), body left, nothing
    // in flight; then hand the server the client's last flight without letting it answer.
    assert!(pair.run_until_mut(|p| {
        p.app.requests.len() == 1
            && p.client_state.uploading(id)
            && p.client_credit(id).is_some_and(|c| c < 16)
            && p.net.is_idle()
    }));
    pair.client_flight_to_server();
    // The precondition, from what both sides show: the client has sent all it wrote (a second flight
    // is empty, and not for want of congestion window) and has under 16 bytes of credit left; the
    // server has read everything that arrived and sent nothing since, so the credit it has granted
    // exceeds what it consumed by those few bytes, under half its window. quiche (as RFC 9000 4.2
    // suggests) then owes the client MAX_DATA or MAX_STREAM_DATA, queued for its next packet: the
    // release comes first.
    assert_eq!(pair.client_flight_to_server(), 0, "the client had more to send");
    let stats = pair.client.stats();
    let in_flight = stats.sent_bytes - stats.acked_bytes - stats.lost_bytes;
    let cwnd = pair.client.path_stats().next().unwrap().cwnd as u64;
    assert!(
        in_flight + 1500 < cwnd,
        "congestion-limited: {in_flight} in flight, cwnd {cwnd}"
    );
    assert!(pair.client_credit(id).is_some_and(|c| c < 16));
    assert!(pair.net.is_idle());
    assert_eq!(
        pair.live().unwrap().transport().readable().len(),
        0,
        "unread bytes in the server's transport"
    );
    pair.release_server();
    assert!(pair.run_to_end());
    // The released stream's RESET_STREAM and STOP_SENDING went out before CONNECTION_CLOSE.
    let r = pair.response(id);
    assert!(r.reset.is_some() && r.upload_stopped.is_some(), "{r:?}");
    pair.assert_idle();
}

#[test]
fn scenario_08_stream_freed_before_its_request_was_complete() {
    let mut pair = Pair::established(setup_with(|s| s.limits.stream_rx_buf = 16 * 1024));
    pair.app.dont_read = true;
    let id = pair.request("POST", "/sink", Some(vec![3; 200_000]));
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.wait_lists_of(id)[3])));
    // The upper side gives up while the stream waits on the Rx list, request incomplete.
    pair.with_server(|c, app| app.reset(c, id, codes::H3_REQUEST_CANCELLED));
    assert_eq!(pair.live().unwrap().wait_lists_of(id), [false; 4]);
    // A second stream stays "opening": a HEADERS frame whose length promises more than arrives.
    pair.client
        .stream_send(400, &[0x01, 0x40, 0x80, 0x00], false)
        .unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![400])));
    pair.release_server();
    assert!(pair.run_to_end());
    // The upper side's abort ended both directions: RESET_STREAM for the response, STOP_SENDING for
    // the incomplete request.
    assert_eq!(pair.response(id).reset, Some(codes::H3_REQUEST_CANCELLED));
    assert_eq!(
        pair.response(id).upload_stopped,
        Some(codes::H3_REQUEST_CANCELLED)
    );
    pair.assert_idle();
}

#[test]
fn scenario_09_client_closes_while_responses_are_unacknowledged() {
    let mut pair = Pair::established(Setup::default());
    let ids: Vec<u64> = (0..4)
        .map(|_| pair.request("GET", "/bytes/300000", None))
        .collect();
    assert!(pair.run_until(|p| ids.iter().all(|id| !p.response(*id).body.is_empty())));
    pair.net.drop_to_server = true; // Acknowledgements are lost from here on.
    for _ in 0..10 {
        pair.step();
    }
    pair.net.drop_to_server = false;
    pair.client.close(true, codes::H3_NO_ERROR, b"bye").unwrap();
    assert!(pair.run_to_end());
    assert!(pair.dead_seen);
    pair.assert_idle();
}

#[test]
fn scenario_10_reset_stream_gives_back_connection_flow_control_credit() {
    let mut pair = Pair::established(setup_with(|s| {
        s.params.initial_max_data = 256 * 1024;
        s.params.initial_max_stream_data = 1024 * 1024;
        s.limits.stream_rx_buf = 16 * 1024;
    }));
    // The stalled stream takes all the connection's credit and is never read. (Its body is larger than the
    // window, so its FIN is never sent: quiche 0.30 reports a RESET_STREAM that follows a FIN as a clean
    // end, see docs/ARCHITECTURE.md.)
    let stalled = pair.request("POST", "/stall", Some(vec![5; 400 * 1024]));
    assert!(pair.run_until(|p| {
        let Some(ServerConn::Live(c)) = &p.server else {
            return false;
        };
        c.transport().stats().recv_bytes > 250 * 1024
    }));
    pair.client_reset(stalled, codes::H3_REQUEST_CANCELLED);
    assert!(pair.run_until(|p| !p.app.aborted.is_empty()));
    assert_eq!(
        pair.app.aborted,
        vec![(stalled, AbortCause::PeerReset(codes::H3_REQUEST_CANCELLED))]
    );
    // Without the credit back, this upload could not pass the connection window.
    let id = pair.request("POST", "/sink", Some(vec![6; 250 * 1024]));
    assert!(pair.run_until(|p| p.response(id).finished));
    assert_eq!(pair.response(id).body, (250 * 1024).to_string().as_bytes());
    pair.shutdown_and_end();
}

#[test]
fn scenario_11_rx_buffer_released_while_demux_blocked() {
    let mut pair = Pair::established(setup_with(|s| s.limits.stream_rx_buf = 16 * 1024));
    pair.app.dont_read = true;
    let blocked = pair.request("POST", "/sink", Some(vec![7; 100_000]));
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.wait_lists_of(blocked)[3])));
    pair.client_reset(blocked, 0x10c);
    assert!(pair.run_until(|p| !p.app.aborted.is_empty()));
    assert_eq!(
        pair.live().unwrap().wait_lists_of(blocked),
        [false; 4],
        "the demux-blocked mark outlived the stream"
    );
    pair.app.dont_read = false;
    let id = pair.request("POST", "/sink", Some(vec![8; 50_000]));
    assert!(pair.run_until(|p| p.response(id).finished));
    assert_eq!(pair.response(id).body, b"50000");
    pair.shutdown_and_end();
}

#[test]
fn scenario_12_upper_side_retries_while_its_stream_waits_for_budget() {
    let knobs = Knobs {
        loss: 0.02,
        ..Knobs::default()
    };
    let mut pair = Pair::established(setup_with(|s| {
        s.limits.tx_budget = 32 * 1024;
        s.knobs = knobs;
        s.seed = 12;
    }));
    pair.app.spam_retries = true;
    let ids: Vec<u64> = (0..4)
        .map(|_| pair.request("GET", "/bytes/300000", None))
        .collect();
    assert!(pair.run_until(|p| ids.iter().all(|id| p.response(*id).finished)));
    for id in &ids {
        assert!(pair.response(*id).body == pattern_vec(300_000), "stream {id}");
    }
    assert!(
        pair.app.blocked_sends > pair.app.writable_events,
        "retries did not happen while waiting"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_13_sent_but_unacknowledged_data_does_not_block_other_streams_forever() {
    let knobs = Knobs {
        loss: 0.05,
        ..Knobs::default()
    };
    let mut pair = Pair::established(setup_with(|s| {
        s.limits.tx_budget = 16 * 1024;
        s.knobs = knobs;
        s.seed = 13;
    }));
    let ids: Vec<u64> = (0..20)
        .map(|_| pair.request("GET", "/bytes/100000", None))
        .collect();
    assert!(pair.run_until(|p| ids.iter().all(|id| p.response(*id).finished)));
    for id in &ids {
        assert!(pair.response(*id).body == pattern_vec(100_000), "stream {id}");
    }
    pair.shutdown_and_end();
}

#[test]
fn scenario_14_timers_end_with_the_connection() {
    // Keep-alive: an idle connection is closed gracefully by its own timer (virtual time).
    let mut pair = Pair::established(setup_with(|s| {
        s.limits.keep_alive_timeout = Duration::from_secs(5)
    }));
    let id = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(id).finished));
    assert!(
        pair.run_to_end(),
        "the keep-alive timer did not close the idle connection"
    );
    assert!(pair.client_state.goaway);
    assert_eq!(peer_close_code(&pair), Some(codes::H3_NO_ERROR));
    pair.assert_idle();

    // http-request: a request head that never completes is refused; the connection lives on. Then the
    // connection is released with that timer armed for another stream: the closing transport runs only
    // quiche's timers.
    let mut pair = Pair::established(setup_with(|s| {
        s.limits.http_request_timeout = Duration::from_secs(3)
    }));
    pair.client
        .stream_send(400, &[0x01, 0x40, 0x80, 0x00], false)
        .unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![400])));
    assert!(pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams().is_empty())));
    assert!(
        pair.run_until(|p| p.client.stream_finished(400)),
        "the stalled head was not refused"
    );
    let ok = pair.request("GET", "/bytes/10", None);
    assert!(pair.run_until(|p| p.response(ok).finished));
    pair.client
        .stream_send(404, &[0x01, 0x40, 0x80, 0x00], false)
        .unwrap();
    assert!(pair.run_until(|p| p.live().is_some_and(|c| !c.opening_streams().is_empty())));
    // Precondition: the http-request timer of stream 404 is armed, and it is the connection's next
    // deadline of its own (quiche's are shorter or later, never equal to it).
    let armed = pair
        .live()
        .unwrap()
        .own_timeout()
        .expect("the http-request timer is armed");
    pair.release_server();
    let Some(ServerConn::Closing(closing)) = &pair.server else {
        panic!("not closing")
    };
    let now = pair.clock.now();
    let next = closing.poll_timeout(now);
    // A deadline in the past would have the worker's loop spin until the close completes.
    assert!(
        next.is_none_or(|t| t >= now),
        "the closing transport's timer is in the past"
    );
    let gap = |t: std::time::Instant| if t > armed { t - armed } else { armed - t };
    assert!(
        next.is_none_or(|t| gap(t) > Duration::from_millis(5)),
        "the closing transport kept the released connection's http-request timer: {next:?} vs {armed:?}"
    );
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
fn scenario_16_memory_cap_reached_mid_transfer_then_release() {
    let knobs = Knobs {
        loss: 0.03,
        ..Knobs::default()
    };
    let mut pair = Pair::established(setup_with(|s| {
        s.limits.tx_budget = 48 * 1024;
        s.knobs = knobs;
        s.seed = 16;
    }));
    let ids: Vec<u64> = (0..6)
        .map(|_| pair.request("GET", "/bytes/2000000", None))
        .collect();
    // Past a megabyte through a 48 KiB budget, and at a moment when a stream waits for room.
    assert!(pair.run_until(|p| {
        ids.iter().map(|id| p.response(*id).body.len()).sum::<usize>() > 1_000_000
            && p.live()
                .is_some_and(|c| ids.iter().any(|id| c.wait_lists_of(*id)[2]))
    }));
    assert!(pair.counters.snapshot().tx_budget_waits > 0);
    // Waiting streams were woken by freed bytes, again and again: that is what moved the megabyte.
    let notices = pair.counters.snapshot().tx_room_notices;
    assert!(notices > 0 && pair.app.writable_events > 0, "notices {notices}");
    // Without a pool all that room was the connection's own, seen on its own turns: no wake-up was due.
    assert_eq!(pair.waker.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    pair.release_server();
    let snap = pair.counters.snapshot();
    assert_eq!(
        (snap.connections_live, snap.streams_live, snap.descs_attached_live),
        (0, 0, 0),
        "{snap:?}"
    );
    assert!(pair.run_to_end());
    pair.assert_idle();
    assert_eq!(pair.counters.snapshot().stale_wakeups, 0);
}

#[test]
fn scenario_17_stop_sending_mid_download_trims_the_unsent_tail() {
    let mut pair = Pair::established(setup_with(|s| s.limits.tx_budget = 256 * 1024));
    let big = pair.request("GET", "/bytes/4000000", None);
    let other = pair.request("GET", "/bytes/1000000", None);
    assert!(pair.run_until(|p| p.response(big).body.len() > 200_000));
    pair.client_stop_sending(big, codes::H3_REQUEST_CANCELLED);
    assert!(pair.run_until(|p| p.response(other).finished));
    assert!(pair.response(other).body == pattern_vec(1_000_000));
    assert_eq!(
        pair.app.aborted,
        vec![(big, AbortCause::PeerStopSending(codes::H3_REQUEST_CANCELLED))]
    );
    pair.settle(Duration::from_millis(100));
    assert_eq!(
        pair.live().unwrap().tx_budget_in_use(),
        0,
        "the stopped stream's tail still holds budget"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_18_stream_closed_before_sending_anything_does_not_hold_connection_close() {
    let mut pair = Pair::established(Setup::default());
    let id = pair.request("GET", "/hold", None);
    assert!(pair.run_until(|p| p.app.requests.len() == 1));
    pair.with_server(|c, app| app.reset(c, id, codes::H3_REQUEST_CANCELLED));
    pair.with_server(|c, _| c.shutdown(Instant::now()));
    // The run is bounded well below the 30 s idle timeout: CONNECTION_CLOSE must come from the release.
    assert!(pair.run_to_end());
    assert!(!pair.client.is_timed_out());
    assert_eq!(peer_close_code(&pair), Some(codes::H3_NO_ERROR));
    pair.assert_idle();
}

#[test]
fn scenario_19_aborted_upload_whose_flow_control_update_follows_the_release() {
    let mut pair = Pair::established(setup_with(|s| s.params.initial_max_stream_data = 64 * 1024));
    let id = pair.request("POST", "/sink", Some(vec![4; 1024 * 1024]));
    assert!(pair.run_until(|p| {
        let Some(ServerConn::Live(c)) = &p.server else {
            return false;
        };
        c.transport().stats().recv_bytes > 100 * 1024
    }));
    // The app has just read (MAX_STREAM_DATA is queued) and now aborts the upload.
    pair.with_server(|c, app| app.reset(c, id, codes::H3_REQUEST_CANCELLED));
    let next = pair.request("POST", "/sink", Some(vec![4; 100_000]));
    assert!(pair.run_until(|p| p.response(next).finished));
    assert_eq!(pair.response(next).body, b"100000");
    // The abort reached the client both ways: STOP_SENDING ended its upload, RESET_STREAM its response.
    let aborted = pair.response(id);
    assert_eq!(
        aborted.upload_stopped,
        Some(codes::H3_REQUEST_CANCELLED),
        "{aborted:?}"
    );
    assert_eq!(aborted.reset, Some(codes::H3_REQUEST_CANCELLED), "{aborted:?}");
    pair.shutdown_and_end();
}
