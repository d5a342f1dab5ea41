//! With aioquic (PyPI), a second independent HTTP/3 client: certificate verification against the demo CA,
//! concurrency, and client aborts at every stage.

use std::io::Read;

use crate::harness::{aioquic, file, origin, origin_bytes, read_head, scratch, Proxy};

fn demo_origin() -> String {
    let addr = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {addr}\n")
}

fn ca(proxy: &Proxy) -> String {
    proxy.dir.join("ca.pem").display().to_string()
}

#[test]
fn aioquic_verifies_the_certificate_and_gets_byte_exact_bodies_on_concurrent_streams() {
    let proxy = Proxy::start(&demo_origin(), "");
    let out = scratch();
    let sizes = [0usize, 10, 100_000, 3_000_000];
    let urls: Vec<String> = sizes.iter().map(|n| proxy.url(&format!("/bytes/{n}"))).collect();
    let results = aioquic(
        proxy.port,
        &["--ca", &ca(&proxy), "--out", out.to_str().unwrap()],
        &urls,
    );
    assert_eq!(results.len(), sizes.len());
    for (i, n) in sizes.iter().enumerate() {
        assert_eq!(results[i].status, Some(200), "{}", results[i].line);
        assert!(
            std::fs::read(out.join(format!("0-{i}"))).unwrap() == origin_bytes(*n),
            "{n}: body differs"
        );
    }
    for body in [
        (0..2_000_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>(),
        Vec::new(),
    ] {
        let up = file(&scratch(), "up", &body);
        let out = scratch();
        let echo = aioquic(
            proxy.port,
            &[
                "--ca",
                &ca(&proxy),
                "--method",
                "POST",
                "--data",
                up.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[proxy.url("/echo")],
        );
        assert_eq!(echo[0].status, Some(200), "{}", echo[0].line);
        assert!(
            std::fs::read(out.join("0-0")).unwrap() == body,
            "echo of {} bytes differs",
            body.len()
        );
    }
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn fifty_connections_at_once() {
    let proxy = Proxy::start(&demo_origin(), "");
    let results = aioquic(
        proxy.port,
        &["--ca", &ca(&proxy), "--connections", "50"],
        &[proxy.url("/bytes/20000"), proxy.url("/")],
    );
    assert_eq!(results.len(), 100);
    assert!(
        results.iter().all(|r| r.status == Some(200)),
        "{:?}",
        results.iter().find(|r| r.status != Some(200))
    );
    assert!(proxy.metrics()["qproxy_quic_connections_total"] >= 50);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn client_aborts_mid_download_and_mid_upload_free_everything() {
    let proxy = Proxy::start(&demo_origin(), "");
    // STOP_SENDING after 200 kB of 64 MiB.
    let stopped = aioquic(
        proxy.port,
        &["--stop-after", "200000", "--timeout", "10"],
        &[proxy.url("/bytes/67108864")],
    );
    assert_eq!(
        stopped[0].error.as_deref(),
        Some("stopped by client"),
        "{}",
        stopped[0].line
    );
    // CONNECTION_CLOSE after 200 kB, with two downloads in flight.
    let closed = aioquic(
        proxy.port,
        &["--close-after", "200000", "--timeout", "10"],
        &[proxy.url("/bytes/67108864"), proxy.url("/bytes/67108864")],
    );
    assert!(closed.iter().all(|r| r.error.is_some()), "{closed:?}");
    // RESET_STREAM after 100 kB of a 4 MB upload.
    let up = file(&scratch(), "up", &vec![7u8; 4_000_000]);
    let reset = aioquic(
        proxy.port,
        &[
            "--method",
            "POST",
            "--data",
            up.to_str().unwrap(),
            "--reset-after",
            "100000",
            "--timeout",
            "10",
        ],
        &[proxy.url("/echo")],
    );
    assert_eq!(reset[0].error.as_deref(), Some("reset by client"));
    proxy.assert_gauges_return_to_zero();
    let m = proxy.metrics();
    assert!(
        m["qproxy_http_requests_total{class=\"none\"}"] + m["qproxy_http_requests_total{class=\"2xx\"}"] >= 4
    );
}

#[test]
fn a_backend_that_resets_mid_upload_gives_502_and_frees_everything() {
    let resetter = origin(|mut s| {
        read_head(&mut s);
        let mut buf = [0u8; 65536];
        let _ = s.read(&mut buf); // Some of the body, then the connection goes away.
    });
    let proxy = Proxy::start(&format!("    server r {resetter}\n"), "");
    let up = file(&scratch(), "up", &vec![1u8; 5_000_000]);
    let results = aioquic(
        proxy.port,
        &[
            "--method",
            "POST",
            "--data",
            up.to_str().unwrap(),
            "--timeout",
            "10",
        ],
        &[proxy.url("/upload")],
    );
    let r = &results[0];
    assert!(r.status == Some(502) || r.reset.is_some(), "{}", r.line);
    proxy.assert_gauges_return_to_zero();
}
