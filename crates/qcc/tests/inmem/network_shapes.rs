//! Scenarios 26 to 31: shapes of crash and leak fixes in HAProxy's QUIC code (commit ids of
//! haproxy/haproxy) that come from the network and the clock rather than from odd frames: lost and
//! reordered acknowledgements, a client that vanishes, a connection that hears its client after it closed,
//! a resumed handshake under loss. Each asserts its precondition, then what the fix promises, then that
//! everything is idle once the connection ends.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use qc_stream::CloseCause;
use qcc::{codes, ServerConn, TransportParams};

use crate::harness::{pattern_vec, Dir, Knobs, Pair, Setup};

#[test]
fn scenario_26_a_response_its_upper_side_finished_but_not_yet_sent_keeps_the_connection_busy() {
    // 3cfb08c07: the upper side has handed over the whole response and is done with the stream, but the
    // client's window holds most of it back. The connection must not count as idle: its keep-alive timer
    // would close it and free the unsent response.
    let mut pair = Pair::established(Setup {
        client_stream_window: 64 * 1024,
        ..Setup::default()
    });
    pair.client_state.dont_read = true;
    let id = pair.request("GET", "/bytes/300000", None);
    assert!(pair.run_until(|p| p.app.upper_done(id)), "{}", pair.describe());
    pair.settle(Duration::from_millis(50));
    // Precondition: everything is queued below the upper side, and most of it is unsent.
    let held = pair.live().unwrap().tx_budget_in_use();
    assert!(held > 200_000, "only {held} bytes held: {}", pair.describe());
    let keep_alive = qcc::Limits::default().keep_alive_timeout;
    let later = pair.clock.now() + keep_alive + Duration::from_secs(1);
    pair.clock.jump_to(later);
    let now = pair.clock.now();
    pair.live_mut().unwrap().handle_timeout(now);
    pair.dispatch_server_events();
    pair.settle(Duration::from_millis(20));
    assert!(
        pair.live().is_some() && !pair.client_state.goaway,
        "the keep-alive timer closed a connection with a response in flight: {}",
        pair.describe()
    );
    pair.client_resume_reading();
    assert!(pair.run_until(|p| p.response(id).finished), "{}", pair.describe());
    assert!(pair.response(id).body == pattern_vec(300_000));
    pair.shutdown_and_end();
}

#[test]
fn scenario_27_a_stream_released_while_acknowledgements_come_out_of_order() {
    // 456c3997b, 3fdb039a9: a stream is released while the transport still holds its sent bytes, and the
    // acknowledgements come with holes (the network reorders and loses). The room must all come back,
    // the other streams must not freeze, and a long-lived connection must keep no descriptor once
    // everything is acknowledged.
    let mut pair = Pair::established(Setup {
        seed: 27,
        knobs: Knobs {
            reorder: 0.3,
            loss: 0.03,
            ..Knobs::default()
        },
        limits: qcc::Limits {
            tx_budget: 128 * 1024,
            ..qcc::Limits::default()
        },
        ..Setup::default()
    });
    let big = pair.request("GET", "/bytes/3000000", None);
    let others: Vec<u64> = (0..3)
        .map(|_| pair.request("GET", "/bytes/400000", None))
        .collect();
    assert!(pair.run_until(|p| p.response(big).body.len() > 300_000));
    // Precondition: acknowledgements with holes (quiche declared packets lost because later ones were
    // acknowledged first).
    assert!(
        pair.live().unwrap().transport().stats().lost > 0,
        "no acknowledgement came out of order: {}",
        pair.describe()
    );
    pair.client_stop_sending(big, codes::H3_REQUEST_CANCELLED);
    // Precondition: the stream is released and its descriptor still holds bytes the transport sent.
    assert!(
        pair.run_until(|p| p.app.aborted.iter().any(|(id, _)| *id == big)
            && p.counters.snapshot().descs_released_live > 0),
        "{}",
        pair.describe()
    );
    assert!(
        pair.run_until(|p| others.iter().all(|id| p.response(*id).finished)),
        "the other streams froze: {}",
        pair.describe()
    );
    for id in &others {
        assert!(pair.response(*id).body == pattern_vec(400_000), "stream {id}");
    }
    pair.settle(Duration::from_millis(300));
    let snap = pair.counters.snapshot();
    assert!(pair.live().is_some(), "the connection should still be up");
    assert_eq!(
        (
            snap.descs_released_live,
            snap.descs_attached_live,
            snap.tx_budget_bytes
        ),
        (0, 0, 0),
        "a live connection kept descriptors or room: {snap:?}"
    );
    pair.serves_another_request();
    pair.shutdown_and_end();
}

/// Whether the first packet of a datagram is an Initial. Packets of a datagram go in order of their
/// spaces (RFC 9000, 12.2), so a datagram that carries an Initial starts with it.
fn starts_with_initial(dgram: &[u8]) -> bool {
    let mut d = dgram.to_vec();
    quiche::Header::from_slice(&mut d, quiche::MAX_CONN_ID_LEN).is_ok_and(|h| h.ty == quiche::Type::Initial)
}

