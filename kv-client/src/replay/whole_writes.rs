//! The NDJSON body of a replay cut into whole writes.
//!
//! A write is a unit of consecutive offsets whose records share one
//! `revision` (the offset of its last record). The server's chunks, and a
//! broken connection, may end inside a write; [`WholeWrites`] holds a
//! write's records back until they are known to be all there, so a reader
//! never applies half a transaction. A write is complete once a record of
//! another revision arrives, once its record at `offset == revision` does,
//! or once the answer ends normally. The record at `offset == revision` is
//! not awaited: compaction, `--auth` filtering and internal keys may keep
//! it out of the answer.

use std::collections::VecDeque;

use bytes::BytesMut;

use schemas::api::ErrorBody;

use crate::replay::{Record, RecordValue};
use crate::Revision;

/// Why a line of the answer is no record.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// It is not one: the text says why.
    NotARecord(String),
    /// The server cut the replay and said why in a last line (a damaged
    /// segment, the tombstone floor moving past it).
    Cut(ErrorBody),
}

/// Lines of an answer in, records of complete writes out.
#[derive(Debug)]
pub(crate) struct WholeWrites<V: RecordValue> {
    /// Bytes of an incomplete line.
    buffer: BytesMut,
    /// The records read of a write that may go on.
    pending: Vec<Record<V>>,
    /// Records of complete writes, not yet taken.
    ready: VecDeque<Record<V>>,
    /// Where a new answer must start so that nothing released is read
    /// again and nothing unreleased is missed.
    resume_from: Revision,
}

impl<V: RecordValue> WholeWrites<V> {
    /// Ready for an answer that starts at offset `from`.
    pub(crate) fn new(from: Revision) -> WholeWrites<V> {
        WholeWrites {
            buffer: BytesMut::new(),
            pending: Vec::new(),
            ready: VecDeque::new(),
            resume_from: from,
        }
    }

    /// The offset to ask for when the answer must be opened again: just
    /// after the last write released.
    pub(crate) fn resume_from(&self) -> Revision {
        self.resume_from
    }

    /// The next record of a complete write, if there is one.
    pub(crate) fn next_record(&mut self) -> Option<Record<V>> {
        self.ready.pop_front()
    }

