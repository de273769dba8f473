//! `GET /metrics`: Prometheus text format.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::AppState;
use crate::metrics::{render, Gauges};

/// The `/metrics` route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Response {
    let raft = state.raft.metrics().borrow().clone();
    let gauges = Gauges {
        term: raft.current_term,
        last_log_index: raft.last_log_index.unwrap_or(0),
        committed_index: state.committed.load(std::sync::atomic::Ordering::Acquire),
        applied_index: raft.last_applied.map_or(0, |id| id.index),
        is_leader: raft.current_leader == Some(state.node_id),
        quorum_ack_ms: raft.millis_since_quorum_ack,
        topic: state.store.topic_stats(),
        cleaner: state.cleaner.status(),
        watchers: state.store.watchers(),
        long_polls: state.long_polls.held(),
        nospace_alarms: state.store.alarms().map_or(0, |alarms| alarms.len()),
        disk_full: state.store.disk_full.describe().is_some(),
        damaged_data: !crate::api::alarms::damage_met(&state).is_empty(),
        quota_bytes: state.space.quota_bytes,
        min_free_bytes: state.space.min_free_bytes,
    };
    let mut response = render(&gauges).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
