//! `/v1/changes` (the change feed) and `/v1/topic/records` (replay): the
//! compacted topic itself, read from an offset.
//!
//! A record's JSON form: `{"offset","timestamp_ms","key","value","create_revision","version"}`
//! with `value: null` and `deleted: true` for a delete. Offsets are revisions: a
//! client that has seen offset N asks for `from=N` next.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::{ChangeRecord, ChangesPage, ErrorCode};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::api::error::ApiError;
use crate::api::params::{page_bounds, parse_wait, Query, CHANGES_PAGE};
use crate::api::{AppState, INDEX_HEADER, REVISION_HEADER};
use crate::store::record::WriteRecord;
use crate::store::Store;
use crate::types::Revision;
use crate::watch::WatchTarget;

/// Bytes of NDJSON gathered before a chunk is sent to the client.
const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// Room beyond a full chunk for the record that overflows it.
const STREAM_CHUNK_SLACK_BYTES: usize = 4096;
/// Chunks buffered between the reading thread and the client: this bounds
/// the memory a replay holds, however large the topic.
const STREAM_CHUNKS_BUFFERED: usize = 4;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/changes", get(changes))
        .route("/v1/topic/records", get(records))
}

/// One record as the API shows it; the value is the stored JSON text.
type RecordView = ChangeRecord<Box<RawValue>>;

/// A write as the API shows it.
fn record_view(write: WriteRecord) -> Result<RecordView, ApiError> {
    let deleted = write.value.is_none();
    let value = write
        .value
        .map(|bytes| {
            String::from_utf8(bytes.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .ok_or_else(|| {
                    ApiError::internal(format!("record at offset {} holds no JSON", write.revision))
                })
        })
        .transpose()?;
    Ok(ChangeRecord {
        offset: write.revision,
        timestamp_ms: write.timestamp_ms,
        key: write.key,
        value,
        deleted,
        create_revision: write.create_revision,
        version: write.version,
    })
}

/// 410 when a reader starting after `from` could miss deletes the cleaner
/// has dropped: it must start over from offset 0 (or a fresh list).
fn check_floor(store: &Store, from: Revision) -> Result<(), ApiError> {
    let floor = store.tombstone_floor();
    // Records after `from` start at from + 1, which must be at the floor.
    if from > 0 && from + 1 < floor {
        return Err(ApiError::new(
            ErrorCode::BelowTombstoneFloor,
            format!(
                "changes after {from} are no longer complete: deletes below offset {floor} were compacted away; \
                 read again from 0, or from {} or later",
                floor - 1
            ),
        ));
    }
    Ok(())
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
    let limit = query.limit(CHANGES_PAGE)?;
    let wait = query
        .get("wait")
        .map(|raw| parse_wait(raw, state.config.max_wait_ms))
        .transpose()?;
    check_floor(&state.store, from)?;
    let waiter = wait.map(|_| state.store.watch(WatchTarget::Prefix(prefix.clone()), from));
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
) -> Result<ChangesPage<Box<RawValue>>, ApiError> {
    let store = std::sync::Arc::clone(&state.store);
    let prefix = prefix.to_string();
    let bounds = page_bounds(state, limit);
    let read = tokio::task::spawn_blocking(move || store.changes_after(&prefix, from, bounds))
        .await
        .map_err(|error| ApiError::internal(format!("change feed task failed: {error}")))??;
    Ok(ChangesPage {
        records: read
            .writes
            .into_iter()
            .map(record_view)
            .collect::<Result<_, _>>()?,
        next: read.next,
        more: read.more,
    })
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
        let chunk_capacity = STREAM_CHUNK_BYTES + STREAM_CHUNK_SLACK_BYTES;
        let mut chunk = Vec::with_capacity(chunk_capacity);
        for write in store.writes_from(from) {
            let line = write
                .map_err(|error| error.to_string())
                .and_then(|write| record_view(write).map_err(|error| format!("{error:?}")));
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
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_capacity));
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
