//! The client address that `X-Forwarded-For`, `Forwarded`, `balance source` and the access log use is
//! the one quiche has validated: datagrams that carry a live connection's ID from another address
//! (anyone on the path sees the ID) do not move it.

use std::time::Duration;

use h3_client::{run, Options, Rebind, Request};

use crate::harness::Proxy;
use crate::origins::recording;
use crate::relay::Relay;

/// Behind every short-header datagram the client sends, a forged one to the same connection ID from
/// 127.0.0.2, the worst an off-path attacker who saw the ID can do: the forgery lands right behind each
/// real datagram, often in the same receive batch.
fn forgery(datagram: &[u8]) -> Option<Vec<u8>> {
    (datagram.len() > 17 && datagram[0] & 0x80 == 0).then(|| {
        let mut forged = datagram[..17].to_vec();
        forged.extend((0..40).map(|i| i as u8));
        forged
    })
}

#[test]
fn forged_datagrams_with_a_live_connection_id_do_not_change_the_forwarded_address() {
    let origin = recording(false);
    let proxy = Proxy::start(
        &format!("    option forwardfor\n    server o1 {}\n", origin.addr),
        "",
    );
    let relay = Relay::start(format!("127.0.0.1:{}", proxy.port).parse().unwrap(), forgery);
    let mut options = Options::new(relay.addr, proxy.dir.join("ca.pem"));
    options.connections = 4;
    let requests: Vec<Request> = (0..8).map(|i| Request::get(format!("/r{i}"))).collect();
    let reports = run(&options, &requests).unwrap();
    drop(relay);
    for a in reports.iter().flat_map(|r| &r.answers) {
        assert_eq!((a.status, &a.error), (Some(200), &None));
    }
    // (The recording origin reads no chunked body: the empty one of a GET whose stream ended after its
    // header section shows as a head of its own.)
    let heads: Vec<String> = origin
        .heads()
        .into_iter()
        .filter(|h| h.starts_with("GET "))
        .collect();
    assert_eq!(heads.len(), 32);
    for head in &heads {
        assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    }
    let access_lines = |log: &str| log.lines().filter(|l| l.contains("qproxy::access")).count();
    let log = proxy.log_when(|l| access_lines(l) >= 32);
    let access: Vec<&str> = log.lines().filter(|l| l.contains("qproxy::access")).collect();
    assert_eq!(access.len(), 32, "{}", access.join("\n"));
    for line in access {
        assert!(line.contains("qproxy::access: 127.0.0.1:"), "{line}");
    }
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_client_that_moved_is_known_by_its_new_address_once_quiche_validated_it() {
    let origin = recording(false);
    let proxy = Proxy::start(&format!("    server o1 {}\n", origin.addr), "");
    let server = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let mut options = Options::new(server, proxy.dir.join("ca.pem"));
    options.rebind = Rebind::WhileIdle;
    options.pause_between = Some(Duration::from_millis(300));
    let reports = run(&options, &[Request::get("/moving"), Request::get("/moved")]).unwrap();
    for a in &reports[0].answers {
        assert_eq!((a.status, &a.error), (Some(200), &None));
    }
    let log = proxy.log_when(|l| {
        l.lines()
            .any(|line| line.contains("qproxy::access") && line.contains("/moved"))
    });
    let client_of = |path: &str| {
        let line = log
            .lines()
            .find(|l| l.contains("qproxy::access") && l.contains(path))
            .unwrap_or_else(|| panic!("no access line for {path}: {log}"));
        line.split("qproxy::access: ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    // The first request came in the first datagram from the new port, before the path was validated:
    // it keeps the old address. By the second, quiche had validated the new path.
    let (before, after) = (client_of("/moving"), client_of("/moved"));
    assert_ne!(before, after, "the address never followed the client");
    proxy.assert_gauges_return_to_zero();
}
