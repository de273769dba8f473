//! `/v1/cluster`: who leads, at which term, how far each member is; adding
//! and removing members.
//!
//! Only the leader knows how far each member has replicated, so a follower
//! asks the leader for the members' progress and shows it beside its own
//! state. Membership changes run on the leader (followers pass them on,
//! see [`crate::api::forward`]): a new node is added as a learner, and is
//! made a voter once it has caught up, as etcd and Consul do it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;
use schemas::api::{AddMember, ClusterStatus, ErrorCode, Member, MemberRole, MembershipChange};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::api::cluster_watch;
use crate::api::error::ApiError;
use crate::api::long_polls::LongPollGate;
use crate::api::params::Query;
use crate::api::write::object_body;
use crate::api::{AppState, PassedOn, FORWARDED_HEADER, INDEX_HEADER};
use crate::types::{Node, NodeId};

/// How long an added node may take to catch up before it is made a voter.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a follower waits for the leader's view of the members.
const LEADER_VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// The `/v1/cluster` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/cluster", get(status))
        .route("/v1/cluster/members", axum::routing::post(add_member))
        .route("/v1/cluster/members/{id}", delete(remove_member))
}

/// The members as this node's metrics know them; progress only on the leader.
fn members(state: &AppState) -> Vec<Member> {
    let metrics = state.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let leading = metrics.current_leader == Some(state.node_id);
    let last_log = metrics.last_log_index.unwrap_or(0);
    membership
        .nodes()
        .map(|(id, node)| {
            let voter = membership.voter_ids().any(|voter| voter == *id);
            let matched = if !leading {
                None
            } else if *id == state.node_id {
                Some(last_log)
            } else {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(id))
                    .map(|matched| matched.map_or(0, |log_id| log_id.index))
            };
            let role = if metrics.current_leader == Some(*id) {
                MemberRole::Leader
            } else if voter {
                MemberRole::Follower
            } else {
                MemberRole::Learner
            };
            Member {
                id: *id,
                addr: node.addr.clone(),
                peer_addr: node.peer_addr.clone(),
                role,
                voter,
                matched_index: matched,
                lag: matched.map(|matched| last_log.saturating_sub(matched)),
                extra: Default::default(),
            }
        })
        .collect()
}

/// The leader's view of the members, asked of the leader.
async fn leader_members(state: &AppState, leader_addr: &str) -> Option<Vec<Member>> {
    let view: ClusterStatus = state
        .peers
        .get(&format!("{leader_addr}/v1/cluster"))
        .header(FORWARDED_HEADER, state.node_id)
        .timeout(LEADER_VIEW_TIMEOUT)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    (view.leader == Some(view.node_id)).then_some(view.members)
}

/// `GET /v1/cluster`, and by long-poll with `index` and `wait` (see
/// [`cluster_watch`]).
async fn status(
    State(state): State<AppState>,
    long_polls: LongPollGate,
    passed_on: Option<Extension<PassedOn>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    cluster_watch::wait_for_progress(&state, &long_polls, query.as_deref()).await?;
    let metrics = state.raft.metrics().borrow().clone();
    let mut members = members(&state);
    let asked_by_a_node = passed_on.is_some();
    if let (false, Some(leader)) = (asked_by_a_node, metrics.current_leader) {
        if leader != state.node_id {
            let addr = members
                .iter()
                .find(|member| member.id == leader)
                .map(|member| member.peer_addr.clone());
            if let Some(addr) = addr {
                match leader_members(&state, &addr).await {
                    Some(from_leader) => members = from_leader,
                    None => warn!(leader, "the leader did not tell the members' progress"),
                }
            }
        }
    }
    let index = cluster_watch::index_of(&metrics);
    let status = ClusterStatus {
        node_id: state.node_id,
        leader: metrics.current_leader,
        term: metrics.current_term,
        state: server_state(&state, &metrics),
        revision: state.store.revision(),
        applied_index: metrics.last_applied.map_or(0, |id| id.index),
        committed_index: state.committed.load(std::sync::atomic::Ordering::Acquire),
        last_log_index: metrics.last_log_index.unwrap_or(0),
        snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
        cluster_id: state.cluster_id.get().map(|id| id.to_string()),
        purged_index: metrics.purged.map(|id| id.index),
        members,
        alarms: state.store.alarms()?,
        space: Some(crate::api::alarms::node_space(&state)),
        version: crate::LONG_VERSION.to_string(),
        quorum_ack_ms: metrics.millis_since_quorum_ack,
        peers: state
            .config
            .peer_map()
            .map(|peers| peers.into_keys().collect())
            .unwrap_or_default(),
        extra: Default::default(),
    };
    let mut response = Json(status).into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(index));
    Ok(response)
}

