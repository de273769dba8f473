//! The peer port's check that a request comes from a node of this cluster.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use schemas::api::header::CLUSTER_ID;
use schemas::api::ErrorCode;
use tracing::{error, warn};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::peer::CheckError;

/// Middleware of the peer port: refuses (403 `foreign_cluster`, logged) a
/// request naming another cluster's id; answers name this node's.
pub async fn same_cluster(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let named = request.headers().get(CLUSTER_ID);
    let theirs = match named.map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|text| Uuid::parse_str(text).ok())
    }) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return ApiError::bad_field(
                ErrorCode::InvalidHeader,
                CLUSTER_ID,
                "the cluster id is not a UUID",
            )
            .into_response()
        }
    };
    match state.cluster_id.check(theirs) {
        Ok(()) => {}
        Err(CheckError::Foreign(foreign)) => {
            warn!(
                path = %request.uri().path(),
                theirs = %foreign.theirs,
                ours = %foreign.ours,
                "refused a request from a node of another cluster"
            );
            return ApiError::new(ErrorCode::ForeignCluster, foreign.to_string()).into_response();
        }
        Err(CheckError::Store(failure)) => {
            error!(%failure, "cannot keep the cluster id");
            return ApiError::from(failure).into_response();
        }
    }
    let mut response = next.run(request).await;
    if let Some(ours) = state.cluster_id.header() {
        response.headers_mut().insert(CLUSTER_ID, ours);
    }
    response
}
