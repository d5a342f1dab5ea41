//! Balancing, health checks, queueing and retries through the real binary, with gtlsclient as the client,
//! and the metrics read back through a real Prometheus text parser.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::harness::{free_tcp_port, gtlsclient, read_head, scratch, Proxy, Seen};
use crate::origins::{counting, ServerProcess};

/// `n` GETs of `path` on one connection (gtlsclient repeats the URL list).
fn gets(proxy: &Proxy, n: usize, paths: &[String]) -> Seen {
    let urls: Vec<String> = paths.iter().map(|p| proxy.url(p)).collect();
    gtlsclient(proxy.port, &["-n", &n.to_string()], &urls)
}

fn all_ok(seen: &Seen, n: usize) {
    let ok = seen.statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(
        ok,
        n,
        "{} of {n} were 200: {:?}",
        ok,
        &seen.output[seen.output.len().saturating_sub(2000)..]
    );
}

#[test]
fn weights_1_2_3_split_6000_requests_within_2_percent_and_the_metrics_agree() {
    let origins = [
        counting("s1", Duration::ZERO),
        counting("s2", Duration::ZERO),
        counting("s3", Duration::ZERO),
    ];
    let servers: String = origins
        .iter()
        .enumerate()
        .map(|(i, o)| format!("    server s{} {} weight {}\n", i + 1, o.addr, i + 1))
        .collect();
    let proxy = Proxy::start(&format!("    balance roundrobin\n{servers}"), "");
    all_ok(&gets(&proxy, 6000, &["/".to_string()]), 6000);
    for (i, o) in origins.iter().enumerate() {
        let share = o.served() as f64 / 6000.0;
        let want = (i + 1) as f64 / 6.0;
        assert!(
            (share - want).abs() <= 0.02,
            "s{}: {share:.3}, want {want:.3}",
            i + 1
        );
    }
    proxy.assert_gauges_return_to_zero();
    let m = proxy.metrics();
    for (i, o) in origins.iter().enumerate() {
        let key = format!(
            "qproxy_server_http_responses_total{{code=\"2xx\",proxy=\"app\",server=\"s{}\"}}",
            i + 1
        );
        assert_eq!(m[&key], o.served() as u64, "{key}");
        let current = format!(
            "qproxy_server_current_requests{{proxy=\"app\",server=\"s{}\"}}",
            i + 1
        );
        assert_eq!(m[&current], 0);
        assert_eq!(
            m[&format!("qproxy_server_up{{proxy=\"app\",server=\"s{}\"}}", i + 1)],
            1
        );
    }
    assert_eq!(
        m["qproxy_frontend_http_responses_total{code=\"2xx\",proxy=\"web\"}"],
        6000
    );
    assert_eq!(
        m["qproxy_backend_http_responses_total{code=\"2xx\",proxy=\"app\"}"],
        6000
    );
    assert_eq!(
        m["qproxy_backend_response_time_seconds_count{proxy=\"app\"}"],
        6000
    );
    assert_eq!(m["qproxy_backend_current_queue{proxy=\"app\"}"], 0);
    assert_eq!(m["qproxy_quic_handshakes_total{result=\"ok\"}"], 1);
    assert_eq!(m["qproxy_quic_connections_total"], 1);
    assert_eq!(m["qproxy_stale_wakeups_total"], 0);
}