/// The answering node's state: openraft's, or `Joining` while the node
/// asks its peers whether a cluster is formed or waits for its `--join` to
/// be answered, where openraft would say `Learner`.
fn server_state(state: &AppState, metrics: &openraft::RaftMetrics<NodeId, Node>) -> String {
    let joining = state.joining.load(std::sync::atomic::Ordering::Acquire);
    if joining || state.asking_peers.is_asking() {
        "Joining".to_string()
    } else {
        format!("{:?}", metrics.state)
    }
}

/// The membership in force, as the answer to a change.
fn membership_view(state: &AppState) -> Json<MembershipChange> {
    Json(MembershipChange {
        log_index: membership_log_index(state),
        members: members(state),
    })
}

/// The membership in force, as this node knows it.
fn current_membership(state: &AppState) -> openraft::Membership<NodeId, Node> {
    state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone()
}

/// The log index of the membership in force.
fn membership_log_index(state: &AppState) -> u64 {
    state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .log_id()
        .map_or(0, |log_id| log_id.index)
}

/// Adds a node: as a learner, then, once it has caught up, as a voter.
/// Asking again for a node that is already a member as asked changes
/// nothing, so a joining node may retry freely.
async fn add_member(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MembershipChange>), ApiError> {
    Query::parse(query.as_deref(), &[])?;
    let request: AddMember = object_body(
        &state,
        body,
        "{\"id\": <node id>, \"addr\": \"http://host:port\", \
         \"peer_addr\": \"http://host:port\", \"voter\": true}",
    )?;
    if request.id > schemas::api::MAX_NODE_ID {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidField,
            "id",
            format!(
                "node id {} is over {}, the largest a JSON client reads exactly",
                request.id,
                schemas::api::MAX_NODE_ID
            ),
        ));
    }
    let addr = crate::config::check_node_url(&request.addr)
        .map_err(|why| ApiError::bad_field(ErrorCode::InvalidAddr, "addr", why))?;
    let peer_addr = crate::config::check_node_url(&request.peer_addr)
        .map_err(|why| ApiError::bad_field(ErrorCode::InvalidAddr, "peer_addr", why))?;
    // The peer URL carries the raft log: it speaks TLS exactly when this
    // node's peer port does, as `--peers` and `--join` must at start.
    crate::tls::check_scheme(
        "peer_addr",
        &peer_addr,
        state.config.peer_tls_cert.is_some(),
    )
    .map_err(|error| ApiError::bad_field(ErrorCode::InvalidAddr, "peer_addr", error.to_string()))?;
    let membership = current_membership(&state);
    let existing = membership.get_node(&request.id).cloned();
    let is_voter = membership.voter_ids().any(|voter| voter == request.id);
    let node = Node {
        addr: addr.clone(),
        peer_addr,
    };
    if existing.is_none() && request.update_only {
        return Err(ApiError::new(
            ErrorCode::MemberNotFound,
            format!(
                "node {} is not a member of the cluster; update_only changes a member's addresses only",
                request.id
            ),
        ));
    }
    // A learner the leader never reached (added before its node first
    // ran, as etcd's "member add, then start it") has lost nothing.
    let never_reached = !is_voter
        && state
            .raft
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&request.id).copied())
            .is_some_and(|matched| matched.is_none());
    if let (Some(_), true, false) = (&existing, request.empty_log, never_reached) {
        return Err(ApiError::new(
            ErrorCode::MemberExists,
            format!(
                "node {id} is already a member, and it asks to join with an empty raft log: its \
                 data was lost, and the cluster still counts it. Remove it first (kvctl cluster \
                 remove {id}), then let it join again (docs/recovery.md)",
                id = request.id
            ),
        ));
    }
    for (kind, url, of) in [
        ("peer", &node.peer_addr, peer_url_of as fn(&Node) -> &str),
        ("client", &node.addr, client_url_of),
    ] {
        if let Some((other, their_url)) = same_endpoint(&membership, request.id, url, of).await {
            return Err(ApiError::new(
                ErrorCode::MemberExists,
                format!(
                    "node {other} is a member with {kind} URL {their_url}, the same endpoint as \
                     {url}: two members cannot share one (each would answer for the other)"
                ),
            ));
        }
    }
    if let Some(current) = &existing {
        if current.peer_addr != node.peer_addr {
            return Err(ApiError::new(
                ErrorCode::MemberExists,
                format!(
                    "node {} is already a member with peer URL {}; remove it first to change it",
                    request.id, current.peer_addr
                ),
            ));
        }
        if current.addr != node.addr {
            // The same node (same peer URL) telling its client URL: a
            // cluster formed by --peers knows only peer URLs at first.
            info!(node = request.id, %addr, "the member's client URL is now known");
            change(
                &state,
                ChangeMembers::SetNodes(BTreeMap::from([(request.id, node.clone())])),
            )
            .await?;
        }
        if is_voter || !request.voter || request.update_only {
            return Ok((StatusCode::OK, membership_view(&state)));
        }
    }
    let learner_since = match existing {
        Some(_) => membership_log_index(&state),
        None => {
            refuse_another_clusters_node(&state, request.id, &node.peer_addr).await?;
            info!(node = request.id, %node, "adding a learner");
            let added = change(
                &state,
                ChangeMembers::AddNodes(BTreeMap::from([(request.id, node)])),
            )
            .await?;
            crate::crash::delay_async(crate::crash::MEMBER_LEARNER_ADDED).await;
            added
        }
    };
    if request.voter {
        wait_caught_up(&state, request.id, learner_since).await?;
    }
    if request.voter {
        info!(node = request.id, "promoting the learner to voter");
        change(
            &state,
            ChangeMembers::AddVoterIds(BTreeSet::from([request.id])),
        )
        .await?;
    }
    Ok((StatusCode::OK, membership_view(&state)))
}

