//! Sequential reading of the frames of one log file.
//!
//! The scanner reads the file in large chunks with positional reads (so many
//! scanners can share one file descriptor with the appender) and hands out
//! records whose key and value point into the chunk, without copying.

use std::borrow::Borrow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, IoContext, Result};
use crate::record::{decode_at, Decoded, Record};

/// Bytes read from the file at a time.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// What the scanner found at one position.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A valid record at `position`, followed by the next frame at `next`.
    Record {
        record: Record,
        position: u64,
        next: u64,
    },
    /// The frame at `position` runs past the end of the scanned range.
    Torn { position: u64 },
    /// The bytes at `position` are not a valid frame.
    Invalid { position: u64, reason: String },
    /// The frame at `position` is whole but of a format this build cannot
    /// read: never a torn write.
    Unreadable { position: u64, reason: String },
}

/// Reads the frames between two byte positions of a log file. `F` is how
/// the scanner holds the file: borrowed, or shared with an `Arc`.
pub(crate) struct FrameScanner<F> {
    file: F,
    path: PathBuf,
    position: u64,
    end: u64,
    chunk: Bytes,
    chunk_start: u64,
    /// Bytes read at once (more only for a frame that needs more).
    chunk_bytes: usize,
}

impl<F: Borrow<File>> FrameScanner<F> {
    /// A scanner over `[start, end)` of `file`, found at `path`.
    pub fn new(file: F, path: PathBuf, start: u64, end: u64) -> Self {
        FrameScanner {
            file,
            path,
            position: start,
            end,
            chunk: Bytes::new(),
            chunk_start: start,
            chunk_bytes: CHUNK_BYTES,
        }
    }

    /// The same scanner, reading `chunk_bytes` at a time.
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Self {
        self.chunk_bytes = chunk_bytes;
        self
    }

    /// The next frame, or `None` at the end of the range. After a torn or
    /// invalid frame the scanner stops.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if self.position >= self.end {
                return Ok(None);
            }
            let in_chunk = (self.position - self.chunk_start) as usize;
            match decode_at(&self.chunk, in_chunk) {
                Decoded::Record(record, frame_len) => {
                    let position = self.position;
                    self.position += frame_len as u64;
                    return Ok(Some(Frame::Record {
                        record,
                        position,
                        next: self.position,
                    }));
                }
                Decoded::Incomplete { needed } => {
                    let position = self.position;
                    if position + needed as u64 > self.end {
                        self.position = self.end;
                        return Ok(Some(Frame::Torn { position }));
                    }
                    self.refill(needed)?;
                }
                Decoded::Invalid(reason) => {
                    let position = self.position;
                    self.position = self.end;
                    return Ok(Some(Frame::Invalid { position, reason }));
                }
                Decoded::Unreadable(reason) => {
                    let position = self.position;
                    self.position = self.end;
                    return Ok(Some(Frame::Unreadable { position, reason }));
                }
            }
        }
    }

    /// The next record, where only whole, valid records may be: a torn or
    /// invalid frame is an error naming the file and position.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        match self.next_frame()? {
            None => Ok(None),
            Some(Frame::Record { record, .. }) => Ok(Some(record)),
            Some(Frame::Torn { position }) => Err(Error::Corrupt {
                path: self.path.clone(),
                position,
                reason: format!("record runs past byte {}, the end of the records", self.end),
            }),
            Some(Frame::Invalid { position, reason } | Frame::Unreadable { position, reason }) => {
                Err(Error::Corrupt {
                    path: self.path.clone(),
                    position,
                    reason,
                })
            }
        }
    }

    /// Byte position of the next frame.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads a new chunk starting at the current position, at least `needed`
    /// bytes long.
    fn refill(&mut self, needed: usize) -> Result<()> {
        let remaining = (self.end - self.position) as usize;
        let len = self.chunk_bytes.max(needed).min(remaining);
        let mut buf = self.buffer(len);
        self.file
            .borrow()
            .read_exact_at(&mut buf, self.position)
            .io_context("read", &self.path)?;
        self.chunk = buf.freeze();
        self.chunk_start = self.position;
        Ok(())
    }

    /// `len` bytes to read the next chunk into: the last chunk's buffer when
    /// no record points into it any more and it is large enough, else a
    /// new one of exactly `len` (growing the old one could double it). Never
    /// `BytesMut::zeroed`: the allocator zeroes a large allocation by
    /// handing the freed pages back to the kernel and faulting in new ones,
    /// which took about a seventh of a replay's CPU.
    fn buffer(&mut self, len: usize) -> BytesMut {
        let mut buf = match std::mem::take(&mut self.chunk).try_into_mut() {
            Ok(buf) if buf.capacity() >= len => buf,
            _ => BytesMut::with_capacity(len),
        };
        // What the last chunk wrote stays, to be read over; only bytes
        // never written are zeroed.
        buf.truncate(len);
        buf.resize(len, 0);
        buf
    }
}

/// The records of `[start, end)` of a file of frames (a snapshot's, say),
/// read a chunk at a time as they are consumed, so a file of any size is
/// read in the memory of a few chunks. The first torn or invalid frame ends
/// them with an error naming the file and its byte.
pub struct FileRecords {
    scanner: FrameScanner<Arc<File>>,
    failed: bool,
}

impl FileRecords {
    /// The records of `file`, found at `path`, between `start` and `end`.
    pub fn new(file: Arc<File>, path: PathBuf, start: u64, end: u64) -> FileRecords {
        FileRecords {
            scanner: FrameScanner::new(file, path, start, end),
            failed: false,
        }
    }
}

impl Iterator for FileRecords {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let next = self.scanner.next_record().transpose();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of sizes from a few bytes to several chunks, and a file of them.
    fn file_of_records() -> (tempfile::NamedTempFile, Vec<Record>) {
        let records: Vec<Record> = (0..40u64)
            .map(|i| {
                let value = "v".repeat((i as usize * 37) % 700);
                match i % 5 {
                    4 => Record::tombstone(i, i, format!("key/{i}")),
                    _ => Record::put(i, i, format!("key/{i}"), format!("\"{value}\""))
                        .with_headers(vec![i as u8; (i % 3) as usize]),
                }
            })
            .collect();
        let mut bytes = Vec::new();
        for record in &records {
            record.encode_into(&mut bytes);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        (file, records)
    }

    #[test]
    fn records_read_alike_whether_or_not_earlier_ones_are_still_held() {
        let (file, written) = file_of_records();
        let handle = File::open(file.path()).unwrap();
        let end = handle.metadata().unwrap().len();
        for chunk_bytes in [64, 300, 1 << 20] {
            // Held: no chunk's buffer may be read over.
            let mut scanner = FrameScanner::new(&handle, file.path().into(), 0, end)
                .with_chunk_bytes(chunk_bytes);
            let mut held = Vec::new();
            while let Some(record) = scanner.next_record().unwrap() {
                held.push(record);
            }
            assert_eq!(held, written, "held, {chunk_bytes}-byte chunks");
            // Dropped at once: each chunk's buffer is read over by the next.
            let mut scanner = FrameScanner::new(&handle, file.path().into(), 0, end)
                .with_chunk_bytes(chunk_bytes);
            for (n, expected) in written.iter().enumerate() {
                let record = scanner.next_record().unwrap().expect("a record");
                assert_eq!(&record, expected, "record {n}, {chunk_bytes}-byte chunks");
            }
            assert!(scanner.next_record().unwrap().is_none());
            assert_eq!(scanner.position(), end);
        }
    }
}
