//! Reads the frames of a snapshot file one chunk at a time, so a snapshot
//! of any size is decoded in the memory of a few chunks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use compaction::{decode_frames, Record};

/// Bytes read from the file at a time (more only for a larger frame).
const READ_CHUNK_BYTES: usize = 1 << 20;
/// A frame's length and CRC, before its body.
const FRAME_HEADER_BYTES: usize = 8;

/// The records of `[start, end)` of a snapshot file, in order; the first
/// bad frame ends the iteration with an error naming the file and byte.
pub struct SnapshotFrames {
    file: Arc<File>,
    name: PathBuf,
    /// Byte position of the next frame in the file.
    position: u64,
    end: u64,
    /// Bytes read from the file from `chunk_start` on.
    chunk: Bytes,
    chunk_start: u64,
    failed: bool,
}

impl SnapshotFrames {
    /// The frames of `file` (named `name` in errors) between `start` and `end`.
    pub fn new(file: Arc<File>, name: PathBuf, start: u64, end: u64) -> SnapshotFrames {
        SnapshotFrames {
            file,
            name,
            position: start,
            end,
            chunk: Bytes::new(),
            chunk_start: start,
            failed: false,
        }
    }

    fn corrupt(&mut self, reason: String) -> compaction::Error {
        self.failed = true;
        compaction::Error::Corrupt {
            path: self.name.clone(),
            position: self.position,
            reason,
        }
    }

    /// Makes the chunk hold at least `needed` bytes from `position` on.
    fn fill(&mut self, needed: usize) -> compaction::Result<()> {
        let in_chunk = (self.position - self.chunk_start) as usize;
        if self.chunk.len() >= in_chunk + needed {
            return Ok(());
        }
        let want = needed
            .max(READ_CHUNK_BYTES)
            .min((self.end - self.position) as usize);
        let mut buf = BytesMut::zeroed(want);
        let mut read = 0;
        while read < want {
            let got = self
                .file
                .read_at(&mut buf[read..], self.position + read as u64)
                .map_err(|source| compaction::Error::Io {
                    op: "read",
                    path: self.name.clone(),
                    source,
                })?;
            if got == 0 {
                break;
            }
            read += got;
        }
        buf.truncate(read);
        self.chunk = buf.freeze();
        self.chunk_start = self.position;
        Ok(())
    }

    fn next_record(&mut self) -> compaction::Result<Record> {
        let left = (self.end - self.position) as usize;
        if left < FRAME_HEADER_BYTES {
            return Err(self.corrupt(format!("{left} bytes at the end are too few for a frame")));
        }
        self.fill(FRAME_HEADER_BYTES)?;
        let at = (self.position - self.chunk_start) as usize;
        let body_len = u32::from_le_bytes(
            self.chunk[at..at + 4]
                .try_into()
                .expect("a 4-byte slice is a u32"),
        ) as usize;
        let frame_len = FRAME_HEADER_BYTES + body_len;
        // Checked before reading: a damaged length must not size a buffer.
        if frame_len > left {
            return Err(self.corrupt(format!(
                "frame of {frame_len} bytes runs past the end of the file ({left} bytes left)"
            )));
        }
        self.fill(frame_len)?;
        let at = (self.position - self.chunk_start) as usize;
        if self.chunk.len() < at + frame_len {
            return Err(self.corrupt("the file ended while it was read".to_string()));
        }
        let frame = self.chunk.slice(at..at + frame_len);
        let name = self.name.display().to_string();
        let decoded = decode_frames(&name, frame).next();
        match decoded {
            Some(Ok(record)) => {
                self.position += frame_len as u64;
                Ok(record)
            }
            Some(Err(compaction::Error::Corrupt { reason, .. })) => Err(self.corrupt(reason)),
            Some(Err(other)) => {
                self.failed = true;
                Err(other)
            }
            None => Err(self.corrupt("empty frame".to_string())),
        }
    }
}

impl Iterator for SnapshotFrames {
    type Item = compaction::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.end {
            return None;
        }
        Some(self.next_record())
    }
}
