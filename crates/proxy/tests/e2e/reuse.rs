//! Backend connection reuse (`http-reuse`, `pool-*`): requests go on idle keep-alive connections, a
//! reused connection the server had closed costs the client nothing when the request may be sent again,
//! and the purge closes idle connections.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{aioquic, file, origin, read_head, scratch, H3Result, Proxy};

/// Requests the closing origin saw, over all its connections.
static SEEN_BY_CLOSER: AtomicUsize = AtomicUsize::new(0);

/// Answers the first request of each connection (keep-alive), then reads the second and closes without
/// a word: a server that closed an idle connection just as a request arrived on it.
fn answers_once_then_closes(mut s: TcpStream) {
    if read_head(&mut s).is_none() {
        return;
    }
    SEEN_BY_CLOSER.fetch_add(1, Ordering::SeqCst);
    if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .is_err()
    {
        return;
    }
    if read_head(&mut s).is_some() {
        SEEN_BY_CLOSER.fetch_add(1, Ordering::SeqCst);
    }
}

/// Answers each request, and closes a connection that stays idle for 200 ms (nginx's
/// `keepalive_timeout`, shortened).
fn closes_when_idle(s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    keeps_alive(s);
}

/// Keep-alive answers to every request, forever.
fn keeps_alive(mut s: TcpStream) {
    while read_head(&mut s).is_some() {
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn ca(proxy: &Proxy) -> String {
    proxy.dir.join("ca.pem").display().to_string()
}

/// One request after the other on one client connection.
fn in_turn(proxy: &Proxy, requests: &[(&str, &str)]) -> Vec<H3Result> {
    let sections: Vec<Vec<(&str, &str)>> = requests
        .iter()
        .map(|(method, path)| {
            vec![
                (":method", *method),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", *path),
            ]
        })
        .collect();
    let raw = file(
        &scratch(),
        "raw.json",
        serde_json::to_string(&sections).unwrap().as_bytes(),
    );
    aioquic(
        proxy.port,
        &["--ca", &ca(proxy), "--raw", raw.to_str().unwrap()],
        &[],
    )
}

/// Waits (5 s at most) until the pool holds no idle connection; `why` names what failed otherwise.
fn wait_until_the_pool_is_empty(proxy: &Proxy, why: &str) {
    let start = Instant::now();
    while proxy.metrics()["qproxy_backend_sockets{state=\"idle\"}"] != 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pool_events(proxy: &Proxy, event: &str) -> u64 {
    proxy.metrics()[&format!("qproxy_backend_connections_total{{event=\"{event}\"}}")]
}

#[test]
fn a_get_on_a_connection_the_server_closed_goes_again_and_a_post_gets_502() {
    let addr = origin(answers_once_then_closes);
    // No retries: only the reuse rule may send a request twice.
    let proxy = Proxy::start(&format!("    retries 0\n    server o1 {addr}\n"), "");
    let got = in_turn(&proxy, &[("GET", "/a"), ("GET", "/b")]);
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(200), Some(200)],
        "{got:?}"
    );
    // /a, /b on the reused connection (closed), /b again on a new one.
    assert_eq!(SEEN_BY_CLOSER.load(Ordering::SeqCst), 3);
    assert_eq!(pool_events(&proxy, "closed_by_server"), 1);
    assert_eq!(pool_events(&proxy, "reused"), 1);

    // A POST may have been acted on before the server closed: never sent twice, 502 (RFC 9110, 9.2.2).
    let got = in_turn(&proxy, &[("GET", "/c"), ("POST", "/d")]);
    assert_eq!(got[0].status, Some(200), "{got:?}");
    assert_eq!(got[1].status, Some(502), "{got:?}");
    assert_eq!(
        SEEN_BY_CLOSER.load(Ordering::SeqCst),
        5,
        "the POST reached the server once"
    );
    assert_eq!(pool_events(&proxy, "closed_by_server"), 1);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn reuse_modes_and_the_purge() {
    let addr = origin(keeps_alive);
    let proxy = Proxy::start(
        &format!("    http-reuse safe\n    server o1 {addr} pool-purge-delay 300ms\n"),
        "",
    );
    let got = in_turn(&proxy, &[("GET", "/1"), ("GET", "/2"), ("GET", "/3")]);
    assert!(got.iter().all(|r| r.status == Some(200)), "{got:?}");
    // safe: the first request of the client connection opens a connection, the next two reuse it.
    assert_eq!(
        (pool_events(&proxy, "new"), pool_events(&proxy, "reused")),
        (1, 2)
    );
    // The purge closes the idle connection within a few delays.
    wait_until_the_pool_is_empty(&proxy, "idle connections never purged");
    assert_eq!(pool_events(&proxy, "purged"), 1);
    proxy.assert_gauges_return_to_zero();

    let never = Proxy::start(&format!("    http-reuse never\n    server o1 {addr}\n"), "");
    let got = in_turn(&never, &[("GET", "/1"), ("GET", "/2"), ("GET", "/3")]);
    assert!(got.iter().all(|r| r.status == Some(200)), "{got:?}");
    assert_eq!(
        (pool_events(&never, "new"), pool_events(&never, "reused")),
        (3, 0)
    );
    never.assert_gauges_return_to_zero();
}

#[test]
fn an_idle_connection_the_server_closes_leaves_the_pool_at_once() {
    let addr = origin(closes_when_idle);
    let proxy = Proxy::start(
        &format!("    retries 0\n    server o1 {addr} pool-purge-delay 60s\n"),
        "",
    );
    let got = in_turn(&proxy, &[("GET", "/1"), ("GET", "/2")]);
    assert!(got.iter().all(|r| r.status == Some(200)), "{got:?}");
    // No request comes: only the socket's own event can tell the pool the server closed it.
    wait_until_the_pool_is_empty(&proxy, "the pool kept a connection the server closed");
    assert!(pool_events(&proxy, "closed_idle") >= 1);
    // A POST then goes on a new connection, not on the closed one.
    let opened = pool_events(&proxy, "new");
    let got = in_turn(&proxy, &[("POST", "/3")]);
    assert_eq!(got[0].status, Some(200), "{got:?}");
    assert_eq!(pool_events(&proxy, "new"), opened + 1);
    proxy.assert_gauges_return_to_zero();
}
