//! `/v1/topic/records`, replay: every record of the compacted topic from an
//! offset, as NDJSON, streamed with bounded memory and no thread of its own.
//!
//! A task reads the topic a chunk at a time, each chunk on the blocking
//! pool through [`read_topic`] (so replays never hold more than a few of
//! its threads, whatever their number), and reads the next chunk only once
//! the client has room for it. While the client keeps up, one reader is
//! handed from each chunk's read to the next, so no chunk seeks the topic
//! again; a client that falls behind makes the replay let go of it (and of
//! its read buffer) until there is room again. A client that takes nothing for
//! `--stream-idle-timeout-ms` has its replay stopped: the answer ends with
//! an error instead of its last chunk, so a cut replay never passes for a
//! whole one. A replay that meets damage, or the tombstone floor moving past
//! it, ends with a last line saying why ([`cut`]). The replay ends at the revision the answer's `X-Kv-Revision`
//! names, so a busy topic does not keep it going for ever; that revision
//! ends a write, and a `from` in the middle of a write's records is taken
//! from its first, so a replay holds whole writes. A chunk may end inside
//! one: a client applies a write's records once a record of a later
//! revision, or the end of the answer, shows they are all there. Roles and tokens are never sent, and with `--auth`
//! neither are the keys the caller may not read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use schemas::api::{ErrorBody, ErrorCode};
use tokio::sync::mpsc;
use tracing::{debug, error};

use crate::acl::principal::Principal;
use crate::api::auth::Caller;
use crate::api::changes::{check_replay_floor, write_record_json};
use crate::api::error::ApiError;
use crate::api::params::Query;
use crate::api::topic_reads::read_topic;
use crate::api::{AppState, REVISION_HEADER};
use crate::error::StoreError;
use crate::store::record::WriteRecord;
use crate::store::Store;
use crate::types::Revision;

/// Bytes of NDJSON gathered before a chunk is sent to the client, at
/// first and again after the client fell behind.
const MIN_CHUNK_BYTES: usize = 16 * 1024;
/// Bytes of a chunk at most. Once the client has kept up for more chunks
/// than are buffered, each chunk is twice the last, up to this: a chunk
/// costs a hop to the blocking pool and a wake-up of the sending task,
/// which bound a fast client's replay in small chunks (256 KiB: 20 % more
/// records a second than 128 KiB, docs/performance.md). A client that
/// falls behind gets small chunks again, so one that stalls at once holds
/// only small ones.
const MAX_CHUNK_BYTES: usize = 256 * 1024;
/// Room beyond a full chunk for the record that overflows it.
const CHUNK_SLACK_BYTES: usize = 4096;
/// Chunks read ahead of the client: with the one hyper is sending, this
/// bounds the memory a replay holds, however large the topic.
const CHUNKS_BUFFERED: usize = 2;
/// Bytes of the topic a replay's reader reads at once: a few chunks' worth,
/// so a reader kept between chunks holds little and one made again after a
/// pause reads little it does not send.
const READ_BYTES: usize = 64 * 1024;

/// One item of the answer's body.
type BodyItem = Result<Bytes, std::io::Error>;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/topic/records", get(records))
}

/// `GET /v1/topic/records?from=N`: every record from offset N as NDJSON.
async fn records(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["from"])?;
    let from = query.revision("from")?.unwrap_or(0);
    let floor = state.store.tombstone_floor();
    check_replay_floor(&state.store, from)?;
    let standing = match &caller {
        Caller::Token(principal) => Some(Standing {
            generation: state.store.acl_generation(),
            state: state.clone(),
            headers,
            principal: Arc::clone(principal),
        }),
        Caller::Anyone => None,
    };
    let revision = state.store.revision();
    let (sender, receiver) = mpsc::channel::<BodyItem>(CHUNKS_BUFFERED);
    let finished = Arc::new(AtomicBool::new(false));
    let idle = Duration::from_millis(state.config.stream_idle_timeout_ms);
    tokio::spawn(produce(
        Arc::clone(&state.store),
        Span {
            from,
            until: revision,
            floor,
        },
        sender,
        idle,
        Arc::clone(&finished),
        Requester { caller, standing },
    ));
    let mut response = Body::from_stream(body_stream(receiver, finished)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    Ok(response)
}

