//! Scenario 15: datagrams for a connection owned by another worker always reach that worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qcc::route::{CidRoute, CidRouter};
use qcc::{Connection, Counters, Limits, ServerConfig};

use crate::harness::cert_files;

#[test]
fn scenario_15_datagrams_reach_the_owning_worker() {
    let (cert, key) = cert_files();
    let params = qcc::TransportParams {
        max_ack_delay_ms: 1,
        initial_rtt: Duration::from_millis(10),
        ..Default::default()
    };
    let mut configs: Vec<ServerConfig> = (0..2)
        .map(|_| ServerConfig::new(cert, key, &params, Limits::default()).unwrap())
        .collect();
    let counters = Arc::new(Counters::default());
    let server: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let mut router: CidRouter<usize> = CidRouter::new(16);
    let mut workers: Vec<Option<Connection>> = vec![None, None];
    let mut clients = Vec::new();
    for i in 0..2u8 {
        let mut cc = quiche::Config::new(quiche::PROTOCOL_VERSION).unwrap();
        cc.set_application_protos(quiche::h3::APPLICATION_PROTOCOL)
            .unwrap();
        cc.verify_peer(false);
        cc.set_initial_rtt(Duration::from_millis(10));
        let addr: SocketAddr = format!("127.0.0.1:{}", 50000 + i as u16).parse().unwrap();
        let scid = quiche::ConnectionId::from_vec(vec![i + 1; 16]);
        clients.push((
            quiche::connect(Some("localhost"), &scid, addr, server, &mut cc).unwrap(),
            addr,
        ));
    }
    let mut buf = vec![0; 65535];
    let mut routed = [0usize; 2];
    // Each client's latest datagram, to route again once the other connection is gone.
    let mut last = [Vec::new(), Vec::new()];
    let mut lost_first_flight = false;
    for _round in 0..200 {
        for (c, (client, addr)) in clients.iter_mut().enumerate() {
            while let Ok((n, _)) = client.send(&mut buf) {
                let mut dgram = buf[..n].to_vec();
                let now = Instant::now();
                let owner = match router.route(&mut dgram) {
                    CidRoute::Owner(w) => w,
                    CidRoute::New { dcid } => {
                        // Worker c accepts client c; both the client's DCID and ours route to it.
                        let scid = quiche::ConnectionId::from_vec(
                            (0..16).map(|b| b as u8 ^ (c as u8 * 16 + 7)).collect(),
                        );
                        let conn = Connection::accept(
                            &mut configs[c],
                            &scid,
                            None,
                            server,
                            *addr,
                            counters.clone(),
                            None,
                            now,
                        )
                        .unwrap();
                        router.insert(&dcid, c);
                        router.insert(scid.as_ref(), c);
                        workers[c] = Some(conn);
                        c
                    }
                    CidRoute::Unknown | CidRoute::Drop => {
                        panic!("a datagram of client {c} was unroutable")
                    }
                };
                assert_eq!(owner, c, "a datagram of client {c} was routed to worker {owner}");
                routed[c] += 1;
                last[c] = dgram.clone();
                workers[owner]
                    .as_mut()
                    .unwrap()
                    .handle_datagram(now, &mut dgram, *addr, server)
                    .ok();
            }
        }
        for (w, conn) in workers.iter_mut().enumerate() {
            let Some(conn) = conn else { continue };
            let now = Instant::now();
            while let Some(t) = conn.poll_transmit(now, &mut buf) {
                let (client, addr) = &mut clients[w];
                assert_eq!(t.to, *addr);
                // Lose worker 0's first flight: its client retransmits Initials with its original DCID.
                if w == 0 && !lost_first_flight {
                    continue;
                }
                client
                    .recv(
                        &mut buf[..t.len],
                        quiche::RecvInfo {
                            from: server,
                            to: *addr,
                        },
                    )
                    .ok();
            }
            if w == 0 {
                lost_first_flight = true;
            }
        }
        if workers
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| c.is_established()))
            && clients.iter().all(|(c, _)| c.is_established())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        for (client, _) in clients.iter_mut() {
            client.on_timeout();
        }
        for conn in workers.iter_mut().flatten() {
            conn.handle_timeout(Instant::now());
        }
    }
    assert!(
        clients.iter().all(|(c, _)| c.is_established()),
        "handshakes did not complete"
    );
    assert!(routed.iter().all(|n| *n >= 2));
    assert_eq!(router.len(), 4, "each connection's two CIDs");
    assert!(!router.is_empty());
    let n = workers.len();
    for (w, slot) in workers.iter_mut().enumerate() {
        let released = slot.take().unwrap().release(Instant::now());
        drop(released.closing);
        router.remove_owner(w);
        assert_eq!(router.len(), 2 * (n - w - 1));
        // The connections left still get their datagrams.
        for (c, dgram) in last.iter_mut().enumerate().skip(w + 1) {
            assert_eq!(router.route(dgram), CidRoute::Owner(c));
        }
    }
    assert!(router.is_empty());
    assert!(counters.snapshot().is_idle());
}
