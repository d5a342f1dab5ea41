//! The connection IDs qproxy issues, laid out as QUIC-LB's plaintext or encrypted mode
//! (draft-ietf-quic-load-balancers, sections 5.2 and 5.4): a first octet, then the instance's server ID
//! and a nonce, in clear or sealed in one AES-128 block.
//!
//! ```text
//! plaintext (16 bytes):  | CR (3) | length (5)  | server ID (0..14) | worker byte | random |
//! encrypted (17 bytes):  | CR (3) | worker (5)  | AES-128-ECB(server ID | random nonce)  |
//! ```
//!
//! Without `server-id`, the config rotation bits are `0b111` (the draft's "unroutable": a balancer in
//! front routes such IDs by address) and the length bits are random. The worker field is
//! `worker + workers * r` for a random `r`, so that it is the worker modulo the worker count and still
//! varies between connections. In plaintext mode it is the first nonce byte; with `quic-lb-key` the
//! nonce is sealed, so it moves to the five low bits of the first octet, which the draft leaves to the
//! server when it does not self-encode the length (a balancer never reads them). The server ID and
//! nonce always fill exactly one block (nonce = 16 - server ID length), the draft's single-pass case.
//! Everything that steers a datagram to its worker (the kernel's reuseport program in `steering`, and
//! [`CidLayout::owner`] for the ones the kernel could not steer) reads the same field of the
//! destination CID; Initials, whose destination CID the client chose, go by the same field of it, so
//! every Initial of one connection reaches one worker.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;

/// Length of the connection IDs we issue in plaintext mode (short headers carry no length).
const PLAIN_LEN: usize = 16;
/// One AES block: server ID and nonce in encrypted mode.
const BLOCK: usize = 16;
/// The shortest nonce the draft allows beside a server ID.
pub(crate) const MIN_NONCE: usize = 4;
/// With `quic-lb-key`, the worker field is five bits: at most this many workers.
pub(crate) const MAX_SEALED_WORKERS: usize = 32;

/// The config rotation of IDs issued without a server ID (QUIC-LB: unroutable).
const UNROUTABLE: u8 = 0b111;

/// How this instance writes and reads its connection IDs.
#[derive(Clone)]
pub(crate) struct CidLayout {
    /// `server-id`: the bytes a QUIC-LB balancer routes by (empty: none).
    server_id: Box<[u8]>,
    /// The config rotation codepoint (0..=6 with a server ID).
    rotation: u8,
    /// Workers of this instance (1..=64, 1..=32 with a key).
    workers: usize,
    /// `quic-lb-key`: the encrypted mode's block cipher.
    cipher: Option<Aes128>,
}

impl std::fmt::Debug for CidLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CidLayout")
            .field("server_id", &self.server_id)
            .field("rotation", &self.rotation)
            .field("workers", &self.workers)
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

impl CidLayout {
    /// The layout for `workers` workers, with the configured server ID and rotation and the encrypted
    /// mode's key, if any (the config parser bounds them: a key needs a server ID).
    pub(crate) fn new(server_id: Option<(&[u8], u8)>, key: Option<&[u8; 16]>, workers: usize) -> Self {
        let (server_id, rotation) = server_id.unwrap_or((&[], UNROUTABLE));
        let workers = workers.max(1);
        let cipher = key.map(|key| {
            assert!(
                !server_id.is_empty() && server_id.len() <= BLOCK - MIN_NONCE,
                "the config parser bounds the server ID"
            );
            assert!(
                workers <= MAX_SEALED_WORKERS,
                "the config parser bounds the workers"
            );
            Aes128::new(GenericArray::from_slice(key))
        });
        assert!(
            server_id.len() < PLAIN_LEN - 1,
            "the config parser bounds the server ID"
        );
        CidLayout {
            server_id: server_id.into(),
            rotation,
            workers,
            cipher,
        }
    }

    /// Workers of this instance.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// Length of the IDs we issue: what a short header's destination CID is parsed with.
    pub(crate) fn len(&self) -> usize {
        if self.cipher.is_some() {
            1 + BLOCK
        } else {
            PLAIN_LEN
        }
    }

    /// Where the worker field is in a CID: its byte offset and the bits of that byte it uses.
    pub(crate) fn worker_field(&self) -> (usize, u8) {
        if self.cipher.is_some() {
            (0, 0x1f)
        } else {
            (1 + self.server_id.len(), 0xff)
        }
    }

    /// A new connection ID owned by `worker`.
    pub(crate) fn issue(&self, worker: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
        let (w, mask) = self.worker_field();
        // Any multiple of the worker count that keeps the field within its bits.
        let r = rng.usize(..(usize::from(mask) + 1) / self.workers);
        let field = (worker + self.workers * r) as u8;
        if let Some(cipher) = &self.cipher {
            let mut nonce = [0u8; BLOCK];
            rng.fill(&mut nonce);
            return self.seal(cipher, field, &nonce[self.server_id.len()..]);
        }
        let mut cid = vec![0u8; PLAIN_LEN];
        rng.fill(&mut cid);
        cid[0] = if self.server_id.is_empty() {
            (UNROUTABLE << 5) | (cid[0] & 0x1f)
        } else {
            (self.rotation << 5) | (PLAIN_LEN as u8 - 1)
        };
        cid[1..w].copy_from_slice(&self.server_id);
        cid[w] = field;
        cid
    }

