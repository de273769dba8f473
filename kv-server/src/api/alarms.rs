//! `/v1/alarms`, `/v1/space`, `/readyz`, and the loop that raises the
//! NOSPACE alarm (see `crate::space`).
//!
//! Every node measures its own disk each second, and weighs each write
//! against that measure and the writes admitted since. One that crosses
//! `--quota-bytes` or `--min-free-bytes` proposes the alarm (a follower
//! through the leader), so every node refuses the writes that add data,
//! and each refuses them before proposing too. `DELETE /v1/alarms`
//! disarms every alarm, on the leader, after asking each member that
//! raised one, and the others that answer, whether its limits hold.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemas::api::{AlarmList, ErrorCode, Health, NodeSpace};
use tracing::{debug, info, warn};

use crate::api::auth::Presented;
use crate::api::error::ApiError;
use crate::api::leader::{known_leader, Leader};
use crate::api::params::Query;
use crate::api::propose::{propose, propose_or_relay};
use crate::api::read::linearizable_barrier_until;
use crate::api::topic_reads::{run_in_turn, SPACE_TURNS};
use crate::api::{AppState, FORWARDED_HEADER};
use crate::space::RETRY_INTERVAL;
use crate::types::{Command, NodeId, Op};

/// How long the leader waits for a member's measure of its disk.
const MEMBER_SPACE_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest a readiness check waits for its linearizable read (less when
/// `--request-timeout-ms` is shorter).
const READY_READ_WAIT: Duration = Duration::from_secs(1);

/// The alarm, space and readiness routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alarms", get(list).delete(disarm))
        .route("/v1/space", get(space))
        .route("/readyz", get(readyz))
}

/// Refuses `command`, `bytes` long, before it is proposed when the disk
/// has no room for it: any write while this node's disk is full (it could
/// not write its own log), and a write that adds data while the NOSPACE
/// alarm is raised or that would take this node past a limit (see
/// [`crate::space::Space::admit`]). Apply refuses the latter again, on
/// every node alike, for writes proposed before the alarm.
pub fn refuse_without_room(
    state: &AppState,
    command: &Command,
    bytes: usize,
) -> Result<(), ApiError> {
    // The alarm's own commands pass: on a follower they are relayed, and
    // need only the leader's disk.
    let alarm = matches!(
        command.op.asked(),
        Op::AlarmRaise { .. } | Op::AlarmDisarm { .. }
    );
    if let Some(full) = state.store.disk_full.describe().filter(|_| !alarm) {
        return Err(ApiError::new(
            ErrorCode::NoSpace,
            format!("{full}: this node takes no write until it has room; ask another node"),
        ));
    }
    if !command.op.adds_data() {
        return Ok(());
    }
    let alarms = state.store.alarms()?;
    if !alarms.is_empty() {
        return Err(no_space(&alarms));
    }
    // The command lands twice on this node's disk: in the raft log and,
    // applied, in the topic.
    let adds = (bytes as u64).saturating_mul(2);
    state.space.admit(adds).map_err(|breach| {
        ApiError::new(
            ErrorCode::NoSpace,
            format!(
                "node {}: {breach} (as last measured, with the writes admitted since); it \
                 measures again now, and raises the NOSPACE alarm if the measure finds it so",
                state.node_id
            ),
        )
    })
}

/// The 507 of a write refused while `alarms` are raised.
fn no_space(alarms: &[schemas::api::Alarm]) -> ApiError {
    let reasons: Vec<String> = alarms
        .iter()
        .map(|alarm| format!("node {}: {}", alarm.member, alarm.reason))
        .collect();
    ApiError::new(
        ErrorCode::NoSpace,
        format!(
            "the NOSPACE alarm is raised ({}); writes that add data are refused until space is \
             won back (delete keys, let the cleaner run) and the alarm disarmed",
            reasons.join("; ")
        ),
    )
}

/// The 507 of a write that apply refused while `members` had the alarm
/// raised.
pub fn refused_at_apply(state: &AppState, members: &[NodeId]) -> ApiError {
    match state.store.alarms() {
        Ok(alarms) if !alarms.is_empty() => no_space(&alarms),
        _ => ApiError::new(
            ErrorCode::NoSpace,
            format!("the NOSPACE alarm was raised by node(s) {members:?} when the write applied"),
        ),
    }
}

