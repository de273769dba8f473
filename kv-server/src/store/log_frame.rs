//! One frame of the raft log's segment files: how it is laid out, written
//! and checked.
//!
//! ```text
//! frame := body_len: u32 LE | crc32c(body): u32 LE | body
//! body  := kind: u8 (1 entry, 2 committed, 3 synced) | term: u64 LE | leader: u64 LE
//!        | index: u64 LE | payload (an entry: its JSON; else nothing)
//! ```
//!
//! A write that is synced ends with a `synced` frame (the id of the frame
//! before it): bytes of a later write after it mean that everything up to
//! it was durable, which is how opening tells damage from a torn tail
//! (`log_recovery`).
//!
//! The header carries the log id, so opening the log indexes it without
//! decoding an entry's JSON. This format is on disk: changing it makes
//! existing data directories unreadable.

use openraft::CommittedLeaderId;

use crate::types::LogId;

/// Where the body length sits in a frame (a `u32`, little endian).
const BODY_LEN_AT: usize = 0;
/// Where the body's CRC32C sits in a frame (a `u32`, little endian).
const CRC_AT: usize = 4;
/// Bytes of the frame header: body length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Where the kind sits in a body (one byte).
const KIND_AT: usize = 0;
/// Where the leader's term sits in a body (a `u64`, little endian).
const TERM_AT: usize = 1;
/// Where the leader's node id sits in a body (a `u64`, little endian).
const LEADER_AT: usize = 9;
/// Where the log index sits in a body (a `u64`, little endian).
const INDEX_AT: usize = 17;
/// Bytes of the body before the payload: kind, term, leader, index.
const BODY_HEADER_BYTES: usize = 25;
/// Largest body a frame may declare; anything larger is damage.
const MAX_BODY_BYTES: usize = 64 << 20;
/// Largest entry JSON a frame holds: [`append`](super::log_files) refuses a
/// larger one rather than write a frame no read would take back.
pub const MAX_ENTRY_JSON_BYTES: usize = MAX_BODY_BYTES - BODY_HEADER_BYTES;

/// The kind byte of a log entry's frame.
const KIND_ENTRY: u8 = 1;
/// The kind byte of a committed log id's frame.
const KIND_COMMITTED: u8 = 2;
/// The kind byte of the frame that ends a synced write.
const KIND_SYNCED: u8 = 3;

/// A frame to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A log entry: its id and its JSON (shared, so a pending entry's
    /// encoding is written without a copy).
    Entry(LogId, bytes::Bytes),
    /// The committed log id, as last saved.
    Committed(LogId),
    /// The end of a write made durable (with the id of the frame before).
    Synced(LogId),
}

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A log entry; its JSON is the payload.
    Entry,
    /// The committed log id; no payload.
    Committed,
    /// The end of a synced write; no payload.
    Synced,
}

impl std::fmt::Display for FrameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameKind::Entry => "entry",
            FrameKind::Committed => "committed id",
            FrameKind::Synced => "end of a synced write",
        })
    }
}

/// A frame decoded from bytes, borrowing its payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// What the frame holds.
    pub kind: FrameKind,
    /// The entry's id, or the committed id.
    pub log_id: LogId,
    /// An entry's JSON; empty for a committed id.
    pub payload: &'a [u8],
    /// Bytes of the whole frame, header included.
    pub len: usize,
}

/// Why bytes are not a frame. A segment error names the file and the byte
/// beside it (see `StoreError::LogFrameDamaged`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameDamage {
    /// Fewer bytes are left than a frame header needs.
    #[error("a frame header is cut short")]
    HeaderCutShort,
    /// The header declares a body no frame can have.
    #[error("a frame declares an impossible length ({declared} bytes)")]
    ImpossibleLength {
        /// The body length the header declares.
        declared: usize,
    },
    /// Fewer bytes are left than the header declares.
    #[error("a frame is cut short")]
    BodyCutShort,
    /// The body is not what was written.
    #[error("a frame's checksum does not match")]
    ChecksumMismatch,
    /// The checksum holds but the kind byte is none this version writes.
    #[error("a frame has an unknown kind {kind}")]
    UnknownKind {
        /// The kind byte found.
        kind: u8,
    },
}

