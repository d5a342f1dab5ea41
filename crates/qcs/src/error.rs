//! Stream errors and HTTP/3 error codes.

/// HTTP/3 application error codes (RFC 9114, 8.1) used on streams and connections.
pub mod codes {
    use quiche::h3::WireErrorCode as W;

    /// No error: a graceful close.
    pub const H3_NO_ERROR: u64 = W::NoError as u64;
    /// An internal error.
    pub const H3_INTERNAL_ERROR: u64 = W::InternalError as u64;
    /// The server will not process the request; the client may retry it.
    pub const H3_REQUEST_REJECTED: u64 = W::RequestRejected as u64;
    /// A stream the connection needs (control, QPACK) was closed or reset.
    pub const H3_CLOSED_CRITICAL_STREAM: u64 = W::ClosedCriticalStream as u64;
    /// The request or its response is cancelled.
    pub const H3_REQUEST_CANCELLED: u64 = W::RequestCancelled as u64;
    /// The stream ended without a fully formed request.
    pub const H3_REQUEST_INCOMPLETE: u64 = W::RequestIncomplete as u64;
    /// The HTTP message was malformed.
    pub const H3_MESSAGE_ERROR: u64 = W::MessageError as u64;
    /// The peer behaves in a way that generates excessive load (RFC 9114, 8.1).
    pub const H3_EXCESSIVE_LOAD: u64 = W::ExcessiveLoad as u64;

    /// The code that closes the connection for an HTTP/3 connection error (quiche keeps its own mapping
    /// private).
    pub fn wire_code(error: &quiche::h3::Error) -> u64 {
        use quiche::h3::Error as E;
        let code = match error {
            E::Done => W::NoError,
            E::StreamCreationError => W::StreamCreationError,
            E::ClosedCriticalStream => W::ClosedCriticalStream,
            E::FrameUnexpected => W::FrameUnexpected,
            E::FrameError => W::FrameError,
            E::ExcessiveLoad => W::ExcessiveLoad,
            E::IdError => W::IdError,
            E::MissingSettings => W::MissingSettings,
            E::SettingsError => W::SettingsError,
            E::RequestRejected => W::RequestRejected,
            E::RequestCancelled => W::RequestCancelled,
            E::RequestIncomplete => W::RequestIncomplete,
            E::MessageError => W::MessageError,
            // QPACK_DECOMPRESSION_FAILED (RFC 9204, 6).
            E::QpackDecompressionFailed => return 0x200,
            _ => W::InternalError,
        };
        code as u64
    }
}

/// Why a stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The request is malformed (RFC 9114, 4.1.2): the stream is reset with H3_MESSAGE_ERROR and the
    /// connection lives on.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// A well-formed request qproxy does not serve (CONNECT): the stream is reset with
    /// H3_REQUEST_REJECTED before anything processed it, and the connection lives on.
    #[error("request rejected: {0}")]
    Rejected(&'static str),
    /// The peer sent STOP_SENDING with this code.
    #[error("peer stopped the stream (code {0:#x})")]
    Stopped(u64),
    /// The peer reset the stream with this code.
    #[error("peer reset the stream (code {0:#x})")]
    PeerReset(u64),
    /// The transport already discarded the stream (the peer stopped or reset it and both directions
    /// completed), so the code it used is gone.
    #[error("the transport discarded the stream")]
    Gone,
    /// An HTTP/3 error that concerns the whole connection.
    #[error("HTTP/3 connection error: {0}")]
    Connection(quiche::h3::Error),
}

impl StreamError {
    /// The code to reset the stream with, or `None` when the connection must close instead.
    pub fn stream_code(&self) -> Option<u64> {
        match self {
            StreamError::Malformed(_) => Some(codes::H3_MESSAGE_ERROR),
            StreamError::Rejected(_) => Some(codes::H3_REQUEST_REJECTED),
            StreamError::Stopped(_) | StreamError::PeerReset(_) | StreamError::Gone => {
                Some(codes::H3_REQUEST_CANCELLED)
            }
            StreamError::Connection(_) => None,
        }
    }
}

impl From<quiche::h3::Error> for StreamError {
    fn from(e: quiche::h3::Error) -> Self {
        match e {
            quiche::h3::Error::TransportError(quiche::Error::StreamStopped(code)) => {
                StreamError::Stopped(code)
            }
            quiche::h3::Error::TransportError(quiche::Error::StreamReset(code)) => {
                StreamError::PeerReset(code)
            }
            other => StreamError::Connection(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::codes::wire_code;
    use quiche::h3::Error as E;

    #[test]
    fn connection_errors_close_with_the_codes_rfc_9114_names() {
        // RFC 9114, 8.1, and RFC 9204, 6 for QPACK; what has no code of its own is an internal error.
        let table = [
            (E::Done, 0x100),
            (E::BufferTooShort, 0x102),
            (E::StreamCreationError, 0x103),
            (E::ClosedCriticalStream, 0x104),
            (E::FrameUnexpected, 0x105),
            (E::FrameError, 0x106),
            (E::ExcessiveLoad, 0x107),
            (E::IdError, 0x108),
            (E::SettingsError, 0x109),
            (E::MissingSettings, 0x10a),
            (E::RequestRejected, 0x10b),
            (E::RequestCancelled, 0x10c),
            (E::RequestIncomplete, 0x10d),
            (E::MessageError, 0x10e),
            (E::QpackDecompressionFailed, 0x200),
        ];
        for (error, code) in table {
            assert_eq!(wire_code(&error), code, "{error:?}");
        }
    }
}
