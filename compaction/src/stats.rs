//! What the topic reports about itself: its segments and where it stands
//! (sizes, offsets, dirty ratio, tombstone floor), for operators, metrics
//! and the cleaner's decision to run.

use std::path::PathBuf;
use std::sync::Arc;

use crate::segment::Segment;
use crate::topic::{read, Topic};
use crate::Offset;

/// Where the topic stands, for operators and metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicStats {
    /// Number of segment files, the active one included.
    pub segments: usize,
    /// Bytes of records on disk.
    pub bytes: u64,
    /// Offset of the first record present, if any.
    pub first_offset: Option<Offset>,
    /// Offset of the last record appended, if any (survives compaction).
    pub last_offset: Option<Offset>,
    /// Base offset of the active segment.
    pub active_base_offset: Offset,
    /// Offsets below this are clean (compacted).
    pub clean_offset: Offset,
    /// Bytes of closed segments below the clean offset.
    pub clean_bytes: u64,
    /// Bytes of closed segments at or above the clean offset.
    pub dirty_bytes: u64,
    /// `dirty_bytes / (clean_bytes + dirty_bytes)`, 0 when both are 0.
    pub dirty_ratio: f64,
    /// A reader starting at or above this offset sees every delete.
    pub tombstone_floor: Offset,
}

/// One segment as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Base offset (the file name).
    pub base_offset: Offset,
    /// The log file.
    pub path: PathBuf,
    /// Bytes of records.
    pub bytes: u64,
    /// First record's offset, if any.
    pub first_offset: Option<Offset>,
    /// Last record's offset, if any.
    pub last_offset: Option<Offset>,
    /// Whether this is the active segment.
    pub active: bool,
}

impl Topic {
    /// The segments, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let segments = self.segments_snapshot();
        let active_base = segments.last().map(|segment| segment.base_offset());
        segments
            .iter()
            .map(|segment| {
                let state = segment.state();
                SegmentInfo {
                    base_offset: segment.base_offset(),
                    path: segment.log_path().to_path_buf(),
                    bytes: state.size,
                    first_offset: state.first_offset(),
                    last_offset: state.last_offset,
                    active: Some(segment.base_offset()) == active_base,
                }
            })
            .collect()
    }

    /// Where the topic stands: sizes, offsets, dirty ratio, tombstone floor.
    pub fn stats(&self) -> TopicStats {
        let segments = self.segments_snapshot();
        let checkpoint = read(&self.checkpoint).clone();
        let (closed, active) = segments.split_at(segments.len() - 1);
        let (clean_bytes, dirty_bytes) = split_clean_dirty(closed, checkpoint.clean_offset);
        let bytes = segments.iter().map(|segment| segment.size()).sum();
        TopicStats {
            segments: segments.len(),
            bytes,
            first_offset: segments.iter().find_map(|segment| segment.first_offset()),
            last_offset: self.last_offset(),
            active_base_offset: active[0].base_offset(),
            clean_offset: checkpoint.clean_offset,
            clean_bytes,
            dirty_bytes,
            dirty_ratio: dirty_ratio(clean_bytes, dirty_bytes),
            tombstone_floor: checkpoint.tombstone_floor,
        }
    }
}

/// Bytes of `closed` below and at-or-above `clean_offset`.
pub(crate) fn split_clean_dirty(closed: &[Arc<Segment>], clean_offset: Offset) -> (u64, u64) {
    let mut clean = 0;
    let mut dirty = 0;
    for segment in closed {
        let state = segment.state();
        match state.last_offset {
            Some(last) if last < clean_offset => clean += state.size,
            _ if state
                .first_offset()
                .is_none_or(|first| first >= clean_offset) =>
            {
                dirty += state.size
            }
            _ => {
                let split = state.index.seek(clean_offset);
                clean += split;
                dirty += state.size - split;
            }
        }
    }
    (clean, dirty)
}

/// Share of dirty bytes.
pub(crate) fn dirty_ratio(clean_bytes: u64, dirty_bytes: u64) -> f64 {
    let total = clean_bytes + dirty_bytes;
    if total == 0 {
        0.0
    } else {
        dirty_bytes as f64 / total as f64
    }
}