/// The chunks `produce` sends; when it stops without having `finished`
/// (the client stalled), one error, so the answer is cut, not completed.
fn body_stream(
    receiver: mpsc::Receiver<BodyItem>,
    finished: Arc<AtomicBool>,
) -> impl futures::Stream<Item = BodyItem> {
    futures::stream::unfold(Some(receiver), move |receiver| {
        let finished = Arc::clone(&finished);
        async move {
            let mut receiver = receiver?;
            match receiver.recv().await {
                Some(Ok(chunk)) => Some((Ok(chunk), Some(receiver))),
                Some(Err(error)) => Some((Err(error), None)),
                None if finished.load(Ordering::Acquire) => None,
                None => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the replay was stopped: the client took nothing for too long",
                    )),
                    None,
                )),
            }
        }
    })
}

/// A replay's token as its request found it: once roles or tokens change,
/// the replay goes on only while the token still resolves to the same
/// roles (a revoked token's replay is cut, as its next request would be
/// refused).
struct Standing {
    state: AppState,
    headers: HeaderMap,
    principal: Arc<Principal>,
    generation: u64,
}

impl Standing {
    fn holds(&self) -> Result<(), String> {
        if self.state.store.acl_generation() == self.generation {
            return Ok(());
        }
        crate::api::auth::token_unchanged(&self.state, &self.headers, &self.principal)
            .map_err(|why| format!("the replay was stopped: {why}"))
    }
}

/// Who a replay answers: what it may read, and its token's standing.
struct Requester {
    caller: Caller,
    standing: Option<Standing>,
}

/// What a replay reads: from `from` to at least `until`, the store's
/// revision when it was asked, the tombstone floor then at `floor`.
struct Span {
    from: Revision,
    until: Revision,
    floor: Revision,
}

