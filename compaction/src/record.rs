//! A record and its on-disk frame.
//!
//! ```text
//! frame  := body_len: u32 LE | crc32c(body): u32 LE | body
//! body   := version: u8 (2) | flags: u8 (bit 0 = tombstone)
//!         | offset: u64 LE | sub: u32 LE | rest: u32 LE | timestamp_ms: u64 LE
//!         | headers_len: u32 LE | headers
//!         | key_len: u32 LE | key | value_len: u32 LE | value
//! ```
//!
//! The length comes first so a reader can skip a record without decoding it;
//! the CRC covers the whole body, so a torn or flipped byte anywhere in the
//! record is caught before the record is served.
//!
//! Version 1, written before batches existed, is version 2 without `sub`
//! and `rest`; it still decodes, as a batch of one. A whole frame with a
//! good CRC but an unknown version or flag was written by a newer format,
//! not torn by a crash, so it is refused even at the end of the active
//! segment rather than cut off.

use bytes::{Buf, Bytes};

use crate::batch::BatchPos;

/// Position of a record in the topic: the caller's sequence number. Offsets
/// strictly increase, are consecutive inside a batch, may have gaps between
/// batches, and are never rewritten.
pub type Offset = u64;

/// Bytes of the frame header: body length and CRC.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of the fixed part of a version 1 body (everything but headers, key
/// and value): the smallest body any frame may declare.
const BODY_FIXED_BYTES_V1: usize = 1 + 1 + 8 + 8 + 4 + 4 + 4;
/// Bytes of the fixed part of a version 2 body: version 1 plus the batch
/// position.
const BODY_FIXED_BYTES: usize = BODY_FIXED_BYTES_V1 + 4 + 4;
/// The body version written before batches: no batch position.
const FORMAT_VERSION_V1: u8 = 1;
/// The body version written now.
const FORMAT_VERSION: u8 = 2;
/// Flag bit: the record is a tombstone (no value).
const FLAG_TOMBSTONE: u8 = 1;
/// Largest body a frame may declare; anything larger is garbage, not a record.
pub const MAX_BODY_BYTES: usize = 256 << 20;

/// One keyed message of the compacted topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the record sits in the topic; chosen by the caller.
    pub offset: Offset,
    /// When the record was written, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key compaction keeps the latest value of.
    pub key: Bytes,
    /// The value, or `None` for a tombstone (a delete of the key).
    pub value: Option<Bytes>,
    /// Where the record sits in the batch it was appended with.
    pub batch: BatchPos,
    /// Opaque metadata the caller keeps with the record, tombstones included
    /// (like Kafka's record headers); empty by default.
    pub headers: Bytes,
}

impl Record {
    /// A record that sets `key` to `value`.
    pub fn put(
        offset: Offset,
        timestamp_ms: u64,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Self {
        Record {
            offset,
            timestamp_ms,
            key: key.into(),
            value: Some(value.into()),
            batch: BatchPos::SINGLE,
            headers: Bytes::new(),
        }
    }

    /// A tombstone: the delete of `key`.
    pub fn tombstone(offset: Offset, timestamp_ms: u64, key: impl Into<Bytes>) -> Self {
        Record {
            offset,
            timestamp_ms,
            key: key.into(),
            value: None,
            batch: BatchPos::SINGLE,
            headers: Bytes::new(),
        }
    }

    /// The same record at position `batch` of its batch.
    pub fn with_batch(mut self, batch: BatchPos) -> Self {
        self.batch = batch;
        self
    }

    /// Offset of the first record of this record's batch.
    pub fn batch_start(&self) -> Offset {
        self.offset.saturating_sub(u64::from(self.batch.sub))
    }

    /// Offset of the last record of this record's batch.
    pub fn batch_end(&self) -> Offset {
        self.offset.saturating_add(u64::from(self.batch.rest))
    }

    /// The same record carrying `headers`.
    pub fn with_headers(mut self, headers: impl Into<Bytes>) -> Self {
        self.headers = headers.into();
        self
    }

    /// Whether this record deletes its key.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }

    /// Size of the record's frame on disk.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_BYTES
            + BODY_FIXED_BYTES
            + self.headers.len()
            + self.key.len()
            + self.value.as_ref().map_or(0, Bytes::len)
    }

