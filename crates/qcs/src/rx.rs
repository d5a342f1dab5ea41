//! The bounded Rx buffer of one stream.

use std::collections::VecDeque;

use bytes::Bytes;

/// Request body bytes read from the transport and not yet taken by the upper side.
#[derive(Debug)]
pub(crate) struct RxBuf {
    chunks: VecDeque<Bytes>,
    len: usize,
    cap: usize,
}

impl RxBuf {
    pub(crate) fn new(cap: usize) -> Self {
        RxBuf {
            chunks: VecDeque::new(),
            len: 0,
            cap: cap.max(1),
        }
    }

    pub(crate) fn room(&self) -> usize {
        self.cap.saturating_sub(self.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Up to `max` bytes from the front.
    pub(crate) fn take(&mut self, max: usize) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        let out = if front.len() > max {
            front.split_to(max)
        } else {
            self.chunks.pop_front()?
        };
        self.len -= out.len();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_splits_and_tracks_room() {
        let mut rx = RxBuf::new(10);
        rx.push(Bytes::from_static(b"hello"));
        rx.push(Bytes::from_static(b"world"));
        assert_eq!(rx.room(), 0);
        assert_eq!(rx.take(3).unwrap(), "hel");
        assert_eq!(rx.take(100).unwrap(), "lo");
        assert_eq!(rx.room(), 5);
        assert_eq!(rx.take(100).unwrap(), "world");
        assert!(rx.take(1).is_none() && rx.is_empty());
    }

    #[test]
    fn a_take_of_exactly_the_front_chunk_leaves_no_empty_chunk_behind() {
        let mut rx = RxBuf::new(10);
        rx.push(Bytes::from_static(b"abc"));
        rx.push(Bytes::from_static(b"de"));
        assert_eq!(rx.take(3).unwrap(), "abc");
        assert_eq!(rx.take(10).unwrap(), "de");
        assert!(rx.take(10).is_none());
    }
}
