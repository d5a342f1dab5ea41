//! Process life: configuration check, graceful stop with requests in flight.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::harness::{gtlsclient, origin, read_head, scratch, Proxy};

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

    let (_, pem) = qproxy::demo::write_certificates(&dir).unwrap();
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
