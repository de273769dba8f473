//! Reading the topic from an offset, from the start of a batch, or just
//! its last record.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;

use crate::error::Result;
use crate::record::Record;
use crate::scan::FrameScanner;
use crate::segment::Segment;
use crate::topic::{lock, Topic};
use crate::Offset;

/// Bytes read at once when looking for the last record: it follows the last
/// index entry closely, so a small read usually finds it.
const TAIL_CHUNK_BYTES: usize = 64 << 10;

impl Topic {
    /// Like [`Topic::read_from`], but starting at the first record of the
    /// batch that holds the first record at or after `from`, so a reader
    /// never begins in the middle of a batch. (Records of that batch that
    /// the cleaner dropped are not there to read.) A read error met while
    /// looking for the batch start is met again by the returned reader.
    pub fn read_from_batch_start(&self, from: Offset) -> TopicReader {
        let upto = lock(&self.writer).last_offset;
        let segments = self.segments_snapshot();
        let first = TopicReader::new(segments.clone(), from, upto).next();
        let start = match first {
            Some(Ok(record)) => record.batch_start().min(from),
            Some(Err(_)) | None => from,
        };
        TopicReader::new(segments, start, upto)
    }

    /// The last record present, if any: the one at [`Topic::last_offset`],
    /// unless a replacement ended the topic past its last record. Its batch
    /// position tells whether the last batch is whole.
    pub fn tail(&self) -> Result<Option<Record>> {
        let upto = lock(&self.writer).last_offset;
        let segments = self.segments_snapshot();
        last_record(&segments, upto)
    }
}

/// The record with the highest offset up to `upto` in `segments`.
pub(crate) fn last_record(
    segments: &[Arc<Segment>],
    upto: Option<Offset>,
) -> Result<Option<Record>> {
    let Some(upto) = upto else {
        return Ok(None);
    };
    for segment in segments.iter().rev() {
        let Some(last) = segment.last_offset() else {
            continue;
        };
        let mut scanner = segment.scanner(segment.seek(last.min(upto)), TAIL_CHUNK_BYTES);
        let mut found = None;
        while let Some(record) = scanner.next_record()? {
            if record.offset > upto {
                break;
            }
            found = Some(record);
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// An iterator over the records of a topic from an offset, in offset order.
///
/// It holds the segments that existed when it was made, so the cleaner can
/// swap files underneath without disturbing it; it ends at the last record
/// appended before it was made. After an error it yields nothing more.
pub struct TopicReader {
    pending: VecDeque<Arc<Segment>>,
    scanner: Option<FrameScanner<Arc<File>>>,
    from: Offset,
    upto: Option<Offset>,
    done: bool,
    /// Bytes a segment is read in at once.
    chunk_bytes: usize,
}

impl TopicReader {
    pub(crate) fn new(segments: Vec<Arc<Segment>>, from: Offset, upto: Option<Offset>) -> Self {
        let pending = segments
            .into_iter()
            .filter(|segment| segment.last_offset().is_some_and(|last| last >= from))
            .collect();
        TopicReader {
            pending,
            scanner: None,
            from,
            upto,
            done: upto.is_none_or(|upto| upto < from),
            chunk_bytes: crate::scan::CHUNK_BYTES,
        }
    }

    /// The same reader, reading segments `chunk_bytes` at a time (1 MiB by
    /// default): less memory held by a reader kept for long, more reads.
    pub fn with_chunk_bytes(mut self, chunk_bytes: usize) -> Self {
        self.chunk_bytes = chunk_bytes;
        self
    }

    /// Another reader of the same segments over the same offsets, for a
    /// second pass over the same records whatever the cleaner did since.
    /// Take it before this one reads: a reader lets go of each segment it
    /// has begun.
    pub fn rewound(&self) -> TopicReader {
        debug_assert!(
            self.scanner.is_none(),
            "a reader is rewound before it reads"
        );
        TopicReader {
            pending: self.pending.clone(),
            scanner: None,
            from: self.from,
            upto: self.upto,
            done: self.done,
            chunk_bytes: self.chunk_bytes,
        }
    }
}

impl TopicReader {
    /// The same reader, yielding nothing below `from` from now on: the
    /// segments it holds stay the ones it was made with.
    pub fn skip_to(mut self, from: Offset) -> Self {
        if from > self.from {
            self.from = from;
            self.pending
                .retain(|segment| segment.last_offset().is_some_and(|last| last >= from));
            self.done = self.done || self.upto.is_none_or(|upto| upto < from);
        }
        self
    }
}

impl Iterator for TopicReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        while !self.done {
            let Some(scanner) = self.scanner.as_mut() else {
                let Some(segment) = self.pending.pop_front() else {
                    self.done = true;
                    break;
                };
                self.scanner = Some(segment.scanner(segment.seek(self.from), self.chunk_bytes));
                continue;
            };
            match scanner.next_record() {
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
                Ok(None) => self.scanner = None,
                Ok(Some(record)) => {
                    if self.upto.is_some_and(|upto| record.offset > upto) {
                        self.done = true;
                    } else if record.offset >= self.from {
                        return Some(Ok(record));
                    }
                }
            }
        }
        None
    }
}
