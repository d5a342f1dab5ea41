//! Server configuration: TLS, QUIC transport parameters, and the connection layer's own limits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use qc_stream::TxPool;

use crate::Error;

/// QUIC transport parameters the server announces.
#[derive(Debug, Clone)]
pub struct TransportParams {
    /// `max_idle_timeout` (quiche closes the connection silently after it).
    pub max_idle_timeout: Duration,
    /// Concurrent request streams the client may open (`initial_max_streams_bidi`).
    pub max_streams_bidi: u64,
    /// Connection-level receive window (`initial_max_data`).
    pub initial_max_data: u64,
    /// Per-stream receive window (`initial_max_stream_data_bidi_remote`).
    pub initial_max_stream_data: u64,
    /// Largest UDP payload we send.
    pub max_send_udp_payload: usize,
    /// Largest UDP payload we accept.
    pub max_recv_udp_payload: usize,
    /// `max_ack_delay` in milliseconds.
    pub max_ack_delay_ms: u64,
    /// Initial RTT estimate, before any sample.
    pub initial_rtt: Duration,
    /// HTTP/3 `SETTINGS_MAX_FIELD_SECTION_SIZE`: a larger request field section closes the connection
    /// with H3_EXCESSIVE_LOAD (quiche's rule). QPACK's dynamic table stays at 0 (quiche has none).
    pub max_field_section_size: u64,
}

impl Default for TransportParams {
    fn default() -> Self {
        TransportParams {
            max_idle_timeout: Duration::from_secs(30),
            max_streams_bidi: 100,
            initial_max_data: 16 * 1024 * 1024,
            initial_max_stream_data: 1024 * 1024,
            max_send_udp_payload: 1350,
            max_recv_udp_payload: 65527,
            max_ack_delay_ms: 25,
            initial_rtt: Duration::from_millis(333),
            max_field_section_size: 32 * 1024,
        }
    }
}

/// The connection layer's own limits and timers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Tx budget per connection: body bytes held unsent or unacknowledged.
    pub tx_budget: usize,
    /// The cap over every connection's budget together (`tune.quic.mem.tx-max`), shared by all workers.
    pub tx_pool: Option<TxPool>,
    /// Request body read ahead per stream before QUIC flow control pushes back.
    pub stream_rx_buf: usize,
    /// The handshake must complete within this (`timeout client-hs`).
    pub handshake_timeout: Duration,
    /// A started request must send its complete header section within this (`timeout http-request`).
    pub http_request_timeout: Duration,
    /// A connection with no request in progress is closed (GOAWAY) after this (`timeout http-keep-alive`).
    pub keep_alive_timeout: Duration,
    /// Protocol oddities a client may commit on one connection before it is closed with
    /// H3_EXCESSIVE_LOAD (`tune.quic.fe.sec.glitches-threshold`; 0: never).
    pub glitches_threshold: u32,
    /// Requests a connection may carry over its life before GOAWAY asks the client for a new one
    /// (`tune.quic.fe.stream.max-total`; 0: no limit).
    pub max_total_requests: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tx_budget: 4 * 1024 * 1024,
            tx_pool: None,
            stream_rx_buf: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            http_request_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            glitches_threshold: 1000,
            max_total_requests: 0,
        }
    }
}

/// Everything a server needs to accept connections. One per worker: quiche's config is not shared.
pub struct ServerConfig {
    pub(crate) quic: quiche::Config,
    pub(crate) h3: Arc<quiche::h3::Config>,
    /// The connection layer's limits, applied to connections accepted from now on.
    pub limits: Limits,
}

impl ServerConfig {
    /// A server with the certificate chain and key from PEM files, announcing ALPN `h3`.
    pub fn new(
        cert_chain_pem: &Path,
        key_pem: &Path,
        params: &TransportParams,
        limits: Limits,
    ) -> Result<Self, Error> {
        let mut quic = quiche::Config::new(quiche::PROTOCOL_VERSION)?;
        let path = |p: &Path| {
            p.to_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Config(format!("{p:?} is not UTF-8")))
        };
        quic.load_cert_chain_from_pem_file(&path(cert_chain_pem)?)
            .map_err(|e| Error::Config(format!("certificate chain {}: {e}", cert_chain_pem.display())))?;
        quic.load_priv_key_from_pem_file(&path(key_pem)?)
            .map_err(|e| Error::Config(format!("private key {}: {e}", key_pem.display())))?;
        quic.set_application_protos(quiche::h3::APPLICATION_PROTOCOL)?;
        quic.set_max_idle_timeout(params.max_idle_timeout.as_millis() as u64);
        quic.set_max_send_udp_payload_size(params.max_send_udp_payload);
        quic.set_max_recv_udp_payload_size(params.max_recv_udp_payload);
        quic.set_initial_max_data(params.initial_max_data);
        quic.set_initial_max_stream_data_bidi_local(params.initial_max_stream_data);
        quic.set_initial_max_stream_data_bidi_remote(params.initial_max_stream_data);
        quic.set_initial_max_stream_data_uni(params.initial_max_stream_data);
        quic.set_initial_max_streams_bidi(params.max_streams_bidi);
        // Control, QPACK encoder/decoder, plus room for grease streams.
        quic.set_initial_max_streams_uni(16);
        quic.set_max_ack_delay(params.max_ack_delay_ms);
        quic.set_initial_rtt(params.initial_rtt);
        quic.set_disable_active_migration(false);
        let mut h3 = quiche::h3::Config::new()?;
        h3.set_max_field_section_size(params.max_field_section_size);
        Ok(ServerConfig {
            quic,
            h3: Arc::new(h3),
            limits,
        })
    }

    /// Accepts 0-RTT early data from resuming clients (off unless called). Early data can be replayed by
    /// anyone who captured it: the upper side decides which requests may act on it before the handshake
    /// completes ([`crate::Connection::is_established`]; RFC 8470).
    pub fn enable_early_data(&mut self) {
        self.quic.enable_early_data();
    }

    /// quiche's own configuration, for settings this type does not name.
    pub fn quic_mut(&mut self) -> &mut quiche::Config {
        &mut self.quic
    }
}
