//! Batches: runs of records appended as one unit.
//!
//! A caller that writes several records as one atomic change (a transaction,
//! a lease expiry) gives them consecutive offsets and marks each with its
//! [`BatchPos`]: how many records of the batch come before it and after it.
//! The marks are stored in every frame, so they survive cleaning and
//! replacement even when some records of the batch are dropped: from any
//! surviving record a reader knows where its batch began and ended.
//!
//! The topic keeps a batch whole on disk: it rolls the active segment only
//! between batches, so the records of a batch always share one segment and
//! are cleaned (or not) together. A batch cut by a crash (a torn tail) is
//! finished by the next append, which must carry its missing records.

use crate::error::{Error, Result};
use crate::record::Record;
use crate::Offset;

/// Where a record sits in the batch it was appended with. A single record
/// is a batch of one: `sub` and `rest` both 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BatchPos {
    /// Records before this one in its batch: 0 for the first.
    pub sub: u32,
    /// Records after this one in its batch: 0 for the last.
    pub rest: u32,
}

impl BatchPos {
    /// The position of a record that is a batch by itself.
    pub const SINGLE: BatchPos = BatchPos { sub: 0, rest: 0 };

    /// The position `sub` with `rest` records after it.
    pub fn new(sub: u32, rest: u32) -> BatchPos {
        BatchPos { sub, rest }
    }

    /// Whether the record opens its batch.
    pub fn is_first(&self) -> bool {
        self.sub == 0
    }

    /// Whether the record closes its batch.
    pub fn is_last(&self) -> bool {
        self.rest == 0
    }

    /// The position of the record after this one, if the batch goes on.
    pub fn next(&self) -> Option<BatchPos> {
        let rest = self.rest.checked_sub(1)?;
        Some(BatchPos {
            sub: self.sub.checked_add(1)?,
            rest,
        })
    }
}

/// Checks that `records` may be appended to a topic whose last offset is
/// `last_offset` and whose last batch, if unfinished, has its last record at
/// `unfinished`: offsets strictly increase and fit the size limit, every
/// batch is consecutive offsets with positions counting up from 0 to the
/// batch's length, a batch starts only once the previous one is complete,
/// and the call ends at the end of a batch. Only the first records of a
/// call may continue the topic's unfinished batch.
pub(crate) fn check_append(
    records: &[Record],
    last_offset: Option<Offset>,
    unfinished: Option<BatchPos>,
    max_record_bytes: usize,
) -> Result<()> {
    let mut last = last_offset;
    let mut open = unfinished;
    for record in records {
        if let Some(last) = last.filter(|&last| record.offset <= last) {
            return Err(Error::OffsetNotIncreasing {
                offset: record.offset,
                last,
            });
        }
        if record.frame_len() > max_record_bytes {
            return Err(Error::RecordTooLarge {
                offset: record.offset,
                bytes: record.frame_len(),
                limit: max_record_bytes,
            });
        }
        let invalid = |reason: String| Error::InvalidBatch {
            offset: record.offset,
            reason,
        };
        let position = record.batch;
        match (open, last) {
            (Some(previous), Some(last)) => {
                let expected = previous
                    .next()
                    .expect("an open batch has a record after its last one");
                if record.offset != last + 1 || position != expected {
                    return Err(invalid(format!(
                        "the batch of offset {last} still needs {} record(s), the next at offset {} \
                         with sub {} and rest {}; got sub {} and rest {}",
                        previous.rest,
                        last + 1,
                        expected.sub,
                        expected.rest,
                        position.sub,
                        position.rest
                    )));
                }
            }
            _ if !position.is_first() => {
                return Err(invalid(format!(
                    "sub {} continues a batch, but the record before it closes its batch",
                    position.sub
                )));
            }
            _ => {}
        }
        if record
            .offset
            .checked_add(u64::from(position.rest))
            .is_none()
        {
            return Err(invalid(format!(
                "rest {} runs the batch past the largest offset",
                position.rest
            )));
        }
        open = (!position.is_last()).then_some(position);
        last = Some(record.offset);
    }
    match (open, records.last()) {
        (Some(position), Some(last)) => Err(Error::InvalidBatch {
            offset: last.offset,
            reason: format!(
                "the append ends inside a batch: {} record(s) of it are missing",
                position.rest
            ),
        }),
        _ => Ok(()),
    }
}

/// The batches of records that passed [`check_append`], in order. The first
/// may be the end of the topic's unfinished batch.
pub(crate) fn batches(records: &[Record]) -> impl Iterator<Item = &[Record]> {
    records.split_inclusive(|record| record.batch.is_last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(offset: Offset, sub: u32, rest: u32) -> Record {
        Record::put(offset, 0, "k", "v").with_batch(BatchPos::new(sub, rest))
    }

    fn check(records: &[Record]) -> Result<()> {
        check_append(records, Some(9), None, 1 << 20)
    }

    #[test]
    fn whole_batches_and_single_records_pass() {
        check(&[put(10, 0, 0), put(11, 0, 2), put(12, 1, 1), put(13, 2, 0)]).unwrap();
        check(&[put(20, 0, 1), put(21, 1, 0), put(30, 0, 0)]).unwrap();
        check(&[]).unwrap();
    }

    #[test]
    fn a_gap_inside_a_batch_is_refused() {
        let error = check(&[put(10, 0, 1), put(12, 1, 0)]).unwrap_err();
        assert!(
            matches!(error, Error::InvalidBatch { offset: 12, .. }),
            "{error}"
        );
    }

    #[test]
    fn positions_that_do_not_count_up_are_refused() {
        for records in [
            vec![put(10, 0, 2), put(11, 1, 0)],
            vec![put(10, 0, 1), put(11, 2, 0)],
            vec![put(10, 0, 1), put(11, 0, 0)],
        ] {
            let error = check(&records).unwrap_err();
            assert!(
                matches!(error, Error::InvalidBatch { offset: 11, .. }),
                "{records:?}: {error}"
            );
        }
    }

    #[test]
    fn a_batch_cannot_start_in_the_middle() {
        let error = check(&[put(10, 1, 0)]).unwrap_err();
        assert!(
            matches!(error, Error::InvalidBatch { offset: 10, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("sub 1"), "{error}");
    }

    #[test]
    fn an_append_must_end_with_its_batch() {
        let error = check(&[put(10, 0, 0), put(11, 0, 3), put(12, 1, 2)]).unwrap_err();
        assert!(
            matches!(error, Error::InvalidBatch { offset: 12, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("2 record(s)"), "{error}");
    }

    #[test]
    fn an_unfinished_batch_must_be_continued_first() {
        let unfinished = Some(BatchPos::new(0, 2));
        check_append(
            &[put(10, 1, 1), put(11, 2, 0)],
            Some(9),
            unfinished,
            1 << 20,
        )
        .unwrap();
        let error = check_append(&[put(10, 0, 0)], Some(9), unfinished, 1 << 20).unwrap_err();
        assert!(
            matches!(error, Error::InvalidBatch { offset: 10, .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("the batch of offset 9"),
            "{error}"
        );
    }

    #[test]
    fn batches_split_after_each_last_record() {
        let records = [put(10, 1, 0), put(11, 0, 0), put(12, 0, 1), put(13, 1, 0)];
        let sizes: Vec<usize> = batches(&records).map(<[Record]>::len).collect();
        assert_eq!(sizes, [1, 1, 2]);
    }
}
