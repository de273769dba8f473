//! The topic: an ordered set of segments, the last one active.
//!
//! Shared state and who owns it:
//! * `segments` — the segment list. Appends read it; rolls and the cleaner's
//!   swap replace entries under its write lock, held only for the swap itself,
//!   never for I/O. Readers copy the list of `Arc`s, so a reader keeps reading
//!   the files it started with even after the cleaner replaced them (an
//!   unlinked file stays readable through an open descriptor).
//! * `writer` — serializes appends and rolls; it alone writes the active
//!   segment, so the active segment has exactly one writer.
//! * `checkpoint` — the cleaner's published progress; the cleaner replaces it
//!   at the end of a pass, `cleaning` keeps two passes from overlapping.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tracing::{info, warn};

use crate::batch::{batches, check_append, BatchPos};
use crate::checkpoint::Checkpoint;
use crate::config::TopicConfig;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, remove_if_exists};
use crate::manifest::{ClosedSegment, Manifest, MANIFEST_FILE};
use crate::reader::{last_record, TopicReader};
use crate::record::Record;
use crate::segment::{
    index_file_name, log_file_name, parse_log_file_name, Recovery, Segment, CLEANED_SUFFIX,
};
use crate::{swap, Offset};

/// A compacted topic stored in one directory.
#[derive(Debug)]
pub struct Topic {
    pub(crate) dir: PathBuf,
    pub(crate) config: TopicConfig,
    pub(crate) segments: RwLock<Vec<Arc<Segment>>>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) checkpoint: RwLock<Checkpoint>,
    /// The closed segments as their manifest lists them; rolls and swaps
    /// rewrite it under this lock.
    pub(crate) manifest: Mutex<Manifest>,
    pub(crate) cleaning: Mutex<()>,
    /// Clean whatever is dirty, whatever its ratio (see [`Topic::set_eager`]).
    pub(crate) eager: std::sync::atomic::AtomicBool,
    /// Times segments were replaced by others (cleaner passes, replaced
    /// records): see [`Topic::rewrites`].
    pub(crate) rewrites: std::sync::atomic::AtomicU64,
}

/// The append path's private state.
#[derive(Debug)]
pub(crate) struct Writer {
    /// Offset of the last appended record; appends must go above it.
    pub(crate) last_offset: Option<Offset>,
    /// The batch position of the record at `last_offset` when its batch is
    /// unfinished (a crash tore the rest off): the next append must carry
    /// the missing records first, and the segment must not roll before.
    pub(crate) unfinished: Option<BatchPos>,
    /// Reused encoding buffer.
    pub(crate) buf: Vec<u8>,
}

impl Topic {
    /// Opens (or creates) the topic in `dir`, recovering from a crash: an
    /// interrupted cleaner swap is finished or rolled back, stray cleaner
    /// files are removed, what a crash left unwritten at the end of the
    /// active segment is truncated (see [`crate::torn`]).
    pub fn open(dir: impl AsRef<Path>, config: TopicConfig) -> Result<Topic> {
        Topic::open_with_durable_end(dir, config, None)
    }

