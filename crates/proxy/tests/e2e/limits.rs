//! Limits on what clients may open: the global and per-frontend `maxconn`, and Retry above a number of
//! handshakes in progress.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use h3_client::{run, Options, Request};

use crate::harness::{hold_connections, Proxy};

fn origin_servers() -> String {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {origin}\n")
}

#[test]
fn global_maxconn_refuses_one_more_connection_until_one_closes() {
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        "    maxconn 2\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    refuses_a_third_connection(&proxy, "global");
}

#[test]
fn a_frontends_maxconn_refuses_one_more_connection_until_one_closes() {
    let proxy = Proxy::start_with(
        &origin_servers(),
        "    maxconn 2\n",
        "    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    refuses_a_third_connection(&proxy, "frontend");
    assert_eq!(
        proxy.metrics()["qproxy_quic_refused_connections_total{limit=\"global\"}"],
        0
    );
}

/// Two connections held open fill a limit of 2 (`limit`): a third is refused and counted, and once the
/// two close their places come back.
fn refuses_a_third_connection(proxy: &Proxy, limit: &str) {
    let server = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let options = Options::new(server, proxy.dir.join("ca.pem"));
    // Two connections, each held open by a pause between its two requests.
    let holders = hold_connections(proxy, &options, 2, Duration::from_secs(3));
    let mut third = options.clone();
    third.timeout = Duration::from_millis(1500);
    assert!(
        run(&third, &[Request::get("/bytes/10")]).is_err(),
        "a third connection was accepted over maxconn 2"
    );
    let m = proxy.metrics();
    assert!(
        m[&format!("qproxy_quic_refused_connections_total{{limit=\"{limit}\"}}")] >= 1,
        "{m:?}"
    );
    assert_eq!(m["qproxy_quic_connections_total"], 2);
    for holder in holders {
        for report in holder.join().unwrap().unwrap() {
            for a in report.answers {
                assert_eq!((a.status, &a.error), (Some(200), &None));
            }
        }
    }
    proxy.assert_gauges_return_to_zero();
    // Their places came back.
    let reports = run(&options, &[Request::get("/bytes/10")]).unwrap();
    assert_eq!(reports[0].answers[0].status, Some(200));
    proxy.assert_gauges_return_to_zero();
}

/// A handshake that never finishes: a real client Initial (quiche's) from a socket that never reads.
fn stuck_handshake(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap();
    config.set_application_protos(&[b"h3"]).unwrap();
    config.verify_peer(false);
    let scid: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
    let scid = quiche::ConnectionId::from_ref(&scid);
    let peer = format!("127.0.0.1:{port}").parse().unwrap();
    let mut conn = quiche::connect(
        Some("localhost"),
        &scid,
        socket.local_addr().unwrap(),
        peer,
        &mut config,
    )
    .unwrap();
    let mut out = [0u8; 1500];
    let (n, _) = conn.send(&mut out).unwrap();
    socket.send_to(&out[..n], peer).unwrap();
    socket
}

#[test]
fn handshakes_in_progress_above_the_threshold_turn_retry_on_until_they_end() {
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        "    nbthread 2\n    tune.quic.fe.sec.retry-threshold 2\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n    timeout client-hs 2s\n",
    );
    let options = Options::new(
        format!("127.0.0.1:{}", proxy.port).parse().unwrap(),
        proxy.dir.join("ca.pem"),
    );
    let retries =
        |result: &str| proxy.metrics()[&format!("qproxy_quic_retries_total{{result=\"{result}\"}}")];
    let served = |options: &Options| {
        let reports = run(options, &[Request::get("/")]).unwrap();
        assert_eq!(
            (reports[0].answers[0].status, &reports[0].answers[0].error),
            (Some(200), &None)
        );
    };
    // Two connections past their handshake, held open: they do not count.
    let holders = hold_connections(&proxy, &options, 2, Duration::from_secs(2));
    served(&options);
    assert_eq!(
        (retries("sent"), retries("validated")),
        (0, 0),
        "below the threshold: no Retry"
    );
    for holder in holders {
        if let Err(e) = holder.join().unwrap() {
            panic!("a held connection failed: {e:#}\n{}", proxy.log());
        }
    }
    proxy.assert_gauges_return_to_zero();
    // Two handshakes in progress (over both workers: the count is the bind's).
    let stuck: Vec<UdpSocket> = (0..2).map(|_| stuck_handshake(proxy.port)).collect();
    let started = Instant::now();
    while proxy.metrics()["qproxy_quic_connections"] < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    served(&options);
    assert_eq!(
        (retries("sent"), retries("validated")),
        (1, 1),
        "the client proved its address first"
    );
    // The stuck ones end at `timeout client-hs`; then new clients go straight in again.
    proxy.assert_gauges_return_to_zero();
    drop(stuck);
    served(&options);
    assert_eq!(retries("validated"), 1, "back below the threshold");
    proxy.assert_gauges_return_to_zero();
}

