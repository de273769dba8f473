//! The log cleaner: keeps the latest record of every key.
//!
//! One pass, as Kafka's cleaner does it:
//! 1. The **dirty section** runs from the checkpoint's clean offset to the
//!    first closed segment holding a record younger than
//!    `min_compaction_lag_ms`; the active segment is never part of it. The
//!    pass runs only when dirty bytes are at least `min_cleanable_dirty_ratio`
//!    of the cleanable bytes.
//! 2. A **key map** (key → last offset) is built over the dirty section. Its
//!    memory is bounded by `cleaner_key_map_bytes`; when it is full the pass
//!    stops there and cleans only up to that offset.
//! 3. Every closed segment below the map's end is **rewritten**, grouped so
//!    small segments merge into one of at most `segment_bytes`, keeping a
//!    record unless the map holds a later offset for its key. A tombstone is
//!    kept until it has been clean for `delete_retention_ms`; dropping one
//!    raises the tombstone floor past the end of its batch, so a reader
//!    starting at the floor starts on a batch boundary. The record at the
//!    topic's last offset is always kept, tombstone or not, so the topic's
//!    end (and whether its last batch is whole) can always be read back.
//! 4. The new files replace the old ones through the crash-safe swap
//!    ([`crate::swap`]), which also stores the new checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tracing::{debug, info};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::fsutil::{fsync_dir, remove_if_exists};
use crate::manifest::ClosedSegment;
use crate::record::Record;
use crate::scan::CHUNK_BYTES;
use crate::segment::{
    index_file_name, log_file_name, Recovery, Segment, SegmentState, CLEANED_SUFFIX,
};
use crate::stats::{dirty_ratio, split_clean_dirty};
use crate::swap::{self, SwapPlan};
use crate::topic::{lock, read, write, Topic};
use crate::Offset;

/// Memory charged per key-map entry besides the key bytes: the table slot,
/// the `Bytes` handle, the offset and the allocation header.
const KEY_MAP_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Records buffered before a write to a cleaned segment.
const WRITE_BATCH_BYTES: usize = 1 << 20;

/// What one cleaner pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanReport {
    /// Whether the pass cleaned anything; `false` when there was nothing due.
    pub cleaned: bool,
    /// The dirty ratio of the cleanable section when the pass began.
    pub dirty_ratio: f64,
    /// The clean offset before the pass.
    pub first_dirty_offset: Offset,
    /// The clean offset after the pass.
    pub clean_offset: Offset,
    /// Whether the key map filled up, so the pass stopped before the end of
    /// the cleanable section.
    pub key_map_full: bool,
    /// Keys in the key map.
    pub keys: usize,
    /// Records read while rewriting.
    pub records_read: u64,
    /// Records the rewrite kept.
    pub records_kept: u64,
    /// Tombstones dropped because their retention ran out.
    pub tombstones_dropped: u64,
    /// Bytes of the rewritten segments before the pass.
    pub bytes_before: u64,
    /// Bytes of their replacements.
    pub bytes_after: u64,
    /// Segments replaced.
    pub segments_before: usize,
    /// Segments installed in their place.
    pub segments_after: usize,
}

impl Topic {
    /// Runs one cleaner pass now, by the wall clock.
    pub fn clean_once(&self) -> Result<CleanReport> {
        self.clean_once_at(now_ms())
    }

