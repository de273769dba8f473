//! `/v1/changes`, the change feed: the compacted topic read from an
//! offset, a page at a time (replay, the topic as a stream, is in
//! `replay.rs`).
//!
//! A record's JSON form: `{"offset","revision","timestamp_ms","key","value","create_revision","version"}`
//! with `value: null` and `deleted: true` for a delete. A page holds whole
//! writes: the records of one transaction come in one answer, and `next`
//! is the revision of the last write read.

use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::{ChangeRecord, ChangesPage, ErrorCode};
use serde_json::value::RawValue;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::long_polls::LongPollGate;
use crate::api::params::{page_bounds, parse_wait, Query, CHANGES_PAGE};
use crate::api::topic_reads::read_topic;
use crate::api::{AppState, INDEX_HEADER};
use crate::store::record::WriteRecord;
use crate::store::Store;
use crate::types::Revision;
use crate::watch::WatchTarget;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/changes", get(changes))
}

/// One record as the API shows it; the value is the stored JSON text.
type RecordView = ChangeRecord<Box<RawValue>>;

/// A write as the API shows it.
pub fn record_view(write: WriteRecord) -> Result<RecordView, ApiError> {
    let deleted = write.value.is_none();
    let revision = write.revision();
    let value = write
        .value
        .map(|bytes| {
            String::from_utf8(bytes.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .ok_or_else(|| {
                    ApiError::internal(format!("record at offset {} holds no JSON", write.offset))
                })
        })
        .transpose()?;
    Ok(ChangeRecord {
        offset: write.offset,
        revision,
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
pub fn check_floor(store: &Store, from: Revision) -> Result<(), ApiError> {
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
/// the latest per key; with `wait`, held until there is one. With `--auth`,
/// only the keys the caller may read are answered; `next` still moves past
/// the others, so the caller does not ask for them again.
async fn changes(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["prefix", "from", "limit", "wait"])?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    let from = query.revision("from")?.unwrap_or(0);
    let limit = query.limit(CHANGES_PAGE)?;
    let wait = query
        .get("wait")
        .map(|raw| parse_wait(raw, state.config.max_wait_ms))
        .transpose()?;
    check_floor(&state.store, from)?;
    let waiter = wait.map(|_| state.store.watch(WatchTarget::Prefix(prefix.clone()), from));
    let mut page = read_changes(&state, &caller, &prefix, from, limit).await?;
    // Wait only at the end of the topic: a full page of other keys' records
    // is answered at once, so a reader far behind moves on.
    let idle = page.records.is_empty() && !page.more;
    if let (true, Some(wait), Some(waiter)) = (idle, wait, waiter) {
        let slot = long_polls.hold()?;
        let _ = tokio::time::timeout(wait, waiter).await;
        drop(slot);
        page = read_changes(&state, &caller, &prefix, from, limit).await?;
    }
    let mut response = Json(&page).into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(page.next));
    Ok(response)
}

async fn read_changes(
    state: &AppState,
    caller: &Caller,
    prefix: &str,
    from: Revision,
    limit: u64,
) -> Result<ChangesPage<Box<RawValue>>, ApiError> {
    let store = std::sync::Arc::clone(&state.store);
    let prefix = prefix.to_string();
    let bounds = page_bounds(state, limit);
    let caller = caller.clone();
    let read =
        read_topic(move || store.changes_after(&prefix, from, bounds, |key| caller.may_read(key)))
            .await??;
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
