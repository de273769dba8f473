//! The compacted topic of openmessaging-kv: Kafka's log compaction as a
//! library, knowing nothing of Raft, HTTP or the materialized view.
//!
//! A [`Topic`] is a directory of segment files named by base offset
//! (`00000000000000000042.log` and its sparse `.index`). Callers append
//! [`Record`]s — key, value or tombstone, timestamp — at offsets they choose,
//! strictly increasing with gaps allowed between batches; [`Topic::sync`]
//! makes them durable; [`Topic::read_from`] iterates from any offset,
//! [`Topic::read_from_batch_start`] from the start of a batch. A *batch* is
//! a run of records at consecutive offsets written as one unit, each
//! record marked with its [`BatchPos`]; a single record is a batch of one.
//! The cleaner ([`Topic::clean_once`], or [`CleanerHandle`] in the
//! background) keeps only the latest record of every key in the closed
//! segments, and guarantees:
//!
//! 1. offsets never change;
//! 2. records of one key stay in order;
//! 3. reading from offset 0 yields the latest value of every live key;
//! 4. a reader starting at offset `o ≥` [`Topic::tombstone_floor`] sees the
//!    latest state of every key changed at or after `o`, deletes included;
//! 5. the active segment is never cleaned;
//! 6. a batch is never split across segments: the active segment rolls only
//!    between batches, and an append with an incoherent batch is refused
//!    with nothing written;
//! 7. the tombstone floor is always a batch end + 1;
//! 8. batch positions survive cleaning and [`Topic::replace_with`], and the
//!    record at the topic's last offset is never cleaned away.
//!
//! Every record is framed with its length and a CRC32C. On [`Topic::open`]
//! only what a crash provably left unwritten at the end of the active
//! segment is truncated (see [`torn`]); a bad record anywhere else is an
//! [`Error::Corrupt`] naming the file and byte position. The closed
//! segments are listed with their sizes and last offsets in
//! [`MANIFEST_FILE`]; one missing or changed is an
//! [`Error::ManifestMismatch`] naming it.
//! [`Topic::open_with_durable_end`] also cuts a damaged tail back to the
//! last record the caller knows durable, for a caller that can write the
//! rest again.
//!
//! [`fsutil`] holds the crash-safe file-system steps the topic is built
//! from (write atomically, fsync a directory); the server uses them for its
//! own files too.
//!
//! ```
//! use compaction::{Record, Topic, TopicConfig};
//!
//! # fn main() -> compaction::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let config = TopicConfig { min_cleanable_dirty_ratio: 0.0, ..TopicConfig::default() };
//! let topic = Topic::open(dir.path(), config)?;
//! topic.append(&[
//!     Record::put(1, 1_000, "topics/orders", "{\"readQueueNums\":8}"),
//!     Record::put(2, 1_001, "topics/orders", "{\"readQueueNums\":16}"),
//! ])?;
//! topic.sync()?;
//! topic.roll()?; // only closed segments are cleaned
//! topic.clean_once()?;
//! let records: Vec<Record> = topic.read_from(0).collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 1);
//! assert_eq!(records[0].offset, 2);
//! # Ok(())
//! # }
//! ```

mod background;
mod batch;
mod checkpoint;
mod cleaner;
mod config;
mod error;
pub mod fsutil;
mod index;
mod manifest;
mod reader;
mod record;
mod replace;
mod scan;
mod segment;
mod stats;
mod swap;
mod topic;
pub mod torn;

pub use background::{CleanerHandle, CleanerStatus};
pub use batch::BatchPos;
pub use checkpoint::{Checkpoint, CleanTime, CHECKPOINT_FILE};
pub use cleaner::{now_ms, CleanReport};
pub use config::TopicConfig;
pub use error::{Error, Result};
pub use manifest::MANIFEST_FILE;
pub use reader::TopicReader;
pub use record::{decode_frames, decode_frames_from, Offset, Record};
pub use scan::FileRecords;
pub use segment::{index_file_name, log_file_name, CLEANED_SUFFIX};
pub use stats::{SegmentInfo, TopicStats};
pub use swap::SWAP_MARKER_FILE;
pub use topic::Topic;
