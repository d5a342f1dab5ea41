//! The stream table, its wait lists, and the descriptor table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use qc_stream::ReleasedDesc;
use qcs::{Stream, Transport};

/// The lists a stream can wait on. Membership is a set: adding twice or removing what is absent is fine
/// (HAProxy #1903, #3080).
#[derive(Debug, Default)]
pub(crate) struct WaitLists {
    /// Has something for the transport.
    pub(crate) send: BTreeSet<u64>,
    /// The transport had no credit (flow control or congestion) at the last flush: the stream's send
    /// capacity then. After an input it is retried only once that capacity changed: each attempt while
    /// blocked makes quiche queue DATA_BLOCKED again, and a retry per acknowledgement would ping-pong
    /// with a client that keeps its window shut (HAProxy 7edb2ffae's shape, scenario 24).
    pub(crate) flow: BTreeMap<u64, usize>,
    /// The upper side was refused by a full Tx budget.
    pub(crate) budget: BTreeSet<u64>,
    /// The Rx buffer was full with more body in the transport ("demux blocked").
    pub(crate) recv: BTreeSet<u64>,
}

impl WaitLists {
    fn detach(&mut self, id: u64) {
        self.send.remove(&id);
        self.flow.remove(&id);
        self.budget.remove(&id);
        self.recv.remove(&id);
    }

    /// Which lists hold `id`: send, flow, budget, recv.
    pub(crate) fn membership(&self, id: u64) -> [bool; 4] {
        [
            self.send.contains(&id),
            self.flow.contains_key(&id),
            self.budget.contains(&id),
            self.recv.contains(&id),
        ]
    }
}

/// Every request stream ID a connection has opened (rule 6: an ID is never reused): the IDs below
/// `below` all were, and the few above it that came early (a client's HEADERS can arrive out of stream
/// order). An ID missing from the stream table is released if it is here, new if it is not.
#[derive(Debug, Default)]
pub(crate) struct OpenedIds {
    /// Client-initiated bidirectional IDs are 0, 4, 8...: the count of them opened in a row from 0.
    below: u64,
    /// Opened IDs (as indexes, ID / 4) at or above `below`.
    ahead: BTreeSet<u64>,
}

impl OpenedIds {
    pub(crate) fn insert(&mut self, id: u64) {
        debug_assert_eq!(
            id % 4,
            0,
            "only client-initiated bidirectional streams are requests"
        );
        let index = id / 4;
        if index < self.below {
            return;
        }
        self.ahead.insert(index);
        while self.ahead.remove(&self.below) {
            self.below += 1;
        }
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        let index = id / 4;
        id.is_multiple_of(4) && (index < self.below || self.ahead.contains(&index))
    }
}

/// Live streams by ID, the lists they wait on, and the released descriptors still held by the transport.
#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    streams: HashMap<u64, Stream>,
    /// Every request stream ID ever inserted.
    opened: OpenedIds,
    pub(crate) wait: WaitLists,
    descs: Vec<ReleasedDesc>,
    /// Highest request stream ID seen, for GOAWAY.
    pub(crate) max_request_id: Option<u64>,
}

impl StreamTable {
    pub(crate) fn insert(&mut self, stream: Stream) {
        let id = stream.id();
        self.max_request_id = Some(self.max_request_id.map_or(id, |m| m.max(id)));
        self.opened.insert(id);
        self.streams.insert(id, stream);
    }

    /// A request stream that was here and was released: a late frame for it is not a new request.
    pub(crate) fn was_released(&self, id: u64) -> bool {
        !self.streams.contains_key(&id) && self.opened.contains(id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Stream> {
        self.streams.get_mut(&id)
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.streams.contains_key(&id)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.streams.keys().copied().collect()
    }

    /// The one way a stream ends (rule 2): off every wait list, aborted with `code` unless complete both
    /// ways, descriptor released into the descriptor table. Returns the upper handle, or `None` when the
    /// stream was already gone.
    pub(crate) fn release(&mut self, id: u64, conn: &mut Transport, code: u64) -> Option<Option<u64>> {
        let mut stream = self.streams.remove(&id)?;
        self.wait.detach(id);
        debug_assert_eq!(self.wait.membership(id), [false; 4]);
        if !(stream.response_done() && stream.request_done()) {
            stream.abort(conn, code);
        }
        let (desc, upper) = stream.release();
        self.descs.push(desc);
        Some(upper)
    }

    /// Releases every stream (step 2 of the connection release). Returns their upper handles.
    pub(crate) fn release_all(&mut self, conn: &mut Transport, code: u64) -> Vec<(u64, Option<u64>)> {
        let mut ids = self.ids();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.release(id, conn, code).map(|upper| (id, upper)))
            .collect()
    }

    /// Frees the released descriptors whose bytes are all acknowledged or discarded.
    pub(crate) fn sweep_descs(&mut self) {
        self.descs.retain(|d| !d.is_done());
    }

    pub(crate) fn take_descs(&mut self) -> Vec<ReleasedDesc> {
        std::mem::take(&mut self.descs)
    }
}

#[cfg(test)]
mod tests {
    use super::OpenedIds;

    #[test]
    fn opened_ids_stay_opened_in_any_arrival_order() {
        let mut ids = OpenedIds::default();
        assert!(!ids.contains(0));
        ids.insert(0);
        ids.insert(8); // 4 is late
        assert!(ids.contains(0) && ids.contains(8));
        assert!(
            !ids.contains(4),
            "a late ID below the highest is new, not released"
        );
        assert!(!ids.contains(12));
        assert!(
            !ids.contains(2) && !ids.contains(3),
            "other stream types are never requests"
        );
        ids.insert(4);
        assert!(ids.contains(4));
        assert!(ids.ahead.is_empty(), "a contiguous prefix is one number: {ids:?}");
        assert_eq!(ids.below, 3);
        ids.insert(4);
        assert_eq!(ids.below, 3, "inserting again changes nothing");
    }
}