/// 403 `foreign_cluster` if a node answers at `peer_url` as a member of
/// another cluster: added, it would refuse every call of this one, and the
/// add would wait its whole catch-up time to say it did not catch up. A
/// node that does not answer (not started yet) may be added.
async fn refuse_another_clusters_node(
    state: &AppState,
    id: NodeId,
    peer_url: &str,
) -> Result<(), ApiError> {
    let Some(ours) = state.cluster_id.get() else {
        return Ok(());
    };
    let Ok(answer) = crate::join::cluster_of(&state.peers, peer_url, state.node_id).await else {
        return Ok(());
    };
    let Ok(status) = answer.json::<schemas::api::ClusterStatus>().await else {
        return Ok(());
    };
    match status
        .cluster_id
        .and_then(|theirs| uuid::Uuid::parse_str(&theirs).ok())
    {
        Some(theirs) if theirs != ours => Err(ApiError::new(
            ErrorCode::ForeignCluster,
            format!(
                "the node at {peer_url} (node {}) belongs to cluster {theirs}, not this one \
                 ({ours}): it would refuse this cluster's calls. Empty its data directory and \
                 start it with --join to add it as node {id}",
                status.node_id
            ),
        )),
        _ => Ok(()),
    }
}

/// The member other than `id` whose URL (peer or client, as `url_of`
/// reads it) reaches the same endpoint as `url`: the same URL, or one
/// whose host resolves to an address and port `url`'s does (`localhost`
/// and `127.0.0.1`). A name that does not resolve is compared by its text
/// alone.
async fn same_endpoint(
    membership: &openraft::Membership<NodeId, Node>,
    id: NodeId,
    url: &str,
    url_of: fn(&Node) -> &str,
) -> Option<(NodeId, String)> {
    let ours = endpoints(url).await;
    for (other, node) in membership.nodes().filter(|(other, _)| **other != id) {
        let theirs = url_of(node);
        if theirs.is_empty() {
            // A member formed by --peers, whose client URL is not known yet.
            continue;
        }
        if theirs == url
            || endpoints(theirs)
                .await
                .iter()
                .any(|addr| ours.contains(addr))
        {
            return Some((*other, theirs.to_string()));
        }
    }
    None
}