    /// Runs one cleaner pass as if the time were `now_ms` (the compaction lag
    /// and tombstone retention are measured against it).
    pub fn clean_once_at(&self, now_ms: u64) -> Result<CleanReport> {
        let _pass = lock(&self.cleaning);
        let checkpoint = read(&self.checkpoint).clone();
        let segments = self.segments_snapshot();
        let closed = &segments[..segments.len() - 1];
        let first_dirty = checkpoint.clean_offset;
        let cleanable = cleanable_segments(closed, first_dirty, now_ms, &self.config);
        let (clean_bytes, dirty_bytes) = split_clean_dirty(cleanable, first_dirty);
        let mut report = CleanReport {
            dirty_ratio: dirty_ratio(clean_bytes, dirty_bytes),
            first_dirty_offset: first_dirty,
            clean_offset: first_dirty,
            ..CleanReport::default()
        };
        let eager = self.eager.load(std::sync::atomic::Ordering::Relaxed);
        if dirty_bytes == 0
            || (!eager && report.dirty_ratio < self.config.min_cleanable_dirty_ratio)
        {
            debug!(
                dirty_bytes,
                dirty_ratio = report.dirty_ratio,
                "nothing to clean"
            );
            return Ok(report);
        }

        let map = KeyMap::build(cleanable, first_dirty, self.config.cleaner_key_map_bytes)?;
        // Appends only raise it, so a record at this offset in a closed
        // segment is still, or was, the topic's last: kept either way.
        let topic_last = self.last_offset();
        report.key_map_full = map.full;
        report.keys = map.offsets.len();
        report.clean_offset = map.end;

        let mut next_checkpoint = checkpoint.clone();
        let rewrite: Vec<&Arc<Segment>> = cleanable
            .iter()
            .filter(|segment| {
                segment
                    .state()
                    .first_offset()
                    .is_some_and(|first| first < map.end)
            })
            .collect();
        let mut plan = SwapPlan {
            remove: Vec::new(),
            install: Vec::new(),
            closed: Vec::new(),
            checkpoint: Checkpoint::default(),
        };
        for group in group_for_merge(&rewrite, self.config.segment_bytes) {
            let outcome = match self.rewrite_group(&group, &map, &checkpoint, topic_last, now_ms) {
                Ok(outcome) => outcome,
                Err(error) => {
                    // Leave nothing behind: the next pass starts clean.
                    for base in plan.install.iter().chain([&group[0].base_offset()]) {
                        self.discard_cleaned(*base)?;
                    }
                    return Err(error);
                }
            };
            report.records_read += outcome.records_read;
            report.records_kept += outcome.records_kept;
            report.tombstones_dropped += outcome.tombstones_dropped;
            next_checkpoint.tombstone_floor =
                next_checkpoint.tombstone_floor.max(outcome.tombstone_floor);
            let unchanged = group.len() == 1
                && outcome.segments_skipped == 0
                && outcome.records_kept == outcome.records_read;
            let base = group[0].base_offset();
            if unchanged {
                self.discard_cleaned(base)?;
                continue;
            }
            report.bytes_before += group.iter().map(|segment| segment.size()).sum::<u64>();
            report.segments_before += group.len();
            report.bytes_after += outcome.bytes;
            plan.remove
                .extend(group.iter().map(|segment| segment.base_offset()));
            if outcome.records_kept > 0 {
                plan.install.push(base);
                plan.closed.push(ClosedSegment {
                    base,
                    bytes: outcome.bytes,
                    last: outcome.last,
                });
                report.segments_after += 1;
            } else {
                self.discard_cleaned(base)?;
            }
        }
        next_checkpoint.advance(map.end, now_ms, self.config.delete_retention_ms);
        plan.checkpoint = next_checkpoint.clone();

        if plan.remove.is_empty() {
            next_checkpoint.store(&self.dir)?;
        } else {
            fsync_dir(&self.dir)?;
            swap::commit(&self.dir, &plan, &self.manifest)?;
            // A reader that finds the new segments must find the raised
            // floor too: one that checked the floor before opening them
            // would miss the deletes they dropped (guarantee 4).
            {
                let mut checkpoint = write(&self.checkpoint);
                checkpoint.tombstone_floor = checkpoint
                    .tombstone_floor
                    .max(next_checkpoint.tombstone_floor);
            }
            self.install(&plan)?;
        }
        *write(&self.checkpoint) = next_checkpoint;
        report.cleaned = true;
        info!(
            dir = %self.dir.display(),
            first_dirty_offset = report.first_dirty_offset,
            clean_offset = report.clean_offset,
            key_map_full = report.key_map_full,
            records_read = report.records_read,
            records_kept = report.records_kept,
            tombstones_dropped = report.tombstones_dropped,
            bytes_before = report.bytes_before,
            bytes_after = report.bytes_after,
            "cleaner pass done"
        );
        Ok(report)
    }

