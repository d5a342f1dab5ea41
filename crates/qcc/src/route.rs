//! Connection-ID routing: which owner (worker, connection slot) a datagram belongs to.
//!
//! Every connection ID a connection answers to is in the map with its owner, including the client's
//! original destination CID, so a retransmitted Initial reaches the same owner as the first one
//! (HAProxy #1855 and #2607 misrouted datagrams by deriving the owner from CID bits or by reading the
//! map outside its lock). A router knows one worker's connections; which worker a CID belongs to is
//! the proxy's business (its CID layout), asked only for what this map does not know.

use std::collections::HashMap;

/// Where a datagram goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidRoute<W> {
    /// To the connection (or worker) that owns its destination CID.
    Owner(W),
    /// An Initial packet for no known connection: accept a new one. Carries the client's DCID.
    New {
        /// The destination CID the client chose.
        dcid: Vec<u8>,
    },
    /// A packet that is not an Initial, for no connection this router knows: another owner's, or a
    /// connection that is gone.
    Unknown,
    /// Not parseable: drop it.
    Drop,
}

/// Destination CID -> owner.
#[derive(Debug)]
pub struct CidRouter<W> {
    cid_len: usize,
    by_cid: HashMap<Vec<u8>, W>,
}

impl<W: Copy + PartialEq> CidRouter<W> {
    /// A router for servers whose CIDs are `cid_len` bytes long (short headers carry no length).
    pub fn new(cid_len: usize) -> Self {
        CidRouter {
            cid_len,
            by_cid: HashMap::new(),
        }
    }

    /// `cid` now routes to `owner`.
    pub fn insert(&mut self, cid: &[u8], owner: W) {
        self.by_cid.insert(cid.to_vec(), owner);
    }

    /// Forgets every CID of `owner` (when its connection is gone).
    pub fn remove_owner(&mut self, owner: W) {
        self.by_cid.retain(|_, w| *w != owner);
    }

    /// CIDs known.
    pub fn len(&self) -> usize {
        self.by_cid.len()
    }

    /// True when no CID is known.
    pub fn is_empty(&self) -> bool {
        self.by_cid.is_empty()
    }

    /// Decides where `datagram` goes from its first packet's header.
    pub fn route(&self, datagram: &mut [u8]) -> CidRoute<W> {
        let Ok(hdr) = quiche::Header::from_slice(datagram, self.cid_len) else {
            return CidRoute::Drop;
        };
        if let Some(owner) = self.by_cid.get(hdr.dcid.as_ref()) {
            return CidRoute::Owner(*owner);
        }
        match hdr.ty {
            quiche::Type::Initial => CidRoute::New {
                dcid: hdr.dcid.to_vec(),
            },
            _ => CidRoute::Unknown,
        }
    }
}
