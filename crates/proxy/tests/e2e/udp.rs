//! Batched UDP: the same downloads byte-exact with GSO on (several datagrams per send call on loopback)
//! and with `tune.quic.disable-udp-gso` (one datagram per call), receiving batched either way.

use crate::harness::{aioquic, origin_bytes, scratch, Proxy};

fn download(global: &str) -> (Proxy, u64, u64) {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start_with(
        &format!("    server o1 {origin}\n"),
        "",
        &format!("    tune.quic.fe.max-idle-timeout 10s\n{global}"),
        "    timeout connect 2s\n    timeout server 5s\n",
    );
    let out = scratch();
    let sizes = [0usize, 1_000, 3_000_000];
    let urls: Vec<String> = sizes.iter().map(|n| proxy.url(&format!("/bytes/{n}"))).collect();
    let ca = proxy.dir.join("ca.pem").display().to_string();
    let results = aioquic(proxy.port, &["--ca", &ca, "--out", out.to_str().unwrap()], &urls);
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(results[i].status, Some(200), "{}", results[i].line);
        assert!(
            std::fs::read(out.join(format!("0-{i}"))).unwrap() == origin_bytes(*n),
            "{n}: body differs"
        );
    }
    let m = proxy.metrics();
    let sent = m["qproxy_udp_datagrams_total{direction=\"sent\"}"];
    let calls = m["qproxy_udp_syscalls_total{direction=\"sent\"}"];
    assert!(
        m["qproxy_udp_syscalls_total{direction=\"received\"}"]
            <= m["qproxy_udp_datagrams_total{direction=\"received\"}"]
    );
    proxy.assert_gauges_return_to_zero();
    (proxy, sent, calls)
}

#[test]
fn downloads_are_byte_exact_with_gso_and_without() {
    let (_on, sent, calls) = download("");
    assert!(
        sent > 2_000,
        "a 3 MB download is thousands of datagrams, saw {sent}"
    );
    assert!(
        calls * 2 < sent,
        "GSO should batch: {sent} datagrams in {calls} send calls"
    );
    let (_off, sent, calls) = download("    tune.quic.disable-udp-gso\n");
    assert!(sent > 2_000);
    assert_eq!(calls, sent, "with GSO off every datagram has its own send call");
}

#[test]
fn a_download_over_a_jittery_path_is_paced_and_byte_exact() {
    // A fifth of the datagrams each way held back 1-20 ms: the round trip is milliseconds, so BBR's
    // pacer (quiche paces only with it) gives much of the flight a send time ahead of now, and the
    // worker must hold it.
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start_bind(
        "quic-cc-algo bbr",
        &format!("    timeout server 10s\n    server o1 {origin}\n"),
        "",
    );
    let faults = udp_faults::Faults {
        delay: 0.2,
        ..Default::default()
    };
    let upstream = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let fault = udp_faults::FaultProxy::start(upstream, faults, 7).unwrap();
    let out = scratch();
    let n = 2_000_000;
    let ca = proxy.dir.join("ca.pem").display().to_string();
    let results = aioquic(
        fault.addr().port(),
        &["--ca", &ca, "--out", out.to_str().unwrap(), "--timeout", "60"],
        &[proxy.url(&format!("/bytes/{n}"))],
    );
    assert_eq!(results[0].status, Some(200), "{}", results[0].line);
    assert!(
        std::fs::read(out.join("0-0")).unwrap() == origin_bytes(n),
        "body differs"
    );
    let paced = proxy.metrics()["qproxy_udp_paced_total"];
    assert!(paced > 0, "no datagram waited for its send time");
    proxy.assert_gauges_return_to_zero();
}
