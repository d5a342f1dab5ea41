//! The stream layer: one HTTP/3 request stream.
//!
//! **What it owns.** A [`Stream`] holds one request stream's state ([`State`]: idle, open, half-closed
//! local/remote, closed, reset), its Rx buffer (bounded: when it is full the stream stops reading from the
//! transport, so QUIC stream flow control pushes back on the peer), the parsed [`RequestHead`] and request
//! trailers on the way up, the [`ResponseHead`], body and trailers on the way down, and the opaque handle
//! of whatever serves the request above (`upper`). Its Tx bytes sit in a
//! [`qc_stream::AttachedDesc`] that the stream may only *release*.
//!
//! **What it may not touch.** No socket, no clock, no connection table: the connection (`qcc`) lends it
//! the transport and the HTTP/3 state for each call (`&mut quiche::Connection`, `&mut h3::Connection`),
//! the way quiche's own HTTP/3 layer borrows the transport. A stream ends only through its connection's
//! table, which calls [`Stream::release`].
//!
//! ```
//! use qcs::RequestHead;
//! use quiche::h3::Header;
//!
//! let head = RequestHead::parse(&[
//!     Header::new(b":method", b"GET"),
//!     Header::new(b":scheme", b"https"),
//!     Header::new(b":authority", b"example.com"),
//!     Header::new(b":path", b"/"),
//! ])
//! .unwrap();
//! assert_eq!(head.path(), "/");
//! // A pseudo-header that would break the HTTP/1.1 request line is malformed.
//! assert!(RequestHead::parse(&[
//!     Header::new(b":method", b"GET"),
//!     Header::new(b":scheme", b"https"),
//!     Header::new(b":authority", b"example.com"),
//!     Header::new(b":path", b"/ HTTP/1.1\r\nx: y"),
//! ])
//! .is_err());
//! // A connection-specific header makes the request malformed (RFC 9114, 4.2).
//! assert!(RequestHead::parse(&[Header::new(b":method", b"GET"), Header::new(b"connection", b"close")]).is_err());
//! ```
#![warn(missing_docs)]

mod error;
mod head;
mod response;
mod rx;
mod state;
mod stream;
mod syntax;

pub use error::{codes, StreamError};
pub use head::RequestHead;
pub use response::ResponseHead;
pub use state::State;
pub use stream::{refuse, BodyRead, Flush, Stream};

/// The transport type every layer above qc-stream uses.
pub type Transport = quiche::Connection<qc_stream::TxBufFactory>;
