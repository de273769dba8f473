//! `/v1/changes` (the change feed) and `/v1/topic/records` (replay): the
//! compacted topic itself, read from an offset.
//!
//! A record's JSON form: `{"offset","timestamp_ms","key","value","create_revision","version"}`
//! with `value: null` for a delete. Offsets are raft log indexes and so are
//! revisions: a client that has seen offset N asks for `from=N` next.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::api::error::ApiError;
use crate::api::params::{parse_wait, Query};
use crate::api::{AppState, INDEX_HEADER, REVISION_HEADER};
use crate::store::record::WriteRecord;
use crate::store::Store;
use crate::types::Revision;
use crate::watch::WatchTarget;

/// Default and largest number of records one change-feed answer reads.
const DEFAULT_LIMIT: u64 = 1_000;
const MAX_LIMIT: u64 = 10_000;
/// Bytes of NDJSON gathered before a chunk is sent to the client.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the reading thread and the client: this bounds
/// the memory a replay holds, however large the topic.
const STREAM_CHUNKS_BUFFERED: usize = 4;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/changes", get(changes))
        .route("/v1/topic/records", get(records))
}

/// One record as JSON.
#[derive(Serialize)]
pub struct RecordView {
    offset: Revision,
    timestamp_ms: u64,
    key: String,
    value: Option<Box<RawValue>>,
    /// Whether the record is a delete (a tombstone); a put of JSON `null`
    /// also shows `"value": null`, but not `"deleted": true`.
    deleted: bool,
    create_revision: Revision,
    version: u64,
}

impl RecordView {
    fn new(record: WriteRecord) -> Result<RecordView, ApiError> {
        let deleted = record.value.is_none();
        let value = record
            .value
            .map(|bytes| {
                String::from_utf8(bytes.to_vec())
                    .ok()
                    .and_then(|text| RawValue::from_string(text).ok())
                    .ok_or_else(|| {
                        ApiError::internal(format!(
                            "record at offset {} holds no JSON",
                            record.revision
                        ))
                    })
            })
            .transpose()?;
        Ok(RecordView {
            offset: record.revision,
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            value,
            deleted,
            create_revision: record.create_revision,
            version: record.version,
        })
    }
}

/// 410 when a reader starting after `from` could miss deletes the cleaner
/// has dropped: it must start over from offset 0 (or a fresh list).
fn check_floor(store: &Store, from: Revision) -> Result<(), ApiError> {
    let floor = store.topic.tombstone_floor();
    // Records after `from` start at from + 1, which must be at the floor.
    if from > 0 && from + 1 < floor {
        return Err(ApiError::new(
            StatusCode::GONE,
            "below_tombstone_floor",
            format!(
                "changes after {from} are no longer complete: deletes below offset {floor} were compacted away; \
                 read again from 0, or from {} or later",
                floor - 1
            ),
        ));
    }
    Ok(())
}

/// A page of the change feed.
#[derive(Serialize)]
struct ChangesView {
    records: Vec<RecordView>,
    /// Send this as `from` next.
    next: Revision,
    /// Whether the page stopped at `limit` before the end of the topic:
    /// ask again at once.
    more: bool,
}

/// `GET /v1/changes?prefix=p&from=N&limit=n&wait=30s`: records after N,
/// the latest per key; with `wait`, held until there is one.
async fn changes(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["prefix", "from", "limit", "wait"])?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let from = query.number("from")?.unwrap_or(0);
    let limit = query.limit(DEFAULT_LIMIT, MAX_LIMIT)?;
    let wait = query
        .get("wait")
        .map(|raw| parse_wait(raw, state.config.max_wait_ms))
        .transpose()?;
    check_floor(&state.store, from)?;
    let waiter = wait.map(|_| {
        state
            .store
            .watches
            .watch(WatchTarget::Prefix(prefix.clone()), from)
    });
    let mut page = read_changes(&state, &prefix, from, limit).await?;
    // Wait only at the end of the topic: a full page of other keys' records
    // is answered at once, so a reader far behind moves on.
    let idle = page.records.is_empty() && !page.more;
    if let (true, Some(wait), Some(waiter)) = (idle, wait, waiter) {
        let _ = tokio::time::timeout(wait, waiter).await;
        page = read_changes(&state, &prefix, from, limit).await?;
    }
    let mut response = Json(&page).into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(page.next));
    Ok(response)
}

async fn read_changes(
    state: &AppState,
    prefix: &str,
    from: Revision,
    limit: u64,
) -> Result<ChangesView, ApiError> {
    let store = std::sync::Arc::clone(&state.store);
    let prefix = prefix.to_string();
    tokio::task::spawn_blocking(move || {
        let revision = store.revision();
        let mut latest: Vec<WriteRecord> = Vec::new();
        let mut position_of: HashMap<String, usize> = HashMap::new();
        let mut read = 0;
        let mut next = from.max(revision);
        let mut more = false;
        for record in store.topic.read_from(from + 1) {
            let record = record
                .map_err(|error| ApiError::internal(format!("reading the topic: {error}")))?;
            if record.offset > revision {
                break;
            }
            read += 1;
            let offset = record.offset;
            if record.key.starts_with(prefix.as_bytes()) {
                let record = WriteRecord::from_record(record)?;
                match position_of.get(&record.key) {
                    Some(&at) => latest[at] = record,
                    None => {
                        position_of.insert(record.key.clone(), latest.len());
                        latest.push(record);
                    }
                }
            }
            if read == limit {
                next = offset;
                more = offset < revision;
                break;
            }
        }
        latest.sort_by_key(|record| record.revision);
        let records = latest
            .into_iter()
            .map(RecordView::new)
            .collect::<Result<_, _>>()?;
        Ok(ChangesView {
            records,
            next,
            more,
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("change feed task failed: {error}")))?
}

/// `GET /v1/topic/records?from=N`: every record from offset N as NDJSON,
/// streamed with bounded memory.
async fn records(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["from"])?;
    let from = query.number("from")?.unwrap_or(0);
    check_floor(&state.store, from.saturating_sub(1))?;
    let revision = state.store.revision();
    let store = std::sync::Arc::clone(&state.store);
    let (sender, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_CHUNKS_BUFFERED);
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(STREAM_CHUNK_BYTES + 4096);
        for record in store.topic.read_from(from) {
            let line = record
                .map_err(|error| error.to_string())
                .and_then(|record| {
                    WriteRecord::from_record(record).map_err(|error| error.to_string())
                })
                .and_then(|record| RecordView::new(record).map_err(|error| format!("{error:?}")));
            match line {
                Ok(view) => {
                    serde_json::to_writer(&mut chunk, &view).expect("a record view serializes");
                    chunk.push(b'\n');
                }
                Err(message) => {
                    tracing::error!(%message, "replay stopped");
                    let _ = sender.blocking_send(Err(std::io::Error::other(message)));
                    return;
                }
            }
            if chunk.len() >= STREAM_CHUNK_BYTES {
                let full =
                    std::mem::replace(&mut chunk, Vec::with_capacity(STREAM_CHUNK_BYTES + 4096));
                if sender.blocking_send(Ok(Bytes::from(full))).is_err() {
                    return; // the client went away
                }
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(Ok(Bytes::from(chunk)));
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    Ok(response)
}
