//! `nbthread 2`: connections spread over both workers, every datagram reaches the worker that owns its
//! connection (by the kernel's steering, or handed over in user space), through client port changes.

use h3_client::{run, Options, Rebind, Request};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{gtlsclient, origin_bytes, Proxy};
use crate::origins::counting;
use crate::relay::Relay;

const BODY: usize = 1_000_000;

/// 16 connections one after the other from one quinn endpoint, each moving to a new local port once
/// its handshake is over (a NAT binding that timed out while idle), then downloading 1 MB. Returns the
/// metrics once every gauge is back to zero. (A port change with data in flight is not used: quiche
/// 0.30 never retransmits what was in flight on the old path, cloudflare/quiche#2452.)
fn download_with_port_changes(proxy: &Proxy) -> std::collections::HashMap<String, u64> {
    let origin = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let mut options = Options::new(origin, proxy.dir.join("ca.pem"));
    options.connections = 16;
    options.rebind = Rebind::WhileIdle;
    let reports = run(&options, &[Request::get(format!("/bytes/{BODY}"))]).unwrap();
    assert_eq!(reports.len(), 16);
    for (c, report) in reports.iter().enumerate() {
        assert!(report.rebound, "connection {c} changed its port");
        let a = &report.answers[0];
        assert_eq!((a.status, &a.error), (Some(200), &None), "connection {c}");
        assert!(a.body == origin_bytes(BODY), "connection {c}: body differs");
    }
    proxy.assert_gauges_return_to_zero();
    proxy.metrics()
}

fn origin_servers() -> String {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    format!("    server o1 {origin}\n")
}

#[test]
fn the_kernel_steers_every_datagram_to_its_connections_worker_even_from_one_port() {
    let proxy = Proxy::start(&origin_servers(), "");
    let m = download_with_port_changes(&proxy);
    // Every connection came from the same port as the one before it: only the connection ID tells the
    // kernel where a datagram goes, and it never missed.
    for w in 0..2 {
        assert!(
            m[&format!("qproxy_worker_datagrams_received_total{{worker=\"{w}\"}}")] > 0,
            "worker {w} got no connection: {m:?}"
        );
    }
    assert_eq!(
        m["qproxy_quic_datagrams_handed_off_total{result=\"delivered\"}"],
        0
    );
    assert_eq!(m["qproxy_quic_connections_total"], 16);
    assert!(proxy.log().contains("workers=2"), "{}", proxy.log());
}

#[test]
fn without_kernel_steering_misrouted_datagrams_are_handed_to_their_owner() {
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        "    nbthread 2\n    tune.quic.disable-kernel-steering\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let m = download_with_port_changes(&proxy);
    assert!(
        m["qproxy_quic_datagrams_handed_off_total{result=\"delivered\"}"] > 0,
        "the kernel's hash sent no datagram to the wrong worker: {m:?}"
    );
    assert_eq!(m["qproxy_quic_datagrams_handed_off_total{result=\"dropped\"}"], 0);
    assert_eq!(m["qproxy_quic_connections_total"], 16);
}

/// `maxconn` counts every worker's requests, and a slot one worker frees may be another's to take:
/// twelve connections (over both workers, by their random IDs) queue for a server that takes one request
/// at a time, and every request is served long before `timeout queue`.
#[test]
fn a_server_slot_freed_on_one_worker_serves_the_queue_of_the_other() {
    let slow = counting("slow", Duration::from_millis(100));
    let proxy = Proxy::start(
        &format!("    timeout queue 20s\n    server s {} maxconn 1\n", slow.addr),
        "",
    );
    // gtlsclient ends each request stream with its header section (quinn's h3 sends the FIN apart,
    // which the proxy forwards as an empty chunked body that this origin would count as a request).
    let started = Instant::now();
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let (port, url) = (proxy.port, proxy.url(&format!("/q{i}")));
            std::thread::spawn(move || gtlsclient(port, &[], &[url]))
        })
        .collect();
    for client in clients {
        let seen = client.join().unwrap();
        assert_eq!(seen.statuses, vec![200], "{}", seen.output);
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a queue waited for its own worker to free a slot"
    );
    assert_eq!(slow.peak(), 1, "maxconn 1 held over both workers");
    let m = proxy.metrics();
    for w in 0..2 {
        assert!(m[&format!("qproxy_worker_datagrams_received_total{{worker=\"{w}\"}}")] > 0);
    }
    proxy.assert_gauges_return_to_zero();
}

/// `quic-lb-key`: the IDs on the wire are QUIC-LB's encrypted mode (17 bytes, the server ID sealed in one
/// AES block that a balancer with the key opens), and the kernel still steers every datagram to its
/// worker by the five bits of the first octet, from one client port.
#[test]
fn encrypted_connection_ids_carry_the_server_id_sealed_and_still_steer_to_workers() {
    use aes::cipher::{generic_array::GenericArray, BlockDecrypt, KeyInit};

    const KEY: &str = "8f95f09245765f80256934e50c66207f";
    let proxy = Proxy::start_with(
        &origin_servers(),
        "",
        &format!("    nbthread 2\n    server-id 5a17c3\n    quic-lb-key {KEY}\n"),
        "    timeout connect 2s\n    timeout server 2s\n",
    );
    let seen: Arc<Mutex<HashSet<Vec<u8>>>> = Arc::default();
    let tap = {
        let seen = seen.clone();
        move |d: &[u8]| {
            if d.len() > 18 && d[0] & 0x80 == 0 {
                seen.lock().unwrap().insert(d[1..18].to_vec());
            }
            None
        }
    };
    let relay = Relay::start(format!("127.0.0.1:{}", proxy.port).parse().unwrap(), tap);
    let mut options = Options::new(relay.addr, proxy.dir.join("ca.pem"));
    options.connections = 16;
    let reports = run(&options, &[Request::get("/bytes/20000")]).unwrap();
    drop(relay);
    for a in reports.iter().flat_map(|r| &r.answers) {
        assert_eq!((a.status, &a.error), (Some(200), &None));
        assert!(a.body == origin_bytes(20_000));
    }
    let key: Vec<u8> = (0..32)
        .step_by(2)
        .map(|i| u8::from_str_radix(&KEY[i..i + 2], 16).unwrap())
        .collect();
    let cipher = aes::Aes128::new(GenericArray::from_slice(&key));
    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 16, "one ID per connection at least: {}", seen.len());
    for cid in seen.iter() {
        assert_eq!(cid[0] >> 5, 0, "config rotation 0: {cid:02x?}");
        assert_ne!(&cid[1..4], &[0x5a, 0x17, 0xc3], "the server ID is not in clear");
        let mut block = GenericArray::clone_from_slice(&cid[1..17]);
        cipher.decrypt_block(&mut block);
        assert_eq!(
            &block[..3],
            &[0x5a, 0x17, 0xc3],
            "a balancer with the key finds the server: {cid:02x?}"
        );
    }
    let m = proxy.metrics();
    for w in 0..2 {
        assert!(
            m[&format!("qproxy_worker_datagrams_received_total{{worker=\"{w}\"}}")] > 0,
            "worker {w} got no connection: {m:?}"
        );
    }
    assert_eq!(
        m["qproxy_quic_datagrams_handed_off_total{result=\"delivered\"}"], 0,
        "the kernel read the worker from the sealed ID's first octet"
    );
    proxy.assert_gauges_return_to_zero();
}
