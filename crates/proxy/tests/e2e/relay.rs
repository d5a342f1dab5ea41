//! A UDP relay between a client and the proxy, for tests that watch or forge what the client sends.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Forwards datagrams both ways. `tap` sees each datagram from the client right after it went to the
/// proxy, and may return one more to send to the proxy from 127.0.0.2 (a forger off the client's path).
pub struct Relay {
    /// Where the client sends.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(proxy: SocketAddr, mut tap: impl FnMut(&[u8]) -> Option<Vec<u8>> + Send + 'static) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let forger = UdpSocket::bind("127.0.0.2:0").unwrap();
        for s in [&front, &up] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (front2, up2) = (front.try_clone().unwrap(), up.try_clone().unwrap());
        let (stop1, stop2, client1) = (stop.clone(), stop.clone(), client.clone());
        let to_proxy = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop1.load(Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                *client1.lock().unwrap() = Some(from);
                let _ = up.send_to(&buf[..n], proxy);
                if let Some(forged) = tap(&buf[..n]) {
                    let _ = forger.send_to(&forged, proxy);
                }
            }
        });
        let to_client = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop2.load(Relaxed) {
                let Ok(n) = up2.recv(&mut buf) else { continue };
                if let Some(c) = *client.lock().unwrap() {
                    let _ = front2.send_to(&buf[..n], c);
                }
            }
        });
        Relay {
            addr,
            stop,
            threads: vec![to_proxy, to_client],
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
