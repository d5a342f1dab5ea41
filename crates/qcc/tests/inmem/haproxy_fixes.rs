//! Scenarios 20 and on: shapes of crash and leak fixes in HAProxy's QUIC code since 2.9 (commit ids of
//! haproxy/haproxy), where quiche as the client can write the frames: raw HTTP/3 bytes on request and
//! unidirectional streams of its own choosing. Each asserts its precondition, then that the connection
//! lives on (a normal request is served after it) and that everything is idle once it ends.

use std::time::Duration;

use qcc::codes;

use crate::harness::{Pair, Setup};

/// HEADERS for `GET https://localhost/bytes/5`, QPACK without the dynamic table: static 17 (GET), 23
/// (https), `:authority` by static name 0 and `:path` by static name 1, both with literal values.
const GET: &[u8] = b"\x01\x1a\x00\x00\xd1\xd7\x50\x09localhost\x51\x08/bytes/5";
/// The same with `:method` twice: malformed (RFC 9114, 4.3).
const DOUBLE_METHOD: &[u8] = b"\x01\x1b\x00\x00\xd1\xd1\xd7\x50\x09localhost\x51\x08/bytes/5";

/// Raw stream IDs past any the HTTP/3 client will use for its own requests.
const RAW: u64 = 400;

/// Queues STOP_SENDING as the first frame of stream `id` (quiche sends none for a stream it has not
/// created: an empty write creates it and sends nothing).
fn stop_sending_first(pair: &mut Pair, id: u64) {
    pair.client.stream_send(id, b"", false).unwrap();
    pair.client_stop_sending(id, codes::H3_REQUEST_CANCELLED);
}

/// STOP_SENDING frames the server's transport received.
fn stopped_by_client(pair: &Pair) -> u64 {
    pair.live()
        .unwrap()
        .transport()
        .stats()
        .stopped_stream_count_remote
}

/// RESET_STREAM frames the server's transport received.
fn reset_by_client(pair: &Pair) -> u64 {
    pair.live().unwrap().transport().stats().reset_stream_count_remote
}

fn raw_requests(pair: &Pair) -> usize {
    pair.app.requests.iter().filter(|(id, _)| *id >= RAW).count()
}

#[test]
fn scenario_20_stop_sending_as_the_first_frame_of_a_stream_then_its_headers() {
    // caf60ac69: a stream opened by STOP_SENDING, its HEADERS behind it; HAProxy crashed at stream
    // purge. Both leave in one flight, before the server's answer to the first could change the client.
    let mut pair = Pair::established(Setup::default());
    pair.settle(Duration::from_millis(20));
    stop_sending_first(&mut pair, RAW);
    pair.client.stream_send(RAW, GET, true).unwrap();
    pair.settle(Duration::from_millis(20));
    // Precondition: the server's transport took the STOP_SENDING, and nothing reset the stream.
    assert_eq!(stopped_by_client(&pair), 1, "{}", pair.describe());
    assert_eq!(reset_by_client(&pair), 0, "{}", pair.describe());
    assert_eq!(
        raw_requests(&pair),
        0,
        "a request its client had stopped reached the upper side"
    );
    pair.serves_another_request();
    pair.shutdown_and_end();
}

#[test]
fn scenario_21_stop_sending_opens_a_stream_then_headers_with_a_duplicated_pseudo_header() {
    // 7ee1279f4: the same opening, then a malformed header section behind it.
    let mut pair = Pair::established(Setup::default());
    pair.settle(Duration::from_millis(20));
    stop_sending_first(&mut pair, RAW);
    pair.client.stream_send(RAW, DOUBLE_METHOD, true).unwrap();
    pair.settle(Duration::from_millis(20));
    assert_eq!(stopped_by_client(&pair), 1, "{}", pair.describe());
    assert_eq!(raw_requests(&pair), 0);
    // The same section on a stream of its own is refused as malformed.
    pair.client.stream_send(RAW + 4, DOUBLE_METHOD, true).unwrap();
    pair.settle(Duration::from_millis(20));
    assert_eq!(raw_requests(&pair), 0);
    pair.serves_another_request();
    pair.shutdown_and_end();
}

