//! A listener's UDP socket, batched through quinn-udp: `recvmmsg` with GRO on receive (one call brings
//! many datagrams, a GRO buffer several of one size), and GSO (UDP_SEGMENT) on send, where consecutive
//! datagrams of one connection to one address go out in one call. Where the kernel refuses GSO
//! (EIO on some devices) quinn-udp turns it off for the socket and every datagram goes out on its own;
//! `tune.quic.disable-udp-gso` does the same from the start.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use mio::net::UdpSocket;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

use crate::telemetry::counters::ProxyCounters;

/// Receive buffers: datagrams (or GRO trains) read by one call at most.
pub(super) const RX_BATCH: usize = 8;
/// One receive buffer: the largest GRO train the kernel builds.
const RX_BUF: usize = 64 * 1024;
/// Largest datagram we send (quiche is set to 1350 bytes; this leaves room).
pub(super) const MAX_DATAGRAM: usize = 1500;
/// Bytes one GSO send carries at most (the UDP length field).
pub(super) const MAX_BATCH_BYTES: usize = 65_000;

/// A listener socket with its quinn-udp state.
pub(super) struct UdpIo {
    socket: UdpSocket,
    state: UdpSocketState,
    gso: bool,
}

impl UdpIo {
    /// Wraps a bound, non-blocking socket; `gso: false` sends one datagram per call.
    pub(super) fn new(socket: UdpSocket, gso: bool) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(UdpIo { socket, state, gso })
    }

    /// The socket, for registration.
    pub(super) fn socket_mut(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// Datagrams one send may carry now.
    pub(super) fn max_segments(&self) -> usize {
        if self.gso {
            self.state.max_gso_segments()
        } else {
            1
        }
    }

    /// Receives into `rx`; returns how many of its buffers were filled.
    pub(super) fn recv(&self, rx: &mut RxBufs, counters: &ProxyCounters) -> io::Result<usize> {
        let [a, b, c, d, e, f, g, h] = &mut rx.bufs;
        let mut slices = [a, b, c, d, e, f, g, h].map(|buf| IoSliceMut::new(&mut buf[..]));
        let n = self
            .state
            .recv((&self.socket).into(), &mut slices, &mut rx.meta)?;
        counters.udp_recv_calls.fetch_add(1, Relaxed);
        Ok(n)
    }

    /// Sends `contents`: one datagram, or with `segment` a train of datagrams of that size (the last
    /// may be shorter), to `to`. Only `WouldBlock` comes back as an error (quinn-udp logs the others:
    /// QUIC recovers a lost datagram).
    pub(super) fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
        counters: &ProxyCounters,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: None,
        };
        counters.udp_send_calls.fetch_add(1, Relaxed);
        let datagrams = segment.map_or(1, |s| contents.len().div_ceil(s.max(1)));
        counters.udp_datagrams_sent.fetch_add(datagrams as u64, Relaxed);
        self.state.send((&self.socket).into(), &transmit)
    }
}

/// The buffers `recv` fills, and what it says of each.
pub(super) struct RxBufs {
    bufs: [Vec<u8>; RX_BATCH],
    meta: [RecvMeta; RX_BATCH],
}

impl RxBufs {
    /// Buffers for one batch.
    pub(super) fn new() -> Self {
        RxBufs {
            bufs: std::array::from_fn(|_| vec![0; RX_BUF]),
            meta: std::array::from_fn(|_| RecvMeta::default()),
        }
    }

    /// Buffer `i` as received: its bytes, the size of each datagram in it, and the sender.
    pub(super) fn received(&mut self, i: usize) -> (&mut [u8], usize, SocketAddr) {
        let meta = &self.meta[i];
        let stride = meta.stride.max(1);
        (&mut self.bufs[i][..meta.len], stride, meta.addr)
    }
}

/// Datagrams written one after the other into the send buffer, waiting to go out together.
#[derive(Debug, Default)]
pub(super) struct TxBatch {
    /// Bytes in the batch.
    pub(super) len: usize,
    /// The size of every datagram but the last.
    pub(super) segment: usize,
    /// Datagrams in it.
    pub(super) count: usize,
    /// Where they go.
    pub(super) to: Option<SocketAddr>,
}

impl TxBatch {
    /// Can a datagram of `len` bytes to `to`, written right after the batch, join it? A train of GSO
    /// segments has one size; only its last may be shorter.
    pub(super) fn admits(&self, to: SocketAddr, len: usize, max_segments: usize) -> bool {
        self.count > 0
            && self.to == Some(to)
            && len <= self.segment
            && self.count < max_segments
            && self.len + len <= MAX_BATCH_BYTES
            && self.len == self.segment * self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_equal_datagrams_then_one_shorter_last() {
        let to: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let mut b = TxBatch {
            len: 1350,
            segment: 1350,
            count: 1,
            to: Some(to),
        };
        assert!(b.admits(to, 1350, 64));
        assert!(!b.admits(other, 1350, 64), "another destination");
        assert!(!b.admits(to, 1400, 64), "larger than the segment");
        assert!(!b.admits(to, 1350, 1), "GSO off");
        assert!(b.admits(to, 200, 64));
        b.len += 200;
        b.count += 1;
        assert!(!b.admits(to, 200, 64), "after a short one, the train is over");
    }
}
