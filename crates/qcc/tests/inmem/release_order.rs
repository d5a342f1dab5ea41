//! The release order is enforced: run in HAProxy 2.9.6's order, the counters catch it.

use crate::harness::{Pair, Setup};
use qcc::ServerConn;

fn budget_exhausted_pair() -> Pair {
    let mut setup = Setup::default();
    setup.limits.tx_budget = 32 * 1024;
    let mut pair = Pair::established(setup);
    for _ in 0..6 {
        pair.request("GET", "/bytes/1000000", None);
    }
    assert!(pair.run_until(|p| p.app.requests.len() == 6 && p.app.blocked_sends > 0));
    pair.net.drop_to_server = true;
    for _ in 0..10 {
        pair.step();
    }
    assert!(pair.counters.snapshot().tx_budget_waits > 0);
    pair
}

#[test]
fn the_wrong_order_is_counted_as_a_stale_wakeup_and_an_out_of_order_release() {
    let mut pair = budget_exhausted_pair();
    pair.counters.set_panic_on_out_of_order(false);
    let Some(ServerConn::Live(conn)) = pair.server.replace(ServerConn::Closed) else {
        panic!()
    };
    let released = conn.release_in_wrong_order(pair.clock.now());
    let snap = pair.counters.snapshot();
    assert!(snap.stale_wakeups >= 1, "{snap:?}");
    assert!(snap.out_of_order_releases >= 1, "{snap:?}");
    pair.server = Some(ServerConn::Closing(released.closing));
    pair.net.drop_to_server = false;
    assert!(pair.run_to_end());
}

#[test]
fn the_right_order_counts_nothing() {
    let mut pair = budget_exhausted_pair();
    pair.release_server();
    let snap = pair.counters.snapshot();
    assert_eq!(
        (snap.stale_wakeups, snap.out_of_order_releases),
        (0, 0),
        "{snap:?}"
    );
    pair.net.drop_to_server = false;
    assert!(pair.run_to_end());
    pair.assert_idle();
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "out-of-order release")]
fn debug_builds_panic_on_an_out_of_order_release() {
    let mut pair = budget_exhausted_pair();
    let Some(ServerConn::Live(conn)) = pair.server.replace(ServerConn::Closed) else {
        panic!()
    };
    let _ = conn.release_in_wrong_order(pair.clock.now());
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "connection dropped without release")]
fn dropping_a_connection_without_release_is_caught() {
    let mut pair = Pair::established(Setup::default());
    let Some(ServerConn::Live(conn)) = pair.server.replace(ServerConn::Closed) else {
        panic!()
    };
    drop(conn);
}
