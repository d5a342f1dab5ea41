//! Limits on what clients may open: the global `maxconn`.

use std::time::{Duration, Instant};

use h3_client::{run, Options, Request};

use crate::harness::Proxy;

#[test]
fn global_maxconn_refuses_one_more_connection_until_one_closes() {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start_with(
        &format!("    server o1 {origin}\n"),
        "",
        "    maxconn 2\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let server = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let options = Options::new(server, proxy.dir.join("ca.pem"));
    // Two connections, each held open by a pause between its two requests.
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let mut held = options.clone();
            held.pause_between = Some(Duration::from_secs(3));
            std::thread::spawn(move || run(&held, &[Request::get("/bytes/10"), Request::get("/bytes/10")]))
        })
        .collect();
    let started = Instant::now();
    while proxy.metrics()["qproxy_quic_connections"] < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut third = options.clone();
    third.timeout = Duration::from_millis(1500);
    assert!(
        run(&third, &[Request::get("/bytes/10")]).is_err(),
        "a third connection was accepted over maxconn 2"
    );
    let m = proxy.metrics();
    assert!(m["qproxy_quic_refused_connections_total"] >= 1, "{m:?}");
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
