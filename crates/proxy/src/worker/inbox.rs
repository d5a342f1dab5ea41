//! What reaches a worker from outside its own sockets: datagrams another worker received for a
//! connection this one owns, the supervisor's orders (reload, stop), and Tx room that another
//! connection's freed bytes made in the shared pool, over crossbeam channels and a `mio::Waker`. Nothing
//! here is locked: each worker drains its own receivers on its own thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Token, Waker};

use crate::config::Config;
use crate::upstream::live::Runtime;

/// The waker's token in every worker's poll.
pub(crate) const WAKER: Token = Token(1 << 20);
/// Datagrams that may wait for one worker; past this they are dropped (QUIC recovers a lost one).
const DATAGRAM_BACKLOG: usize = 4096;

/// A datagram received by the wrong worker.
pub(crate) struct HandedOff {
    /// The listener it arrived on (every worker has the same listeners, in the same order).
    pub(crate) listener: usize,
    /// Its sender.
    pub(crate) peer: SocketAddr,
    /// Its bytes.
    pub(crate) bytes: Box<[u8]>,
}

/// An order for a worker.
pub(crate) enum Control {
    /// SIGHUP's new configuration and its live state, for new requests.
    Reload {
        /// The configuration.
        config: Arc<Config>,
        /// Its live state (servers keep theirs across the reload).
        runtime: Arc<Runtime>,
    },
    /// Stop taking connections, finish what is open, until `hard_stop`.
    Stop {
        /// `hard-stop-after` from the signal.
        hard_stop: Option<Instant>,
    },
    /// Close every connection now.
    Force,
    /// A server slot came free in this backend, where this worker may have queued requests.
    DrainQueue(Arc<str>),
    /// The connection in slot `index` (if its serial is still `serial`) has Tx room again.
    Room {
        /// Its slot.
        index: usize,
        /// Its serial.
        serial: u64,
        /// Cleared when the order is read: wake-ups before that are one order.
        posted: Arc<AtomicBool>,
    },
}

/// A connection's [`qcc::Waker`]: bytes freed in the Tx pool, by any connection of any worker, made
/// room for a stream this connection had to hold back. Nothing else would process the connection
/// again if it has no byte in flight, so the waker posts an order to its worker.
pub(crate) struct RoomWake {
    pub(crate) worker: usize,
    pub(crate) index: usize,
    pub(crate) serial: u64,
    pub(crate) mailboxes: Arc<Mailboxes>,
    pub(crate) posted: Arc<AtomicBool>,
}

impl qcc::Waker for RoomWake {
    fn wake(&self) {
        if !self.posted.swap(true, Relaxed) {
            let (index, serial, posted) = (self.index, self.serial, self.posted.clone());
            self.mailboxes.order(
                self.worker,
                Control::Room {
                    index,
                    serial,
                    posted,
                },
            );
        }
    }
}

/// One worker's side: what the others posted.
pub(crate) struct Inbox {
    pub(crate) datagrams: Receiver<HandedOff>,
    pub(crate) control: Receiver<Control>,
}

/// One worker's address.
struct Mailbox {
    datagrams: Sender<HandedOff>,
    control: Sender<Control>,
    waker: Waker,
}

/// Every worker's address, by worker index.
pub(crate) struct Mailboxes(Box<[Mailbox]>);

impl Mailboxes {
    /// Mailboxes for workers whose polls are `polls`, and each worker's inbox.
    pub(crate) fn new(polls: &[mio::Poll]) -> std::io::Result<(Arc<Mailboxes>, Vec<Inbox>)> {
        let mut boxes = Vec::with_capacity(polls.len());
        let mut inboxes = Vec::with_capacity(polls.len());
        for poll in polls {
            let (dtx, drx) = crossbeam_channel::bounded(DATAGRAM_BACKLOG);
            let (ctx, crx) = crossbeam_channel::unbounded();
            boxes.push(Mailbox {
                datagrams: dtx,
                control: ctx,
                waker: Waker::new(poll.registry(), WAKER)?,
            });
            inboxes.push(Inbox {
                datagrams: drx,
                control: crx,
            });
        }
        Ok((Arc::new(Mailboxes(boxes.into())), inboxes))
    }

    /// Workers.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Queues a datagram for `worker` without waking it (the sender wakes each worker it posted to once
    /// per loop turn). False when its backlog is full or it has stopped.
    pub(crate) fn hand_off(&self, worker: usize, datagram: HandedOff) -> bool {
        match self.0[worker].datagrams.try_send(datagram) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// Posts an order to `worker` and wakes it (a worker that has stopped needs none).
    pub(crate) fn order(&self, worker: usize, control: Control) {
        if self.0[worker].control.send(control).is_ok() {
            self.wake(worker);
        }
    }

    /// Wakes `worker`.
    pub(crate) fn wake(&self, worker: usize) {
        if let Err(e) = self.0[worker].waker.wake() {
            tracing::warn!(worker, error = %e, "waking a worker failed");
        }
    }
}
