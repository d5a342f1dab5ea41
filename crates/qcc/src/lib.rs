//! The connection layer: one HTTP/3 server connection over quiche.
//!
//! **What it owns.** A [`Connection`] owns the QUIC transport (`quiche::Connection` with
//! [`qc_stream::TxBufFactory`] buffers) and the HTTP/3 state, the stream table (streams by QUIC stream ID;
//! IDs are never reused, so a lookup that finds nothing means "already released"), the released
//! descriptors, the wait lists (send, flow control, Tx budget, Rx), the timers (handshake, http-request,
//! keep-alive; quiche runs idle and loss recovery), and the wake-up handle the event loop gave it.
//!
//! **What it may not touch.** No socket and no clock: datagrams and `now` come in as arguments, datagrams
//! go out through [`Connection::poll_transmit`] (quinn-proto's shape). quiche itself reads the monotonic
//! clock for loss recovery and its idle timer; [`Connection::transport_timeout`] tells when it wants to run.
//!
//! **How it ends.** [`Connection::release`] is the only way: it consumes the connection in the order of
//! rule 3 (streams first, then the room sink, the wake-up handle and the HTTP/3 state) and returns the
//! transport as a [`Closing`] that sends CONNECTION_CLOSE once every descriptor is drained.
//!
//! ```no_run
//! use std::{net::UdpSocket, path::Path, sync::Arc, time::Instant};
//! use qcc::{Connection, Counters, Event, Limits, ServerConfig, TransportParams};
//!
//! let mut config =
//!     ServerConfig::new(Path::new("cert.pem"), Path::new("key.pem"), &TransportParams::default(), Limits::default())?;
//! let socket = UdpSocket::bind("127.0.0.1:4433")?;
//! let mut buf = [0u8; 65535];
//! let (len, peer) = socket.recv_from(&mut buf)?;
//! let hdr = quiche::Header::from_slice(&mut buf[..len], quiche::MAX_CONN_ID_LEN)?;
//! let scid = quiche::ConnectionId::from_vec(hdr.dcid.to_vec());
//! let local = socket.local_addr()?;
//! let mut conn = Connection::accept(&mut config, &scid, None, local, peer, Arc::new(Counters::default()), None, Instant::now())?;
//! conn.handle_datagram(Instant::now(), &mut buf[..len], peer, local)?;
//! while let Some(event) = conn.poll_event() {
//!     if let Event::Request { stream, .. } = event {
//!         conn.send_response(stream, qcs::ResponseHead::new(204), true)?;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod closing;
mod config;
mod conn;
mod error;
mod event;
mod held;
pub mod route;
mod table;
mod wakeup;

pub use closing::Closing;
pub use config::{Limits, ServerConfig, TransportParams};
pub use conn::{Connection, Released, SendBody, Transmit};
pub use error::Error;
pub use event::{AbortCause, Event};
pub use held::ServerConn;
pub use qc_stream::{CloseCause, Counters, Snapshot, TxPool};
pub use qcs::{codes, BodyRead, RequestHead, ResponseHead};
pub use wakeup::Waker;
