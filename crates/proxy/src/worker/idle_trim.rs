//! Giving freed memory back to the system when a worker goes idle.
//!
//! The binary's allocator is jemalloc (`src/main.rs`); BoringSSL inside quiche allocates with glibc's
//! malloc. Both keep what a burst of traffic freed: jemalloc returns dirty pages only after its decay
//! time (10 s), and glibc never returns free pages in the middle of a heap on its own. A proxy that
//! served a burst then sits on tens of megabytes it no longer uses. Like HAProxy (which trims when it
//! flushes its pools, unless `no-memory-trimming`), a worker gives both back once its last connection
//! and exchange have ended, at most once a second: jemalloc's `arena.<all>.purge`, then glibc's
//! `malloc_trim(0)`.

use std::time::{Duration, Instant};

/// The shortest time between two trims of one worker: trimming walks every arena under its lock.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// One worker's trimming state.
#[derive(Debug)]
pub(crate) struct IdleTrim {
    /// Set while the worker is busy: memory was allocated and freed since the last trim.
    owed: bool,
    not_before: Instant,
}

impl IdleTrim {
    pub(crate) fn new(now: Instant) -> Self {
        IdleTrim {
            owed: false,
            not_before: now,
        }
    }

    /// Called at the end of every loop turn. Returns true when it trimmed.
    pub(crate) fn after_turn(&mut self, idle: bool, enabled: bool, now: Instant) -> bool {
        if !idle {
            self.owed = true;
            return false;
        }
        if !self.owed || !enabled || now < self.not_before {
            return false;
        }
        self.owed = false;
        self.not_before = now + MIN_INTERVAL;
        release_free_pages();
        true
    }

    /// When the loop must wake up to trim (a trim owed but held back by the interval).
    pub(crate) fn deadline(&self, idle: bool, enabled: bool) -> Option<Instant> {
        (idle && self.owed && enabled).then_some(self.not_before)
    }
}

#[allow(unsafe_code)]
fn release_free_pages() {
    /// `MALLCTL_ARENAS_ALL`: the arena index that means every arena.
    const ALL_ARENAS_PURGE: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a void mallctl takes no input and gives no output (null pointers, zero length); it only
    // touches jemalloc's own state, under its locks, and may be called from any thread.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            ALL_ARENAS_PURGE.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        );
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a plain integer and only touches the allocator's own state, under
    // its arena locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_per_busy_period_and_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut trim = IdleTrim::new(t0);
        assert!(!trim.after_turn(true, true, t0), "nothing to give back yet");
        assert!(!trim.after_turn(false, true, t0));
        assert!(trim.after_turn(true, true, t0), "idle after work: trim");
        assert!(!trim.after_turn(true, true, t0), "already trimmed");
        assert_eq!(trim.deadline(true, true), None);
        assert!(!trim.after_turn(false, true, t0));
        let soon = t0 + Duration::from_millis(10);
        assert!(!trim.after_turn(true, true, soon), "held back by the interval");
        assert_eq!(trim.deadline(true, true), Some(t0 + MIN_INTERVAL));
        assert_eq!(trim.deadline(false, true), None, "busy: no wake-up for it");
        assert!(trim.after_turn(true, true, t0 + MIN_INTERVAL));
    }

    #[test]
    fn no_memory_trimming_never_trims() {
        let t0 = Instant::now();
        let mut trim = IdleTrim::new(t0);
        assert!(!trim.after_turn(false, false, t0));
        assert!(!trim.after_turn(true, false, t0 + MIN_INTERVAL));
        assert_eq!(trim.deadline(true, false), None);
    }
}