/// `tune.quic.fe.stream.max-total 3`: the third request on a connection is its last; GOAWAY refuses the
/// streams opened after it with H3_REQUEST_REJECTED (safe to retry elsewhere), and they never reach the
/// origin.
#[test]
fn a_connection_carries_at_most_max_total_requests() {
    let origin = crate::origins::counting("o", Duration::ZERO);
    // Set by a reload: the connection layer's limits apply to connections accepted after a SIGHUP.
    let proxy = Proxy::start_with(
        &format!("    server o1 {}\n", origin.addr),
        "",
        "    tune.quic.fe.stream.max-total 0\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    proxy.rewrite_servers("max-total 0", "max-total 3");
    proxy.signal("HUP");
    let started = Instant::now();
    while !proxy.log().contains("configuration reloaded") {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let urls: Vec<String> = (0..6).map(|i| proxy.url(&format!("/r{i}"))).collect();
    let ca = proxy.dir.join("ca.pem").display().to_string();
    let results = crate::harness::aioquic(proxy.port, &["--ca", &ca], &urls);
    let ok = results.iter().filter(|r| r.status == Some(200)).count();
    let rejected = results.iter().filter(|r| r.reset == Some(0x10b)).count();
    // Streams reach the proxy in order on loopback; one out of order may slip in before the GOAWAY.
    assert!((3..=4).contains(&ok) && ok + rejected == 6, "{results:?}");
    assert_eq!(origin.served(), ok, "refused streams never reached the origin");
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn the_tx_pool_caps_all_connections_together_and_every_download_completes() {
    // Each connection may hold 1 MiB, all of them together 64 KiB: four concurrent 2 MB downloads
    // must wait for the pool (not their own budgets) and still arrive whole.
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        "    tune.quic.fe.conn.tx-buf 1m\n    tune.quic.mem.tx-max 64k\n",
        "    timeout connect 2s\n    timeout server 10s\n",
    );
    let server = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let mut options = Options::new(server, proxy.dir.join("ca.pem"));
    options.timeout = Duration::from_secs(30);
    let size = 2_000_000;
    let path = format!("/bytes/{size}");
    let reports: Vec<_> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|_| s.spawn(|| run(&options, &[Request::get(&path)]).unwrap()))
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(reports.len(), 4);
    let want = crate::harness::origin_bytes(size);
    for a in reports.iter().flat_map(|r| &r.answers) {
        assert_eq!((a.status, &a.error), (Some(200), &None));
        assert!(a.body == want, "a body of {} bytes differs", a.body.len());
    }
    let m = proxy.metrics();
    assert!(
        m["qproxy_tx_pool_waits_total"] > 0,
        "the pool never refused: {m:?}"
    );
    assert!(
        m["qproxy_tx_budget_waits_total"] >= m["qproxy_tx_pool_waits_total"],
        "{m:?}"
    );
    proxy.assert_gauges_return_to_zero();
}