#[test]
fn leastconn_sends_fewer_requests_to_a_slow_server() {
    let slow = counting("slow", Duration::from_millis(200));
    let fast = counting("fast", Duration::ZERO);
    let proxy = Proxy::start(
        &format!(
            "    balance leastconn\n    server slow {}\n    server fast {}\n",
            slow.addr, fast.addr
        ),
        "",
    );
    all_ok(&gets(&proxy, 300, &["/".to_string()]), 300);
    // Round robin would give the slow server half; leastconn gives it what it can finish.
    assert!(
        slow.served() * 4 < fast.served(),
        "slow {} fast {}",
        slow.served(),
        fast.served()
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn uri_hashing_keeps_each_path_on_one_server() {
    let origins = [
        counting("a", Duration::ZERO),
        counting("b", Duration::ZERO),
        counting("c", Duration::ZERO),
    ];
    let servers: String = origins
        .iter()
        .zip(["a", "b", "c"])
        .map(|(o, name)| format!("    server {name} {}\n", o.addr))
        .collect();
    let proxy = Proxy::start(&format!("    balance uri\n{servers}"), "");
    let paths: Vec<String> = (0..40).map(|i| format!("/item/{i}?v={}", i % 3)).collect();
    all_ok(&gets(&proxy, 160, &paths), 160);
    let mut owner: HashMap<String, usize> = HashMap::new();
    for (i, o) in origins.iter().enumerate() {
        for p in o.paths() {
            let path = p.split('?').next().unwrap().to_string();
            let previous = owner.insert(path.clone(), i);
            assert!(previous.is_none_or(|s| s == i), "{path} went to two servers");
        }
    }
    assert_eq!(owner.len(), 40);
    let used: HashSet<usize> = owner.values().copied().collect();
    assert_eq!(used.len(), 3, "40 paths should reach all three servers");
    proxy.assert_gauges_return_to_zero();
}

/// Polls the JSON stats until `server` is in `state`; returns how long it took.
fn wait_state(proxy: &Proxy, server: &str, state: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let view = proxy.stats_json();
        let servers = view["backends"][0]["servers"].as_array().unwrap().clone();
        let s = servers.iter().find(|s| s["name"] == server).unwrap();
        if s["state"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{server} not {state} after {limit:?}: {s}\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_server_goes_down_traffic_avoids_it_and_it_comes_back_after_rise() {
    let dir = scratch();
    std::fs::write(dir.join("health"), "ok").unwrap();
    std::fs::write(dir.join("index.html"), "hello").unwrap();
    let (p1, p2) = (free_tcp_port(), free_tcp_port());
    let s1 = ServerProcess::start(p1, &dir);
    let s2 = ServerProcess::start(p2, &dir);
    let (inter, rise, fall) = (Duration::from_millis(300), 2u32, 3u32);
    // http.server listens with a backlog of 5: maxconn keeps the burst in qproxy's queue instead.
    let proxy = Proxy::start(
        &format!(
            "    option httpchk GET /health\n    http-check expect status 200\n    default-server check inter {}ms rise {rise} fall {fall} maxconn 4\n    server s1 127.0.0.1:{p1}\n    server s2 127.0.0.1:{p2}\n",
            inter.as_millis()
        ),
        "",
    );
    all_ok(&gets(&proxy, 20, &["/index.html".to_string()]), 20);

    s2.kill();
    // fall failed checks, plus up to one interval before the first of them and scheduling slack.
    let took = wait_state(&proxy, "s2", "DOWN", inter * (fall + 1) + Duration::from_secs(2));
    assert!(took <= inter * (fall + 1) + Duration::from_secs(2));
    assert!(proxy.log().contains("server is DOWN"), "{}", proxy.log());
    all_ok(&gets(&proxy, 50, &["/index.html".to_string()]), 50);

    s1.kill();
    wait_state(&proxy, "s1", "DOWN", inter * (fall + 1) + Duration::from_secs(2));
    let started = Instant::now();
    let seen = gets(&proxy, 5, &["/index.html".to_string()]);
    assert_eq!(seen.statuses, vec![503; 5], "no server UP: 503 at once");
    assert!(started.elapsed() < Duration::from_secs(5));

    let _s1 = ServerProcess::start(p1, &dir);
    let _s2 = ServerProcess::start(p2, &dir);
    wait_state(&proxy, "s1", "UP", inter * (rise + 1) + Duration::from_secs(2));
    wait_state(&proxy, "s2", "UP", inter * (rise + 1) + Duration::from_secs(2));
    all_ok(&gets(&proxy, 20, &["/index.html".to_string()]), 20);
    let m = proxy.metrics();
    assert_eq!(
        m["qproxy_server_down_transitions_total{proxy=\"app\",server=\"s2\"}"],
        1
    );
    assert!(
        m["qproxy_server_check_results_total{proxy=\"app\",result=\"failed\",server=\"s2\"}"]
            >= u64::from(fall)
    );
    assert_eq!(m["qproxy_backend_active_servers{proxy=\"app\"}"], 2);
    assert_eq!(
        m["qproxy_backend_http_responses_total{code=\"5xx\",proxy=\"app\"}"],
        5
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn backup_servers_serve_only_while_the_active_one_is_down_and_checks_use_its_port() {
    let active = counting("active", Duration::ZERO);
    let (b1, b2) = (counting("b1", Duration::ZERO), counting("b2", Duration::ZERO));
    // The active server's checks go to a separate health port, served by a process we can kill.
    let dir = scratch();
    let health_port = free_tcp_port();
    let health = ServerProcess::start(health_port, &dir);
    let (inter, rise, fall) = (Duration::from_millis(200), 2u32, 2u32);
    let proxy = Proxy::start(
        &format!(
            "    server active {} check port {health_port} inter {}ms rise {rise} fall {fall}
    server b1 {} backup
    server b2 {} backup
",
            active.addr,
            inter.as_millis(),
            b1.addr,
            b2.addr
        ),
        "",
    );
    let get = |n: usize| all_ok(&gets(&proxy, n, &["/".to_string()]), n);
    get(20);
    assert_eq!((active.served(), b1.served(), b2.served()), (20, 0, 0));
    let m = proxy.metrics();
    assert_eq!(m["qproxy_backend_active_servers{proxy=\"app\"}"], 1);
    assert_eq!(m["qproxy_backend_backup_servers{proxy=\"app\"}"], 2);

    // Its own port still answers, but its health port does not: DOWN, and the first backup takes over.
    health.kill();
    wait_state(
        &proxy,
        "active",
        "DOWN",
        inter * (fall + 1) + Duration::from_secs(2),
    );
    get(20);
    assert_eq!((active.served(), b1.served(), b2.served()), (20, 20, 0));
    assert_eq!(proxy.metrics()["qproxy_backend_active_servers{proxy=\"app\"}"], 0);

    let _health = ServerProcess::start(health_port, &dir);
    wait_state(
        &proxy,
        "active",
        "UP",
        inter * (rise + 1) + Duration::from_secs(2),
    );
    get(20);
    assert_eq!((active.served(), b1.served(), b2.served()), (40, 20, 0));
    let view = proxy.stats_json();
    assert_eq!(view["backends"][0]["servers"][1]["backup"], true);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn allbackups_spreads_over_every_backup_while_no_active_server_is_up() {
    let (b1, b2) = (counting("b1", Duration::ZERO), counting("b2", Duration::ZERO));
    let refusing = free_tcp_port(); // nothing listens there: the active server goes DOWN
    let proxy = Proxy::start(
        &format!(
            "    option allbackups
    server active 127.0.0.1:{refusing} check inter 100ms fall 1
    server b1 {} backup
    server b2 {} backup
",
            b1.addr, b2.addr
        ),
        "",
    );
    wait_state(&proxy, "active", "DOWN", Duration::from_secs(5));
    all_ok(&gets(&proxy, 40, &["/".to_string()]), 40);
    assert_eq!(
        (b1.served(), b2.served()),
        (20, 20),
        "round robin over both backups"
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn a_refusing_server_costs_no_failed_request_with_retries_and_redispatch() {
    let up = counting("up", Duration::ZERO);
    let refusing = free_tcp_port(); // nothing listens there
    let proxy = Proxy::start(
        &format!(
            "    retries 3\n    option redispatch\n    server down 127.0.0.1:{refusing}\n    server up {}\n",
            up.addr
        ),
        "",
    );
    all_ok(&gets(&proxy, 100, &["/".to_string()]), 100);
    assert_eq!(up.served(), 100);
    let m = proxy.metrics();
    assert!(m["qproxy_backend_retries_total{proxy=\"app\"}"] >= 1);
    assert_eq!(
        m["qproxy_backend_retries_total{proxy=\"app\"}"],
        m["qproxy_backend_redispatches_total{proxy=\"app\"}"]
    );
    assert!(m["qproxy_server_connect_errors_total{proxy=\"app\",server=\"down\"}"] >= 1);
    assert_eq!(
        m["qproxy_frontend_http_responses_total{code=\"5xx\",proxy=\"web\"}"],
        0
    );
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn without_redispatch_a_retry_stays_on_its_server_and_fails() {
    let refusing = free_tcp_port();
    let proxy = Proxy::start(
        &format!("    retries 2\n    server down 127.0.0.1:{refusing}\n"),
        "",
    );
    let seen = gets(&proxy, 3, &["/".to_string()]);
    assert_eq!(seen.statuses, vec![503; 3]);
    let m = proxy.metrics();
    assert_eq!(m["qproxy_backend_retries_total{proxy=\"app\"}"], 6);
    assert_eq!(m["qproxy_backend_redispatches_total{proxy=\"app\"}"], 0);
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn maxconn_queues_requests_and_timeout_queue_answers_503() {
    let slow = counting("slow", Duration::from_millis(300));
    let proxy = Proxy::start(&format!("    server s {} maxconn 1\n", slow.addr), "");
    all_ok(&gets(&proxy, 4, &["/".to_string()]), 4);
    assert_eq!(slow.served(), 4);
    assert_eq!(slow.peak(), 1, "maxconn 1 holds at the origin");
    proxy.assert_gauges_return_to_zero();

    let slow = counting("slow", Duration::from_millis(600));
    let proxy = Proxy::start(
        &format!("    timeout queue 100ms\n    server s {} maxconn 1\n", slow.addr),
        "",
    );
    let seen = gets(&proxy, 4, &["/".to_string()]);
    let mut statuses = seen.statuses.clone();
    statuses.sort();
    assert_eq!(statuses, vec![200, 503, 503, 503], "{}", seen.output);
    let m = proxy.metrics();
    assert_eq!(m["qproxy_backend_current_queue{proxy=\"app\"}"], 0);
    let queued = |log: &str| log.lines().filter(|l| l.trim_end().ends_with(" sQ")).count();
    let log = proxy.log_when(|l| queued(l) >= 3);
    let queued_out = queued(&log);
    assert_eq!(queued_out, 3, "queue timeouts are logged as sQ:\n{log}");
    proxy.assert_gauges_return_to_zero();
}

#[test]
fn top_shows_servers_and_states() {
    let up = counting("up", Duration::ZERO);
    let proxy = Proxy::start(&format!("    server web1 {}\n", up.addr), "");
    all_ok(&gets(&proxy, 10, &["/".to_string()]), 10);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qproxy"))
        .args([
            "top",
            "--once",
            "--stats",
            &format!("http://127.0.0.1:{}/stats", proxy.stats),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.lines().any(|l| l.contains("web1") && l.contains("UP")),
        "{text}"
    );
    assert!(text.contains("out-of-order 0"), "{text}");
}

#[test]
fn observe_layer4_takes_a_refusing_server_down_from_traffic_alone() {
    let up = counting("up", Duration::ZERO);
    let refusing = free_tcp_port();
    // Checks every 30 s: within this test only traffic can take the server down.
    let proxy = Proxy::start(
        &format!(
            "    retries 3\n    option redispatch\n    server down 127.0.0.1:{refusing} check inter 30s observe layer4 error-limit 3\n    server up {}\n",
            up.addr
        ),
        "",
    );
    all_ok(&gets(&proxy, 30, &["/".to_string()]), 30);
    wait_state(&proxy, "down", "DOWN", Duration::from_secs(5));
    assert!(
        proxy.log().contains("consecutive errors seen in traffic"),
        "{}",
        proxy.log()
    );
    let m = proxy.metrics();
    assert_eq!(m["qproxy_server_up{proxy=\"app\",server=\"down\"}"], 0);
    assert_eq!(
        m["qproxy_server_down_transitions_total{proxy=\"app\",server=\"down\"}"],
        1
    );
    // DOWN: no more attempts on it, so its connect errors stop at what took it down.
    let errors = m["qproxy_server_connect_errors_total{proxy=\"app\",server=\"down\"}"];
    all_ok(&gets(&proxy, 30, &["/".to_string()]), 30);
    assert_eq!(
        proxy.metrics()["qproxy_server_connect_errors_total{proxy=\"app\",server=\"down\"}"],
        errors
    );
    assert_eq!(up.served(), 60);
    proxy.assert_gauges_return_to_zero();
}

/// An origin that reads each request head, then resets the connection without a response byte; it
/// counts the requests it saw by method.
fn resetting_origin() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, usize>::new()));
    let counts = seen.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let head = read_head(&mut s).unwrap_or_default();
            let method = head.split(' ').next().unwrap_or("").to_string();
            *counts.lock().unwrap().entry(method).or_default() += 1;
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        }
    });
    (addr, seen)
}

#[test]
fn a_reset_before_the_response_is_retried_for_a_get_but_not_once_a_body_flowed_nor_for_a_post() {
    let (resetting, seen) = resetting_origin();
    let good = counting("good", Duration::ZERO);
    let proxy = Proxy::start(
        &format!(
            "    retries 3\n    option redispatch\n    server flaky {resetting}\n    server good {}\n",
            good.addr
        ),
        "",
    );
    all_ok(&gets(&proxy, 20, &["/".to_string()]), 20);
    let gets_reset = seen.lock().unwrap().get("GET").copied().unwrap_or(0);
    assert!(gets_reset >= 1, "the flaky server saw no GET");

    // GETs with a body (gtlsclient -d): idempotent, but the body has started to flow: never retried.
    let body = crate::harness::file(&proxy.dir, "body", &[b'x'; 1000]);
    let with_body = gtlsclient(
        proxy.port,
        &["-n", "10", "-d", body.to_str().unwrap()],
        &[proxy.url("/")],
    );
    let reset_with_body = seen.lock().unwrap()["GET"] - gets_reset;
    let bad_gateway = with_body.statuses.iter().filter(|s| **s == 502).count();
    assert!(reset_with_body >= 1, "the flaky server saw no GET with a body");
    assert_eq!(bad_gateway, reset_with_body, "{:?}", with_body.statuses);
    assert_eq!(
        with_body.statuses.iter().filter(|s| **s == 200).count() + bad_gateway,
        10
    );

    // POSTs (aioquic): not idempotent, never retried even without a body.
    let urls: Vec<String> = (0..10).map(|_| proxy.url("/")).collect();
    let ca = proxy.dir.join("ca.pem");
    let posts = crate::harness::aioquic(
        proxy.port,
        &["--ca", ca.to_str().unwrap(), "--method", "POST"],
        &urls,
    );
    let reset_posts = seen.lock().unwrap().get("POST").copied().unwrap_or(0);
    let bad_gateway = posts.iter().filter(|r| r.status == Some(502)).count();
    assert!(reset_posts >= 1, "the flaky server saw no POST");
    assert_eq!(bad_gateway, reset_posts);
    assert_eq!(
        posts.iter().filter(|r| r.status == Some(200)).count() + bad_gateway,
        10
    );
    let m = proxy.metrics();
    assert_eq!(
        m["qproxy_backend_retries_total{proxy=\"app\"}"],
        gets_reset as u64
    );
    proxy.assert_gauges_return_to_zero();
}
