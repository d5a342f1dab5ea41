//! `quic-initial reject` without a connection: a server Initial packet that carries CONNECTION_CLOSE
//! with CONNECTION_REFUSED, protected with the Initial keys every QUIC v1 endpoint derives from the
//! client's first destination connection ID (RFC 9001, 5.2), so that the client stops at once while
//! nothing (no TLS state, no connection) is kept for it. quiche has no API for this: before the client's
//! Initial is processed it sends nothing, and after, its close goes out in Handshake packets that the
//! client cannot read until it has our ServerHello.

use ring::aead::{self, quic as hp};
use ring::hkdf;

/// QUIC version 1.
const V1: u32 = 1;
/// RFC 9001, 5.2: the v1 Initial salt.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc,
    0xbb, 0x7f, 0x0a,
];
/// RFC 9000, 20.1.
const CONNECTION_REFUSED: u8 = 0x02;

/// The server's Initial keys for a connection whose client chose `client_dcid`.
struct Keys {
    key: [u8; 16],
    iv: [u8; 12],
    hp: [u8; 16],
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// TLS 1.3's HKDF-Expand-Label with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) {
    let full = [b"tls13 ".as_slice(), label].concat();
    let info = [
        &(out.len() as u16).to_be_bytes()[..],
        &[full.len() as u8],
        &full,
        &[0u8],
    ];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("lengths within HKDF-SHA256's bounds");
}

fn server_keys(client_dcid: &[u8]) -> Keys {
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, &SALT_V1).extract(client_dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, b"server in", &mut secret);
    let server = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let mut keys = Keys {
        key: [0; 16],
        iv: [0; 12],
        hp: [0; 16],
    };
    expand_label(&server, b"quic key", &mut keys.key);
    expand_label(&server, b"quic iv", &mut keys.iv);
    expand_label(&server, b"quic hp", &mut keys.hp);
    keys
}

/// Writes into `out` a datagram refusing the client whose Initial went from `client_scid` to
/// `client_dcid` (version `version`); `our_scid` is the source ID it names. Returns its length, or
/// `None` for a version other than 1 (whose keys we do not know) or a buffer too small.
pub(crate) fn refuse(
    version: u32,
    client_dcid: &[u8],
    client_scid: &[u8],
    our_scid: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    if version != V1 {
        return None;
    }
    // CONNECTION_CLOSE (transport), CONNECTION_REFUSED, frame type 0, no reason phrase.
    let payload = [0x1c, CONNECTION_REFUSED, 0x00, 0x00];
    let tag = aead::AES_128_GCM.tag_len();
    let mut packet = Vec::with_capacity(64);
    packet.push(0xc0); // long header, fixed bit, Initial, a 1-byte packet number
    packet.extend_from_slice(&V1.to_be_bytes());
    packet.push(client_scid.len() as u8);
    packet.extend_from_slice(client_scid);
    packet.push(our_scid.len() as u8);
    packet.extend_from_slice(our_scid);
    packet.push(0); // no token
    let length = 1 + payload.len() + tag; // packet number, payload, tag: a 2-byte varint
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.push(0); // packet number 0
    let keys = server_keys(client_dcid);
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &keys.key).ok()?);
    let nonce = aead::Nonce::assume_unique_for_key(keys.iv); // iv XOR packet number 0
    let mut body = payload.to_vec();
    key.seal_in_place_append_tag(nonce, aead::Aad::from(&packet[..]), &mut body)
        .ok()?;
    packet.extend_from_slice(&body);
    // Header protection: a mask from the 16 bytes that start 4 after the packet number's start.
    let sample = &packet[pn_offset + 4..pn_offset + 20];
    let mask = hp::HeaderProtectionKey::new(&hp::AES_128, &keys.hp)
        .ok()?
        .new_mask(sample)
        .ok()?;
    packet[0] ^= mask[0] & 0x0f;
    packet[pn_offset] ^= mask[1];
    let out = out.get_mut(..packet.len())?;
    out.copy_from_slice(&packet);
    Some(packet.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_keys_are_rfc_9001s_appendix_a() {
        let keys = server_keys(&unhex("8394c8f03e515708"));
        assert_eq!(keys.key.to_vec(), unhex("cf3a5331653c364c88f0f379b6067e37"));
        assert_eq!(keys.iv.to_vec(), unhex("0ac1493ca1905853b0bba03e"));
        assert_eq!(keys.hp.to_vec(), unhex("c206b8d9b9f0f37644430b490eeaa314"));
    }

    #[test]
    fn the_packet_opens_with_the_clients_keys_to_connection_refused() {
        let (dcid, scid, ours) = (unhex("8394c8f03e515708"), unhex("c101"), [7u8; 16]);
        let mut out = [0u8; 128];
        let n = refuse(V1, &dcid, &scid, &ours, &mut out).unwrap();
        let packet = &mut out[..n];
        // What the client does: remove header protection, then open the payload.
        let keys = server_keys(&dcid);
        let pn_offset = 1 + 4 + 1 + scid.len() + 1 + ours.len() + 1 + 2;
        let mask = hp::HeaderProtectionKey::new(&hp::AES_128, &keys.hp)
            .unwrap()
            .new_mask(&packet[pn_offset + 4..pn_offset + 20])
            .unwrap();
        packet[0] ^= mask[0] & 0x0f;
        packet[pn_offset] ^= mask[1];
        assert_eq!(
            (packet[0], packet[pn_offset]),
            (0xc0, 0),
            "Initial, packet number 0"
        );
        assert_eq!(
            &packet[6..6 + scid.len()],
            &scid[..],
            "addressed to the client's source ID"
        );
        let (header, body) = packet.split_at_mut(pn_offset + 1);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &keys.key).unwrap());
        let plain = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(keys.iv),
                aead::Aad::from(&header[..]),
                body,
            )
            .unwrap();
        assert_eq!(plain, &[0x1c, CONNECTION_REFUSED, 0, 0]);
        assert!(
            refuse(0xff00_001d, &dcid, &scid, &ours, &mut out).is_none(),
            "other versions: unknown keys"
        );
    }
}
