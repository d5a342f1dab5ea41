//! A UDP fault proxy for tests, loopback only: it relays datagrams between clients and one upstream,
//! dropping, duplicating, delaying (so later datagrams overtake: reordering) and corrupting them at
//! configured rates, and can black-hole either direction for a while.
//!
//! Each client address gets its own upstream socket, so the upstream sees distinct peers. Std only (it is
//! used by `xtask`, which must build fast).
#![warn(missing_docs)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Fault rates, each a probability per datagram.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Dropped.
    pub loss: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// Held back 1-20 ms (later datagrams overtake it).
    pub delay: f64,
    /// One byte flipped.
    pub corrupt: f64,
}

/// Which way datagrams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams relayed (including duplicated, delayed and corrupted ones).
    pub relayed: AtomicU64,
    /// Datagrams dropped (by loss, black hole or an exhausted allowance).
    pub dropped: AtomicU64,
    /// Bytes delivered upstream (client to server).
    pub bytes_up: AtomicU64,
    /// Bytes delivered downstream (server to client).
    pub bytes_down: AtomicU64,
}

struct Shared {
    faults: Mutex<Faults>,
    rng: Mutex<fastrand::Rng>,
    blackhole_up: AtomicBool,
    blackhole_down: AtomicBool,
    /// Datagrams still allowed upstream (`u64::MAX`: no limit).
    up_allowance: AtomicU64,
    stop: AtomicBool,
    stats: Stats,
}

/// A running fault proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Clone, Copy)]
enum Verdict {
    Pass,
    Drop,
    Duplicate,
    Delay(Duration),
    Corrupt(usize),
}

impl Shared {
    fn decide(&self, dir: Direction) -> Verdict {
        let blackholed = match dir {
            Direction::Up => self.blackhole_up.load(Relaxed),
            Direction::Down => self.blackhole_down.load(Relaxed),
        };
        if blackholed {
            return Verdict::Drop;
        }
        if dir == Direction::Up {
            let allowed = self.up_allowance.fetch_update(Relaxed, Relaxed, |n| match n {
                u64::MAX => Some(n),
                0 => None,
                n => Some(n - 1),
            });
            if allowed.is_err() {
                return Verdict::Drop;
            }
        }
        let f = *self.faults.lock().unwrap();
        let mut rng = self.rng.lock().unwrap();
        let x = rng.f64();
        if x < f.loss {
            Verdict::Drop
        } else if x < f.loss + f.duplicate {
            Verdict::Duplicate
        } else if x < f.loss + f.duplicate + f.delay {
            Verdict::Delay(Duration::from_millis(rng.u64(1..20)))
        } else if x < f.loss + f.duplicate + f.delay + f.corrupt {
            Verdict::Corrupt(rng.usize(..))
        } else {
            Verdict::Pass
        }
    }