    /// [`Topic::open`] for a caller that knows every record up to offset
    /// `durable_end` was made durable (it synced, then recorded the offset)
    /// and can append every record after it again: damage or a gap of
    /// zeros after that record is cut back to it instead of refused. A
    /// record missing or damaged at or before it is still an error.
    pub fn open_with_durable_end(
        dir: impl AsRef<Path>,
        config: TopicConfig,
        durable_end: Option<Offset>,
    ) -> Result<Topic> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).io_context("create directory", &dir)?;
        swap::recover(&dir)?;
        let bases = list_segments(&dir)?;
        let listed = Manifest::load(&dir)?;
        let active_base = match &listed {
            Some(manifest) => check_files_against(&dir, manifest, &bases)?,
            None => bases.last().copied(),
        };
        let interval = config.index_interval_bytes;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for &base in bases.iter().filter(|&&base| Some(base) != active_base) {
            let segment = Segment::open(&dir, base, Recovery::Closed, interval)?;
            if let Some(listed) = listed.as_ref().and_then(|manifest| manifest.get(base)) {
                check_last_offset(&segment, listed)?;
            }
            segments.push(Arc::new(segment));
        }
        let manifest = match listed {
            Some(manifest) => manifest,
            None => list_closed_segments(&dir, &segments)?,
        };
        match active_base {
            Some(base) => {
                let recovery = Recovery::Active { durable_end };
                segments.push(Arc::new(Segment::open(&dir, base, recovery, interval)?));
            }
            None => {
                // A roll listed the last segment closed and stopped before
                // it created the next one (or the topic is new).
                let base = manifest.closed.last().map_or(0, ClosedSegment::next_base);
                segments.push(Arc::new(create_segment(&dir, base, &config)?));
                fsync_dir(&dir)?;
            }
        }
        check_segment_order(&segments)?;
        let active = segments
            .last()
            .expect("a topic always has an active segment");
        // What a killed process wrote and did not sync is in the page
        // cache, where it was read back just now: made durable before
        // anything is built on it (a view, a snapshot).
        active.sync()?;
        fsync_dir(&dir)?;
        // A segment is created at the offset after the last one appended, so
        // an empty active segment still tells where the topic ends.
        let last_offset = active
            .last_offset()
            .or_else(|| active.base_offset().checked_sub(1));
        let unfinished = last_record(&segments, last_offset)?
            .filter(|tail| Some(tail.offset) == last_offset && !tail.batch.is_last())
            .map(|tail| tail.batch);
        if let (Some(position), Some(last)) = (unfinished, last_offset) {
            warn!(
                dir = %dir.display(),
                last_offset = last,
                missing_records = position.rest,
                "the topic's last batch is unfinished; the next append must complete it"
            );
        }
        let checkpoint = match Checkpoint::load_present(&dir)? {
            Some(checkpoint) => checkpoint,
            None => {
                let checkpoint = Checkpoint::in_place_of_missing(last_offset);
                if last_offset.is_some() {
                    warn!(
                        file = %dir.join(crate::CHECKPOINT_FILE).display(),
                        tombstone_floor = checkpoint.tombstone_floor,
                        "the cleaner's checkpoint is missing from a topic that holds records: \
                         which deletes it dropped is unknown, so readers of changes from \
                         before the topic's end are told to list again"
                    );
                }
                checkpoint.store(&dir)?;
                checkpoint
            }
        };
        info!(
            dir = %dir.display(),
            segments = segments.len(),
            last_offset,
            clean_offset = checkpoint.clean_offset,
            "opened topic"
        );
        Ok(Topic {
            dir,
            config,
            segments: RwLock::new(segments),
            writer: Mutex::new(Writer {
                last_offset,
                unfinished,
                buf: Vec::new(),
            }),
            checkpoint: RwLock::new(checkpoint),
            manifest: Mutex::new(manifest),
            cleaning: Mutex::new(()),
            eager: std::sync::atomic::AtomicBool::new(false),
            rewrites: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many times segments were replaced by others since the topic was
    /// opened (a cleaner pass that rewrote some, or [`Topic::replace_with`]):
    /// a reader opened again at an offset after such a rewrite no longer
    /// finds the records it superseded.
    pub fn rewrites(&self) -> u64 {
        self.rewrites.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the topic was opened with.
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Appends records in order: whole batches (see [`BatchPos`]), each of
    /// consecutive offsets, above `last_offset`. Only the first records may
    /// continue the topic's unfinished batch, and the call must end at the
    /// end of a batch; everything is checked before anything is written.
    /// Rolls the active segment by size and age as needed, but only between
    /// batches: a batch larger than `segment_bytes` overshoots it rather
    /// than being split. The records are visible to readers at once and
    /// durable after `sync`.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        let mut writer = lock(&self.writer);
        check_append(
            records,
            writer.last_offset,
            writer.unfinished,
            self.config.max_record_bytes,
        )?;
        let writer = &mut *writer;
        let mut active = self.active();
        let (mut active_size, mut active_first_ts) = active.fill();
        let mut run_start = 0;
        let mut run_bytes = 0u64;
        let mut batch_start = 0;
        for batch in batches(records) {
            let batch_bytes: u64 = batch.iter().map(|record| record.frame_len() as u64).sum();
            let first = &batch[0];
            // The end of an unfinished batch goes where its beginning is.
            if first.batch.is_first() {
                let size = active_size + run_bytes;
                let too_big = size > 0 && size + batch_bytes > self.config.segment_bytes;
                let first_ts =
                    active_first_ts.or((run_bytes > 0).then_some(records[run_start].timestamp_ms));
                let too_old = first_ts.is_some_and(|first_ts| {
                    first.timestamp_ms.saturating_sub(first_ts) >= self.config.segment_ms
                });
                if too_big || too_old {
                    self.append_run(&active, &records[run_start..batch_start], writer)?;
                    let next = writer.last_offset.map_or(0, |last| last + 1);
                    active = self.roll_to(&active, next)?;
                    (active_size, active_first_ts) = active.fill();
                    run_start = batch_start;
                    run_bytes = 0;
                }
            }
            run_bytes += batch_bytes;
            batch_start += batch.len();
        }
        self.append_run(&active, &records[run_start..], writer)
    }

    /// Writes records to one segment and moves the last offset past them.
    fn append_run(&self, segment: &Segment, run: &[Record], writer: &mut Writer) -> Result<()> {
        let Some(last) = run.last() else {
            return Ok(());
        };
        segment.append(run, &mut writer.buf)?;
        writer.last_offset = Some(last.offset);
        writer.unfinished = (!last.batch.is_last()).then_some(last.batch);
        Ok(())
    }

    /// Makes every record appended so far durable (fsync). Appends are not
    /// held up meanwhile: earlier segments were made durable when they
    /// rolled, and the fsync covers every write made before it.
    pub fn sync(&self) -> Result<()> {
        self.active().sync()
    }

    /// Closes the active segment now (if it holds anything) and starts a new
    /// one, so everything appended so far becomes cleanable. Refused while
    /// the last batch is unfinished: a batch never spans two segments.
    pub fn roll(&self) -> Result<()> {
        let writer = lock(&self.writer);
        if let (Some(position), Some(last)) = (writer.unfinished, writer.last_offset) {
            return Err(Error::InvalidBatch {
                offset: last,
                reason: format!(
                    "cannot roll inside a batch: {} record(s) of it are still to come",
                    position.rest
                ),
            });
        }
        let active = self.active();
        if active.size() == 0 {
            return Ok(());
        }
        let next = writer.last_offset.map_or(0, |last| last + 1);
        self.roll_to(&active, next)?;
        Ok(())
    }

    /// With `true`, cleaner passes clean whatever is dirty, however small
    /// its share (`min_cleanable_dirty_ratio` is for trading space against
    /// rewrites; when space is short, as after a space alarm, deletes must
    /// give it back at once).
    pub fn set_eager(&self, eager: bool) {
        self.eager
            .store(eager, std::sync::atomic::Ordering::Relaxed);
    }

    /// Rolls the active segment when its first record is `segment_ms` old
    /// by `now_ms`, as an append would: a topic that stops taking writes
    /// (its deletes all in the active segment, say) still becomes
    /// cleanable. While the topic is eager ([`Topic::set_eager`]: space is
    /// short) it rolls as soon as that record is `min_compaction_lag_ms`
    /// old, the soonest the cleaner may drop what the segment's deletes
    /// free. Nothing while a batch is unfinished, or the segment younger or
    /// empty. Whether it rolled.
    pub fn roll_if_old(&self, now_ms: u64) -> Result<bool> {
        let writer = lock(&self.writer);
        if writer.unfinished.is_some() {
            return Ok(false);
        }
        let active = self.active();
        let (size, first_ts) = active.fill();
        let age = match self.eager.load(std::sync::atomic::Ordering::Relaxed) {
            true => self
                .config
                .segment_ms
                .min(self.config.min_compaction_lag_ms),
            false => self.config.segment_ms,
        };
        let old = first_ts.is_some_and(|first_ts| now_ms.saturating_sub(first_ts) >= age);
        if size == 0 || !old {
            return Ok(false);
        }
        let next = writer.last_offset.map_or(0, |last| last + 1);
        self.roll_to(&active, next)?;
        Ok(true)
    }

    /// Every record with offset ≥ `from`, in offset order, up to the last
    /// record appended before this call. A record that fails its checks ends
    /// the iteration with an error naming file and position.
    pub fn read_from(&self, from: Offset) -> TopicReader {
        let upto = lock(&self.writer).last_offset;
        let segments = self.segments_snapshot();
        TopicReader::new(segments, from, upto)
    }

    /// Offset of the last record appended, if any. Compaction never lowers it.
    pub fn last_offset(&self) -> Option<Offset> {
        lock(&self.writer).last_offset
    }

    /// Offset of the first record present, if any.
    pub fn first_offset(&self) -> Option<Offset> {
        self.segments_snapshot()
            .iter()
            .find_map(|segment| segment.first_offset())
    }

    /// The cleaner's tombstone floor: readers starting below it may miss deletes.
    pub fn tombstone_floor(&self) -> Offset {
        read(&self.checkpoint).tombstone_floor
    }

    /// Reads every record and checks it, closed segments included: the full
    /// check `open` leaves to readers. Returns the number of records.
    pub fn verify(&self) -> Result<u64> {
        let mut count = 0;
        for record in self.read_from(0) {
            record?;
            count += 1;
        }
        Ok(count)
    }

    pub(crate) fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        read(&self.segments).clone()
    }

    fn active(&self) -> Arc<Segment> {
        let segments = read(&self.segments);
        Arc::clone(
            segments
                .last()
                .expect("a topic always has an active segment"),
        )
    }

    /// Seals `active` and makes a new active segment starting at `base`.
    /// Called with the writer lock held.
    fn roll_to(&self, active: &Segment, base: Offset) -> Result<Arc<Segment>> {
        active.seal()?;
        let mut manifest = lock(&self.manifest);
        let closed = manifest.with(ClosedSegment {
            base: active.base_offset(),
            bytes: active.size(),
            last: active.last_offset(),
        });
        closed.store(&self.dir)?;
        let created = create_segment(&self.dir, base, &self.config)
            .and_then(|segment| Ok(fsync_dir(&self.dir).map(|()| segment)?));
        let segment = match created {
            Ok(segment) => Arc::new(segment),
            Err(error) => {
                // Appends go on into the segment just listed closed: list
                // it open again, or the next open finds it grown.
                if let Err(undo) = manifest.store(&self.dir) {
                    warn!(dir = %self.dir.display(), error = %undo, "could not list the active segment open again");
                }
                return Err(error);
            }
        };
        *manifest = closed;
        write(&self.segments).push(Arc::clone(&segment));
        Ok(segment)
    }
}