    /// The encrypted mode's single pass: the first octet, then `server ID | nonce` as one AES block.
    fn seal(&self, cipher: &Aes128, low_bits: u8, nonce: &[u8]) -> Vec<u8> {
        let mut block = GenericArray::from([0u8; BLOCK]);
        let sid = self.server_id.len();
        block[..sid].copy_from_slice(&self.server_id);
        block[sid..].copy_from_slice(nonce);
        cipher.encrypt_block(&mut block);
        let mut cid = Vec::with_capacity(1 + BLOCK);
        cid.push((self.rotation << 5) | (low_bits & 0x1f));
        cid.extend_from_slice(&block);
        cid
    }

    /// The worker that owns `datagram`: the worker field of its destination CID, modulo the worker
    /// count. A long header whose destination CID is too short to have that field goes by a hash of the
    /// whole ID.
    pub(crate) fn owner(&self, datagram: &[u8]) -> usize {
        if self.workers == 1 {
            return 0;
        }
        let (w, mask) = self.worker_field();
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
        byte.map_or(0, |b| usize::from(b & mask) % self.workers)
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

    use aes::cipher::BlockDecrypt;

    /// The draft's test key (draft-ietf-quic-load-balancers, "Encrypted CIDs").
    const KEY: [u8; 16] = [
        0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f,
    ];

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What a QUIC-LB balancer does with an encrypted ID: one AES decryption, the server ID in front.
    fn balancer_reads(key: &[u8; 16], cid: &[u8], sid_len: usize) -> Vec<u8> {
        let mut block = GenericArray::clone_from_slice(&cid[1..17]);
        Aes128::new(GenericArray::from_slice(key)).decrypt_block(&mut block);
        block[..sid_len].to_vec()
    }

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
            for (sid, key) in [
                (None, None),
                (Some((&[0xab, 0xcd][..], 1)), None),
                (Some((&[0xab][..], 1)), Some(&KEY)),
            ] {
                if key.is_some() && workers > MAX_SEALED_WORKERS {
                    continue;
                }
                let layout = CidLayout::new(sid, key, workers);
                for worker in 0..workers {
                    for _ in 0..50 {
                        let cid = layout.issue(worker, &mut rng);
                        assert_eq!(cid.len(), layout.len());
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
        let layout = CidLayout::new(Some((&[0x11, 0x22, 0x33][..], 2)), None, 2);
        let cid = layout.issue(1, &mut rng);
        assert_eq!(cid[0], (2 << 5) | 15, "rotation 2, length 16 - 1");
        assert_eq!(&cid[1..4], &[0x11, 0x22, 0x33]);
        assert_eq!(layout.worker_field(), (4, 0xff));
        let plain = CidLayout::new(None, None, 2).issue(0, &mut rng);
        assert_eq!(plain[0] >> 5, UNROUTABLE);
    }

    #[test]
    fn the_single_pass_encryption_matches_the_drafts_test_vector() {
        // cr_bits 2, sid ed793a51d49b8f5f, nonce ee080dbf48c0d1e5 -> 504dd2d05a7b0de9b2b9907afb5ecf8cc3
        // (the draft self-encodes the length 16 in the five low bits; we put the worker field there).
        let sid = unhex("ed793a51d49b8f5f");
        let layout = CidLayout::new(Some((&sid, 2)), Some(&KEY), 2);
        let cid = layout.seal(layout.cipher.as_ref().unwrap(), 16, &unhex("ee080dbf48c0d1e5"));
        assert_eq!(cid, unhex("504dd2d05a7b0de9b2b9907afb5ecf8cc3"));
    }

    #[test]
    fn encrypted_ids_hide_the_server_id_and_a_balancer_with_the_key_finds_it() {
        let mut rng = fastrand::Rng::with_seed(5);
        let sid = [0x51, 0x7e, 0x1d, 0x02];
        let layout = CidLayout::new(Some((&sid[..], 3)), Some(&KEY), 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let worker = rng.usize(..3);
            let cid = layout.issue(worker, &mut rng);
            assert_eq!(cid.len(), 17);
            assert_eq!(cid[0] >> 5, 3, "config rotation in clear");
            assert_eq!(usize::from(cid[0] & 0x1f) % 3, worker);
            assert_eq!(balancer_reads(&KEY, &cid, 4), sid);
            assert!(
                cid.windows(4).all(|w| w != sid),
                "the server ID is not in clear: {cid:02x?}"
            );
            seen.insert(cid[1..].to_vec());
        }
        assert_eq!(seen.len(), 200, "every nonce differs, so every sealed block does");
        let mut other_key = KEY;
        other_key[0] ^= 1;
        assert_ne!(balancer_reads(&other_key, &layout.issue(0, &mut rng), 4), sid);
    }

    #[test]
    fn the_worker_byte_varies_between_connections() {
        let mut rng = fastrand::Rng::with_seed(3);
        let layout = CidLayout::new(None, None, 2);
        let bytes: std::collections::HashSet<u8> = (0..100).map(|_| layout.issue(1, &mut rng)[1]).collect();
        assert!(bytes.len() > 10, "{bytes:?}");
        assert!(bytes.iter().all(|b| b % 2 == 1));
    }

    #[test]
    fn initials_of_one_connection_share_a_worker_and_short_ids_hash() {
        let layout = CidLayout::new(Some((&[1, 2, 3, 4, 5, 6, 7, 8][..], 0)), None, 4);
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
