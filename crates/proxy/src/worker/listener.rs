//! The UDP listeners: sockets, each bind's TLS and QUIC settings, and datagrams in (routed by
//! destination connection ID to their connection, or to `accept`).

use super::*;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context, Result};
use qcc::route::CidRoute;
use qcc::{Limits, ServerConfig, TransportParams, TxPool};

use super::steering;
use super::udp::{RxBufs, UdpIo, RX_BATCH};
use crate::config::{CcAlgo, Config, QuicBind};
use crate::frontend::cid::CidLayout;
use crate::frontend::stateless_reset::NoReset;
use std::sync::atomic::Ordering::Relaxed;

pub(super) struct Listener {
    /// The socket, batched (recvmmsg, GRO, GSO).
    pub(super) io: UdpIo,
    pub(super) local: SocketAddr,
    pub(super) frontend: usize,
    pub(super) tls: ServerConfig,
    /// `quic-force-retry`.
    pub(super) force_retry: bool,
}

/// Every bind's sockets, one per worker (`result[worker][bind]`, binds in configuration order), each in
/// its address's reuseport group in worker order: the group's socket index is the worker index, which
/// the steering program returns. A port 0 is chosen by the first worker's socket and shared by the rest.
pub(crate) fn bind_all(config: &Config, layout: &CidLayout) -> Result<Vec<Vec<std::net::UdpSocket>>> {
    let workers = layout.workers();
    let mut sockets: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    for bind in config.frontends.iter().flat_map(|f| &f.binds) {
        let first = udp_socket(bind.addr)?;
        let local = first.local_addr()?;
        warn_if_capped(&first, local);
        if workers > 1 && config.global.kernel_steering {
            if let Err(e) = steering::attach(&first, layout) {
                tracing::warn!(%local, error = %e, "no kernel steering: misrouted datagrams are handed over between workers");
            }
        }
        sockets[0].push(first);
        for worker in sockets.iter_mut().skip(1) {
            worker.push(udp_socket(local)?);
        }
    }
    Ok(sockets)
}

/// Says so, once per bind, when the kernel granted smaller socket buffers than we asked for
/// (`net.core.rmem_max` / `wmem_max`): bursts then overflow the receive queue and are lost.
fn warn_if_capped(socket: &std::net::UdpSocket, local: SocketAddr) {
    let socket = socket2::SockRef::from(socket);
    // Linux reports twice what it grants (the other half is for its bookkeeping).
    let granted = |size: std::io::Result<usize>| size.map_or(0, |n| n / 2);
    let (recv, send) = (
        granted(socket.recv_buffer_size()),
        granted(socket.send_buffer_size()),
    );
    if recv < UDP_BUFFER || send < UDP_BUFFER {
        tracing::warn!(
            %local,
            asked = UDP_BUFFER,
            recv,
            send,
            "the kernel capped the UDP socket buffers: raise net.core.rmem_max and net.core.wmem_max to at least the asked size (docs/deploy.md)"
        );
    }
}

/// What the kernel lets a listener socket do, for `qproxy -vv`.
pub(crate) struct Platform {
    /// Datagrams one GSO send may carry (1: no GSO).
    pub(crate) gso_segments: usize,
    /// Datagrams one GRO receive buffer may hold (1: no GRO).
    pub(crate) gro_segments: usize,
    /// Whether the kernel took the steering program.
    pub(crate) kernel_steering: std::result::Result<(), String>,
}

/// Probes a listener-like socket on a loopback port of its own.
pub(crate) fn probe() -> Platform {
    let Ok(socket) = udp_socket(SocketAddr::from(([127, 0, 0, 1], 0))) else {
        return Platform {
            gso_segments: 1,
            gro_segments: 1,
            kernel_steering: Err("no UDP socket".into()),
        };
    };
    let state = quinn_udp::UdpSocketState::new((&socket).into());
    let (gso_segments, gro_segments) = state.map_or((1, 1), |s| (s.max_gso_segments(), s.gro_segments()));
    let kernel_steering =
        steering::attach(&socket, &CidLayout::new(None, None, 2)).map_err(|e| e.to_string());
    Platform {
        gso_segments,
        gro_segments,
        kernel_steering,
    }
}

fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel caps these at its maximum.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    Ok(socket.into())
}

/// quiche's transport parameters and the connection layer's limits from the configuration.
pub(super) fn quic_settings(config: &Config, frontend: usize, pool: &TxPool) -> (TransportParams, Limits) {
    let g = &config.global;
    let t = &config.frontends[frontend].timeouts;
    let params = TransportParams {
        max_idle_timeout: g.max_idle_timeout,
        max_streams_bidi: g.max_concurrent_streams,
        initial_max_data: g.conn_max_data,
        initial_max_stream_data: g.stream_max_data,
        max_field_section_size: g.max_field_section_size as u64,
        ..TransportParams::default()
    };
    let limits = Limits {
        tx_budget: g.conn_tx_buf,
        tx_pool: Some(pool.clone()),
        stream_rx_buf: g.stream_rxbuf,
        handshake_timeout: t.client_hs,
        http_request_timeout: t.http_request,
        keep_alive_timeout: t.http_keep_alive,
        glitches_threshold: g.glitches_threshold,
        max_total_requests: g.max_total_requests,
    };
    (params, limits)
}

