//! `GET /v1/brokers` and `GET /v1/routes/{topic}`: the name server's state
//! in RocketMQ's JSON, from the same view functions as the remoting
//! answers, long-pollable with `?index=N&wait=30s` on the `namesrv/` keys.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::long_polls::LongPollGate;
use crate::api::params::{path_capture, Blocking, Query};
use crate::api::{AppState, INDEX_HEADER, REVISION_HEADER};
use crate::namesrv::{keys, view};
use crate::watch::WatchTarget;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/brokers", get(brokers))
        .route("/v1/routes/{topic}", get(route))
}

/// Waits, when the query asks, until a `namesrv/` key changes after its
/// `index`; gives the revision the answer reflects.
async fn wait_for_change(
    state: &AppState,
    long_polls: &LongPollGate,
    query: Option<&str>,
) -> Result<u64, ApiError> {
    let query = Query::parse(query, &["index", "wait"])?;
    if let Some(Blocking { index, wait }) = query.blocking(state.config.max_wait_ms)? {
        let waiter = state
            .store
            .watch(WatchTarget::Prefix(keys::ROOT.to_string()), index);
        if state.store.revision() <= index {
            let _slot = long_polls.hold()?;
            let _ = tokio::time::timeout(wait, waiter).await;
        }
    }
    Ok(state.store.revision())
}

/// An answer stamped with the revision it reflects, for the next `index`.
fn stamped(body: Response, revision: u64) -> Response {
    let mut response = body;
    let headers = response.headers_mut();
    headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    headers.insert(INDEX_HEADER, HeaderValue::from(revision));
    response
}

/// `GET /v1/brokers`: RocketMQ's `ClusterInfo`.
async fn brokers(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let revision = wait_for_change(&state, &long_polls, query.as_deref()).await?;
    let info = view::cluster_info(&state.store)?;
    Ok(stamped(Json(info).into_response(), revision))
}

/// `GET /v1/routes/{topic}`: RocketMQ's `TopicRouteData`, or 404 naming
/// the topic.
async fn route(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let topic = path_capture(path, ErrorCode::InvalidField, "topic")?;
    let revision = wait_for_change(&state, &long_polls, query.as_deref()).await?;
    match view::route(&state.store, &topic)? {
        Some(route) => Ok(stamped(Json(route).into_response(), revision)),
        None => Ok(stamped(
            ApiError::new(
                ErrorCode::NotFound,
                format!("no route for topic {topic:?}: no live broker holds it"),
            )
            .into_response(),
            revision,
        )),
    }
}