    /// Appends the record's frame (the segment file format) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        out.push(FORMAT_VERSION);
        out.push(if self.is_tombstone() {
            FLAG_TOMBSTONE
        } else {
            0
        });
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.batch.sub.to_le_bytes());
        out.extend_from_slice(&self.batch.rest.to_le_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        let value = self.value.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let body = &out[start + FRAME_HEADER_BYTES..];
        let body_len = body.len() as u32;
        let crc = crc32c::crc32c(body);
        out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// What decoding the bytes at one position found.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A whole, valid record and the length of its frame.
    Record(Record, usize),
    /// The frame is longer than the bytes at hand: `needed` bytes in all.
    Incomplete { needed: usize },
    /// The bytes are not a valid record: damaged, or torn by a crash.
    Invalid(String),
    /// A whole frame with a good CRC that this version cannot read (an
    /// unknown format version or flag): never the work of a torn write.
    Unreadable(String),
}

/// Decodes the frame at the start of `buf`. Key and value share `buf`'s
/// memory (no copy).
#[cfg(test)]
pub(crate) fn decode(buf: &Bytes) -> Decoded {
    decode_at(buf, 0)
}

/// Decodes the frame at byte `at` of `buf` (past its end: none yet). Key,
/// value and headers share `buf`'s memory (no copy), and are the only
/// slices of it made, since each raises and later lowers a shared count.
pub(crate) fn decode_at(buf: &Bytes, at: usize) -> Decoded {
    let frame = buf.get(at..).unwrap_or_default();
    if frame.len() < FRAME_HEADER_BYTES {
        return Decoded::Incomplete {
            needed: FRAME_HEADER_BYTES,
        };
    }
    let mut header = &frame[..FRAME_HEADER_BYTES];
    let body_len = header.get_u32_le() as usize;
    let expected_crc = header.get_u32_le();
    if !(BODY_FIXED_BYTES_V1..=MAX_BODY_BYTES).contains(&body_len) {
        return Decoded::Invalid(format!("frame declares an impossible length {body_len}"));
    }
    let frame_len = FRAME_HEADER_BYTES + body_len;
    if frame.len() < frame_len {
        return Decoded::Incomplete { needed: frame_len };
    }
    let body = &frame[FRAME_HEADER_BYTES..frame_len];
    let actual_crc = crc32c::crc32c(body);
    if actual_crc != expected_crc {
        return Decoded::Invalid(format!(
            "crc32c mismatch: stored {expected_crc:#010x}, computed {actual_crc:#010x}"
        ));
    }
    let version = body[0];
    let fixed_bytes = match version {
        FORMAT_VERSION_V1 => BODY_FIXED_BYTES_V1,
        FORMAT_VERSION => BODY_FIXED_BYTES,
        _ => {
            return Decoded::Unreadable(format!(
                "unknown record format version {version} (this build reads versions \
                 {FORMAT_VERSION_V1} and {FORMAT_VERSION})"
            ))
        }
    };
    let flags = body[1];
    if flags & !FLAG_TOMBSTONE != 0 {
        return Decoded::Unreadable(format!("unknown record flags {flags:#04x}"));
    }
    if body_len < fixed_bytes {
        return Decoded::Invalid(format!(
            "frame of format version {version} declares an impossible length {body_len}"
        ));
    }
    let body_in_buf = |range: std::ops::Range<usize>| {
        let start = at + FRAME_HEADER_BYTES;
        buf.slice(start + range.start..start + range.end)
    };
    match decode_body(body, version, body_in_buf) {
        Ok(record) => Decoded::Record(record, frame_len),
        Err(reason) => Decoded::Invalid(reason),
    }
}

