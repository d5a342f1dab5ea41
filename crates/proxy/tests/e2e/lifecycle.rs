//! Process life: configuration check, graceful stop with requests in flight.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::harness::{aioquic, cpu_ticks, gtlsclient, origin, read_head, scratch, Proxy};
use crate::origins::counting;

#[test]
fn config_check_reports_file_line_and_expectation() {
    let dir = scratch();
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "global\n    nbthread 2\n    tune.quic.mem.tx-max plenty\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qproxy"))
        .args(["-c", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.cfg:3:") && err.contains("expected a size"),
        "{err}"
    );

    let pem = qproxy::tools::demo::write_certificates(&dir).unwrap().server;
    let good = dir.join("good.cfg");
    let text = format!("frontend f\n bind quic4@127.0.0.1:4433 ssl crt {}\n default_backend b\nbackend b\n server s 127.0.0.1:80\n", pem.display());
    std::fs::write(&good, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_qproxy"))
        .args(["-c", "-f"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits_0() {
    // An origin that answers after 1.5 s.
    let slow = origin(|mut s| {
        read_head(&mut s);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone");
    });
    let proxy = Proxy::start(&format!("    server slow {slow}\n"), "");
    let port = proxy.port;
    let url = proxy.url("/slow");
    let client = std::thread::spawn(move || gtlsclient(port, &[], &[url]));
    std::thread::sleep(Duration::from_millis(500));
    proxy.signal("TERM");
    let seen = client.join().unwrap();
    assert_eq!(
        seen.statuses,
        vec![200],
        "the request in flight did not finish: {}",
        seen.output
    );
    let log_dir = proxy.dir.clone();
    assert_eq!(proxy.wait(Duration::from_secs(10)), Some(0));
    let log = std::fs::read_to_string(log_dir.join("qproxy.log")).unwrap();
    assert!(log.contains("GOAWAY") && log.contains("drained"), "{log}");
}

#[test]
fn sighup_switches_new_requests_to_the_reloaded_backends() {
    let first = origin(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfirst");
    });
    let second = origin(|mut s| {
        read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nsecond");
    });
    let old = format!("    server one {first}\n");
    let proxy = Proxy::start(&old, "");
    let body = |proxy: &Proxy| {
        let dl = scratch();
        let seen = gtlsclient(
            proxy.port,
            &[&format!("--download={}", dl.display())],
            &[proxy.url("/which")],
        );
        assert_eq!(seen.statuses, vec![200], "{}", seen.output);
        std::fs::read_to_string(dl.join("which")).unwrap()
    };
    assert_eq!(body(&proxy), "first");
    // A broken file is reported and changes nothing.
    proxy.rewrite_servers(&old, "    server one nowhere\n");
    proxy.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(body(&proxy), "first");
    assert!(proxy.log().contains("keeping the running configuration"));
    proxy.rewrite_servers("    server one nowhere\n", &format!("    server two {second}\n"));
    proxy.signal("HUP");
    let start = std::time::Instant::now();
    while !proxy.log().contains("configuration reloaded") {
        assert!(start.elapsed() < Duration::from_secs(5), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(body(&proxy), "second");
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn forwardfor_tells_the_backend_who_asked() {
    let mirror = origin(|mut s| {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if std::io::Read::read(&mut s, &mut b).unwrap_or(0) == 0 {
                return;
            }
            head.push(b[0]);
        }
        let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", head.len());
        let _ = s.write_all(reply.as_bytes());
        let _ = s.write_all(&head);
    });
    let proxy = Proxy::start(&format!("    option forwardfor\n    server m {mirror}\n"), "");
    let dl = scratch();
    let seen = gtlsclient(
        proxy.port,
        &[&format!("--download={}", dl.display())],
        &[proxy.url("/who?x=1")],
    );
    assert_eq!(seen.statuses, vec![200], "{}", seen.output);
    let head = std::fs::read_to_string(dl.join("who?x=1"))
        .or_else(|_| std::fs::read_to_string(dl.join("who")))
        .unwrap();
    assert!(head.starts_with("GET /who?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: localhost:{}\r\n", proxy.port)),
        "{head}"
    );
    assert!(head.contains("x-forwarded-for: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("forwarded: for=127.0.0.1;proto=https;"), "{head}");
    proxy.assert_gauges_return_to_zero();
}

/// Access lines are buffered and flushed once per loop turn: after a graceful stop every request still
/// has its line, in the order the requests were answered, and no line is cut.
#[test]
fn every_request_has_its_access_line_after_a_graceful_stop() {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start(&format!("    server o1 {origin}\n"), "");
    let paths: Vec<String> = (1..=25).map(|n| format!("/bytes/{n}")).collect();
    let sections: Vec<Vec<(&str, &str)>> = paths
        .iter()
        .map(|p| {
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", p.as_str()),
            ]
        })
        .collect();
    let raw = crate::harness::file(
        &scratch(),
        "raw.json",
        serde_json::to_string(&sections).unwrap().as_bytes(),
    );
    let ca = proxy.dir.join("ca.pem").display().to_string();
    let got = crate::harness::aioquic(proxy.port, &["--ca", &ca, "--raw", raw.to_str().unwrap()], &[]);
    assert!(got.iter().all(|r| r.status == Some(200)), "{got:?}");
    proxy.signal("TERM");
    let log_dir = proxy.dir.clone();
    assert_eq!(proxy.wait(Duration::from_secs(10)), Some(0));
    let log = std::fs::read_to_string(log_dir.join("qproxy.log")).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" \"GET localhost /bytes/"))
        .collect();
    let logged: Vec<String> = lines
        .iter()
        .map(|l| {
            l.split(" \"GET localhost ")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(logged, paths, "{log}");
    assert!(
        lines.iter().all(|l| l.ends_with(" --")),
        "every line whole: {lines:?}"
    );
}

#[test]
fn a_queued_request_of_a_closed_connection_never_reaches_the_server() {
    // maxconn 1: the first request holds the server for 1.5 s, the second waits in the queue; the
    // client leaves after 150 ms. Releasing its connection ends the first exchange, which frees the
    // server slot: the queued request must be gone by then, not started for a client that left.
    let origin = counting("held", Duration::from_millis(1500));
    let proxy = Proxy::start(
        &format!(
            "    retries 0\n    timeout server 400ms\n    server s {} maxconn 1\n",
            origin.addr
        ),
        "",
    );
    let ca = proxy.dir.join("ca.pem").display().to_string();
    let got = aioquic(
        proxy.port,
        &["--ca", &ca, "--timeout", "0.15"],
        &[proxy.url("/first"), proxy.url("/second")],
    );
    assert!(
        got.iter().all(|r| r.status.is_none()),
        "the client left before any answer: {got:?}"
    );
    // A started exchange whose connection is gone used to be skipped by its timer: the loop spun with a
    // zero timeout from its deadline (400 ms) until the server answered.
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(proxy.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_ticks(proxy.pid()) - before;
    assert!(spent < 30, "the idle proxy used {spent} CPU ticks in one second");
    let start = std::time::Instant::now();
    while origin.served() < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the first request never reached the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(origin.peak(), 1, "the queued request reached the server too");
    assert_eq!(origin.paths(), vec!["/first".to_string()]);
    proxy.assert_gauges_return_to_zero();
}