    fn deliver(&self, dir: Direction, data: &[u8], send: impl Fn(&[u8]) + Send + 'static) {
        let verdict = self.decide(dir);
        let copies = match verdict {
            Verdict::Drop => 0,
            Verdict::Duplicate => 2,
            _ => 1,
        };
        let bytes = match dir {
            Direction::Up => &self.stats.bytes_up,
            Direction::Down => &self.stats.bytes_down,
        };
        bytes.fetch_add(copies * data.len() as u64, Relaxed);
        match verdict {
            Verdict::Drop => {
                self.stats.dropped.fetch_add(1, Relaxed);
                return;
            }
            Verdict::Pass => send(data),
            Verdict::Duplicate => {
                send(data);
                send(data);
            }
            Verdict::Corrupt(at) => {
                let mut copy = data.to_vec();
                let i = at % copy.len().max(1);
                if let Some(b) = copy.get_mut(i) {
                    *b ^= 0x5a;
                }
                send(&copy);
            }
            Verdict::Delay(d) => {
                let copy = data.to_vec();
                std::thread::spawn(move || {
                    std::thread::sleep(d);
                    send(&copy);
                });
            }
        }
        self.stats.relayed.fetch_add(1, Relaxed);
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and relays to `upstream` (which must be a loopback address).
    pub fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> std::io::Result<FaultProxy> {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy only relays to loopback"
        );
        let bind: SocketAddr = if upstream.is_ipv6() {
            "[::1]:0".parse()
        } else {
            "127.0.0.1:0".parse()
        }
        .expect("a literal address");
        let front = Arc::new(UdpSocket::bind(bind)?);
        front.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            blackhole_up: AtomicBool::new(false),
            blackhole_down: AtomicBool::new(false),
            up_allowance: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            let mut uppers: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65535];
            while !sh.stop.load(Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let up = match uppers.get(&client) {
                    Some(up) => up.clone(),
                    None => match spawn_upper(&sh, &front, client, bind, upstream) {
                        Ok(up) => uppers.entry(client).or_insert(up).clone(),
                        Err(_) => continue,
                    },
                };
                sh.deliver(Direction::Up, &buf[..n], move |d| {
                    let _ = up.send(d);
                });
            }
        });
        Ok(FaultProxy { addr, shared })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault rates.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// Lets only `n` more datagrams go upstream, then drops every one (a client whose later packets never
    /// arrive, as in the interop runner's amplification-limit case).
    pub fn limit_up(&self, n: u64) {
        self.shared.up_allowance.store(n, Relaxed);
    }

    /// Drops every datagram of `dir` while `on`.
    pub fn set_blackhole(&self, dir: Direction, on: bool) {
        match dir {
            Direction::Up => self.shared.blackhole_up.store(on, Relaxed),
            Direction::Down => self.shared.blackhole_down.store(on, Relaxed),
        }
    }

    /// What it did so far.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }
}

fn spawn_upper(
    sh: &Arc<Shared>,
    front: &Arc<UdpSocket>,
    client: SocketAddr,
    bind: SocketAddr,
    upstream: SocketAddr,
) -> std::io::Result<Arc<UdpSocket>> {
    let s = Arc::new(UdpSocket::bind(bind)?);
    s.connect(upstream)?;
    s.set_read_timeout(Some(Duration::from_millis(50)))?;
    let (s2, front2, sh2) = (s.clone(), front.clone(), sh.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65535];
        while !sh2.stop.load(Relaxed) {
            let Ok(n) = s2.recv(&mut buf) else { continue };
            let to_client = front2.clone();
            sh2.deliver(Direction::Down, &buf[..n], move |d| {
                let _ = to_client.send_to(d, client);
            });
        }
    });
    Ok(s)
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        });
        addr
    }

    fn round_trips(proxy: &FaultProxy, count: usize) -> usize {
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut back = 0;
        for i in 0..count {
            client.send_to(&[i as u8; 100], proxy.addr()).unwrap();
            let mut buf = [0u8; 2048];
            while let Ok(n) = client.recv(&mut buf) {
                back += usize::from(n == 100);
                if client.set_read_timeout(Some(Duration::from_millis(5))).is_err() {
                    break;
                }
            }
            client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        }
        back
    }

    #[test]
    fn relays_cleanly_then_loses_and_black_holes() {
        let proxy = FaultProxy::start(echo_server(), Faults::default(), 1).unwrap();
        assert_eq!(round_trips(&proxy, 20), 20);
        assert_eq!(proxy.stats().bytes_up.load(Relaxed), 2000);
        assert_eq!(proxy.stats().bytes_down.load(Relaxed), 2000);
        proxy.limit_up(3);
        assert_eq!(round_trips(&proxy, 5), 3);
        proxy.limit_up(u64::MAX);
        proxy.set_blackhole(Direction::Down, true);
        assert_eq!(round_trips(&proxy, 5), 0);
        proxy.set_blackhole(Direction::Down, false);
        proxy.set_faults(Faults {
            loss: 0.5,
            ..Faults::default()
        });
        let back = round_trips(&proxy, 40);
        assert!(back > 0 && back < 40, "{back} of 40 with 50 % loss each way");
        assert!(proxy.stats().dropped.load(Relaxed) > 0);
    }
}
