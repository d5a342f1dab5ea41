//! `quic-initial` rules: a new client's first Initial is accepted, dropped, refused or sent a Retry by
//! its source address (or the connections that address has open), before anything is kept for it.

use std::time::{Duration, Instant};

use h3_client::{run, Options, Request};

use crate::harness::{hold_connections, Proxy};

fn start(rules: &str) -> Proxy {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    Proxy::start_with(
        &format!("    server o1 {origin}\n"),
        rules,
        "    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    )
}

fn options(proxy: &Proxy) -> Options {
    let mut options = Options::new(
        format!("127.0.0.1:{}", proxy.port).parse().unwrap(),
        proxy.dir.join("ca.pem"),
    );
    options.timeout = Duration::from_secs(3);
    options
}

fn served(options: &Options) -> bool {
    run(options, &[Request::get("/")]).is_ok_and(|r| r[0].answers[0].status == Some(200))
}

fn count(proxy: &Proxy, family: &str, label: &str) -> u64 {
    proxy.metrics()[&format!("{family}{{{label}}}")]
}

#[test]
fn the_first_matching_rule_decides_by_source_network() {
    let proxy = start(
        "    quic-initial dgram-drop if { src 10.0.0.0/8 192.0.2.7 }\n    quic-initial send-retry if { src 127.0.0.0/8 }\n    quic-initial reject\n",
    );
    assert!(served(&options(&proxy)), "{}", proxy.log());
    let initial = |action: &str| {
        count(
            &proxy,
            "qproxy_quic_initial_rules_total",
            &format!("action=\"{action}\""),
        )
    };
    assert_eq!(
        (initial("dgram-drop"), initial("send-retry"), initial("reject")),
        (0, 2, 0),
        "one per Initial: before and after its Retry"
    );
    assert_eq!(
        count(&proxy, "qproxy_quic_retries_total", "result=\"validated\""),
        1
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn dgram_drop_answers_nothing_and_reject_refuses_the_connection() {
    let proxy = start("    quic-initial dgram-drop if { src 127.0.0.1 }\n");
    assert!(!served(&options(&proxy)));
    assert!(count(&proxy, "qproxy_quic_initial_rules_total", "action=\"dgram-drop\"") >= 1);
    assert_eq!(
        proxy.metrics()["qproxy_quic_connections_total"],
        0,
        "nothing was kept for it"
    );

    let proxy = start("    quic-initial reject unless { src 10.0.0.0/8 }\n");
    let started = Instant::now();
    let error = run(&options(&proxy), &[Request::get("/")])
        .map(|r| format!("{r:?}"))
        .unwrap_or_else(|e| format!("{e:#}"));
    assert!(
        error.to_ascii_lowercase().contains("refused"),
        "the client reads CONNECTION_REFUSED: {error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused at once, not timed out: {error}"
    );
    // ngtcp2 reads it too, in the one Initial packet it got.
    let port = proxy.port.to_string();
    let out = std::process::Command::new("timeout")
        .args([
            "5",
            "gtlsclient",
            "--exit-on-all-streams-close",
            "127.0.0.1",
            &port,
        ])
        .arg(format!("https://localhost:{port}/"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("Initial CONNECTION_CLOSE(0x1c) error_code=CONNECTION_REFUSED(0x2)"),
        "{log}"
    );
    assert!(count(&proxy, "qproxy_quic_initial_rules_total", "action=\"reject\"") >= 2);
    assert_eq!(
        proxy.metrics()["qproxy_quic_connections_total"],
        0,
        "nothing was kept for either"
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn src_conn_cur_limits_the_connections_of_one_address() {
    let proxy = start("    quic-initial reject if { src_conn_cur ge 2 }\n");
    let options = options(&proxy);
    let holders = hold_connections(&proxy, &options, 2, Duration::from_secs(2));
    assert!(
        !served(&options),
        "a third connection from 127.0.0.1 was accepted"
    );
    for holder in holders {
        if let Err(e) = holder.join().unwrap() {
            panic!("a held connection failed: {e:#}\n{}", proxy.log());
        }
    }
    proxy.assert_gauges_return_to_zero();
    assert!(served(&options), "the address's count came back down");
}

/// A long header of an unknown version gets Version Negotiation only when it fills 1200 bytes, as a
/// client's first datagram must: a smaller one could come from a spoofed source (RFC 9000, 5.2.2).
#[test]
fn version_negotiation_answers_only_full_size_datagrams() {
    let proxy = start("");
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", proxy.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let datagram = |len: usize| {
        let mut d = vec![
            0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9,
        ];
        d.resize(len, 0);
        d
    };
    let mut buf = [0u8; 1500];
    socket.send(&datagram(42)).unwrap();
    assert!(socket.recv(&mut buf).is_err(), "a 42-byte datagram got an answer");
    socket.send(&datagram(1200)).unwrap();
    let n = socket.recv(&mut buf).expect("Version Negotiation");
    assert_eq!(&buf[1..5], &[0, 0, 0, 0], "version 0: Version Negotiation");
    assert!(buf[..n].windows(4).any(|w| w == [0, 0, 0, 1]), "offers QUIC v1");
}