fn peer_url_of(node: &Node) -> &str {
    &node.peer_addr
}

fn client_url_of(node: &Node) -> &str {
    &node.addr
}

/// The socket addresses a node URL's host and port resolve to (none when
/// it does not parse or resolve, within a second).
async fn endpoints(url: &str) -> Vec<std::net::SocketAddr> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Vec::new();
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Vec::new();
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(std::time::Duration::from_secs(1), lookup).await {
        Ok(Ok(addrs)) => addrs.map(reached).collect(),
        _ => Vec::new(),
    }
}

/// The address a connection to `addr` reaches, for comparing endpoints: an
/// IPv4-mapped IPv6 address is its IPv4 address, and the unspecified
/// address (0.0.0.0, `::`) is this host's loopback.
fn reached(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip().to_canonical() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// Waits until the leader has replicated to `id` at least up to `index`.
async fn wait_caught_up(state: &AppState, id: NodeId, index: u64) -> Result<(), ApiError> {
    let caught_up = state
        .raft
        .wait(Some(CATCH_UP_TIMEOUT))
        .metrics(
            |metrics| {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|replication| replication.get(&id))
                    .and_then(|matched| *matched)
                    .is_some_and(|matched| matched.index >= index)
            },
            "learner caught up",
        )
        .await;
    caught_up.map(drop).map_err(|_| {
        ApiError::new(
            ErrorCode::NotCaughtUp,
            format!(
                "node {id} did not catch up within {CATCH_UP_TIMEOUT:?}; it stays a learner \
                 (is it running and reachable at its address?). Ask again to promote it, or \
                 start it with --join: it is promoted once it has caught up."
            ),
        )
    })
}

