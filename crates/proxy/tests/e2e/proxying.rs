//! Requests through the proxy: bodies both ways, many streams, error statuses.

use std::io::Write;

use crate::harness::{file, gtlsclient, origin, origin_bytes, read_head, scratch, Proxy};

fn demo_origin() -> String {
    let addr = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {addr}\n")
}

#[test]
fn downloads_from_0_bytes_to_64_mib_are_byte_exact() {
    let proxy = Proxy::start(&demo_origin(), "");
    for n in [0usize, 1, 70_000, 64 * 1024 * 1024] {
        let dl = scratch();
        let seen = gtlsclient(
            proxy.port,
            &[&format!("--download={}", dl.display())],
            &[proxy.url(&format!("/bytes/{n}"))],
        );
        assert_eq!(seen.statuses, vec![200], "{n}: {}", seen.output);
        let got = std::fs::read(dl.join(n.to_string())).unwrap_or_default();
        assert!(
            got == origin_bytes(n),
            "{n} bytes: got {} bytes, different",
            got.len()
        );
    }
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn uploads_are_streamed_to_the_backend_and_echoed_byte_exact() {
    let proxy = Proxy::start(&demo_origin(), "");
    let dir = scratch();
    // (gtlsclient cannot send an empty file; the aioquic test posts 0 bytes.)
    for (method, n) in [("POST", 1usize), ("PUT", 300_000), ("POST", 64 * 1024 * 1024)] {
        let body: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
        let up = file(&dir, "up", &body);
        let dl = scratch();
        let seen = gtlsclient(
            proxy.port,
            &[
                "-m",
                method,
                "-d",
                up.to_str().unwrap(),
                &format!("--download={}", dl.display()),
            ],
            &[proxy.url("/echo")],
        );
        assert_eq!(seen.statuses, vec![200], "{method} {n}: {}", seen.output);
        assert!(
            std::fs::read(dl.join("echo")).unwrap() == body,
            "{method} {n}: echo differs"
        );
    }
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_hundred_streams_on_one_connection_and_head_requests() {
    let proxy = Proxy::start(
        &demo_origin(),
        "    http-response set-header alt-svc \"h3=\\\":443\\\"\"\n",
    );
    let seen = gtlsclient(proxy.port, &["-n", "100"], &[proxy.url("/bytes/1000")]);
    assert_eq!(seen.statuses.len(), 100, "{}", seen.output);
    assert!(seen.statuses.iter().all(|s| *s == 200));
    assert!(
        seen.output.contains("[alt-svc: h3=\":443\"]"),
        "set-header missing"
    );
    let head = gtlsclient(proxy.port, &["-m", "HEAD"], &[proxy.url("/bytes/5000")]);
    assert_eq!(head.statuses, vec![200]);
    assert!(head.output.contains("[content-length: 5000]"));
    let m = proxy.metrics();
    assert!(m["qproxy_http_requests_total{class=\"2xx\"}"] >= 101);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_refused_backend_gives_503() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(&format!("    server gone {closed}\n"), "");
    let seen = gtlsclient(proxy.port, &[], &[proxy.url("/")]);
    assert_eq!(seen.statuses, vec![503], "{}", seen.output);
    let m = proxy.metrics_when(|m| m["qproxy_backend_connect_errors_total"] >= 1);
    assert!(
        m["qproxy_backend_connect_errors_total"] >= 1
            || proxy.log_when(|l| l.contains(" SC")).contains(" SC")
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_backend_that_closes_or_talks_nonsense_gives_502() {
    let closer = origin(|mut s| {
        read_head(&mut s);
    });
    let nonsense = origin(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    // A status of two digits: once a worker's panic (found by the response_head fuzz target).
    let low_status = origin(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.0 099 Co\r\n\r\n");
    });
    for addr in [closer, nonsense, low_status] {
        let proxy = Proxy::start(&format!("    server bad {addr}\n"), "");
        let seen = gtlsclient(proxy.port, &[], &[proxy.url("/")]);
        assert_eq!(seen.statuses, vec![502], "{}", seen.output);
        proxy.assert_gauges_return_to_zero();
    }
}

#[test]
fn a_backend_that_never_answers_gives_504_after_timeout_server() {
    let silent = origin(|mut s| {
        read_head(&mut s);
        std::thread::sleep(std::time::Duration::from_secs(8));
    });
    let proxy = Proxy::start(&format!("    server slow {silent}\n"), "");
    let seen = gtlsclient(proxy.port, &[], &[proxy.url("/")]);
    assert_eq!(seen.statuses, vec![504], "{}", seen.output);
    let log = proxy.log_when(|l| l.contains(" sH"));
    assert!(log.contains(" sH"), "termination state in the access log: {log}");
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn chunked_responses_are_decoded_and_trailers_forwarded() {
    let chunked = origin(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\nx-sum: 12\r\n\r\n");
    });
    let proxy = Proxy::start(&format!("    server c {chunked}\n"), "");
    let dl = scratch();
    let seen = gtlsclient(
        proxy.port,
        &[&format!("--download={}", dl.display())],
        &[proxy.url("/greeting")],
    );
    assert_eq!(seen.statuses, vec![200], "{}", seen.output);
    assert_eq!(std::fs::read(dl.join("greeting")).unwrap(), b"hello, world");
    assert!(
        seen.output.contains("[x-sum: 12]"),
        "trailer not forwarded: {}",
        seen.output
    );
    assert!(!seen.output.contains("transfer-encoding"));
    proxy.assert_gauges_return_to_zero();
}
