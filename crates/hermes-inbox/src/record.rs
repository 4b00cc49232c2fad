//! The on-disk record: the only place that knows its byte layout.
//!
//! ```text
//! u32 LE  payload length
//! u32 LE  CRC-32C over the 4 length bytes followed by the payload
//! payload:
//!   u64 LE  event id
//!   u64 LE  received at, ms since the Unix epoch
//!   u16 LE  idempotency key length (0 = none)
//!   key bytes
//!   body bytes (the rest)
//! ```
//!
//! The checksum covers the length too, so a torn or flipped length field is
//! caught instead of sending the scan off into the middle of a body.

use crate::event::Event;

pub const HEADER_LEN: usize = 8;
const FIXED_PAYLOAD: usize = 8 + 8 + 2;
/// Longest idempotency key kept; longer keys are refused at the edge.
pub const MAX_KEY_LEN: usize = 255;

/// Why the bytes at some offset are not a whole, valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes than a header or than the header's length announces: a torn write.
    Truncated {
        have: usize,
        need: usize,
    },
    Oversized(usize),
    Undersized(usize),
    Checksum,
    BadKey,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Truncated { have, need } => {
                write!(f, "truncated record ({have} of {need} bytes)")
            }
            Invalid::Oversized(n) => write!(f, "record length {n} exceeds the limit"),
            Invalid::Undersized(n) => write!(f, "record length {n} is too short"),
            Invalid::Checksum => f.write_str("checksum mismatch"),
            Invalid::BadKey => f.write_str("idempotency key length runs past the record"),
        }
    }
}

/// Bytes a record with this key and body takes on disk.
pub fn encoded_len(key: Option<&str>, body: &[u8]) -> usize {
    HEADER_LEN + FIXED_PAYLOAD + key.map_or(0, str::len) + body.len()
}

/// The largest payload a body of `max_body` bytes can produce; anything longer is corrupt.
pub fn max_payload(max_body: u64) -> usize {
    FIXED_PAYLOAD + MAX_KEY_LEN + max_body as usize
}

pub fn encode(id: u64, received_at_ms: u64, key: Option<&str>, body: &[u8], out: &mut Vec<u8>) {
    let key = key.unwrap_or("").as_bytes();
    let payload_len = (FIXED_PAYLOAD + key.len() + body.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&received_at_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(body);
    let crc = checksum(&out[start..start + 4], &out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(len_bytes: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

/// A record borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View<'a> {
    pub id: u64,
    pub received_at_ms: u64,
    pub key: Option<&'a [u8]>,
    pub body: &'a [u8],
}

impl View<'_> {
    pub fn to_event(self) -> Event {
        Event {
            id: self.id,
            received_at_ms: self.received_at_ms,
            idempotency_key: self.key.map(|k| String::from_utf8_lossy(k).into_owned()),
            body: self.body.to_vec(),
        }
    }
}

/// Validate the record at the start of `buf` without copying it; returns it and the bytes it used.
pub fn view(buf: &[u8], max_payload: usize) -> Result<(View<'_>, usize), Invalid> {
    if buf.len() < HEADER_LEN {
        return Err(Invalid::Truncated {
            have: buf.len(),
            need: HEADER_LEN,
        });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > max_payload {
        return Err(Invalid::Oversized(len));
    }
    if len < FIXED_PAYLOAD {
        return Err(Invalid::Undersized(len));
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Err(Invalid::Truncated {
            have: buf.len(),
            need: total,
        });
    }
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let payload = &buf[HEADER_LEN..total];
    if checksum(&buf[0..4], payload) != stored {
        return Err(Invalid::Checksum);
    }
    let id = u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"));
    let received_at_ms = u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes"));
    let key_len = u16::from_le_bytes(payload[16..18].try_into().expect("2 bytes")) as usize;
    let rest = &payload[FIXED_PAYLOAD..];
    if key_len > rest.len() {
        return Err(Invalid::BadKey);
    }
    let key = (key_len > 0).then(|| &rest[..key_len]);
    Ok((
        View {
            id,
            received_at_ms,
            key,
            body: &rest[key_len..],
        },
        total,
    ))
}

/// Decode (and copy out) the record at the start of `buf`; returns it and the bytes it used.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<(Event, usize), Invalid> {
    view(buf, max_payload).map(|(v, used)| (v.to_event(), used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_key() {
        let mut buf = Vec::new();
        encode(7, 1000, Some("k-1"), b"hello", &mut buf);
        encode(8, 1001, None, b"", &mut buf);
        assert_eq!(
            buf.len(),
            encoded_len(Some("k-1"), b"hello") + encoded_len(None, b"")
        );
        let (a, used) = decode(&buf, max_payload(10)).unwrap();
        assert_eq!(
            (
                a.id,
                a.received_at_ms,
                a.idempotency_key.as_deref(),
                &a.body[..]
            ),
            (7, 1000, Some("k-1"), &b"hello"[..])
        );
        let (b, _) = decode(&buf[used..], max_payload(10)).unwrap();
        assert_eq!((b.id, b.idempotency_key, b.body.len()), (8, None, 0));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode(1, 2, Some("key"), b"body", &mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode(&bad, max_payload(1 << 20)).is_err(),
                    "flip at byte {byte} bit {bit} accepted"
                );
            }
        }
    }

    #[test]
    fn every_prefix_is_truncated() {
        let mut buf = Vec::new();
        encode(1, 2, None, b"0123456789", &mut buf);
        for cut in 0..buf.len() {
            assert!(matches!(
                decode(&buf[..cut], max_payload(100)),
                Err(Invalid::Truncated { .. })
            ));
        }
    }
}
