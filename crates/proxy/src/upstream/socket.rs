//! A backend TCP socket, counted while open.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use mio::net::TcpStream;

use crate::telemetry::counters::{PoolEvent, ProxyCounters};

/// A backend connection; the open-sockets gauge counts it until it is dropped.
pub(crate) struct BackendSocket {
    stream: TcpStream,
    counters: Arc<ProxyCounters>,
    served: u32,
}

impl BackendSocket {
    /// Wraps a new connection (connecting or connected).
    pub(crate) fn new(stream: TcpStream, counters: Arc<ProxyCounters>) -> Self {
        counters.backend_sockets.fetch_add(1, Relaxed);
        counters.count_pool(PoolEvent::New);
        BackendSocket {
            stream,
            counters,
            served: 0,
        }
    }

    /// Requests this connection completed.
    pub(crate) fn served(&self) -> u32 {
        self.served
    }

    /// One more request completed on it.
    pub(crate) fn count_served(&mut self) {
        self.served += 1;
    }

    /// Its descriptor: the worker's token for it while it is open.
    pub(crate) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// The stream.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// The stream, mutably (reads, writes, registration).
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}

impl Drop for BackendSocket {
    // Accounting only.
    fn drop(&mut self) {
        self.counters.backend_sockets.fetch_sub(1, Relaxed);
    }
}