/// Appends the encoding of `frame` to `out`.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let (kind, log_id, payload): (u8, &LogId, &[u8]) = match frame {
        Frame::Entry(log_id, json) => (KIND_ENTRY, log_id, json.as_ref()),
        Frame::Committed(log_id) => (KIND_COMMITTED, log_id, &[]),
        Frame::Synced(log_id) => (KIND_SYNCED, log_id, &[]),
    };
    let start = out.len();
    let body_start = start + FRAME_HEADER_BYTES;
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    out.push(kind);
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&log_id.index.to_le_bytes());
    out.extend_from_slice(payload);
    let body_len = u32::try_from(out.len() - body_start)
        .expect("an entry's JSON is far below 4 GiB: openraft sends entries in small batches");
    let crc = crc32c::crc32c(&out[body_start..]);
    out[start + BODY_LEN_AT..start + CRC_AT].copy_from_slice(&body_len.to_le_bytes());
    out[start + CRC_AT..body_start].copy_from_slice(&crc.to_le_bytes());
}

/// The `u32` at `at` in `bytes`, which holds at least `at + 4` bytes.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a 4-byte slice"))
}

/// The `u64` at `at` in `bytes`, which holds at least `at + 8` bytes.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("an 8-byte slice"))
}

/// Whether the frame at the start of `bytes` declares the length of a frame
/// without payload (a committed id, the end of a synced write): a cheap
/// test before a checksum, when searching damaged bytes for one.
pub fn declares_no_payload(bytes: &[u8]) -> bool {
    bytes
        .get(..FRAME_HEADER_BYTES)
        .is_some_and(|header| u32_at(header, BODY_LEN_AT) as usize == BODY_HEADER_BYTES)
}

/// Bytes of the frame at the start of `bytes` as far as `bytes` holds it:
/// header and declared body, or the header alone when the declared length
/// is impossible.
pub fn declared_len(bytes: &[u8]) -> usize {
    let declared = match bytes.get(..FRAME_HEADER_BYTES) {
        Some(header) => u32_at(header, BODY_LEN_AT) as usize,
        None => 0,
    };
    let len = if (BODY_HEADER_BYTES..=MAX_BODY_BYTES).contains(&declared) {
        FRAME_HEADER_BYTES + declared
    } else {
        FRAME_HEADER_BYTES
    };
    len.min(bytes.len())
}

