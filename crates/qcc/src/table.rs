//! The stream table, its wait lists, and the descriptor table.

use std::collections::{BTreeSet, HashMap};

use qc_stream::ReleasedDesc;
use qcs::{Stream, Transport};

/// The lists a stream can wait on. Membership is a set: adding twice or removing what is absent is fine
/// (HAProxy #1903, #3080).
#[derive(Debug, Default)]
pub(crate) struct WaitLists {
    /// Has something for the transport.
    pub(crate) send: BTreeSet<u64>,
    /// The transport had no credit (flow control or congestion) at the last flush.
    pub(crate) flow: BTreeSet<u64>,
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
            self.flow.contains(&id),
            self.budget.contains(&id),
            self.recv.contains(&id),
        ]
    }
}

/// Live streams by ID, the lists they wait on, and the released descriptors still held by the transport.
#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    streams: HashMap<u64, Stream>,
    pub(crate) wait: WaitLists,
    descs: Vec<ReleasedDesc>,
    /// Highest request stream ID seen, for GOAWAY.
    pub(crate) max_request_id: Option<u64>,
}

impl StreamTable {
    pub(crate) fn insert(&mut self, stream: Stream) {
        let id = stream.id();
        self.max_request_id = Some(self.max_request_id.map_or(id, |m| m.max(id)));
        self.streams.insert(id, stream);
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