#[test]
fn scenario_28_every_datagram_carrying_an_initial_is_padded_with_early_data_and_loss() {
    // c714b6bb5: a datagram carrying an Initial packet must be at least 1,200 bytes (RFC 9000, 14.1),
    // also when it is a retransmission, and when 0-RTT data is acknowledged in it.
    let mut pair = Pair::established(Setup {
        early_data: true,
        ..Setup::default()
    });
    pair.serves_another_request();
    pair.shutdown_and_end();
    let seen: Rc<RefCell<Vec<usize>>> = Rc::default();
    let dropped = Rc::new(RefCell::new(0));
    let (s, d) = (seen.clone(), dropped.clone());
    pair.net.tap = Some(Box::new(move |dir, dgram| {
        if dir != Dir::ToClient || !starts_with_initial(dgram) {
            return true;
        }
        s.borrow_mut().push(dgram.len());
        // The server's first two Initial flights are lost: it must send them again.
        let mut d = d.borrow_mut();
        *d += 1;
        *d > 2
    }));
    pair.reconnect(true);
    // The client's first flight: from it on, its handshake is in early data.
    pair.step();
    let id = pair.request("GET", "/bytes/1000", None);
    // Precondition: the request left in 0-RTT.
    assert!(pair.client.is_in_early_data(), "no 0-RTT: {}", pair.describe());
    assert!(pair.run_until(|p| p.response(id).finished), "{}", pair.describe());
    assert!(pair.client.is_resumed());
    pair.net.tap = None;
    let seen = seen.borrow();
    assert!(
        *dropped.borrow() > 2 && seen.len() >= 3,
        "precondition: lost Initials ({seen:?})"
    );
    assert!(
        seen.iter().all(|len| *len >= 1200),
        "a short Initial datagram: {seen:?}"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_29_a_client_killed_mid_transfer_again_and_again() {
    // 937324d49: clients that vanish mid-download, one after the other. Each connection must end by its
    // idle timer and give everything back.
    let idle = Duration::from_millis(300);
    let mut pair = Pair::established(Setup {
        params: TransportParams {
            max_idle_timeout: idle,
            ..Setup::default().params
        },
        client_idle: idle,
        ..Setup::default()
    });
    for round in 0..5 {
        if round > 0 {
            pair.reconnect(false);
        }
        let id = pair.request("GET", "/bytes/4000000", None);
        assert!(
            pair.run_until(|p| p.response(id).body.len() > 100_000),
            "{}",
            pair.describe()
        );
        // Precondition: mid-transfer.
        assert!(pair.response(id).body.len() < 4_000_000);
        let idle_closes = pair.counters.snapshot().closes[CloseCause::IdleTimeout as usize];
        pair.net.drop_to_server = true;
        pair.net.drop_to_client = true;
        assert!(pair.run_to_end(), "round {round}: {}", pair.describe());
        let snap = pair.counters.snapshot();
        assert_eq!(
            snap.closes[CloseCause::IdleTimeout as usize],
            idle_closes + 1,
            "round {round}: not ended by the idle timer: {snap:?}"
        );
        pair.assert_idle();
    }
}

#[test]
fn scenario_30_datagrams_for_a_connection_in_its_closing_state() {
    // 56d15b2a0: the server closes while the client uploads; the client does not hear the close yet and
    // goes on sending. The released connection, closing, gets those datagrams.
    let mut pair = Pair::established(Setup::default());
    pair.app.dont_read = true;
    let id = pair.request("POST", "/sink", Some(vec![5; 2_000_000]));
    assert!(pair.run_until(|p| p.app.requests.iter().any(|(i, _)| *i == id)));
    pair.net.hold_to_client = true;
    pair.with_server(|c, _| c.close(codes::H3_NO_ERROR, "closing"));
    assert!(
        pair.run_until(|p| matches!(p.server, Some(ServerConn::Closing(_)))),
        "{}",
        pair.describe()
    );
    // The client goes on: its upload, and a PING now and then.
    for _ in 0..5 {
        let _ = pair.client.send_ack_eliciting();
        pair.step();
    }
    // Precondition: the closing connection heard the client.
    assert!(
        pair.to_closing > 0 && matches!(pair.server, Some(ServerConn::Closing(_))),
        "{} datagrams reached the closing connection: {}",
        pair.to_closing,
        pair.describe()
    );
    pair.net.hold_to_client = false;
    assert!(pair.run_to_end(), "{}", pair.describe());
    assert_eq!(
        pair.client.peer_error().map(|e| e.error_code),
        Some(codes::H3_NO_ERROR)
    );
    pair.assert_idle();
}

#[test]
fn scenario_31_a_client_reset_on_a_post_while_our_stop_sending_is_in_flight() {
    // c0c3a325a: the response ends before the upload: we stop the request side (STOP_SENDING,
    // H3_NO_ERROR). That frame is lost, and the client resets its upload meanwhile. The stream must end
    // once, the STOP_SENDING must not be sent again and again, and the connection must go on.
    let mut pair = Pair::established(Setup::default());
    let id = pair.request("POST", "/bytes/100", Some(vec![9; 1_000_000]));
    let stops = |p: &Pair| p.live().unwrap().transport().stats().stopped_stream_count_local;
    let stops_before = stops(&pair);
    pair.net.drop_to_client = true;
    assert!(pair.run_until(|p| stops(p) > stops_before), "{}", pair.describe());
    // Precondition: the server stopped the upload and the client has not heard it.
    assert!(pair.response(id).upload_stopped.is_none());
    pair.client_reset(id, codes::H3_REQUEST_CANCELLED);
    let resets = |p: &Pair| p.live().unwrap().transport().stats().reset_stream_count_remote;
    assert!(pair.run_until(|p| resets(p) > 0), "{}", pair.describe());
    pair.net.drop_to_client = false;
    assert!(pair.run_until(|p| p.response(id).finished), "{}", pair.describe());
    assert!(pair.response(id).body == pattern_vec(100));
    pair.settle(Duration::from_millis(100));
    let heard = pair.client.stats().stopped_stream_count_remote;
    assert!(heard <= 1, "STOP_SENDING heard {heard} times");
    assert_eq!(pair.counters.snapshot().streams_live, 0);
    pair.serves_another_request();
    pair.shutdown_and_end();
}