/// `DELETE /v1/cluster/members/{id}`: removes a voter or a learner.
async fn remove_member(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<MembershipChange>, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    let Path(raw) = path.map_err(|rejection| {
        ApiError::bad_field(ErrorCode::InvalidId, "id", rejection.body_text())
    })?;
    let id: NodeId = raw.parse().map_err(|_| {
        ApiError::bad_field(
            ErrorCode::InvalidId,
            "id",
            format!("{raw:?} is not a node id"),
        )
    })?;
    let membership = current_membership(&state);
    if membership.get_node(&id).is_none() {
        return Err(ApiError::new(
            ErrorCode::MemberNotFound,
            format!("node {id} is not a member of the cluster"),
        ));
    }
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let changes = if voters.contains(&id) {
        if voters.len() == 1 {
            return Err(ApiError::new(
                ErrorCode::LastVoter,
                format!("node {id} is the only voter; a cluster cannot remove its last voter"),
            ));
        }
        check_quorum_answers(&state, &membership, &voters, id).await?;
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    info!(node = id, "removing a member");
    let log_index = change(&state, changes).await?;
    if let Some(node) = membership.get_node(&id) {
        // openraft stops replicating to the node, which may never apply the
        // membership without it: tell it, so it stops serving at once.
        let notice = crate::removal::RemovedNotice {
            node_id: id,
            leader: state.node_id,
            log_index,
            members: current_membership(&state)
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        };
        let raft = state.raft.clone();
        let still_removed = move || {
            raft.metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_none()
        };
        tokio::spawn(crate::removal::tell_removed(
            state.peers.clone(),
            node.peer_url().to_string(),
            notice,
            still_removed,
        ));
    }
    Ok(membership_view(&state))
}

/// How long a remaining voter has to answer before a removal.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Refuses to remove voter `id` unless a quorum of the voters that remain
/// answer now, as etcd's strict reconfiguration check does: the change
/// passes through a joint configuration that needs a quorum of the new
/// voters too, and with too few of them up it can neither commit nor be
/// undone, and the cluster takes no write until they are back.
async fn check_quorum_answers(
    state: &AppState,
    membership: &openraft::Membership<NodeId, Node>,
    voters: &BTreeSet<NodeId>,
    id: NodeId,
) -> Result<(), ApiError> {
    let remaining: Vec<(NodeId, Node)> = membership
        .nodes()
        .filter(|(node, _)| voters.contains(node) && **node != id)
        .map(|(node, info)| (*node, info.clone()))
        .collect();
    let needed = remaining.len() / 2 + 1;
    let answers = remaining.iter().map(|(node, info)| async move {
        if *node == state.node_id {
            return None;
        }
        let url = format!("{}/healthz", info.peer_url());
        let answered = state
            .peers
            .get(&url)
            .timeout(LIVENESS_TIMEOUT)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        (!answered).then_some(*node)
    });
    let silent: Vec<NodeId> = futures::future::join_all(answers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let live = remaining.len() - silent.len();
    if live >= needed {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::NotEnoughMembers,
        format!(
            "removing node {id} would leave {live} of the {} remaining voters answering, \
             fewer than the {needed} a quorum needs (not answering: {silent:?}); bring them \
             back first, or the change could not commit and the cluster would take no write",
            remaining.len()
        ),
    ))
}

/// Pause before proposing a membership change again while another one is
/// being committed.
const IN_PROGRESS_RETRY: Duration = Duration::from_millis(50);

/// Proposes a membership change and returns the log index it committed at.
/// While another change is being committed (a member publishing its
/// addresses, another request), openraft refuses a new one without
/// proposing it; it is proposed again once that one is done, within the
/// request's time, as a client would otherwise have to.
async fn change(state: &AppState, changes: ChangeMembers<NodeId, Node>) -> Result<u64, ApiError> {
    let deadline = Instant::now() + Duration::from_millis(state.config.request_timeout_ms);
    // openraft refuses a change while the last one is not committed, and
    // logs that refusal as an error. This node's changes take turns, and
    // each waits until the node has applied the membership it knows
    // (applied implies committed) before it is proposed.
    let Ok(_turn) = tokio::time::timeout_at(deadline, state.membership_changes.lock()).await else {
        return Err(ApiError::unavailable(
            "another membership change took the request's time",
        ));
    };
    loop {
        let pending = state
            .raft
            .metrics()
            .borrow()
            .membership_config
            .log_id()
            .map(|id| id.index);
        if let Some(index) = pending {
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = state
                .raft
                .wait(Some(left))
                .applied_index_at_least(Some(index), "the last membership change")
                .await;
        }
        // openraft logs a change asked of a node that no longer leads as an
        // error (its "first step"): a node that lost the lead meanwhile
        // answers not_leader itself. (The lead can still move between this
        // look and the proposal; openraft's refusal then answers the same.)
        match crate::api::leader::known_leader(state) {
            Some(crate::api::leader::Leader::This) => {}
            other => {
                return Err(ApiError::not_leader(
                    "this node no longer leads; membership changes go to the leader",
                    other.and_then(|leader| leader.hint()),
                ))
            }
        }
        let proposal = Box::pin(state.raft.change_membership(changes.clone(), false));
        let left = deadline.saturating_duration_since(Instant::now());
        let changed = match tokio::time::timeout(left, proposal).await {
            Err(_) => {
                return Err(ApiError::unavailable(
                    "the membership change was not committed in time",
                ))
            }
            Ok(changed) => changed,
        };
        match changed {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(in_progress),
            ))) if Instant::now() + IN_PROGRESS_RETRY < deadline => {
                debug!(%in_progress, "another membership change is being committed; proposing again once it is");
                tokio::time::sleep(IN_PROGRESS_RETRY).await;
            }
            changed => return Ok(changed?.log_id.index),
        }
    }
}
