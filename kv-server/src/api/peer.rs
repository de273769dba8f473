//! The peer port's check that a request comes from a node of this cluster,
//! one that writes the same data format.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use schemas::api::header::{CLUSTER_ID, DATA_FORMAT, INTERNAL};
use schemas::api::ErrorCode;
use tracing::{error, warn};
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::api::{AppState, InternalRequest, PassedOn, FORWARDED_HEADER};
use crate::peer::CheckError;
use crate::store::data_format::DATA_FORMAT as DATA_FORMAT_OURS;

/// Middleware of the peer port: refuses (403 `foreign_cluster`, logged) a
/// request naming another cluster's id, and (403 `incompatible_peer`) a
/// node's request naming another data format or none; answers name this
/// node's cluster. A request of a node of this cluster marked
/// [`INTERNAL`] is the passing node's own: it gets [`InternalRequest`].
pub async fn same_cluster(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let named = request.headers().get(CLUSTER_ID);
    let format = request.headers().get(DATA_FORMAT);
    // Every node names its format; a request naming a cluster but no
    // format comes from a node older than the format.
    if named.is_some() || format.is_some() {
        let theirs = format.map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        if theirs.as_deref() != Some(DATA_FORMAT_OURS) {
            let theirs = theirs.unwrap_or_else(|| "none".into());
            warn!(
                path = %request.uri().path(),
                %theirs,
                ours = DATA_FORMAT_OURS,
                "refused a request from a node of another data format"
            );
            return ApiError::new(
                ErrorCode::IncompatiblePeer,
                format!(
                    "this node writes data format {DATA_FORMAT_OURS}, the caller {theirs}; \
                     nodes of different formats cannot share a cluster"
                ),
            )
            .into_response();
        }
    }
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
    // The peer port already carries raft's RPCs: a caller that names this
    // cluster gains nothing by also marking its writes as the node's own.
    if theirs.is_some() && request.headers().contains_key(INTERNAL) {
        request.extensions_mut().insert(InternalRequest);
    }
    if request.headers().contains_key(FORWARDED_HEADER) {
        // A node passes on only its clients' requests for the API: one
        // that would reach the node-to-node routes was not checked as such.
        if request.uri().path().starts_with("/raft/") {
            warn!(
                path = %request.uri().path(),
                "refused a passed-on request for a node-to-node route"
            );
            return ApiError::new(
                ErrorCode::PermissionDenied,
                "a request passed on by another node does not reach the node-to-node routes",
            )
            .into_response();
        }
        request.extensions_mut().insert(PassedOn);
    }
    let mut response = next.run(request).await;
    if let Some(ours) = state.cluster_id.header() {
        response.headers_mut().insert(CLUSTER_ID, ours);
    }
    response
}