/// Reads records `from` … `until` a chunk at a time into `sender`, each
/// once the client has room for it; sets `finished` once all are sent.
///
/// A reader let go while the client is behind is opened again on the topic
/// as it is then, which the cleaner (or a snapshot install) may have
/// rewritten: records up to `until` superseded since are gone from it, so
/// the replay then reads on to the store's revision, where what superseded
/// them is. If tombstones were dropped meanwhile past where it goes on
/// (the floor moved above it), deletes may be gone too: the replay is cut
/// with an error rather than answered without them.
async fn produce(
    store: Arc<Store>,
    span: Span,
    sender: mpsc::Sender<BodyItem>,
    idle: Duration,
    finished: Arc<AtomicBool>,
    requester: Requester,
) {
    let Requester { caller, standing } = requester;
    let Span {
        from,
        mut until,
        floor,
    } = span;
    let mut next = from;
    let mut first_read = true;
    // The topic's rewrites when the reader in use was opened.
    let mut rewrites_at_open = store.topic_rewrites();
    // Opened by a chunk's read (opening reads the topic's index), then
    // handed to each read and back while the client keeps up.
    let mut writes: Option<Writes> = None;
    let mut chunk_bytes = MIN_CHUNK_BYTES;
    // Chunks the client has had room for since it was last behind.
    let mut kept_up = 0;
    loop {
        let room = match sender.try_reserve() {
            Ok(room) => {
                kept_up += 1;
                if kept_up > CHUNKS_BUFFERED + 1 {
                    chunk_bytes = (chunk_bytes * 2).min(MAX_CHUNK_BYTES);
                }
                room
            }
            Err(mpsc::error::TrySendError::Closed(())) => return, // the client went away
            Err(mpsc::error::TrySendError::Full(())) => {
                // The client is behind: let go of the reader and its read
                // buffer while it catches up (a stalled client holds no
                // more than its chunks); the next read opens one at `next`.
                writes = None;
                chunk_bytes = MIN_CHUNK_BYTES;
                kept_up = 0;
                match tokio::time::timeout(idle, sender.reserve()).await {
                    Ok(Ok(room)) => room,
                    Ok(Err(_)) => return, // the client went away
                    Err(_) => {
                        debug!(
                            at = next,
                            idle_ms = idle.as_millis() as u64,
                            "replay stopped: the client took nothing"
                        );
                        return;
                    }
                }
            }
        };
        if let Some(Err(why)) = standing.as_ref().map(Standing::holds) {
            debug!(at = next, %why, "replay stopped");
            room.send(Err(std::io::Error::other(why)));
            return;
        }
        let taken = writes.take();
        let opens = taken.is_none();
        let rewrites_before = store.topic_rewrites();
        if opens && !first_read && rewrites_before != rewrites_at_open {
            until = until.max(store.revision());
        }
        if opens {
            rewrites_at_open = rewrites_before;
        }
        let reading = Arc::clone(&store);
        let caller = caller.clone();
        let whole_units = first_read;
        let read = read_topic(move || {
            // The first read starts at a unit's start; a reader opened
            // again goes on where the last chunk ended.
            let mut reader = taken
                .unwrap_or_else(|| Box::new(reading.writes_from(next, READ_BYTES, whole_units)));
            let chunk = read_chunk(&mut reader, until, &caller, chunk_bytes);
            (reader, chunk)
        })
        .await;
        first_read = false;
        // The floor is raised before the cleaner puts its segments in place,
        // so a reader opened on them finds it raised here.
        let floor_now = store.tombstone_floor();
        if opens && floor_now != floor && next > 1 && next < floor_now {
            let message = format!(
                "the replay was cut at offset {next}: deletes below offset {floor_now} were \
                 compacted away while it ran; replay again from 0"
            );
            debug!(
                at = next,
                floor = floor_now,
                "replay stopped: the tombstone floor moved past it"
            );
            let code = ErrorCode::BelowTombstoneFloor;
            cut(room, &finished, Vec::new(), code, message);
            return;
        }
        let chunk = match read {
            Ok((reader, Ok(chunk))) => {
                writes = Some(reader);
                chunk
            }
            Ok((_, Err(Unread { read, message }))) => {
                error!(%message, at = next, "replay stopped");
                cut(room, &finished, read, ErrorCode::Internal, message);
                return;
            }
            Err(error) => {
                let message = format!("{error:?}");
                error!(%message, at = next, "replay stopped");
                cut(room, &finished, Vec::new(), ErrorCode::Internal, message);
                return;
            }
        };
        if !chunk.bytes.is_empty() {
            room.send(Ok(Bytes::from(chunk.bytes)));
        }
        // A rewrite while the reader was being opened may have put it on
        // the new segments already: read on past `until` as above, with a
        // reader opened after it (this one read the record past `until`).
        let rewrites_now = store.topic_rewrites();
        if opens && rewrites_now != rewrites_at_open {
            rewrites_at_open = rewrites_now;
            writes = None;
            next = chunk.next.unwrap_or(until + 1);
            until = until.max(store.revision());
            continue;
        }
        match chunk.next {
            Some(offset) => next = offset,
            None => {
                finished.store(true, Ordering::Release);
                return;
            }
        }
    }
}

/// One chunk of NDJSON, and where the next one starts (`None` at the end).
struct Chunk {
    bytes: Vec<u8>,
    next: Option<Revision>,
}

/// A chunk's read that failed: the NDJSON of the records read before, and
/// why (a damaged segment's file and byte, say).
#[derive(Debug)]
struct Unread {
    read: Vec<u8>,
    message: String,
}

/// Ends a replay that cannot go on: the records read before the failure,
/// then a last line with the error's body (`{"error": {"code", "message"}}`)
/// naming why, and the answer ends there. It ends as a whole answer does:
/// cut by an error, hyper would drop the last chunks it had not yet
/// written, the line saying why among them. No record is a line with an
/// `error` member, so no client takes it for a whole replay.
fn cut(
    room: mpsc::Permit<'_, BodyItem>,
    finished: &AtomicBool,
    mut read: Vec<u8>,
    code: ErrorCode,
    message: String,
) {
    serde_json::to_writer(&mut read, &ErrorBody::new(code, message))
        .expect("an error body always serializes");
    read.push(b'\n');
    room.send(Ok(Bytes::from(read)));
    finished.store(true, Ordering::Release);
}