#[test]
fn scenario_22_a_unidirectional_stream_of_unknown_type_opened_closed_then_stopped_by_us() {
    // b0dd4810e, c7004be96: the client opens a unidirectional stream of a reserved type (0x21, RFC 9114
    // 6.2.3: to be ignored), writes and closes it; the server stops reading it.
    let mut pair = Pair::established(Setup::default());
    pair.settle(Duration::from_millis(20));
    let uni = 2 + 4 * 8; // client-initiated unidirectional, past control, QPACK and grease streams
    let stopped = |p: &Pair| p.live().unwrap().transport().stats().stopped_stream_count_local;
    let stopped_before = stopped(&pair);
    pair.client.stream_send(uni, b"\x21grease bytes", true).unwrap();
    pair.settle(Duration::from_millis(20));
    assert!(
        stopped(&pair) > stopped_before,
        "precondition: the server stopped the unknown stream"
    );
    let before = pair.counters.snapshot().streams_total;
    pair.serves_another_request();
    assert_eq!(
        pair.counters.snapshot().streams_total,
        before + 1,
        "the unknown stream was taken for a request"
    );
    pair.shutdown_and_end();
}

#[test]
fn scenario_23_a_header_section_split_across_packets_then_reset() {
    // 83ae0c250: STREAM data that does not complete a frame, then RESET_STREAM for it; HAProxy looped
    // forever waiting for the rest of the frame.
    let mut pair = Pair::established(Setup::default());
    pair.settle(Duration::from_millis(20));
    pair.client.stream_send(RAW, &GET[..7], false).unwrap();
    assert!(
        pair.run_until(|p| p.live().is_some_and(|c| c.opening_streams() == vec![RAW])),
        "precondition: an incomplete header section is pending"
    );
    pair.client_reset(RAW, codes::H3_REQUEST_CANCELLED);
    pair.settle(Duration::from_millis(20));
    assert!(
        pair.live().unwrap().opening_streams().is_empty(),
        "the reset stream still waits for its header section"
    );
    assert_eq!(raw_requests(&pair), 0);
    pair.serves_another_request();
    pair.shutdown_and_end();
}

#[test]
fn scenario_24_a_client_with_max_data_10_and_ten_parallel_gets() {
    // 7edb2ffae: a connection window of 10 bytes, smaller than one response header section, and ten
    // 10 KB GETs. Nothing can be sent and the client will never raise its window: the connection must
    // sit still (no spin, no crash) until it is released, and release everything then.
    let mut pair = Pair::established(Setup {
        client_max_data: 10,
        ..Setup::default()
    });
    let ids: Vec<u64> = (0..10)
        .map(|_| pair.request("GET", "/bytes/10000", None))
        .collect();
    assert!(pair.run_until(|p| p.app.requests.len() == 10));
    pair.settle(Duration::from_millis(100));
    // Precondition: all ten answered by the upper side, all held back by the 10-byte window.
    let conn = pair.live().unwrap();
    assert!(conn.tx_budget_in_use() >= 10 * 10_000, "{}", pair.describe());
    assert!(ids.iter().all(|id| pair.response(*id).status.is_none()));
    // Still: a few more rounds move nothing.
    assert!(
        (0..20).all(|_| !pair.step()),
        "the stalled connection keeps moving"
    );
    pair.release_server();
    assert!(pair.run_to_end(), "{}", pair.describe());
    pair.assert_idle();
}

#[test]
fn scenario_25_stop_sending_on_a_download_with_a_one_buffer_budget_under_reordering() {
    // ad6b13d31, a13989f10: a Tx budget of one 16 KiB chunk, acknowledgements out of order (the
    // network reorders and loses), STOP_SENDING mid-download; the other download must go on.
    let mut pair = Pair::established(Setup {
        seed: 25,
        knobs: crate::harness::Knobs {
            reorder: 0.3,
            loss: 0.02,
            ..Default::default()
        },
        limits: qcc::Limits {
            tx_budget: 16 * 1024,
            ..Default::default()
        },
        ..Setup::default()
    });
    let big = pair.request("GET", "/bytes/2000000", None);
    let other = pair.request("GET", "/bytes/300000", None);
    assert!(pair.run_until(|p| p.response(big).body.len() > 100_000));
    // Precondition: the budget refused, again and again (one chunk at a time).
    assert!(pair.counters.snapshot().tx_budget_waits > 5);
    pair.client_stop_sending(big, codes::H3_REQUEST_CANCELLED);
    assert!(
        pair.run_until(|p| p.response(other).finished),
        "{}",
        pair.describe()
    );
    assert!(pair.response(other).body == crate::harness::pattern_vec(300_000));
    assert!(pair.app.aborted.iter().any(|(id, _)| *id == big));
    pair.settle(Duration::from_millis(200));
    assert_eq!(
        pair.live().unwrap().tx_budget_in_use(),
        0,
        "the stopped stream still holds budget"
    );
    pair.shutdown_and_end();
}