/// This node's disk as last measured.
pub fn node_space(state: &AppState) -> NodeSpace {
    let sample = state.space.last();
    NodeSpace {
        node_id: state.node_id,
        used_bytes: sample.map(|sample| sample.used_bytes),
        quota_bytes: state.space.quota_bytes,
        free_bytes: sample.map(|sample| sample.free_bytes),
        min_free_bytes: state.space.min_free_bytes,
        over_limit: state.space.breach().map(|breach| breach.to_string()),
        disk_full: state.store.disk_full.describe(),
    }
}

/// `GET /v1/alarms`: the alarms raised, as applied on this node.
async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AlarmList>, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    Ok(Json(AlarmList {
        alarms: state.store.alarms()?,
    }))
}

/// `GET /v1/space`: this node's disk, measured now (two measures at a time
/// at most, however many ask).
async fn space(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<NodeSpace>, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    let space = std::sync::Arc::clone(&state.space);
    run_in_turn(&SPACE_TURNS, move || space.measure())
        .await?
        .map_err(measure_failed)?;
    Ok(Json(node_space(&state)))
}

/// Measures this node's disk off the async workers.
async fn measure(state: &AppState) -> Result<crate::space::Sample, ApiError> {
    let space = std::sync::Arc::clone(&state.space);
    tokio::task::spawn_blocking(move || space.measure())
        .await
        .map_err(|error| ApiError::internal(format!("measuring the disk failed: {error}")))?
        .map_err(measure_failed)
}

/// The error of a measure of the data directory that failed.
fn measure_failed(error: std::io::Error) -> ApiError {
    ApiError::internal(format!(
        "cannot measure the data directory's space: {error}"
    ))
}

/// `DELETE /v1/alarms` (on the leader; followers pass it on): disarms
/// every alarm, once each member that raised one, and each other member
/// that answers, says its limits hold.
/// Answers the alarms disarmed.
async fn disarm(
    State(state): State<AppState>,
    Presented(credential): Presented,
    RawQuery(query): RawQuery,
) -> Result<Json<AlarmList>, ApiError> {
    // Every alarm goes at once: a `member` (or anything else) asked for
    // would be ignored, so it is refused.
    Query::parse(query.as_deref(), &[])?;
    let alarms = state.store.alarms()?;
    let holds = |member: NodeId, over: String| {
        ApiError::new(
            ErrorCode::AlarmHolds,
            format!(
                "node {member} still crosses its limit: {over}; win space back first (delete \
                 keys, let the cleaner and a snapshot run, or grow the disk)"
            ),
        )
    };
    for alarm in &alarms {
        let space = member_space(&state, alarm.member).await?;
        if let Some(over) = space.over_limit.or(space.disk_full) {
            return Err(holds(alarm.member, over));
        }
    }
    // A member past a limit that has not raised its alarm yet (it measures
    // once a second) would raise it again right after the disarm: those
    // that answer are asked too. One that does not answer cannot hold the
    // others' disarm up.
    if !alarms.is_empty() {
        let others: Vec<NodeId> = {
            let metrics = state.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            membership
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| alarms.iter().all(|alarm| alarm.member != *id))
                .collect()
        };
        let spaces =
            futures::future::join_all(others.iter().map(|member| member_space(&state, *member)))
                .await;
        for (member, space) in others.iter().zip(spaces) {
            if let Some(over) = space.ok().and_then(|space| space.over_limit) {
                return Err(holds(*member, over));
            }
        }
    }
    for alarm in &alarms {
        let command = Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: None,
            request_hash: None,
            op: Op::AlarmDisarm {
                member: alarm.member,
            },
        };
        propose(&state, command, credential.as_ref()).await?;
        info!(member = alarm.member, "NOSPACE alarm disarmed");
    }
    Ok(Json(AlarmList { alarms }))
}