/// Decodes a body whose CRC, version, flags and fixed length were checked;
/// `shared` gives a range of the body as bytes that share its memory.
fn decode_body(
    body: &[u8],
    version: u8,
    shared: impl Fn(std::ops::Range<usize>) -> Bytes,
) -> Result<Record, String> {
    let mut cursor = body;
    cursor.advance(1);
    let flags = cursor.get_u8();
    let offset = cursor.get_u64_le();
    let batch = if version == FORMAT_VERSION_V1 {
        BatchPos::SINGLE
    } else {
        let sub = cursor.get_u32_le();
        let rest = cursor.get_u32_le();
        BatchPos::new(sub, rest)
    };
    if u64::from(batch.sub) > offset || offset.checked_add(u64::from(batch.rest)).is_none() {
        return Err(format!(
            "batch position (sub {}, rest {}) does not fit offset {offset}",
            batch.sub, batch.rest
        ));
    }
    let timestamp_ms = cursor.get_u64_le();
    let headers_len = cursor.get_u32_le() as usize;
    if cursor.remaining() < headers_len + 8 {
        return Err(format!("headers length {headers_len} overruns the record"));
    }
    let headers_start = body.len() - cursor.remaining();
    cursor.advance(headers_len);
    let key_len = cursor.get_u32_le() as usize;
    if cursor.remaining() < key_len + 4 {
        return Err(format!("key length {key_len} overruns the record"));
    }
    let key_start = body.len() - cursor.remaining();
    cursor.advance(key_len);
    let value_len = cursor.get_u32_le() as usize;
    if cursor.remaining() != value_len {
        return Err(format!(
            "value length {value_len} disagrees with the {} bytes left in the record",
            cursor.remaining()
        ));
    }
    let tombstone = flags & FLAG_TOMBSTONE != 0;
    if tombstone && value_len != 0 {
        return Err("tombstone carries a value".to_string());
    }
    let value_start = body.len() - value_len;
    Ok(Record {
        offset,
        timestamp_ms,
        key: shared(key_start..key_start + key_len),
        value: (!tombstone).then(|| shared(value_start..body.len())),
        batch,
        headers: shared(headers_start..headers_start + headers_len),
    })
}

/// Decodes a byte stream of frames in the segment format (a segment file's
/// contents, or a snapshot built from one). `name` identifies the stream in
/// errors.
pub fn decode_frames(
    name: &str,
    bytes: Bytes,
) -> impl Iterator<Item = crate::Result<Record>> + use<'_> {
    decode_frames_from(name, bytes, 0)
}

