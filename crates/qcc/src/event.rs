//! What a connection tells the upper side.

use qcs::RequestHead;

/// Why a stream ended before completing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortCause {
    /// The client sent RESET_STREAM with this code.
    PeerReset(u64),
    /// The client sent STOP_SENDING with this code.
    PeerStopSending(u64),
    /// The transport had already discarded the stream (stopped or reset by the peer, both directions
    /// complete); the peer's code is not known.
    TransportDiscarded,
    /// The request was malformed; the stream was reset with H3_MESSAGE_ERROR.
    Malformed(&'static str),
    /// The request was refused unprocessed (CONNECT); the stream was reset with H3_REQUEST_REJECTED.
    Rejected(&'static str),
    /// The connection was released with the stream still open.
    ConnectionReleased,
}

/// An event from [`crate::Connection::poll_event`].
#[derive(Debug)]
pub enum Event {
    /// A request's header section arrived. `end` is true when no body follows.
    Request {
        /// Stream ID.
        stream: u64,
        /// The validated head.
        head: RequestHead,
        /// No body follows.
        end: bool,
    },
    /// Request body (or its end) waits: call `read_body` until it returns `Pending`.
    Readable {
        /// Stream ID.
        stream: u64,
    },
    /// The Tx budget has room again for a stream whose `send_body` was refused.
    Writable {
        /// Stream ID.
        stream: u64,
    },
    /// The stream completed both ways and was released.
    StreamClosed {
        /// Stream ID.
        stream: u64,
        /// The upper handle linked to it.
        upper: Option<u64>,
    },
    /// The stream was aborted and released.
    StreamAborted {
        /// Stream ID.
        stream: u64,
        /// The upper handle linked to it.
        upper: Option<u64>,
        /// Why.
        cause: AbortCause,
    },
    /// The client sent GOAWAY: it opens no new request.
    GoAway,
    /// The connection is dead (closed, draining, or shut down with no request left): call `release`.
    /// Sent once.
    Dead,
}
