//! The HTTP/JSON API: one router, one module per area.
//!
//! `AppState` is cloned into every handler; everything in it is shared and
//! safe to use concurrently (openraft's handle, the store whose only writer
//! is the state machine, an HTTP client pool).

pub mod acl;
pub mod alarms;
pub mod auth;
pub mod batcher;
pub mod changes;
pub mod cluster;
pub mod cluster_watch;
pub mod error;
pub mod forward;
pub mod kv;
pub mod layers;
pub mod leader;
pub mod leases;
pub mod long_polls;
pub mod metadata;
pub mod metrics;
pub mod namesrv;
pub mod params;
pub mod peer;
pub mod propose;
pub mod raft;
pub mod read;
pub mod relay;
pub mod replay;
pub mod request_metrics;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod test_peers;
pub mod topic_reads;
pub mod txn;
pub mod ui;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::{header, ErrorCode, Health};
use tower::layer::util::{Identity, Stack};
use tower::ServiceBuilder;

use crate::api::error::ApiError;
use crate::api::layers::{BodyBound, LimitsLayer, ObserveLayer};
use crate::api::leader::{known_leader, Leader};
use crate::api::long_polls::LongPolls;
use crate::config::Config;
use crate::read_index::{ReadIndexRounds, RemoteReadIndexRounds};
use crate::store::Store;
use crate::types::{NodeId, Raft};

pub use crate::api::propose::propose;
pub use crate::api::read::linearizable_barrier;

/// Header carrying the revision an answer reflects.
pub const REVISION_HEADER: HeaderName = HeaderName::from_static(header::REVISION);
/// Header carrying the index a long-poll client sends next.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static(header::INDEX);
/// Header of a request one node passed to another: the id of the node.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static(header::FORWARDED_BY);

/// Room a request body is given beyond the largest value: the JSON
/// around a config, and the headers of a forwarded write.
const BODY_SLACK_BYTES: usize = 64 * 1024;

/// The largest request body the public API reads.
pub fn max_body_bytes(config: &Config) -> usize {
    config.max_value_bytes + BODY_SLACK_BYTES
}

/// The largest [`max_internal_body_bytes`] whatever the flags: its entry's
/// JSON, values escaped (twice their bytes at most), with room for each
/// op's fields, fits a raft log frame (64 MiB).
const MAX_INTERNAL_BODY_BYTES: usize = 28 << 20;

/// The largest transaction body of the node's own writes
/// ([`InternalRequest`]): a broker's registration of up to 100,000 topics
/// is one transaction. Half the largest append batch, so that its entry
/// always fits one, and at most [`MAX_INTERNAL_BODY_BYTES`].
pub fn max_internal_body_bytes(config: &Config) -> usize {
    (config.max_raft_body_bytes / 2)
        .max(max_body_bytes(config))
        .min(MAX_INTERNAL_BODY_BYTES)
}

/// What every handler shares: one allocation, so that a request (and every
/// middleware it passes) holds a pointer to it rather than a copy of each
/// field, and cloning it for a request is one reference count, not twenty.
/// A waiting long-poll carries one such clone per layer.
#[derive(Clone)]
pub struct AppState(Arc<NodeState>);

impl AppState {
    /// The handlers' shared state.
    pub fn new(state: NodeState) -> AppState {
        AppState(Arc::new(state))
    }
}

impl std::ops::Deref for AppState {
    type Target = NodeState;

    fn deref(&self) -> &NodeState {
        &self.0
    }
}