fn create_segment(dir: &Path, base: Offset, config: &TopicConfig) -> Result<Segment> {
    Segment::create(
        base,
        dir.join(log_file_name(base)),
        dir.join(index_file_name(base)),
        config.index_interval_bytes,
    )
}

/// Base offsets of the segments in `dir`, ascending. Leftovers of an
/// interrupted cleaner pass (never part of the topic) are removed.
fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).io_context("list", dir)? {
        let entry = entry.io_context("list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(CLEANED_SUFFIX) || name.ends_with(".tmp") {
            warn!(file = %entry.path().display(), "removing a leftover of an interrupted write");
            remove_if_exists(&entry.path())?;
        } else if let Some(base) = parse_log_file_name(name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Checks the segment files of `dir` (`bases`, ascending) against its
/// manifest: every listed segment is there with the bytes it was closed
/// with, and a file not listed is the last one, above every listed one.
/// Returns that file's base: the active segment, if there is one.
fn check_files_against(
    dir: &Path,
    manifest: &Manifest,
    bases: &[Offset],
) -> Result<Option<Offset>> {
    for listed in &manifest.closed {
        let path = dir.join(log_file_name(listed.base));
        let holding = records_up_to(listed.last);
        let mismatch = |reason: String| Error::ManifestMismatch {
            path: path.clone(),
            reason,
        };
        if bases.binary_search(&listed.base).is_err() {
            return Err(mismatch(format!(
                "it is missing, and {MANIFEST_FILE} lists it as a closed segment of {} bytes \
                 holding {holding}",
                listed.bytes
            )));
        }
        let bytes = std::fs::metadata(&path).io_context("stat", &path)?.len();
        if bytes != listed.bytes {
            return Err(mismatch(format!(
                "it holds {bytes} bytes, and {MANIFEST_FILE} says it held {} ({holding}) when it \
                 was closed",
                listed.bytes
            )));
        }
    }
    let unlisted: Vec<Offset> = bases
        .iter()
        .copied()
        .filter(|&base| manifest.get(base).is_none())
        .collect();
    // The active segment starts where the last closed one ends; a file
    // beside it is the stray, whether it sorts before or after it.
    let expected = manifest.closed.last().map(ClosedSegment::next_base);
    let active = expected
        .filter(|base| unlisted.contains(base))
        .or(unlisted.last().copied());
    let highest_listed = manifest.closed.last().map(|listed| listed.base);
    let stray = unlisted
        .iter()
        .find(|&&base| Some(base) != active || highest_listed.is_some_and(|listed| base < listed));
    if let Some(&base) = stray {
        return Err(Error::ManifestMismatch {
            path: dir.join(log_file_name(base)),
            reason: format!(
                "{MANIFEST_FILE} does not list it, and only the active segment, after every \
                 closed one, may be unlisted"
            ),
        });
    }
    Ok(active)
}

/// Checks that a listed segment still ends where it did when it was closed.
fn check_last_offset(segment: &Segment, listed: &ClosedSegment) -> Result<()> {
    let last = segment.last_offset();
    if last == listed.last {
        return Ok(());
    }
    Err(Error::ManifestMismatch {
        path: segment.log_path().to_path_buf(),
        reason: format!(
            "it holds {}, and {MANIFEST_FILE} says it held {} when it was closed",
            records_up_to(last),
            records_up_to(listed.last)
        ),
    })
}

/// What a segment whose last record is at `last` holds, in words.
fn records_up_to(last: Option<Offset>) -> String {
    last.map_or_else(
        || "no record".to_string(),
        |last| format!("records up to offset {last}"),
    )
}

/// Writes the first manifest of a topic that has none (written before
/// there were manifests): its closed segments are those present.
fn list_closed_segments(dir: &Path, closed: &[Arc<Segment>]) -> Result<Manifest> {
    let manifest = Manifest {
        closed: closed
            .iter()
            .map(|segment| ClosedSegment {
                base: segment.base_offset(),
                bytes: segment.size(),
                last: segment.last_offset(),
            })
            .collect(),
    };
    if !closed.is_empty() {
        warn!(
            dir = %dir.display(),
            segments = closed.len(),
            "the topic has no {MANIFEST_FILE}; listing the closed segments present"
        );
    }
    manifest.store(dir)?;
    Ok(manifest)
}

/// Each segment's records must lie above the previous segment's.
fn check_segment_order(segments: &[Arc<Segment>]) -> Result<()> {
    let mut previous_last: Option<Offset> = None;
    for segment in segments {
        let state = segment.state();
        if let (Some(first), Some(last)) = (state.first_offset(), previous_last) {
            if first <= last {
                return Err(Error::Corrupt {
                    path: segment.log_path().to_path_buf(),
                    position: 0,
                    reason: format!(
                        "first offset {first} is not above the previous segment's last offset {last}"
                    ),
                });
            }
        }
        previous_last = state.last_offset.or(previous_last);
    }
    Ok(())
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