    /// Writes the cleaned copy of one group of segments as `*.cleaned` files
    /// named by the group's first base offset.
    fn rewrite_group(
        &self,
        group: &[&Arc<Segment>],
        map: &KeyMap,
        checkpoint: &Checkpoint,
        topic_last: Option<Offset>,
        now_ms: u64,
    ) -> Result<RewriteOutcome> {
        let base = group[0].base_offset();
        let output = Segment::create(
            base,
            self.dir
                .join(format!("{}{CLEANED_SUFFIX}", log_file_name(base))),
            self.dir
                .join(format!("{}{CLEANED_SUFFIX}", index_file_name(base))),
            self.config.index_interval_bytes,
        )?;
        let mut outcome = RewriteOutcome::default();
        let mut batch: Vec<Record> = Vec::new();
        let mut batch_bytes = 0;
        let mut buf = Vec::new();
        for segment in group {
            if map.holds_nothing_live_in(segment) {
                outcome.segments_skipped += 1;
                continue;
            }
            let mut scanner = segment.scanner(0, CHUNK_BYTES);
            while let Some(record) = scanner.next_record()? {
                outcome.records_read += 1;
                if map.supersedes(&record) {
                    continue;
                }
                if record.is_tombstone()
                    && Some(record.offset) != topic_last
                    && tombstone_expired(&record, checkpoint, now_ms, &self.config)
                {
                    outcome.tombstones_dropped += 1;
                    outcome.tombstone_floor = outcome
                        .tombstone_floor
                        .max(record.batch_end().saturating_add(1));
                    continue;
                }
                outcome.records_kept += 1;
                batch_bytes += record.frame_len();
                batch.push(record);
                if batch_bytes >= WRITE_BATCH_BYTES {
                    output.append(&batch, &mut buf)?;
                    batch.clear();
                    batch_bytes = 0;
                }
            }
        }
        output.append(&batch, &mut buf)?;
        output.seal()?;
        outcome.bytes = output.size();
        outcome.last = output.last_offset();
        Ok(outcome)
    }

    /// Removes the cleaned files of a group that is not swapped in.
    fn discard_cleaned(&self, base: Offset) -> Result<()> {
        for name in [log_file_name(base), index_file_name(base)] {
            remove_if_exists(&self.dir.join(format!("{name}{CLEANED_SUFFIX}")))?;
        }
        Ok(())
    }

    /// Puts the swapped-in segments in the place of the replaced ones.
    fn install(&self, plan: &SwapPlan) -> Result<()> {
        let mut installed = Vec::with_capacity(plan.install.len());
        for &base in &plan.install {
            let segment = Segment::open(
                &self.dir,
                base,
                Recovery::Closed,
                self.config.index_interval_bytes,
            )?;
            installed.push(Arc::new(segment));
        }
        let mut segments = write(&self.segments);
        segments.retain(|segment| !plan.remove.contains(&segment.base_offset()));
        segments.extend(installed);
        self.rewrites
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        segments.sort_by_key(|segment| segment.base_offset());
        Ok(())
    }
}

/// What rewriting one group produced.
#[derive(Debug, Default)]
struct RewriteOutcome {
    records_read: u64,
    records_kept: u64,
    tombstones_dropped: u64,
    /// Segments dropped whole without reading them.
    segments_skipped: usize,
    /// One above the end of the batch of the highest dropped tombstone, or 0.
    tombstone_floor: Offset,
    /// Bytes of the cleaned segment.
    bytes: u64,
    /// Offset of its last record.
    last: Option<Offset>,
}

/// The key → last offset map of the dirty section, bounded in memory.
struct KeyMap {
    offsets: HashMap<Bytes, Offset>,
    /// The map's offsets, sorted: the records of the dirty section that
    /// survive.
    latest: Vec<Offset>,
    /// Offsets below this and at or above `first_dirty` are in the map.
    first_dirty: Offset,
    /// Offsets below this were read into the map: the new clean offset.
    end: Offset,
    /// Whether the map filled up before the end of the dirty section.
    full: bool,
}