    /// Takes a chunk of the answer. Fails on a line that is not a record.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), Unreadable> {
        self.buffer.extend_from_slice(chunk);
        while let Some(end) = self.buffer.iter().position(|&byte| byte == b'\n') {
            let line = self.buffer.split_to(end + 1);
            self.read_line(&line[..end])?;
        }
        Ok(())
    }

    /// The answer ended normally: its last line and its last write are
    /// complete (the server ends a replay at the end of a write).
    pub(crate) fn finish(&mut self) -> Result<(), Unreadable> {
        let rest = self.buffer.split();
        self.read_line(&rest)?;
        self.release();
        Ok(())
    }

    /// The connection broke: the partial line and the partial write are
    /// dropped, as the answer opened again at [`Self::resume_from`] starts
    /// with that write.
    pub(crate) fn broke(&mut self) {
        self.buffer.clear();
        self.pending.clear();
    }

    fn read_line(&mut self, line: &[u8]) -> Result<(), Unreadable> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let record: Record<V> = serde_json::from_slice(line).map_err(|error| {
            match serde_json::from_slice::<ErrorBody>(line) {
                Ok(body) => Unreadable::Cut(body),
                Err(_) => Unreadable::NotARecord(format!("a replay line is not a record: {error}")),
            }
        })?;
        if self
            .pending
            .first()
            .is_some_and(|first| first.revision != record.revision)
        {
            self.release();
        }
        let last_of_its_write = record.offset >= record.revision;
        self.pending.push(record);
        if last_of_its_write {
            self.release();
        }
        Ok(())
    }

    /// Hands the pending write over as complete.
    fn release(&mut self) {
        if let Some(last) = self.pending.last() {
            self.resume_from = last.revision + 1;
            self.ready.extend(self.pending.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    type Writes = WholeWrites<serde_json::Value>;

    /// A record's NDJSON line.
    fn line(offset: Revision, revision: Revision, key: &str) -> String {
        format!(
            r#"{{"offset":{offset},"revision":{revision},"timestamp_ms":1,"key":"{key}","value":{offset},"create_revision":{offset},"version":1}}"#
        ) + "\n"
    }

    /// A put at 1, a transaction of three keys at 2..=4, a put at 5.
    fn topic() -> Vec<String> {
        vec![
            line(1, 1, "a"),
            line(2, 4, "t/x"),
            line(3, 4, "t/y"),
            line(4, 4, "t/z"),
            line(5, 5, "b"),
        ]
    }

    fn drain(writes: &mut Writes) -> Vec<Revision> {
        std::iter::from_fn(|| writes.next_record())
            .map(|record| record.offset)
            .collect()
    }

    #[test]
    fn a_write_is_held_back_until_its_last_record_or_a_later_one_arrives() {
        let lines = topic();
        let mut writes = Writes::new(0);
        writes.feed(lines[0].as_bytes()).unwrap();
        assert_eq!(drain(&mut writes), [1]);
        writes.feed(lines[1].as_bytes()).unwrap();
        writes.feed(lines[2].as_bytes()).unwrap();
        assert_eq!(
            drain(&mut writes),
            Vec::<Revision>::new(),
            "half a transaction"
        );
        writes.feed(lines[3].as_bytes()).unwrap();
        assert_eq!(drain(&mut writes), [2, 3, 4]);
        assert_eq!(writes.resume_from(), 5);
    }

    #[test]
    fn a_write_whose_last_record_is_missing_ends_at_the_next_write_or_the_end() {
        // The record at offset 4 is filtered out (another caller's key).
        let lines = topic();
        let mut writes = Writes::new(0);
        writes.feed(lines[1].as_bytes()).unwrap();
        writes.feed(lines[2].as_bytes()).unwrap();
        assert_eq!(drain(&mut writes), Vec::<Revision>::new());
        writes.feed(lines[4].as_bytes()).unwrap();
        assert_eq!(drain(&mut writes), [2, 3, 5]);

        let mut writes = Writes::new(0);
        writes.feed(lines[1].as_bytes()).unwrap();
        writes.feed(lines[2].as_bytes()).unwrap();
        writes.finish().unwrap();
        assert_eq!(drain(&mut writes), [2, 3]);
        assert_eq!(writes.resume_from(), 5);
    }

    #[test]
    fn an_answer_cut_inside_a_write_resumes_at_its_start_and_loses_nothing() {
        let whole: String = topic().concat();
        // Cut in the middle of the transaction's second line.
        let cut = whole.find("t/y").unwrap();
        let mut writes = Writes::new(0);
        writes.feed(&whole.as_bytes()[..cut]).unwrap();
        let mut seen = drain(&mut writes);
        writes.broke();
        assert_eq!(seen, [1]);
        assert_eq!(writes.resume_from(), 2);

        // The server answers again from offset 2, in chunks of 7 bytes.
        let again: String = topic()[1..].concat();
        for chunk in again.as_bytes().chunks(7) {
            writes.feed(chunk).unwrap();
            let released = drain(&mut writes);
            assert!(
                released.is_empty() || released == [2, 3, 4] || released == [5],
                "whole writes only: {released:?}"
            );
            seen.extend(released);
        }
        writes.finish().unwrap();
        seen.extend(drain(&mut writes));
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_last_line_without_newline_is_read_at_the_end() {
        let mut writes = Writes::new(0);
        writes.feed(line(1, 1, "a").trim_end().as_bytes()).unwrap();
        assert_eq!(drain(&mut writes), Vec::<Revision>::new());
        writes.finish().unwrap();
        assert_eq!(drain(&mut writes), [1]);
    }

    #[test]
    fn a_line_that_is_no_record_is_an_error() {
        let mut writes = Writes::new(0);
        let error = writes.feed(b"{\"offset\": \"one\"}\n").unwrap_err();
        assert!(
            matches!(&error, Unreadable::NotARecord(text) if text.contains("not a record")),
            "{error:?}"
        );
    }

    #[test]
    fn the_servers_last_line_saying_why_it_cut_the_replay_is_its_error() {
        let mut writes = Writes::new(0);
        let answer = line(1, 1, "a")
            + r#"{"error":{"code":"internal","message":"segment 7.log is damaged at byte 9"}}"#
            + "\n";
        let error = writes.feed(answer.as_bytes()).unwrap_err();
        let Unreadable::Cut(body) = error else {
            panic!("{error:?}");
        };
        assert_eq!(body.error.code, schemas::api::ErrorCode::Internal);
        assert!(body.error.message.contains("byte 9"), "{body:?}");
        assert_eq!(drain(&mut writes), [1], "the records before it are kept");
    }

    #[test]
    fn raw_values_keep_the_json_as_sent() {
        let mut writes = WholeWrites::<Box<RawValue>>::new(0);
        let lines = concat!(
            r#"{"offset":1,"revision":1,"timestamp_ms":1,"key":"a","value":123456789012345678901234567890,"create_revision":1,"version":1}"#,
            "\n",
            r#"{"offset":2,"revision":2,"timestamp_ms":1,"key":"b","value":1e999999,"create_revision":2,"version":1}"#,
            "\n",
            r#"{"offset":3,"revision":3,"timestamp_ms":1,"key":"c","value":null,"create_revision":3,"version":1}"#,
            "\n",
            r#"{"offset":4,"revision":4,"timestamp_ms":1,"key":"a","value":null,"deleted":true,"create_revision":1,"version":0}"#,
            "\n",
        );
        writes.feed(lines.as_bytes()).expect("records");
        let values: Vec<Option<String>> = std::iter::from_fn(|| writes.next_record())
            .map(|record| record.value.map(|value| value.get().to_string()))
            .collect();
        assert_eq!(
            values,
            [
                Some("123456789012345678901234567890".to_string()),
                Some("1e999999".to_string()),
                Some("null".to_string()),
                None,
            ]
        );
    }
}
