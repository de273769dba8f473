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
pub fn record_view(mut write: WriteRecord) -> Result<RecordView, ApiError> {
    let value = write
        .value
        .take()
        .map(|bytes| {
            String::from_utf8(bytes.to_vec())
                .ok()
                .and_then(|text| RawValue::from_string(text).ok())
                .ok_or_else(|| no_json(&write))
        })
        .transpose()?;
    Ok(shown(write, value))
}

/// Appends `write` as the API shows it to `out`, in JSON. The value is
/// checked to be JSON where it lies in the record, not copied first.
pub fn write_record_json(mut write: WriteRecord, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let bytes = write.value.take();
    let value = bytes
        .as_deref()
        .map(|json| serde_json::from_slice::<&RawValue>(json).map_err(|_| no_json(&write)))
        .transpose()?;
    serde_json::to_writer(out, &shown(write, value)).expect("a record view serializes");
    Ok(())
}

/// `write` with `value`, its value taken out of it (`None`: a delete).
fn shown<V>(write: WriteRecord, value: Option<V>) -> ChangeRecord<V> {
    ChangeRecord {
        offset: write.offset,
        revision: write.revision(),
        timestamp_ms: write.timestamp_ms,
        key: write.key,
        deleted: value.is_none(),
        value,
        create_revision: write.create_revision,
        version: write.version,
    }
}

/// A record whose value is not JSON: the topic holds only what was checked.
fn no_json(write: &WriteRecord) -> ApiError {
    ApiError::internal(format!("record at offset {} holds no JSON", write.offset))
}

/// 410 when a reader starting after `from` could miss deletes the cleaner
/// has dropped: it must start over from a list of the keys, and read the
/// changes after the list's revision (etcd's answer to a compacted
/// revision). Reading again from 0 would not do once the floor is past a
/// page: the next page would be refused again.
pub fn check_floor(store: &Store, from: Revision) -> Result<(), ApiError> {
    // Records after `from` start at from + 1, which must be at the floor.
    check_first_offset(store, from + 1, |floor| {
        (
            format!("changes after {from}"),
            format!(
                "list the keys (GET /v1/kv?prefix=…) and read the changes after the list's \
                 revision (its X-Kv-Revision), or from {} or later",
                floor - 1
            ),
        )
    })
}

/// 410 when a replay from offset `from` (its first record) could miss
/// deletes the cleaner has dropped.
pub fn check_replay_floor(store: &Store, from: Revision) -> Result<(), ApiError> {
    check_first_offset(store, from, |floor| {
        (
            format!("records from offset {from}"),
            format!("replay again from 0, or from {floor} or later"),
        )
    })
}

/// 410 when a read whose first record is at `first` (past offset 1) starts
/// below the tombstone floor; `named` gives, for the floor, what the read
/// is and how to resume it.
fn check_first_offset(
    store: &Store,
    first: Revision,
    named: impl FnOnce(Revision) -> (String, String),
) -> Result<(), ApiError> {
    let floor = store.tombstone_floor();
    if first > 1 && first < floor {
        let (read, resume) = named(floor);
        return Err(ApiError::new(
            ErrorCode::BelowTombstoneFloor,
            format!(
                "{read} are no longer complete: deletes below offset {floor} were compacted away; {resume}"
            ),
        ));
    }
    Ok(())
}

/// `GET /v1/changes?prefix=p&from=N&limit=n&wait=30s`: records after N,
/// the latest per key; with `wait`, held until there is one. With `--auth`,
/// only the keys the caller may read are answered; `next` still moves past
/// the others, so the caller does not ask for them again, and a wait goes
/// on past writes of keys it may not read.
async fn changes(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = Query::parse(query.as_deref(), &["prefix", "from", "limit", "wait"])?;
    let prefix = query.get("prefix").unwrap_or("").to_string();
    schemas::api::check_read_prefix("prefix", &prefix).map_err(ApiError::from)?;
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
    let idle = |page: &ChangesPage<Box<RawValue>>| page.records.is_empty() && !page.more;
    if let (true, Some(wait), Some(mut waiter)) = (idle(&page), wait, waiter) {
        let slot = long_polls.hold()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut after = from;
        loop {
            let woken = tokio::time::timeout_at(deadline, waiter).await.is_ok();
            page = read_changes(&state, &caller, &prefix, after, limit).await?;
            // Woken by writes the caller may not read (with `--auth`): it
            // waits on past them, as an etcd watch sends no event for them.
            if !woken || !idle(&page) || page.next <= after {
                break;
            }
            after = page.next;
            waiter = state
                .store
                .watch(WatchTarget::Prefix(prefix.clone()), after);
        }
        drop(slot);
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
    // Again once read: the cleaner raises the floor before it puts its
    // segments in place, so a page read from segments without some
    // deletes finds the floor raised here.
    check_floor(&state.store, from)?;
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use compaction::BatchPos;

    use super::*;
    use crate::store::record::UnitKind;

    fn write(offset: u64, value: Option<&'static str>) -> WriteRecord {
        WriteRecord {
            offset,
            batch: BatchPos::new(0, 1),
            log_index: 3,
            kind: UnitKind::Write,
            timestamp_ms: 1_000,
            key: "app/\"quoted\"".to_string(),
            value: value.map(|text| Bytes::from_static(text.as_bytes())),
            create_revision: 2,
            version: 4,
            lease: 0,
            idempotency_key: None,
            request_hash: None,
            entry: None,
        }
    }

    #[test]
    fn a_replayed_record_is_written_as_the_change_feed_shows_it() {
        for value in [Some(" {\"a\": [1, \"x\"]} "), Some("7"), None] {
            let shown = serde_json::to_vec(&record_view(write(5, value)).unwrap()).unwrap();
            let mut written = Vec::new();
            write_record_json(write(5, value), &mut written).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(shown).unwrap(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_record_that_holds_no_json_is_named_not_sent() {
        for value in ["{\"a\":", "not json", "1 2"] {
            let mut written = Vec::new();
            let error = write_record_json(write(9, Some(value)), &mut written).unwrap_err();
            assert!(
                format!("{error:?}").contains("record at offset 9 holds no JSON"),
                "{value:?}: {error:?}"
            );
            assert!(written.is_empty(), "{value:?}: nothing of it was written");
            assert!(record_view(write(9, Some(value))).is_err(), "{value:?}");
        }
    }
}
