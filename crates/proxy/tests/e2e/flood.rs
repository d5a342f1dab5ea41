//! The edge under attack, all at once: 100,000 random datagrams (garbage, short headers with unknown
//! connection IDs, Initial-shaped datagrams that do not decrypt), a handshake flood of real Initials
//! that never finish, and a rapid-reset client, while a normal client keeps opening connections and
//! fetching. The normal client must be served throughout, and everything the attack opened must be
//! gone afterwards. The numbers are printed (`-- --nocapture`); only what must hold is asserted.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use h3_client::{run, Options, Request};

use crate::harness::{cpu_ticks, origin_bytes, rapid_reset, Proxy};

const RANDOM_DATAGRAMS: usize = 100_000;
const HANDSHAKE_FLOOD: usize = 2_000;

/// One random datagram of three kinds: pure garbage, a short header with a random connection ID, or an
/// Initial of QUIC v1 at the minimum size whose protected payload is garbage.
fn random_datagram(rng: &mut fastrand::Rng) -> Vec<u8> {
    match rng.u8(..3) {
        0 => (0..rng.usize(1..1400)).map(|_| rng.u8(..)).collect(),
        1 => {
            let mut d = vec![0x40 | rng.u8(..0x40)];
            d.extend((0..rng.usize(17..1200)).map(|_| rng.u8(..)));
            d
        }
        _ => {
            let mut d = vec![0xc0 | rng.u8(..0x10), 0, 0, 0, 1, 16];
            d.extend((0..16).map(|_| rng.u8(..)));
            d.push(8);
            d.extend((0..8).map(|_| rng.u8(..)));
            d.push(0); // no token
            d.extend([0x44, 0xb0]); // length 1200
            d.resize(1200, 0);
            for b in &mut d[30..] {
                *b = rng.u8(..);
            }
            d
        }
    }
}

fn flood_datagrams(server: SocketAddr) -> usize {
    let mut rng = fastrand::Rng::with_seed(7);
    let sockets: Vec<UdpSocket> = (0..8).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut sent = 0;
    for i in 0..RANDOM_DATAGRAMS {
        if sockets[i % sockets.len()]
            .send_to(&random_datagram(&mut rng), server)
            .is_ok()
        {
            sent += 1;
        }
        // Bounded pace: about 50,000 per second, so the kernel's queue (not qproxy) is not what drops.
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sent
}

/// Real client Initials (quiche's), each from its own connection ID, that never go further.
fn flood_handshakes(server: SocketAddr) -> usize {
    let mut config = quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap();
    config.set_application_protos(&[b"h3"]).unwrap();
    config.verify_peer(false);
    let sockets: Vec<UdpSocket> = (0..50).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let mut out = [0u8; 1500];
    let mut sent = 0;
    for i in 0..HANDSHAKE_FLOOD {
        let socket = &sockets[i % sockets.len()];
        let scid: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
        let scid = quiche::ConnectionId::from_ref(&scid);
        let local = socket.local_addr().unwrap();
        let mut conn = quiche::connect(Some("localhost"), &scid, local, server, &mut config).unwrap();
        let (n, _) = conn.send(&mut out).unwrap();
        if socket.send_to(&out[..n], server).is_ok() {
            sent += 1;
        }
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sent
}

/// What the normal client saw: each fetch on a new connection (so every handshake meets the flood).
#[derive(Default)]
struct Served {
    ok: usize,
    failed: Vec<String>,
    latencies: Vec<Duration>,
}

fn normal_client(options: &Options, attack_over: &AtomicBool) -> Served {
    let want = origin_bytes(4096);
    let mut served = Served::default();
    // At least ten fetches, and on until the attack is over (or a minute: an attacker thread that
    // panicked never says it is over, and the scope would wait for this one forever).
    let began = Instant::now();
    while (served.ok + served.failed.len() < 10 || !attack_over.load(Relaxed))
        && began.elapsed() < Duration::from_secs(60)
    {
        let start = Instant::now();
        match run(options, &[Request::get("/bytes/4096")]) {
            Ok(reports) => {
                let a = &reports[0].answers[0];
                if a.status == Some(200) && a.error.is_none() && a.body == want {
                    served.ok += 1;
                    served.latencies.push(start.elapsed());
                } else {
                    served.failed.push(format!("{:?} {:?}", a.status, a.error));
                }
            }
            Err(e) => served.failed.push(e.to_string()),
        }
    }
    served
}

#[test]
fn a_flood_of_garbage_handshakes_and_rapid_resets_leaves_a_normal_client_served_throughout() {
    let origin = qproxy::tools::demo::spawn_origin("127.0.0.1:0".parse().unwrap()).unwrap();
    let proxy = Proxy::start_with(
        &format!("    server o1 {origin}\n"),
        "",
        "    tune.quic.fe.sec.glitches-threshold 100\n    tune.quic.fe.max-idle-timeout 10s\n",
        "    timeout connect 2s\n    timeout server 2s\n    timeout client-hs 2s\n",
    );
    let server: SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let mut options = Options::new(server, proxy.dir.join("ca.pem"));
    options.timeout = Duration::from_secs(5);
    let cpu_before = cpu_ticks(proxy.pid());
    let attack_over = AtomicBool::new(false);
    let start = Instant::now();
    let (served, datagrams, initials, reset_report, attack_time) = std::thread::scope(|s| {
        let client = s.spawn(|| normal_client(&options, &attack_over));
        let datagrams = s.spawn(|| flood_datagrams(server));
        let initials = s.spawn(|| flood_handshakes(server));
        let reset_report = rapid_reset(&proxy, 2000);
        let (datagrams, initials) = (datagrams.join().unwrap(), initials.join().unwrap());
        let attack_time = start.elapsed();
        attack_over.store(true, Relaxed);
        (
            client.join().unwrap(),
            datagrams,
            initials,
            reset_report,
            attack_time,
        )
    });
    let cpu = Duration::from_millis((cpu_ticks(proxy.pid()) - cpu_before) * 10);
    let m = proxy.metrics();
    let mut latencies = served.latencies.clone();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q) as usize)
            .copied()
    };
    eprintln!(
        "flood: {datagrams} random datagrams and {initials} handshake Initials in {attack_time:.2?}, \
         rapid reset {reset_report}; qproxy CPU {cpu:?}; stateless resets {}/{} (sent/limited), \
         retries sent {}, glitch closes {}, connections accepted {}; normal client: {} served, {} failed, \
         latency p50 {:?} max {:?}",
        m["qproxy_quic_stateless_resets_total{result=\"sent\"}"],
        m["qproxy_quic_stateless_resets_total{result=\"limited\"}"],
        m["qproxy_quic_retries_total{result=\"sent\"}"],
        m["qproxy_quic_glitch_closes_total"],
        m["qproxy_quic_connections_total"],
        served.ok,
        served.failed.len(),
        at(0.5),
        at(1.0),
    );
    assert!(
        served.failed.is_empty(),
        "the normal client was refused: {:?}",
        served.failed
    );
    assert!(served.ok >= 10);
    assert_eq!(datagrams, RANDOM_DATAGRAMS);
    assert_eq!(
        reset_report["closed_with"], 0x107,
        "the rapid-reset client was not closed: {reset_report}"
    );
    assert!(
        m["qproxy_quic_retries_total{result=\"sent\"}"] > 0,
        "the handshake flood never crossed the Retry threshold"
    );
    assert!(proxy.is_running());
    // Every half-open handshake times out (client-hs 2s), every garbage datagram left nothing behind.
    proxy.assert_gauges_return_to_zero();
}
