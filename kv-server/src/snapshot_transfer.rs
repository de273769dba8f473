//! The wire format of a snapshot sent in chunks (`/raft/snapshot`).
//!
//! Each request carries one chunk: a preamble (u32 LE length, then JSON:
//! the leader's vote, the snapshot's meta, the chunk's byte offset in the
//! snapshot file and its CRC32C, and on the last chunk the whole file's
//! length and CRC32C) followed by the chunk's bytes. The receiver answers
//! each with a [`ChunkReply`] naming how many bytes of the snapshot it
//! holds, so a sender that was cut off, timed out or restarted resumes
//! from there rather than from the start. An empty chunk at offset 0 asks
//! the receiver what it holds.

use openraft::error::Fatal;
use openraft::raft::SnapshotResponse;
use openraft::{SnapshotMeta, Vote};
use serde::{Deserialize, Serialize};

use crate::types::{Node, NodeId};

/// Bytes of snapshot a sender puts in one chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// The largest preamble a receiver reads (a membership of many nodes fits
/// many times over).
pub const MAX_PREAMBLE_BYTES: usize = 256 << 10;
/// The largest chunk request a receiver reads.
pub const MAX_REQUEST_BYTES: usize = 4 + MAX_PREAMBLE_BYTES + CHUNK_BYTES;

/// What precedes a chunk's bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// The sender's vote: the receiver refuses a snapshot from a stale leader.
    pub vote: Vote<NodeId>,
    /// The snapshot's meta; its id keys the receiver's partial file.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// Byte position of the chunk in the snapshot file.
    pub offset: u64,
    /// CRC32C of the chunk's bytes.
    pub crc32c: u32,
    /// On the last chunk: what the whole file must be.
    pub end: Option<SnapshotEnd>,
}

/// The whole snapshot file, as the last chunk announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEnd {
    /// Its length in bytes.
    pub len: u64,
    /// CRC32C of all its bytes.
    pub crc32c: u32,
}

/// The receiver's answer to a chunk.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChunkReply {
    /// The chunk is written: the receiver holds `held` bytes of the snapshot.
    Held {
        /// Bytes held, from the start of the file.
        held: u64,
    },
    /// The chunk was refused; the receiver holds `held` bytes, the sender
    /// goes on from there.
    Refused {
        /// Bytes held, from the start of the file.
        held: u64,
        /// Why, naming the byte offset.
        reason: String,
    },
    /// The last chunk completed a checked snapshot, handed to Raft; this is
    /// what Raft answered.
    Installed(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
}

/// A chunk request that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer bytes than the preamble's length.
    #[error("the chunk request is shorter than its preamble length")]
    Short,
    /// The preamble's length is beyond the body or the bound.
    #[error(
        "the chunk preamble of {len} bytes runs past the body or over {MAX_PREAMBLE_BYTES} bytes"
    )]
    PreambleLength {
        /// The length read.
        len: usize,
    },
    /// The preamble is not the JSON of a [`ChunkHeader`].
    #[error("unreadable chunk preamble: {0}")]
    Preamble(serde_json::Error),
    /// The chunk's bytes are more than a chunk.
    #[error("a chunk of {len} bytes at byte {offset} is over {CHUNK_BYTES} bytes")]
    TooLong {
        /// Its length.
        len: usize,
        /// Where it starts in the snapshot.
        offset: u64,
    },
}

/// Frames one chunk for `/raft/snapshot`.
pub fn encode_chunk(header: &ChunkHeader, data: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(header).expect("a chunk header serializes");
    let mut body = Vec::with_capacity(4 + head.len() + data.len());
    body.extend_from_slice(&(head.len() as u32).to_le_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(data);
    body
}

/// Splits a `/raft/snapshot` body into its header and chunk bytes; the
/// chunk's CRC is the receiver's to check.
pub fn decode_chunk(body: &[u8]) -> Result<(ChunkHeader, &[u8]), FrameError> {
    let len_bytes: [u8; 4] = body
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(FrameError::Short)?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let head = body
        .get(4..4 + len)
        .filter(|_| len <= MAX_PREAMBLE_BYTES)
        .ok_or(FrameError::PreambleLength { len })?;
    let header: ChunkHeader = serde_json::from_slice(head).map_err(FrameError::Preamble)?;
    let data = &body[4 + len..];
    if data.len() > CHUNK_BYTES {
        return Err(FrameError::TooLong {
            len: data.len(),
            offset: header.offset,
        });
    }
    Ok((header, data))
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    use super::*;

    fn header(offset: u64, data: &[u8]) -> ChunkHeader {
        ChunkHeader {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-42-1".into(),
            },
            offset,
            crc32c: crc32c::crc32c(data),
            end: Some(SnapshotEnd { len: 9, crc32c: 7 }),
        }
    }

    #[test]
    fn a_chunk_decodes_to_the_header_and_bytes_it_was_framed_with() {
        let data = b"some snapshot bytes";
        let body = encode_chunk(&header(4096, data), data);
        let (read, bytes) = decode_chunk(&body).expect("decodes");
        assert_eq!(bytes, data);
        assert_eq!(read.offset, 4096);
        assert_eq!(read.crc32c, crc32c::crc32c(data));
        assert_eq!(read.end, Some(SnapshotEnd { len: 9, crc32c: 7 }));
        assert_eq!(read.meta.snapshot_id, "3-42-1");
    }

    #[test]
    fn unreadable_chunk_requests_are_refused_with_the_reason() {
        let data = vec![0u8; CHUNK_BYTES + 1];
        let oversized = encode_chunk(&header(8, &data), &data);
        let mut huge_preamble = (u32::MAX).to_le_bytes().to_vec();
        huge_preamble.extend_from_slice(b"{}");
        let cases: [(&[u8], &str); 4] = [
            (b"ab", "shorter than its preamble"),
            (&huge_preamble, "runs past the body"),
            (b"\x02\x00\x00\x00{x", "unreadable chunk preamble"),
            (&oversized, "a chunk of 1048577 bytes at byte 8"),
        ];
        for (body, says) in cases {
            let error = decode_chunk(body).expect_err("refused").to_string();
            assert!(error.contains(says), "{error}");
        }
    }
}