/// `member`'s disk, measured now: this node's own, or asked of it.
async fn member_space(state: &AppState, member: NodeId) -> Result<NodeSpace, ApiError> {
    if member == state.node_id {
        measure(state).await?;
        return Ok(node_space(state));
    }
    let cannot_tell = |why: String| {
        ApiError::new(
            ErrorCode::AlarmHolds,
            format!("cannot tell whether node {member} has room again: {why}"),
        )
    };
    let peer_addr = {
        let metrics = state.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        membership
            .get_node(&member)
            .map(|node| node.peer_addr.clone())
    };
    let Some(peer_addr) = peer_addr.filter(|addr| !addr.is_empty()) else {
        // A member removed since: its alarm no longer speaks for the cluster.
        return Ok(NodeSpace {
            node_id: member,
            used_bytes: None,
            quota_bytes: 0,
            free_bytes: None,
            min_free_bytes: 0,
            over_limit: None,
            disk_full: None,
        });
    };
    let answer = state
        .peers
        .get(&format!("{peer_addr}/v1/space"))
        .header(FORWARDED_HEADER, state.node_id)
        .timeout(MEMBER_SPACE_TIMEOUT)
        .send()
        .await
        .map_err(|error| cannot_tell(error.to_string()))?;
    if !answer.status().is_success() {
        return Err(cannot_tell(format!("it answered {}", answer.status())));
    }
    answer
        .json()
        .await
        .map_err(|error| cannot_tell(error.to_string()))
}

/// The damaged data this node met while it ran, each as a reason it is not
/// ready: in a read it served or its raft storage (rebuild the member), in
/// the cleaner's pass (the same), in the view (a restart rebuilds it).
pub fn damage_met(state: &AppState) -> Vec<String> {
    let topic = crate::store::damage_met()
        .map(str::to_string)
        .or(state.cleaner.status().damage)
        .map(|damage| {
            let rebuild = crate::error::REBUILD_THIS_MEMBER;
            if damage.contains(rebuild) {
                format!("damaged data was met: {damage}")
            } else {
                format!("damaged data was met: {damage}; {rebuild}")
            }
        });
    let view = crate::store::view_damage_met().map(str::to_string);
    topic.into_iter().chain(view).collect()
}

/// `GET /readyz`: 200 when this node is ready for traffic: it knows a
/// leader, could serve a linearizable read (a quorum confirms the leader,
/// and this node has applied what the leader had committed: a node still
/// catching up is not ready, as its stale reads would be far behind), no
/// write of its waits for room on a full disk, raft runs, it has met no
/// damaged data, and no alarm is raised; else 503 `not_ready`, with every
/// reason.
async fn readyz(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    if state.asking_peers.is_asking() {
        reasons.push(
            "this node started with an empty raft log and asks its peers (--peers) about their \
             cluster; it takes part once, with it, a majority has answered"
                .to_string(),
        );
    }
    if state.joining.load(std::sync::atomic::Ordering::Acquire) {
        reasons.push("this node waits to be added to the cluster (--join)".to_string());
    }
    if crate::api::leader_of_health(&state).0.is_none() {
        reasons.push("no leader is known".to_string());
    } else {
        let wait = READY_READ_WAIT.min(Duration::from_millis(state.config.request_timeout_ms));
        let deadline = tokio::time::Instant::now() + wait;
        if let Err(error) = linearizable_barrier_until(&state, deadline).await {
            reasons.push(format!(
                "no linearizable read within {wait:?}: {}",
                error.message()
            ));
        }
    }
    // The leader as the read found it: one deposed meanwhile (this node,
    // paused and resumed) is not named.
    let (leader, leader_addr) = crate::api::leader_of_health(&state);
    if let Err(fatal) = &state.raft.metrics().borrow().running_state {
        reasons.push(format!("raft stopped: {fatal}"));
    }
    if let Some(full) = state.store.disk_full.describe() {
        reasons.push(full);
    }
    reasons.extend(damage_met(&state));
    match state.store.alarms() {
        Ok(alarms) => reasons.extend(alarms.iter().map(|alarm| {
            format!(
                "the {} alarm is raised by node {}: {}",
                alarm.alarm, alarm.member, alarm.reason
            )
        })),
        Err(error) => reasons.push(format!("the alarms cannot be read: {error}")),
    }
    if !reasons.is_empty() {
        return ApiError::new(
            ErrorCode::NotReady,
            format!("not ready: {}", reasons.join("; ")),
        )
        .into_response();
    }
    Json(Health {
        status: "ready".to_string(),
        node_id: state.node_id,
        leader,
        leader_addr,
    })
    .into_response()
}