impl KeyMap {
    /// Reads the dirty records of `cleanable` (offsets from `first_dirty`)
    /// until the end or until the next new key would exceed `budget_bytes`.
    /// The first key always fits, so every pass makes progress.
    fn build(
        cleanable: &[Arc<Segment>],
        first_dirty: Offset,
        budget_bytes: usize,
    ) -> Result<KeyMap> {
        let end_of_section = cleanable
            .iter()
            .rev()
            .find_map(|segment| segment.last_offset())
            .map_or(first_dirty, |last| last + 1);
        let mut map = KeyMap {
            offsets: HashMap::new(),
            latest: Vec::new(),
            first_dirty,
            end: end_of_section,
            full: false,
        };
        let mut used_bytes = 0;
        for segment in cleanable {
            if segment.last_offset().is_none_or(|last| last < first_dirty) {
                continue;
            }
            let mut scanner = segment.scanner(segment.seek(first_dirty), CHUNK_BYTES);
            while let Some(record) = scanner.next_record()? {
                if record.offset < first_dirty {
                    continue;
                }
                if let Some(offset) = map.offsets.get_mut(&record.key) {
                    *offset = record.offset;
                    continue;
                }
                let cost = record.key.len() + KEY_MAP_ENTRY_OVERHEAD_BYTES;
                if !map.offsets.is_empty() && used_bytes + cost > budget_bytes {
                    map.end = record.offset;
                    map.full = true;
                    map.sort_latest();
                    return Ok(map);
                }
                used_bytes += cost;
                // Copy the key: a slice would keep its whole read chunk alive.
                map.offsets
                    .insert(Bytes::copy_from_slice(&record.key), record.offset);
            }
        }
        map.sort_latest();
        Ok(map)
    }

    fn sort_latest(&mut self) {
        self.latest = self.offsets.values().copied().collect();
        self.latest.sort_unstable();
    }

    /// Whether every record of `segment` lies in the mapped part of the dirty
    /// section and none is the latest of its key: then nothing in it
    /// survives, tombstones included, and it need not be read.
    fn holds_nothing_live_in(&self, segment: &Segment) -> bool {
        let state = segment.state();
        let (Some(first), Some(last)) = (state.first_offset(), state.last_offset) else {
            return false;
        };
        if first < self.first_dirty || last >= self.end {
            return false;
        }
        let at = self.latest.partition_point(|&offset| offset < first);
        self.latest.get(at).is_none_or(|&offset| offset > last)
    }

    /// Whether a later record of the same key makes `record` obsolete.
    fn supersedes(&self, record: &Record) -> bool {
        self.offsets
            .get(&record.key)
            .is_some_and(|&latest| latest > record.offset)
    }
}

/// The closed segments the pass may touch: all of them up to the first that
/// holds a dirty record younger than the minimum compaction lag.
fn cleanable_segments<'a>(
    closed: &'a [Arc<Segment>],
    first_dirty: Offset,
    now_ms: u64,
    config: &crate::TopicConfig,
) -> &'a [Arc<Segment>] {
    let horizon_ms = now_ms.saturating_sub(config.min_compaction_lag_ms);
    let too_young = |state: &SegmentState| {
        state.last_offset.is_some_and(|last| last >= first_dirty)
            && state.max_timestamp_ms > horizon_ms
    };
    let end = closed
        .iter()
        .position(|segment| too_young(&segment.state()))
        .unwrap_or(closed.len());
    &closed[..end]
}

/// Consecutive runs of segments whose sizes add up to at most
/// `segment_bytes` (each run at least one segment), merged into one output.
fn group_for_merge<'a>(
    segments: &[&'a Arc<Segment>],
    segment_bytes: u64,
) -> Vec<Vec<&'a Arc<Segment>>> {
    let mut groups: Vec<Vec<&Arc<Segment>>> = Vec::new();
    let mut group_bytes = 0;
    for &segment in segments {
        let size = segment.size();
        match groups.last_mut() {
            Some(group) if group_bytes + size <= segment_bytes => {
                group.push(segment);
                group_bytes += size;
            }
            _ => {
                groups.push(vec![segment]);
                group_bytes = size;
            }
        }
    }
    groups
}

/// Whether a tombstone has been clean for longer than the retention.
fn tombstone_expired(
    record: &Record,
    checkpoint: &Checkpoint,
    now_ms: u64,
    config: &crate::TopicConfig,
) -> bool {
    checkpoint
        .became_clean_at(record.offset)
        .is_some_and(|clean_ms| clean_ms.saturating_add(config.delete_retention_ms) <= now_ms)
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