pub(super) fn tls_config(
    config: &Config,
    frontend: usize,
    bind: &QuicBind,
    pool: &TxPool,
) -> Result<ServerConfig> {
    let (params, limits) = quic_settings(config, frontend, pool);
    let mut tls = ServerConfig::new(&bind.cert, &bind.key, &params, limits)
        .with_context(|| format!("TLS setup for {} ({})", bind.addr, bind.cert.display()))?;
    if bind.allow_0rtt {
        tls.enable_early_data();
    }
    tls.quic_mut().set_cc_algorithm(match bind.cc_algo {
        CcAlgo::Cubic => quiche::CongestionControlAlgorithm::CUBIC,
        CcAlgo::NewReno => quiche::CongestionControlAlgorithm::Reno,
        CcAlgo::Bbr => quiche::CongestionControlAlgorithm::Bbr2Gcongestion,
    });
    Ok(tls)
}

impl Worker {
    pub(super) fn read_listener(&mut self, i: usize) {
        // Out of `self` while its datagrams are handled (they borrow it).
        let mut rx = self.rx.take().unwrap_or_else(|| Box::new(RxBufs::new()));
        self.drain_listener(i, &mut rx);
        self.rx = Some(rx);
    }

    fn drain_listener(&mut self, i: usize, rx: &mut RxBufs) {
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.io.recv(rx, &self.proxy) {
                Ok(n) => {
                    // One clock read for the batch: it arrived at once.
                    let now = Instant::now();
                    for b in 0..n {
                        let (data, stride, peer) = rx.received(b);
                        for datagram in data.chunks_mut(stride) {
                            self.proxy.udp_datagrams_received.fetch_add(1, Relaxed);
                            self.on_datagram(i, datagram, peer, now);
                        }
                    }
                    // Fewer messages than buffers: the queue was empty, and the next datagram to arrive
                    // raises a new edge (Linux wakes an edge-triggered epoll on every enqueue). Another
                    // call would only return WouldBlock, once per loop turn.
                    if n < RX_BATCH {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "UDP receive failed");
                    return;
                }
            }
        }
    }

    pub(super) fn on_datagram(
        &mut self,
        listener: usize,
        datagram: &mut [u8],
        peer: SocketAddr,
        now: Instant,
    ) {
        let local = self.listeners[listener].local;
        let index = match self.router.route(datagram) {
            CidRoute::Owner(index) => index,
            CidRoute::Drop => return,
            route => {
                let owner = self.cids.owner(datagram);
                if owner != self.me {
                    self.hand_off(owner, listener, datagram, peer);
                    return;
                }
                let CidRoute::New { dcid } = route else {
                    // Ours by its ID, and gone (or never ours: a restart, another instance's).
                    self.reset(listener, datagram, peer, now);
                    return;
                };
                match self.accept(listener, datagram, peer, &dcid, now) {
                    Some(index) => index,
                    None => return,
                }
            }
        };
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let _entered = slot.span.clone().entered();
        let res = slot.conn.handle_datagram(now, datagram, peer, local);
        if let Err(e) = res {
            tracing::debug!(error = %e, "datagram refused");
        }
        // Out of the bind's handshakes in progress once its handshake is over.
        if slot.handshake.is_some() && slot.conn.as_live().is_some_and(|c| c.is_established()) {
            slot.handshake = None;
        }
        // A datagram from another address moves the client (the address forwarded headers, hashing and
        // logs use) only once quiche has migrated to it and validated it: anyone who saw the
        // connection ID can send one. Answers always go where quiche sends them.
        if peer != slot.peer {
            if let Some(validated) = slot.conn.as_live().and_then(|c| c.validated_peer()) {
                slot.peer = validated;
            }
        }
        mark_dirty(&mut self.dirty, slot, index);
    }

    /// Answers a short-header datagram of a connection no worker has with a stateless reset.
    fn reset(&mut self, listener: usize, datagram: &[u8], peer: SocketAddr, now: Instant) {
        if datagram.first().is_none_or(|b| b & 0x80 != 0) {
            return; // Long headers: before the handshake ends, a reset means nothing to the client.
        }
        let out = &mut self.out[..MAX_DATAGRAM];
        let cid_len = self.cids.len();
        match self.resets.reset(
            &self.reset_key,
            datagram,
            cid_len,
            peer.ip(),
            now,
            &mut self.rng,
            out,
        ) {
            Ok(n) => {
                let _ = self.listeners[listener]
                    .io
                    .send(peer, &out[..n], None, &self.proxy);
                self.proxy.resets_sent.fetch_add(1, Relaxed);
            }
            Err(NoReset::Limited) => {
                self.proxy.resets_limited.fetch_add(1, Relaxed);
            }
            Err(NoReset::TooShort) => {}
        }
    }

    /// Gives a datagram to the worker that owns its connection (or would own it, for an Initial). The
    /// owner is woken once at the end of this turn, whatever the number of datagrams.
    fn hand_off(&mut self, owner: usize, listener: usize, datagram: &[u8], peer: SocketAddr) {
        let handed = inbox::HandedOff {
            listener,
            peer,
            bytes: datagram.into(),
        };
        if self.mailboxes.hand_off(owner, handed) {
            self.proxy.handed_off.fetch_add(1, Relaxed);
            self.to_wake |= 1 << owner;
        } else {
            self.proxy.handed_off_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Wakes every worker this turn handed datagrams to.
    pub(super) fn wake_handed_to(&mut self) {
        while self.to_wake != 0 {
            let worker = self.to_wake.trailing_zeros() as usize;
            self.to_wake &= self.to_wake - 1;
            self.mailboxes.wake(worker);
        }
    }
}