/// Decodes the frames of `bytes` from byte `start` on (a snapshot's, after
/// its header), so that an error names the byte of `bytes` it is at.
pub fn decode_frames_from(
    name: &str,
    bytes: Bytes,
    start: usize,
) -> impl Iterator<Item = crate::Result<Record>> + use<'_> {
    let mut position = start;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || position >= bytes.len() {
            return None;
        }
        let corrupt = |reason: String| crate::Error::Corrupt {
            path: name.into(),
            position: position as u64,
            reason,
        };
        let outcome = match decode_at(&bytes, position) {
            Decoded::Record(record, frame_len) => {
                position += frame_len;
                return Some(Ok(record));
            }
            Decoded::Incomplete { needed } => corrupt(format!(
                "frame of {needed} bytes runs past the end of the stream"
            )),
            Decoded::Invalid(reason) | Decoded::Unreadable(reason) => corrupt(reason),
        };
        failed = true;
        Some(Err(outcome))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(record: &Record) -> Bytes {
        let mut out = Vec::new();
        record.encode_into(&mut out);
        Bytes::from(out)
    }

    #[test]
    fn put_and_tombstone_round_trip() {
        for record in [
            Record::put(7, 1_000, "topics/a", "{\"x\":1}"),
            Record::tombstone(9, 2_000, "topics/a").with_headers("h"),
            Record::put(11, 2_000, "topics/b", "1").with_headers(vec![1, 2, 3]),
            Record::put(10, 3_000, "", ""),
        ] {
            let bytes = encoded(&record);
            assert_eq!(bytes.len(), record.frame_len());
            match decode(&bytes) {
                Decoded::Record(decoded, len) => {
                    assert_eq!(decoded, record);
                    assert_eq!(len, bytes.len());
                }
                other => panic!("expected a record, got {other:?}"),
            }
        }
    }

    /// The frame version 1 wrote for `record`: no batch position.
    fn encoded_v1(record: &Record) -> Bytes {
        let v2 = encoded(record);
        let mut body = v2[FRAME_HEADER_BYTES..].to_vec();
        body[0] = FORMAT_VERSION_V1;
        body.drain(10..18);
        frame_of(&body)
    }

    fn frame_of(body: &[u8]) -> Bytes {
        let mut frame = Vec::new();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
        frame.extend_from_slice(body);
        Bytes::from(frame)
    }

    #[test]
    fn a_batch_position_round_trips() {
        let record = Record::put(7, 1_000, "k", "v").with_batch(BatchPos::new(3, 4));
        match decode(&encoded(&record)) {
            Decoded::Record(decoded, _) => {
                assert_eq!(decoded.batch, BatchPos::new(3, 4));
                assert_eq!((decoded.batch_start(), decoded.batch_end()), (4, 11));
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn a_version_1_frame_reads_as_a_batch_of_one() {
        for record in [
            Record::put(7, 1_000, "topics/a", "{\"x\":1}").with_headers("h"),
            Record::tombstone(9, 2_000, "topics/a"),
        ] {
            let bytes = encoded_v1(&record);
            assert_eq!(bytes.len(), record.frame_len() - 8);
            match decode(&bytes) {
                Decoded::Record(decoded, len) => {
                    assert_eq!(decoded, record);
                    assert_eq!(len, bytes.len());
                }
                other => panic!("expected a record, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_version_with_a_good_crc_is_unreadable_not_torn() {
        let mut body = encoded(&Record::put(1, 5, "key", "value"))[FRAME_HEADER_BYTES..].to_vec();
        body[0] = 3;
        match decode(&frame_of(&body)) {
            Decoded::Unreadable(reason) => assert!(reason.contains("version 3"), "{reason}"),
            other => panic!("expected unreadable, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_reaching_below_offset_zero_is_invalid() {
        let record = Record::put(2, 5, "key", "value").with_batch(BatchPos::new(3, 0));
        match decode(&encoded(&record)) {
            Decoded::Invalid(reason) => assert!(reason.contains("sub 3"), "{reason}"),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = encoded(&Record::put(1, 5, "key", "value"));
        for position in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[position] ^= 0x40;
            let result = decode(&Bytes::from(damaged));
            assert!(
                !matches!(result, Decoded::Record(..)),
                "flip at byte {position} went unnoticed"
            );
        }
    }

    #[test]
    fn a_stream_of_frames_decodes_and_a_cut_one_is_named() {
        let records = vec![Record::put(1, 5, "a", "1"), Record::tombstone(2, 6, "a")];
        let mut stream = Vec::new();
        for record in &records {
            record.encode_into(&mut stream);
        }
        let decoded: Vec<Record> = decode_frames("snap", Bytes::from(stream.clone()))
            .collect::<crate::Result<_>>()
            .unwrap();
        assert_eq!(decoded, records);
        stream.pop();
        let error = decode_frames("snap", Bytes::from(stream))
            .last()
            .unwrap()
            .unwrap_err()
            .to_string();
        let second = format!("byte {}", records[0].frame_len());
        assert!(error.contains("snap") && error.contains(&second), "{error}");
    }

    #[test]
    fn a_short_buffer_asks_for_the_whole_frame() {
        let bytes = encoded(&Record::put(1, 5, "key", "value"));
        match decode(&bytes.slice(..bytes.len() - 1)) {
            Decoded::Incomplete { needed } => assert_eq!(needed, bytes.len()),
            other => panic!("expected incomplete, got {other:?}"),
        }
    }
}
