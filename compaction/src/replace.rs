//! Replacing the whole topic with a given set of records, crash-safely: how
//! a node installs a snapshot that another node built from its own topic.

use std::sync::Arc;

use tracing::info;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::fsutil::{fsync_dir, remove_if_exists};
use crate::manifest::ClosedSegment;
use crate::record::Record;
use crate::segment::{index_file_name, log_file_name, Recovery, Segment, CLEANED_SUFFIX};
use crate::swap::{self, SwapPlan};
use crate::topic::{lock, write, Topic};
use crate::Offset;

/// Base offset of the segment a replacement writes its records to.
const BASE: Offset = 0;
/// Records written to the replacement segment at a time.
const BATCH_RECORDS: usize = 1024;

impl Topic {
    /// Replaces every record of the topic with `records` (strictly increasing
    /// offsets, none above `end_offset`, each keeping its batch position)
    /// and makes `end_offset` the topic's last offset, so the next append
    /// goes above it. No record's batch may run past `end_offset`: the
    /// replacement ends on a batch boundary. The records become one
    /// closed base segment, followed by an empty active segment; the
    /// checkpoint starts over with the given tombstone floor (the records
    /// count as dirty, so the cleaner looks at them again).
    ///
    /// Crash-safe like a cleaner pass: the new files are written as
    /// `*.cleaned` and committed by the swap marker. On error nothing changes.
    pub fn replace_with(
        &self,
        records: impl IntoIterator<Item = Result<Record>>,
        end_offset: Offset,
        tombstone_floor: Offset,
    ) -> Result<()> {
        let mut writer = lock(&self.writer);
        let _pass = lock(&self.cleaning);
        let active_base = end_offset + 1;
        let written = self.write_replacement(records, end_offset, &mut writer.buf);
        let (last, bytes) = match written {
            Ok(written) => written,
            Err(error) => {
                for base in [BASE, active_base] {
                    for name in [log_file_name(base), index_file_name(base)] {
                        remove_if_exists(&self.cleaned_path(name))?;
                    }
                }
                return Err(error);
            }
        };

        let checkpoint = Checkpoint {
            tombstone_floor,
            ..Checkpoint::default()
        };
        let plan = SwapPlan {
            remove: self
                .segments_snapshot()
                .iter()
                .map(|segment| segment.base_offset())
                .collect(),
            install: vec![BASE, active_base],
            closed: vec![ClosedSegment {
                base: BASE,
                bytes,
                last,
            }],
            checkpoint: checkpoint.clone(),
        };
        swap::commit(&self.dir, &plan, &self.manifest)?;

        let interval = self.config.index_interval_bytes;
        let segments = vec![
            Arc::new(Segment::open(&self.dir, BASE, Recovery::Closed, interval)?),
            Arc::new(Segment::open(
                &self.dir,
                active_base,
                Recovery::Active { durable_end: None },
                interval,
            )?),
        ];
        *write(&self.segments) = segments;
        self.rewrites
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *write(&self.checkpoint) = checkpoint;
        writer.last_offset = Some(end_offset);
        writer.unfinished = None;
        info!(
            dir = %self.dir.display(),
            end_offset,
            last_record = ?last,
            "replaced the topic's records"
        );
        Ok(())
    }

    /// Writes the replacement base segment and the empty active segment as
    /// `*.cleaned` files; returns the last record's offset and the base
    /// segment's bytes.
    fn write_replacement(
        &self,
        records: impl IntoIterator<Item = Result<Record>>,
        end_offset: Offset,
        buf: &mut Vec<u8>,
    ) -> Result<(Option<Offset>, u64)> {
        let output = self.create_cleaned(BASE)?;
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut last: Option<Offset> = None;
        for record in records {
            let record = record?;
            let in_order = last.is_none_or(|last| record.offset > last);
            if !in_order || record.offset > end_offset {
                return Err(Error::OffsetNotIncreasing {
                    offset: record.offset,
                    last: last.unwrap_or(end_offset),
                });
            }
            if record.batch_end() > end_offset {
                return Err(Error::InvalidBatch {
                    offset: record.offset,
                    reason: format!(
                        "its batch ends at offset {}, past the replacement's end offset {end_offset}",
                        record.batch_end()
                    ),
                });
            }
            last = Some(record.offset);
            batch.push(record);
            if batch.len() == BATCH_RECORDS {
                output.append(&batch, buf)?;
                batch.clear();
            }
        }
        output.append(&batch, buf)?;
        output.seal()?;
        self.create_cleaned(end_offset + 1)?.seal()?;
        fsync_dir(&self.dir)?;
        Ok((last, output.size()))
    }

    fn create_cleaned(&self, base: Offset) -> Result<Segment> {
        Segment::create(
            base,
            self.cleaned_path(log_file_name(base)),
            self.cleaned_path(index_file_name(base)),
            self.config.index_interval_bytes,
        )
    }

    fn cleaned_path(&self, name: String) -> std::path::PathBuf {
        self.dir.join(format!("{name}{CLEANED_SUFFIX}"))
    }
}