/// Measures this node's disk every second, and at once when a write was
/// refused on what it counted since, and raises its NOSPACE alarm when it
/// crosses a limit (once: a raised alarm is left as it is). Stops
/// the process of a leader whose disk stays full (see [`step_down_when_full`]).
pub async fn raise_when_over(state: AppState) {
    let mut ticks = tokio::time::interval(RETRY_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut full_while_leading = None;
    let mut measured = tokio::time::Instant::now();
    // When this node last raised its alarm: a follower's raise is answered
    // once the leader applies it, and may not be applied here yet when
    // the next measure comes.
    let mut raised_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = state.space.measure_requested() => {
                // Refused writes ask again and again: a walk of the data
                // directory at most every MEASURE_ASKED_GAP.
                tokio::time::sleep_until(measured + MEASURE_ASKED_GAP).await;
            }
        }
        measured = tokio::time::Instant::now();
        step_down_when_full(&state, &mut full_while_leading);
        let sample = match measure(&state).await {
            Ok(sample) => sample,
            Err(error) => {
                warn!(?error, "cannot measure this node's disk");
                continue;
            }
        };
        let breach = state.space.breach_of(sample);
        let alarms = match state.store.alarms() {
            Ok(alarms) => alarms,
            Err(error) => {
                warn!(%error, "cannot read the alarms");
                continue;
            }
        };
        // Short of space, deletes must give it back at once, however small
        // a share of the topic they are.
        state
            .store
            .set_compaction_eager(breach.is_some() || !alarms.is_empty());
        let Some(breach) = breach else {
            continue;
        };
        let raised = alarms.iter().any(|alarm| alarm.member == state.node_id)
            || raised_at.is_some_and(|at| at.elapsed() < RETRY_INTERVAL);
        if raised || known_leader(&state).is_none() {
            continue;
        }
        let command = Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: None,
            request_hash: None,
            op: Op::AlarmRaise {
                member: state.node_id,
                reason: breach.to_string(),
            },
        };
        match propose_or_relay(&state, command, None).await {
            Ok(_) => {
                raised_at = Some(tokio::time::Instant::now());
                warn!(%breach, "raised the NOSPACE alarm: writes that add data are refused")
            }
            Err(error) => debug!(?error, "raising the NOSPACE alarm failed; trying again"),
        }
    }
}

/// The shortest time between two measures that refused writes ask for.
const MEASURE_ASKED_GAP: Duration = Duration::from_millis(100);

/// How long a leader of a cluster with other voters may lead with a full
/// disk before it stops.
const LEADER_FULL_DISK_GRACE: Duration = Duration::from_secs(5);

/// A leader that cannot write cannot finish any write, yet its heartbeats
/// keep the others from electing one that can (openraft 0.9 cannot hand
/// the lead over). When its disk has been full for
/// [`LEADER_FULL_DISK_GRACE`] and another voter could lead, it exits with
/// [`crate::store::EXIT_NO_SPACE`]: the others elect a leader among
/// themselves, and a supervisor restarts this node, which follows and
/// waits for room. A node alone keeps waiting: no other could lead.
fn step_down_when_full(state: &AppState, full_since: &mut Option<std::time::Instant>) {
    let voters = state
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .count();
    let leading = matches!(known_leader(state), Some(Leader::This));
    let full = state.store.disk_full.describe();
    let Some(full) = full.filter(|_| leading && voters > 1) else {
        *full_since = None;
        return;
    };
    let since = *full_since.get_or_insert_with(std::time::Instant::now);
    if since.elapsed() >= LEADER_FULL_DISK_GRACE {
        tracing::error!(
            "{full}: this node leads but cannot write; exiting so that another voter leads"
        );
        std::process::exit(crate::store::EXIT_NO_SPACE);
    }
}
