//! Connection-layer errors.

/// What a connection call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The QUIC transport refused (quiche).
    #[error("QUIC transport: {0}")]
    Transport(#[from] quiche::Error),
    /// The HTTP/3 layer refused (quiche's h3).
    #[error("HTTP/3: {0}")]
    H3(#[from] quiche::h3::Error),
    /// The stream was already released (rule 5: "not found" means "already released").
    #[error("stream {0} is gone (already released)")]
    StreamGone(u64),
    /// The configuration could not be applied.
    #[error("configuration: {0}")]
    Config(String),
}
