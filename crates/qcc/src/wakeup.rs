//! The wake-up handle: how lower layers and other threads get a connection processed again.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use qc_stream::RoomSink;

/// Implemented by the event loop: schedules the connection this waker was made for.
pub trait Waker: Send + Sync {
    /// Processes the connection again soon. Waking a connection that is gone must be a counted no-op.
    fn wake(&self);
}

/// What the Tx budget holds (by `Weak`) to report room.
pub(crate) struct RoomFlag {
    room: AtomicBool,
    waker: Option<Arc<dyn Waker>>,
}

impl RoomFlag {
    pub(crate) fn new(waker: Option<Arc<dyn Waker>>) -> Self {
        RoomFlag {
            room: AtomicBool::new(false),
            waker,
        }
    }

    /// True once after the budget reported room.
    pub(crate) fn take_room(&self) -> bool {
        self.room.swap(false, Relaxed)
    }
}

impl RoomSink for RoomFlag {
    fn room(&self) {
        self.room.store(true, Relaxed);
        if let Some(waker) = &self.waker {
            waker.wake();
        }
    }
}
