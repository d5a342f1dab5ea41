//! A backend TCP socket, counted while open.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use mio::net::TcpStream;

use crate::telemetry::counters::ProxyCounters;

/// A backend connection; the open-sockets gauge counts it until it is dropped.
pub(crate) struct BackendSocket {
    stream: TcpStream,
    counters: Arc<ProxyCounters>,
}

impl BackendSocket {
    /// Wraps a new connection (connecting or connected).
    pub(crate) fn new(stream: TcpStream, counters: Arc<ProxyCounters>) -> Self {
        counters.backend_sockets.fetch_add(1, Relaxed);
        BackendSocket { stream, counters }
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
