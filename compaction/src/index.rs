//! The sparse offset index of one segment.
//!
//! One entry every `index_interval_bytes` of log (and always one for the
//! segment's first record) maps an offset to the byte position of its frame
//! and carries the largest record timestamp seen up to that point. A seek
//! finds the last entry at or below the wanted offset and scans forward from
//! there: at most one interval of bytes, however large the segment.
//!
//! The index is derived data: a missing or damaged index file is rebuilt from
//! the log, never trusted blindly. The file is the entries followed by a
//! CRC32C of them, so a flipped bit is caught, not followed.

use std::path::Path;

use crate::error::{IoContext, Result};
use crate::Offset;

/// Bytes of one entry on disk: offset u64, position u32, max timestamp u64.
const ENTRY_BYTES: usize = 20;
/// Bytes of the CRC32C trailer.
const CRC_BYTES: usize = 4;

/// One index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Offset of the record at `position`.
    pub offset: Offset,
    /// Byte position of that record's frame in the segment's log file.
    pub position: u32,
    /// Largest `timestamp_ms` of the records before and including this one.
    pub max_timestamp_ms: u64,
}

/// The sparse index of a segment, held in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct SparseIndex {
    entries: Vec<IndexEntry>,
}

impl SparseIndex {
    /// Adds an entry; offsets and positions must increase.
    pub fn push(&mut self, entry: IndexEntry) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|last| last.offset < entry.offset && last.position < entry.position));
        self.entries.push(entry);
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<&IndexEntry> {
        self.entries.last()
    }

    /// The first entry: the segment's first record.
    pub fn first(&self) -> Option<&IndexEntry> {
        self.entries.first()
    }

    /// Byte position to start scanning from to find `offset`: the position of
    /// the last entry at or below it, or 0.
    pub fn seek(&self, offset: Offset) -> u64 {
        let after = self.entries.partition_point(|entry| entry.offset <= offset);
        match after {
            0 => 0,
            n => u64::from(self.entries[n - 1].position),
        }
    }

    /// Encodes the entries and their CRC for the index file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * ENTRY_BYTES + CRC_BYTES);
        for entry in &self.entries {
            out.extend_from_slice(&entry.offset.to_le_bytes());
            out.extend_from_slice(&entry.position.to_le_bytes());
            out.extend_from_slice(&entry.max_timestamp_ms.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads an index file and checks it against its log: entries must
    /// increase, start at the first record and point inside `log_bytes`.
    /// Returns `Ok(None)` when the file is missing or fails a check, so the
    /// caller rebuilds it.
    pub fn load(path: &Path, log_bytes: u64) -> Result<Option<SparseIndex>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).io_context("read index", path),
        };
        let Some(entries_len) = bytes.len().checked_sub(CRC_BYTES) else {
            return Ok(None);
        };
        let (entries, crc) = bytes.split_at(entries_len);
        let stored_crc = u32::from_le_bytes(crc.try_into().expect("4-byte slice"));
        if entries_len % ENTRY_BYTES != 0 || crc32c::crc32c(entries) != stored_crc {
            return Ok(None);
        }
        let mut index = SparseIndex::default();
        for chunk in entries.chunks_exact(ENTRY_BYTES) {
            let entry = IndexEntry {
                offset: u64::from_le_bytes(chunk[0..8].try_into().expect("8-byte slice")),
                position: u32::from_le_bytes(chunk[8..12].try_into().expect("4-byte slice")),
                max_timestamp_ms: u64::from_le_bytes(
                    chunk[12..20].try_into().expect("8-byte slice"),
                ),
            };
            let in_order = index.entries.last().is_none_or(|last| {
                last.offset < entry.offset
                    && last.position < entry.position
                    && last.max_timestamp_ms <= entry.max_timestamp_ms
            });
            if !in_order || u64::from(entry.position) >= log_bytes {
                return Ok(None);
            }
            index.entries.push(entry);
        }
        let starts_at_first_record = index.first().map(|first| first.position) == Some(0);
        let empty_matches = index.entries.is_empty() == (log_bytes == 0);
        if !empty_matches || (log_bytes > 0 && !starts_at_first_record) {
            return Ok(None);
        }
        Ok(Some(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: Offset, position: u32) -> IndexEntry {
        IndexEntry {
            offset,
            position,
            max_timestamp_ms: offset,
        }
    }

    #[test]
    fn seek_finds_the_last_entry_at_or_below_the_offset() {
        let mut index = SparseIndex::default();
        index.push(entry(10, 0));
        index.push(entry(20, 4096));
        index.push(entry(35, 8200));
        assert_eq!(index.seek(5), 0);
        assert_eq!(index.seek(10), 0);
        assert_eq!(index.seek(19), 0);
        assert_eq!(index.seek(20), 4096);
        assert_eq!(index.seek(34), 4096);
        assert_eq!(index.seek(1_000), 8200);
    }

    #[test]
    fn a_damaged_index_file_is_rejected_for_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = SparseIndex::default();
        index.push(entry(10, 0));
        index.push(entry(20, 4096));
        std::fs::write(&path, index.to_bytes()).unwrap();
        assert!(SparseIndex::load(&path, 5000).unwrap().is_some());
        // Points past the end of the log.
        assert!(SparseIndex::load(&path, 4000).unwrap().is_none());
        // Torn entry.
        std::fs::write(&path, &index.to_bytes()[..25]).unwrap();
        assert!(SparseIndex::load(&path, 5000).unwrap().is_none());
        // A flipped bit that keeps the entries in order.
        let mut flipped = index.to_bytes();
        flipped[0] ^= 0x01;
        std::fs::write(&path, &flipped).unwrap();
        assert!(SparseIndex::load(&path, 5000).unwrap().is_none());
        // Missing.
        std::fs::remove_file(&path).unwrap();
        assert!(SparseIndex::load(&path, 5000).unwrap().is_none());
    }
}