/// The writes a replay reads, kept from one chunk to the next.
type Writes = Box<dyn Iterator<Item = Result<WriteRecord, StoreError>> + Send>;

/// The next records of `writes`, up to `until`, that fill a chunk of
/// `chunk_bytes`, leaving out internal keys (roles, tokens) and those
/// `caller` may not read. Blocking: it reads the topic's files.
fn read_chunk(
    writes: &mut Writes,
    until: Revision,
    caller: &Caller,
    chunk_bytes: usize,
) -> Result<Chunk, Unread> {
    let mut bytes = Vec::with_capacity(chunk_bytes + CHUNK_SLACK_BYTES);
    for write in writes.by_ref() {
        let write = match write {
            Ok(write) => write,
            Err(error) => {
                crate::store::note_damage(&error);
                return Err(Unread {
                    read: bytes,
                    message: error.to_string(),
                });
            }
        };
        let offset = write.offset;
        if offset > until {
            break;
        }
        if crate::store::internal::is_internal_key(&write.key) || !caller.may_read(&write.key) {
            if offset >= until {
                break;
            }
            continue;
        }
        if let Err(error) = write_record_json(write, &mut bytes) {
            return Err(Unread {
                read: bytes,
                message: format!("{error:?}"),
            });
        }
        bytes.push(b'\n');
        if bytes.len() >= chunk_bytes {
            let next = (offset < until).then_some(offset + 1);
            return Ok(Chunk { bytes, next });
        }
    }
    Ok(Chunk { bytes, next: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::internal::tests::{put, store_holding_an_internal_key, CLIENT_KEY};

    #[test]
    fn a_replay_never_sends_an_internal_key() {
        let (_root, store) = store_holding_an_internal_key();
        store
            .apply_entries(vec![put(2, CLIENT_KEY)])
            .expect("applies");
        let mut writes: Writes = Box::new(store.writes_from(0, READ_BYTES, true));
        let chunk = read_chunk(
            &mut writes,
            store.revision(),
            &Caller::Anyone,
            MIN_CHUNK_BYTES,
        )
        .expect("reads");
        let keys: Vec<String> = String::from_utf8(chunk.bytes)
            .expect("NDJSON is UTF-8")
            .lines()
            .map(|line| {
                let record: schemas::api::ChangeRecord =
                    serde_json::from_str(line).expect("a record per line");
                record.key
            })
            .collect();
        assert_eq!(keys, vec![CLIENT_KEY]);
        assert_eq!(chunk.next, None, "the replay reached its end");
    }

    /// A transaction at log index 2 of `keys`, each with a value of
    /// `value_bytes`: records at consecutive offsets from 2.
    fn big_txn(keys: &[&str], value_bytes: usize) -> crate::types::Entry {
        use crate::types::{Command, Op, Txn, TxnOp};
        let value = format!("\"{}\"", "v".repeat(value_bytes));
        let success = keys
            .iter()
            .map(|key| TxnOp::Put {
                key: key.to_string(),
                value: value.clone(),
                lease: None,
            })
            .collect();
        crate::types::Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 2),
            payload: openraft::EntryPayload::Normal(Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                request_hash: None,
                op: Op::Txn(Txn {
                    compare: vec![],
                    success,
                    failure: vec![],
                }),
            }),
        }
    }

    /// A store holding a transaction of `t/a` … `t/d` at offsets 2 to 5
    /// after an internal key, each value filling a chunk of its own.
    fn store_with_a_big_txn() -> (tempfile::TempDir, Arc<Store>) {
        let (root, store) = store_holding_an_internal_key();
        store
            .apply_entries(vec![big_txn(
                &["t/a", "t/b", "t/c", "t/d"],
                MIN_CHUNK_BYTES,
            )])
            .expect("applies");
        assert_eq!(store.revision(), 5);
        (root, Arc::new(store))
    }

    /// A replay of `store` from `from` whose client takes nothing until
    /// the channel is full (its reader is then let go): the producer, the
    /// channel and the `finished` flag.
    async fn replay_held_up(
        store: &Arc<Store>,
        from: Revision,
    ) -> (
        tokio::task::JoinHandle<()>,
        mpsc::Receiver<BodyItem>,
        Arc<AtomicBool>,
    ) {
        let (sender, receiver) = mpsc::channel::<BodyItem>(CHUNKS_BUFFERED);
        let finished = Arc::new(AtomicBool::new(false));
        let span = Span {
            from,
            until: store.revision(),
            floor: store.tombstone_floor(),
        };
        let producer = tokio::spawn(produce(
            Arc::clone(store),
            span,
            sender,
            Duration::from_secs(10),
            Arc::clone(&finished),
            Requester {
                caller: Caller::Anyone,
                standing: None,
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while receiver.len() < CHUNKS_BUFFERED {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replay sent nothing"
            );
            tokio::task::yield_now().await;
        }
        (producer, receiver, finished)
    }

    /// The offsets of an answer's records, in the order sent.
    async fn offsets_sent(mut receiver: mpsc::Receiver<BodyItem>) -> Vec<Revision> {
        let mut offsets = Vec::new();
        while let Some(chunk) = receiver.recv().await {
            let chunk = chunk.expect("no error");
            for line in std::str::from_utf8(&chunk).expect("UTF-8").lines() {
                let record: schemas::api::ChangeRecord =
                    serde_json::from_str(line).expect("a record per line");
                offsets.push(record.offset);
            }
        }
        offsets
    }

    /// A replay from inside a write reads from the write's start once; a
    /// client that falls behind right after the first records, which ended
    /// where the replay was asked from, is not sent them again. A reader
    /// opened again on a topic nothing rewrote stops where the replay was
    /// asked to.
    #[tokio::test]
    async fn a_reader_opened_again_sends_no_record_twice() {
        let (_root, store) = store_with_a_big_txn();
        // Asked from 4: read from the write's start (2); the two chunks the
        // channel holds end at 4, where the reader is let go.
        let (producer, receiver, finished) = replay_held_up(&store, 4).await;
        // Written after the replay began, with no rewrite of the topic:
        // not read.
        store
            .apply_entries(vec![put(3, CLIENT_KEY)])
            .expect("applies");
        let offsets = offsets_sent(receiver).await;
        producer.await.expect("the producer ends");
        assert!(finished.load(Ordering::Acquire));
        assert_eq!(offsets, vec![2, 3, 4, 5]);
    }

    /// A reader let go, then opened again on a topic rewritten meanwhile
    /// (here replaced as a snapshot install does; a cleaner pass does the
    /// same), would miss a record superseded since by one past the
    /// replay's end: it reads on to the store's revision then.
    #[tokio::test]
    async fn a_reader_opened_again_on_a_rewritten_topic_reads_on_to_the_revision() {
        let (_root, store) = store_with_a_big_txn();
        let (producer, receiver, finished) = replay_held_up(&store, 0).await;
        // t/c (offset 4, not sent yet) is written again at 6, and the
        // topic rewritten without its record at 4.
        store.apply_entries(vec![put(3, "t/c")]).expect("applies");
        let kept: Vec<compaction::Record> = store
            .writes_from(0, READ_BYTES, false)
            .map(|write| write.expect("reads").to_record())
            .filter(|record| record.offset != 4)
            .collect();
        store
            .topic
            .replace_with(kept.into_iter().map(Ok), 6, 0)
            .expect("replaces");
        let offsets = offsets_sent(receiver).await;
        producer.await.expect("the producer ends");
        assert!(finished.load(Ordering::Acquire));
        assert_eq!(offsets, vec![2, 3, 5, 6]);
    }
}
