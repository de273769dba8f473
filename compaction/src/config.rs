//! The topic's configuration.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a topic rolls its segments and when and how the cleaner compacts it.
/// The names and defaults follow Kafka's topic configs where one exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// The active segment rolls before an append would take it past this size.
    pub segment_bytes: u64,
    /// The active segment rolls when a record is this much newer than the
    /// segment's first record.
    pub segment_ms: u64,
    /// Bytes of log between two entries of a segment's sparse index.
    pub index_interval_bytes: u64,
    /// The cleaner runs when dirty bytes make up at least this share of the
    /// cleanable bytes (Kafka's `min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// A record is compacted only once it is at least this old (Kafka's
    /// `min.compaction.lag.ms`); a segment with a younger record stays dirty.
    pub min_compaction_lag_ms: u64,
    /// A tombstone stays this long after it became clean, so readers catching
    /// up see the delete (Kafka's `delete.retention.ms`).
    pub delete_retention_ms: u64,
    /// Memory the cleaner's key → last offset map may use. When the dirty
    /// section has more keys, one pass cleans the part that fits.
    pub cleaner_key_map_bytes: usize,
    /// Largest encoded record an append accepts.
    pub max_record_bytes: usize,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 64 << 20,
            segment_ms: 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            cleaner_key_map_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
        }
    }
}

impl TopicConfig {
    /// Checks the values can work together.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes == 0 || self.segment_bytes > u64::from(u32::MAX) {
            return Err(Error::Config(format!(
                "segment_bytes {} must be between 1 and {}",
                self.segment_bytes,
                u32::MAX
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::Config(
                "index_interval_bytes must be positive".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return Err(Error::Config(format!(
                "min_cleanable_dirty_ratio {} must be within 0.0..=1.0",
                self.min_cleanable_dirty_ratio
            )));
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > crate::record::MAX_BODY_BYTES {
            return Err(Error::Config(format!(
                "max_record_bytes {} must be between 1 and {}",
                self.max_record_bytes,
                crate::record::MAX_BODY_BYTES
            )));
        }
        Ok(())
    }
}
