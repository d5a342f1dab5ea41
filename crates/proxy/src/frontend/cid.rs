//! The connection IDs qproxy issues, laid out as QUIC-LB's plaintext mode
//! (draft-ietf-quic-load-balancers, section 5): a first octet, the instance's server ID, then a nonce
//! whose first byte names the worker that owns the connection.
//!
//! ```text
//! | CR (3 bits) | length (5 bits) | server ID (0..15 bytes) | worker byte | random |
//! ```
//!
//! Without `server-id`, the config rotation bits are `0b111` (the draft's "unroutable": a balancer in
//! front routes such IDs by address) and the length bits are random. The worker byte is
//! `worker + workers * r` for a random `r`, so that it is the worker modulo the worker count and still
//! varies between connections. Everything that steers a datagram to its worker (the kernel's reuseport
//! program in `steering`, and [`CidLayout::owner`] for the ones the kernel could not steer) reads the
//! same byte of the destination CID; Initials, whose destination CID the client chose, go by the same
//! byte of it, so every Initial of one connection reaches one worker.

/// Length of the connection IDs we issue (short headers carry no length).
pub(crate) const CID_LEN: usize = 16;

/// The config rotation of IDs issued without a server ID (QUIC-LB: unroutable).
const UNROUTABLE: u8 = 0b111;

/// How this instance writes and reads its connection IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CidLayout {
    /// `server-id`: the bytes a QUIC-LB balancer routes by (empty: none).
    server_id: Box<[u8]>,
    /// The config rotation codepoint (0..=6 with a server ID).
    rotation: u8,
    /// Workers of this instance (1..=64).
    workers: usize,
}

impl CidLayout {
    /// The layout for `workers` workers, with the configured server ID and rotation, if any.
    pub(crate) fn new(server_id: Option<(&[u8], u8)>, workers: usize) -> Self {
        let (server_id, rotation) = server_id.unwrap_or((&[], UNROUTABLE));
        assert!(
            server_id.len() < CID_LEN - 1,
            "the config parser bounds the server ID"
        );
        CidLayout {
            server_id: server_id.into(),
            rotation,
            workers: workers.max(1),
        }
    }

    /// Workers of this instance.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Where the worker byte is in a CID.
    pub(crate) fn worker_offset(&self) -> usize {
        1 + self.server_id.len()
    }

    /// A new connection ID owned by `worker`.
    pub(crate) fn issue(&self, worker: usize, rng: &mut fastrand::Rng) -> [u8; CID_LEN] {
        let mut cid = [0u8; CID_LEN];
        rng.fill(&mut cid);
        cid[0] = if self.server_id.is_empty() {
            (UNROUTABLE << 5) | (cid[0] & 0x1f)
        } else {
            (self.rotation << 5) | (CID_LEN as u8 - 1)
        };
        let w = self.worker_offset();
        cid[1..w].copy_from_slice(&self.server_id);
        // Any multiple of the worker count that keeps the byte below 256.
        let r = rng.usize(..256 / self.workers);
        cid[w] = (worker + self.workers * r) as u8;
        cid
    }

    /// The worker that owns `datagram`: the worker byte of its destination CID, modulo the worker count.
    /// A long header whose destination CID is too short to have that byte goes by a hash of the whole ID.
    pub(crate) fn owner(&self, datagram: &[u8]) -> usize {
        if self.workers == 1 {
            return 0;
        }
        let w = self.worker_offset();
        let Some(&first) = datagram.first() else {
            return 0;
        };
        let byte = if first & 0x80 == 0 {
            datagram.get(1 + w).copied()
        } else {
            let dcid_len = datagram.get(5).map_or(0, |&l| usize::from(l));
            match datagram.get(6..6 + dcid_len) {
                Some(dcid) if dcid_len > w => Some(dcid[w]),
                Some(dcid) => return hash(dcid) % self.workers,
                None => None,
            }
        };
        byte.map_or(0, |b| usize::from(b) % self.workers)
    }
}

/// FNV-1a: a stable hash for the few client-chosen IDs too short to carry a worker byte.
fn hash(bytes: &[u8]) -> usize {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short_header(cid: &[u8]) -> Vec<u8> {
        let mut d = vec![0x40];
        d.extend_from_slice(cid);
        d.extend_from_slice(&[0; 20]);
        d
    }

    fn long_header(dcid: &[u8]) -> Vec<u8> {
        let mut d = vec![0xc0, 0, 0, 0, 1, dcid.len() as u8];
        d.extend_from_slice(dcid);
        d.extend_from_slice(&[8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x41, 0]);
        d
    }

    #[test]
    fn every_issued_id_routes_to_its_worker_in_both_header_forms() {
        let mut rng = fastrand::Rng::with_seed(7);
        for workers in [1, 2, 3, 7, 64] {
            for sid in [None, Some((&[0xab, 0xcd][..], 1))] {
                let layout = CidLayout::new(sid, workers);
                for worker in 0..workers {
                    for _ in 0..50 {
                        let cid = layout.issue(worker, &mut rng);
                        assert_eq!(layout.owner(&short_header(&cid)), worker);
                        assert_eq!(layout.owner(&long_header(&cid)), worker);
                    }
                }
            }
        }
    }

    #[test]
    fn the_first_octet_and_server_id_follow_quic_lb() {
        let mut rng = fastrand::Rng::with_seed(1);
        let layout = CidLayout::new(Some((&[0x11, 0x22, 0x33][..], 2)), 2);
        let cid = layout.issue(1, &mut rng);
        assert_eq!(cid[0], (2 << 5) | 15, "rotation 2, length 16 - 1");
        assert_eq!(&cid[1..4], &[0x11, 0x22, 0x33]);
        assert_eq!(layout.worker_offset(), 4);
        let plain = CidLayout::new(None, 2).issue(0, &mut rng);
        assert_eq!(plain[0] >> 5, UNROUTABLE);
    }

    #[test]
    fn the_worker_byte_varies_between_connections() {
        let mut rng = fastrand::Rng::with_seed(3);
        let layout = CidLayout::new(None, 2);
        let bytes: std::collections::HashSet<u8> = (0..100).map(|_| layout.issue(1, &mut rng)[1]).collect();
        assert!(bytes.len() > 10, "{bytes:?}");
        assert!(bytes.iter().all(|b| b % 2 == 1));
    }

    #[test]
    fn initials_of_one_connection_share_a_worker_and_short_ids_hash() {
        let layout = CidLayout::new(Some((&[1, 2, 3, 4, 5, 6, 7, 8][..], 0)), 4);
        // An 8-byte client ID has no byte at offset 9: the whole ID is hashed, the same way each time.
        let dcid = [9u8, 8, 7, 6, 5, 4, 3, 2];
        let owner = layout.owner(&long_header(&dcid));
        assert_eq!(owner, layout.owner(&long_header(&dcid)));
        assert_eq!(owner, hash(&dcid) % 4);
        let owners: std::collections::HashSet<usize> = (0..64u8)
            .map(|i| layout.owner(&long_header(&[i, 1, 2, 3, 4, 5, 6, 7])))
            .collect();
        assert!(owners.len() > 1, "client IDs spread over the workers");
        assert_eq!(layout.owner(&[]), 0);
        assert_eq!(layout.owner(&[0x40, 1]), 0, "too short: worker 0, which drops it");
    }
}