/// Decodes the frame at the start of `bytes` (bytes after it are ignored).
pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, FrameDamage> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(FrameDamage::HeaderCutShort);
    }
    let body_len = u32_at(bytes, BODY_LEN_AT) as usize;
    let crc = u32_at(bytes, CRC_AT);
    if !(BODY_HEADER_BYTES..=MAX_BODY_BYTES).contains(&body_len) {
        return Err(FrameDamage::ImpossibleLength { declared: body_len });
    }
    let Some(body) = bytes.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + body_len) else {
        return Err(FrameDamage::BodyCutShort);
    };
    if crc32c::crc32c(body) != crc {
        return Err(FrameDamage::ChecksumMismatch);
    }
    let kind = match body[KIND_AT] {
        KIND_ENTRY => FrameKind::Entry,
        KIND_COMMITTED => FrameKind::Committed,
        KIND_SYNCED => FrameKind::Synced,
        kind => return Err(FrameDamage::UnknownKind { kind }),
    };
    let leader_id = CommittedLeaderId::new(u64_at(body, TERM_AT), u64_at(body, LEADER_AT));
    Ok(Decoded {
        kind,
        log_id: LogId::new(leader_id, u64_at(body, INDEX_AT)),
        payload: &body[BODY_HEADER_BYTES..],
        len: FRAME_HEADER_BYTES + body_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, leader: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, leader), index)
    }

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(frame, &mut bytes);
        bytes
    }

    #[test]
    fn the_body_header_is_kind_then_three_words() {
        assert_eq!(BODY_HEADER_BYTES, INDEX_AT + 8);
        assert_eq!(FRAME_HEADER_BYTES, CRC_AT + 4);
    }

    #[test]
    fn frames_decode_to_what_was_encoded() {
        let cases = [
            (
                Frame::Entry(id(3, 2, 17), b"{\"x\":1}".to_vec().into()),
                FrameKind::Entry,
            ),
            (
                Frame::Entry(id(1, 1, 1), Vec::new().into()),
                FrameKind::Entry,
            ),
            (Frame::Committed(id(u64::MAX, 7, 9)), FrameKind::Committed),
            (Frame::Synced(id(2, 1, 8)), FrameKind::Synced),
        ];
        for (frame, kind) in cases {
            let bytes = encoded(&frame);
            let decoded = decode(&bytes).expect("an encoded frame decodes");
            let (log_id, payload) = match &frame {
                Frame::Entry(log_id, json) => (*log_id, json.as_ref()),
                Frame::Committed(log_id) | Frame::Synced(log_id) => (*log_id, &[][..]),
            };
            let expected = Decoded {
                kind,
                log_id,
                payload,
                len: bytes.len(),
            };
            assert_eq!(decoded, expected, "{frame:?}");
        }
    }

    #[test]
    fn a_frame_is_read_from_the_front_of_longer_bytes() {
        let mut bytes = encoded(&Frame::Committed(id(1, 1, 4)));
        let first_len = bytes.len();
        encode(
            &Frame::Entry(id(1, 1, 5), b"[]".to_vec().into()),
            &mut bytes,
        );
        let first = decode(&bytes).expect("decodes");
        assert_eq!((first.log_id.index, first.len), (4, first_len));
        let second = decode(&bytes[first.len..]).expect("decodes");
        assert_eq!((second.log_id.index, second.payload), (5, &b"[]"[..]));
    }

    #[test]
    fn damaged_bytes_are_named_by_what_is_wrong() {
        let frame = encoded(&Frame::Entry(id(2, 1, 3), b"{\"k\":\"v\"}".to_vec().into()));
        let with = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = frame.clone();
            change(&mut bytes);
            bytes
        };
        let cases: Vec<(&str, Vec<u8>, FrameDamage)> = vec![
            ("no bytes", Vec::new(), FrameDamage::HeaderCutShort),
            (
                "half a header",
                frame[..FRAME_HEADER_BYTES / 2].to_vec(),
                FrameDamage::HeaderCutShort,
            ),
            (
                "a body shorter than its header",
                with(&|bytes| bytes[BODY_LEN_AT..CRC_AT].copy_from_slice(&3u32.to_le_bytes())),
                FrameDamage::ImpossibleLength { declared: 3 },
            ),
            (
                "a body over the limit",
                with(&|bytes| bytes[BODY_LEN_AT..CRC_AT].copy_from_slice(&u32::MAX.to_le_bytes())),
                FrameDamage::ImpossibleLength {
                    declared: u32::MAX as usize,
                },
            ),
            (
                "the last byte missing",
                frame[..frame.len() - 1].to_vec(),
                FrameDamage::BodyCutShort,
            ),
            (
                "a flipped payload byte",
                with(&|bytes| *bytes.last_mut().expect("a payload") ^= 0x01),
                FrameDamage::ChecksumMismatch,
            ),
            (
                "a flipped checksum byte",
                with(&|bytes| bytes[CRC_AT] ^= 0x80),
                FrameDamage::ChecksumMismatch,
            ),
            (
                "an unknown kind under a good checksum",
                with(&|bytes| {
                    bytes[FRAME_HEADER_BYTES + KIND_AT] = 9;
                    let crc = crc32c::crc32c(&bytes[FRAME_HEADER_BYTES..]);
                    bytes[CRC_AT..FRAME_HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
                }),
                FrameDamage::UnknownKind { kind: 9 },
            ),
        ];
        for (case, bytes, damage) in cases {
            assert_eq!(decode(&bytes), Err(damage), "{case}");
        }
    }
}
