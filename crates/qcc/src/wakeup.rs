//! The wake-up handle: how lower layers and other threads get a connection processed again.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use qc_stream::{Room, RoomSink};

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
    fn room(&self, from: Room) {
        self.room.store(true, Relaxed);
        // Own room is seen on this connection's own turn (`handle_room` ends every input and output
        // pass); waking for it cost a message and an eventfd write per wait of a budget-bound download.
        if from == Room::Pool {
            if let Some(waker) = &self.waker {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Waker for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn only_room_from_the_pool_wakes_the_connection() {
        let count = Arc::new(Count::default());
        let flag = RoomFlag::new(Some(count.clone()));
        flag.room(Room::Own);
        assert!(flag.take_room());
        assert_eq!(count.0.load(Relaxed), 0);
        flag.room(Room::Pool);
        assert!(flag.take_room() && !flag.take_room());
        assert_eq!(count.0.load(Relaxed), 1);
    }
}