/// The node's parts the handlers use, behind [`AppState`].
pub struct NodeState {
    /// This node's id.
    pub node_id: NodeId,
    /// Set while this node, started with `--join` on an empty log, waits
    /// for the cluster to take it: it grants no vote meanwhile.
    pub joining: Arc<std::sync::atomic::AtomicBool>,
    /// Set while this node, a `--peers` member started with an empty raft
    /// log, asks its peers whether its data was lost (see
    /// [`crate::join::ask_peers`]): it takes no vote, entries or snapshot
    /// meanwhile.
    pub asking_peers: Arc<crate::join::AskingPeers>,
    /// The openraft handle.
    pub raft: Raft,
    /// The topic, the view and the watchers.
    pub store: Arc<Store>,
    /// The node's configuration.
    pub config: Arc<Config>,
    /// The background cleaner, for its status.
    pub cleaner: Arc<compaction::CleanerHandle>,
    /// The committed log index, as the raft log store last saved it.
    pub committed: Arc<std::sync::atomic::AtomicU64>,
    /// HTTP client for requests passed to other nodes (pooled, naming
    /// this node's cluster).
    pub peers: crate::peer::PeerClient,
    /// This node's cluster id: requests from other clusters are refused.
    pub cluster_id: Arc<crate::peer::ClusterId>,
    /// Read-index rounds, shared by the linearizable reads this node leads.
    pub read_index: ReadIndexRounds,
    /// Read-index requests to the leader, shared by this node's
    /// linearizable reads while it follows.
    pub remote_read_index: RemoteReadIndexRounds,
    /// Slots of the long-polls waiting now (`--max-long-polls`).
    pub long_polls: LongPolls,
    /// Tokens resolved for `--auth`, dropped when roles or tokens change.
    pub tokens: Arc<crate::acl::cache::TokenCache>,
    /// When this node last accepted an append-entries from a leader: the
    /// name server's measure of a follower's freshness.
    pub leader_contact: crate::namesrv::freshness::LeaderContact,
    /// Room for the writes this node proposes (`--max-pending-write-bytes`).
    pub write_budget: crate::write_budget::WriteBudget,
    /// Whether this node was removed from the cluster (then it serves
    /// nothing: see `removal`).
    pub removal: Arc<crate::removal::Removal>,
    /// Whether this node, restarted with entries it had not applied, has
    /// caught up since (see `caught_up`).
    pub caught_up: Arc<crate::caught_up::CaughtUp>,
    /// The partial snapshots arriving from a leader, chunk by chunk.
    pub snapshot_receiver: Arc<crate::store::snapshot_receive::SnapshotReceiver>,
    /// The queue of writes to propose, many to an entry.
    pub batcher: crate::api::batcher::Batcher,
    /// The queue of key-value writes for the leader while this node
    /// follows, many to a request.
    pub relay: crate::api::relay::Relay,
    /// This node's space limits and its last measure of them.
    pub space: Arc<crate::space::Space>,
    /// Taken by each membership change this node proposes, so that one
    /// waits for the last (see `cluster::change`).
    pub membership_changes: tokio::sync::Mutex<()>,
}

/// The client port: the public API. `/raft/*` is not there (404): the
/// node-to-node routes are served on the peer port only. With `--auth`,
/// every request is checked here, before a follower passes it on.
pub fn client_router(state: AppState) -> Router {
    let mut routes = public_routes(&state);
    // Without --auth the check is not in the stack at all: a waiting
    // long-poll would otherwise carry its future for nothing.
    if state.config.auth {
        routes = routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ));
    }
    // One layer of the router for the logging and the limits together:
    // axum wraps every route in a boxed service per layer and clones the
    // nested boxes on every request, so each layer costs allocations.
    let outer = ServiceBuilder::new()
        .layer(ObserveLayer::new(state.clone()))
        .layer(limits(&state.config));
    routes.layer(outer).with_state(state)
}

/// The public routes without authentication, for the node's own
/// in-process calls (the name server's writes): a follower still passes
/// writes to the leader, as it does a client's.
pub fn internal_router(state: AppState) -> Router {
    let outer = ServiceBuilder::new()
        .layer(axum::middleware::map_request(mark_internal))
        .layer(limits(&state.config));
    public_routes(&state).layer(outer).with_state(state)
}

/// A request extension on the node's own calls (see [`internal_router`]),
/// which may hold transactions up to [`schemas::api::MAX_INTERNAL_TXN_OPS`].
/// Clients cannot set an extension; on the peer port a node of this
/// cluster marks a passed-on request with the `x-kv-internal` header.
#[derive(Clone, Copy, Debug)]
pub struct InternalRequest;

/// A request extension on the peer port for a request another node passed
/// on (it carries [`FORWARDED_HEADER`]): this node serves it itself rather
/// than pass it on again. On the client port the header means nothing, so
/// a client cannot make a follower serve a write it must pass on.
#[derive(Clone, Copy, Debug)]
pub struct PassedOn;

/// Marks a request of [`internal_router`] as the node's own.
async fn mark_internal(mut request: Request) -> Request {
    request.extensions_mut().insert(InternalRequest);
    request
}

