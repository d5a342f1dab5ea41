//! Stateless resets: a client of a connection the proxy forgot (a crash, a restart) learns it from the
//! next datagram it sends, by a token only an instance with the key can compute.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::Duration;

use h3_client::{run, Options, Request};

use crate::harness::Proxy;

fn origin_servers() -> String {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {origin}\n")
}

const GLOBAL: &str = "    cluster-secret e2e-cluster-secret-0123\n    tune.quic.fe.max-idle-timeout 30s\n";

#[test]
fn a_restarted_instance_resets_the_connections_it_forgot() {
    let mut proxy = Proxy::start_with(
        &origin_servers(),
        "",
        GLOBAL,
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let mut options = Options::new(
        format!("127.0.0.1:{}", proxy.port).parse().unwrap(),
        proxy.dir.join("ca.pem"),
    );
    options.pause_between = Some(Duration::from_secs(3));
    let client = std::thread::spawn(move || run(&options, &[Request::get("/"), Request::get("/")]));
    // The first request is answered at once; the second goes out 3 s later, to a new process.
    std::thread::sleep(Duration::from_millis(1500));
    proxy.restart_hard();
    let reports = client.join().unwrap().unwrap();
    let answers = &reports[0].answers;
    assert_eq!((answers[0].status, &answers[0].error), (Some(200), &None));
    let error = answers[1].error.as_deref().unwrap_or("no error");
    assert!(
        error.contains("reset by peer"),
        "the client learns its connection is gone from the reset, not from its idle timeout: {error}"
    );
    let sent = |m: &HashMap<String, u64>| m["qproxy_quic_stateless_resets_total{result=\"sent\"}"];
    let m = proxy.metrics_when(|m| sent(m) >= 1);
    assert!(sent(&m) >= 1, "{m:?}");
}

#[test]
fn resets_are_shorter_than_their_cause_rate_limited_and_never_answer_tiny_datagrams() {
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        GLOBAL,
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", proxy.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // A short header with a connection ID no one issued (16 bytes, as qproxy's), then padding.
    let short = |len: usize| {
        let mut d = vec![0x43];
        d.extend((0..len - 1).map(|i| (i * 7 + 3) as u8));
        d
    };
    socket.send(&short(60)).unwrap();
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect("a stateless reset");
    assert!((21..60).contains(&n), "{n} bytes for a 60-byte datagram");
    assert_eq!(buf[0] & 0xc0, 0x40, "looks like a short header");
    // Too short to carry a reset shorter than itself: no answer at all.
    std::thread::sleep(Duration::from_millis(150));
    socket.send(&short(21)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert!(socket.recv(&mut buf).is_err(), "a 21-byte datagram got an answer");
    // A burst from one source: one reset per source per 100 ms (and worker), the rest counted.
    for _ in 0..20 {
        socket.send(&short(100)).unwrap();
    }
    let mut answered = 0;
    while socket.recv(&mut buf).is_ok() {
        answered += 1;
    }
    let m = proxy.metrics();
    let (sent, limited) = (
        m["qproxy_quic_stateless_resets_total{result=\"sent\"}"],
        m["qproxy_quic_stateless_resets_total{result=\"limited\"}"],
    );
    assert!(
        answered < 20 && limited > 0,
        "{answered} answered, {sent} sent, {limited} limited"
    );
    assert_eq!(sent, 1 + answered as u64, "every reset counted");
}
