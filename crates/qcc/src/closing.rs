//! A released connection's transport, until it is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use qc_stream::{CloseCause, Counters, Live, Object, ReleasedDesc};
use qcs::{codes, Transport};
use quiche::RecvInfo;

use crate::{Error, Transmit};

/// The transport of a released connection. It keeps acknowledging packets, refuses new request streams
/// with H3_REQUEST_REJECTED (HAProxy #2067), and sends CONNECTION_CLOSE (H3_NO_ERROR) once every released
/// descriptor is drained. Drop it when [`Closing::is_closed`] says so.
pub struct Closing {
    // Dropped first: whatever the transport still holds returns to the budget before the descriptors go.
    transport: Box<Transport>,
    descs: Vec<ReleasedDesc>,
    live: Live,
    close_sent: bool,
}

impl Closing {
    pub(crate) fn new(conn: Box<Transport>, descs: Vec<ReleasedDesc>, counters: Arc<Counters>) -> Self {
        Closing {
            transport: conn,
            descs,
            live: counters.count(Object::Closing),
            close_sent: false,
        }
    }

    /// Feeds one received datagram.
    pub fn handle_datagram(
        &mut self,
        _now: Instant,
        buf: &mut [u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<usize, Error> {
        let res = self.transport.recv(buf, RecvInfo { from, to });
        self.refuse_streams();
        match res {
            Ok(n) => Ok(n),
            Err(quiche::Error::Done) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the next datagram to send, if any. Frames still queued (RESET_STREAM of the released
    /// streams, acknowledgements) go out before CONNECTION_CLOSE.
    pub fn poll_transmit(&mut self, _now: Instant, out: &mut [u8]) -> Option<Transmit> {
        for _ in 0..2 {
            if let Ok((len, info)) = self.transport.send(out) {
                return Some(Transmit {
                    len,
                    to: info.to,
                    from: info.from,
                    at: info.at,
                });
            }
            if !self.close_when_drained() {
                break;
            }
        }
        None
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        self.transport.timeout().map(|d| now + d)
    }

    /// Fires the transport's timers.
    pub fn handle_timeout(&mut self, _now: Instant) {
        self.transport.on_timeout();
    }

    /// True when the transport is closed: drop this.
    pub fn is_closed(&self) -> bool {
        self.transport.is_closed()
    }

    /// The transport, for statistics.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Queues CONNECTION_CLOSE once every descriptor is drained. Returns whether it did so now.
    fn close_when_drained(&mut self) -> bool {
        self.descs.retain(|d| !d.is_done());
        if !self.descs.is_empty() || self.close_sent {
            return false;
        }
        self.close_sent = true;
        // Err(Done) means the transport is already closing: nothing to add.
        self.transport.close(true, codes::H3_NO_ERROR, b"").is_ok()
    }

    fn refuse_streams(&mut self) {
        let readable: Vec<u64> = self.transport.readable().collect();
        let mut scratch = [0u8; 4096];
        for id in readable {
            if id.is_multiple_of(4) {
                qcs::refuse(&mut self.transport, id);
            } else {
                // The HTTP/3 state is gone: unidirectional stream bytes are read and dropped.
                while matches!(self.transport.stream_recv(id, &mut scratch), Ok((n, _)) if n > 0) {}
            }
        }
    }
}

impl Drop for Closing {
    // Accounting only: the transport's life ends here, so this is where its outcome is counted.
    fn drop(&mut self) {
        // 0x0 is the transport's NO_ERROR, 0x100 HTTP/3's H3_NO_ERROR.
        let clean = |e: &quiche::ConnectionError| e.error_code == 0 || (e.is_app && e.error_code == 0x100);
        let cause = if self.transport.is_timed_out() {
            CloseCause::IdleTimeout
        } else if let Some(e) = self.transport.peer_error() {
            if clean(e) {
                CloseCause::PeerNoError
            } else {
                CloseCause::PeerError
            }
        } else if self.transport.local_error().is_none_or(clean) {
            CloseCause::LocalNoError
        } else {
            CloseCause::LocalError
        };
        let stats = self.transport.stats();
        self.live.counters().count_transport_end(
            self.transport.is_established(),
            cause,
            stats.lost as u64,
            stats.retrans as u64,
        );
    }
}

impl std::fmt::Debug for Closing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closing")
            .field("trace_id", &self.transport.trace_id())
            .field("descs", &self.descs.len())
            .field("close_sent", &self.close_sent)
            .finish()
    }
}
