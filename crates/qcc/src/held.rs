//! A connection as an event loop holds it: live until [`Connection::release`], then closing until its
//! transport has sent CONNECTION_CLOSE and drained, then closed. The worker, the in-memory test harness
//! and the example all hold connections this way.

use std::net::SocketAddr;
use std::time::Instant;

use crate::{Closing, Connection, Error, Transmit};

/// One server connection in an event loop's table.
pub enum ServerConn {
    /// Serving requests.
    Live(Box<Connection>),
    /// Released: its transport still closes (drive it until `is_closed`).
    Closing(Closing),
    /// Nothing left to drive (closed, or cut off by a forced stop).
    Closed,
}

impl ServerConn {
    /// A newly accepted connection.
    pub fn live(conn: Connection) -> Self {
        ServerConn::Live(Box::new(conn))
    }

    /// The live connection, if it is still live.
    pub fn as_live(&self) -> Option<&Connection> {
        match self {
            ServerConn::Live(c) => Some(c),
            _ => None,
        }
    }

    /// The live connection, mutably, if it is still live.
    pub fn as_live_mut(&mut self) -> Option<&mut Connection> {
        match self {
            ServerConn::Live(c) => Some(c),
            _ => None,
        }
    }

    /// Releases a live connection in place (the only way one ends, in rule 3's order) and keeps its
    /// closing transport. Returns the streams that were still open, with their upper handles; a
    /// connection already released gives none.
    pub fn release(&mut self, now: Instant) -> Vec<(u64, Option<u64>)> {
        match std::mem::replace(self, ServerConn::Closed) {
            ServerConn::Live(conn) => {
                let released = conn.release(now);
                *self = ServerConn::Closing(released.closing);
                released.orphans
            }
            other => {
                *self = other;
                Vec::new()
            }
        }
    }

    /// Feeds one received datagram to whichever side holds the transport.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Result<usize, Error> {
        match self {
            ServerConn::Live(c) => c.handle_datagram(now, buf, from, to),
            ServerConn::Closing(c) => c.handle_datagram(now, buf, from, to),
            ServerConn::Closed => Ok(0),
        }
    }

    /// Fires the timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            ServerConn::Live(c) => c.handle_timeout(now),
            ServerConn::Closing(c) => c.handle_timeout(now),
            ServerConn::Closed => {}
        }
    }

    /// The next datagram to send, written into `out`.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        match self {
            ServerConn::Live(c) => c.poll_transmit(now, out),
            ServerConn::Closing(c) => c.poll_transmit(now, out),
            ServerConn::Closed => None,
        }
    }

    /// When `handle_timeout` must run next.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        match self {
            ServerConn::Live(c) => c.poll_timeout(now),
            ServerConn::Closing(c) => c.poll_timeout(now),
            ServerConn::Closed => None,
        }
    }

    /// True once there is nothing left to drive: the table may drop it.
    pub fn is_closed(&self) -> bool {
        match self {
            ServerConn::Live(_) => false,
            ServerConn::Closing(c) => c.is_closed(),
            ServerConn::Closed => true,
        }
    }
}