/// The peer port: the node-to-node `/raft/*` routes, and the public API for
/// the requests other nodes pass here (forwarded writes, the leader's view
/// of the members, joins). It has its own request limits, so clients
/// cannot crowd out the cluster's own traffic; the `/raft/*` routes are
/// outside them.
pub fn peer_router(state: AppState) -> Router {
    let outer = ServiceBuilder::new()
        .layer(ObserveLayer::new(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            peer::same_cluster,
        ));
    let mut routes = public_routes(&state);
    if state.config.auth {
        routes = routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check_passed_on,
        ));
    }
    routes
        .layer(limits(&state.config))
        .merge(raft::routes(&state.config))
        .route(
            "/raft/removed",
            axum::routing::post(crate::removal::removed),
        )
        // The `/raft/*` routes' own 405 had no body.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(outer)
        .with_state(state)
}

/// The public routes and the forwarding of writes; the routers add the
/// [`limits`].
fn public_routes(state: &AppState) -> Router<AppState> {
    let mut routes = Router::new()
        .merge(kv::routes())
        .merge(cluster::routes())
        .merge(changes::routes())
        .merge(replay::routes())
        .merge(metadata::routes())
        .merge(metrics::routes())
        .merge(acl::routes())
        .merge(txn::routes())
        .merge(leases::routes())
        .merge(namesrv::routes())
        .merge(alarms::routes())
        .merge(snapshot::routes())
        .merge(ui::routes())
        .route("/healthz", get(healthz))
        .route("/v1/openapi.json", get(openapi));
    if state.config.bench_noop_route {
        routes = routes.route(BENCH_NOOP_ROUTE, axum::routing::put(bench_noop));
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Only requests for a route of this API are passed to the leader
        // (with a method the route does not take too: the leader answers
        // 405), in a path that reads the same once sent (see `forward`);
        // any other path is answered here (404), so a client cannot reach
        // the leader's peer routes through a follower.
        .route_layer(forward::ForwardWritesLayer::new(state.clone()))
}

/// The public routes' limits: the body limit, then [`Limits`]: load
/// shedding past the requests served at once, and a hard timeout.
fn limits(
    config: &Config,
) -> ServiceBuilder<Stack<LimitsLayer, Stack<DefaultBodyLimit, Identity>>> {
    // Handlers bound their own waits (raft, long-polls); this is the outer
    // limit no request outlives, long-polls included.
    let hard_timeout = Duration::from_millis(config.max_wait_ms + 2 * config.request_timeout_ms);
    ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(max_body_bytes(config)))
        .layer(LimitsLayer::new(
            config.max_concurrent_requests,
            hard_timeout,
            Duration::from_millis(config.request_timeout_ms),
            BodyBound {
                max_body_bytes: max_body_bytes(config),
                max_value_bytes: config.max_value_bytes,
            },
        ))
}

/// The route of `--bench-noop-route`: shaped as `PUT /v1/kv/{*key}`.
pub const BENCH_NOOP_ROUTE: &str = "/v1/bench/noop/{*key}";

/// `PUT /v1/bench/noop/{key}` (only with `--bench-noop-route`): reads the
/// body and answers 204, behind every layer a put passes, so its rate is
/// the ceiling a put is measured against.
async fn bench_noop(
    State(state): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::http::StatusCode, ApiError> {
    body.map_err(|rejection| write::body_error(&state, rejection))?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// `GET /v1/openapi.json`: the contract, as `docs/openapi.json` holds it.
async fn openapi() -> Response {
    static DOCUMENT: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        serde_json::to_vec(&schemas::api::openapi::document())
            .expect("the OpenAPI document serializes")
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_slice(),
    )
        .into_response()
}

/// `GET /healthz`: liveness, 200 while the process answers, with the
/// leader it knows if any. Readiness for traffic is `/readyz`
/// (`alarms`).
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let (leader, leader_addr) = leader_of_health(&state);
    Json(Health {
        status: "ok".to_string(),
        node_id: state.node_id,
        leader,
        leader_addr,
    })
}

/// The leader `/healthz` and `/readyz` name: its id and its client URL,
/// as far as this node knows them.
pub fn leader_of_health(state: &AppState) -> (Option<NodeId>, Option<String>) {
    match known_leader(state) {
        Some(Leader::This) => (Some(state.node_id), Some(state.config.advertise_url())),
        Some(Leader::Other { id, addr, .. }) => (Some(id), Some(addr).filter(|a| !a.is_empty())),
        None => (None, None),
    }
}
