//! A node removed from the cluster: how it learns it, and what it does then.
//!
//! It learns it in one of three ways: the membership it applied no longer
//! names it ([`watch_membership`]); the leader that removed it says so
//! (`POST /raft/removed` on its peer port, [`tell_removed`]); or, when it
//! was down through both, a member answers its first vote request with the
//! removal ([`removed_candidate`]: 410 and a [`RemovedNotice`], as etcd's
//! members answer a removed member's messages). The second is the usual
//! one: openraft stops replicating to a removed node, often before the
//! membership without it reaches it.
//!
//! From then on the node serves nothing: its Raft is shut down (alone, it
//! would only campaign and disturb the others), every client route and
//! `/healthz` answer 503 `not_a_member` at once, and the log says why. The
//! removal is recorded in the data directory ([`REMOVED_FILE`]), so a
//! restart keeps it: the membership the node applied no longer names it,
//! and it would otherwise serve its stale view (and backups of it). The
//! process stays up so that clients and probes are told why, where a gone
//! process would only refuse connections; the operator stops it (and wipes
//! its data before it joins again). See docs/decisions.md.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use openraft::raft::VoteRequest;
use schemas::api::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, error, warn};

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::peer::PeerClient;
use crate::types::{NodeId, Raft, StoredMembership};

/// How long the leader tries to tell a removed node, all attempts together.
const TELL_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the leader tries.
const TELL_ATTEMPTS: u32 = 5;
/// How often the membership watch looks whether the node's join is done.
const JOINING_POLL: Duration = Duration::from_millis(200);

/// The file in the data directory that records the node's removal (why,
/// as text); wiping the directory before joining again removes it too.
pub const REMOVED_FILE: &str = "removed";

/// Whether this node was removed from the cluster, and why it thinks so.
#[derive(Debug, Default)]
pub struct Removal {
    /// Set once, when the node learns it was removed; never cleared.
    why: OnceLock<String>,
    /// Woken when `why` is set.
    marked: Notify,
    /// Where the removal is recorded (none in unit tests).
    record: Option<PathBuf>,
    /// Set once Raft was shut down, by the removal or by the node's stop,
    /// whichever came first: the other waits for it rather than shut it
    /// down again (openraft warns of a second call).
    raft_stopped: tokio::sync::OnceCell<()>,
}

impl Removal {
    /// The removal recorded in `data_dir`: a node removed before a restart
    /// is still removed.
    pub fn open(data_dir: &Path, node_id: NodeId) -> Removal {
        let record = data_dir.join(REMOVED_FILE);
        let removal = Removal {
            record: Some(record.clone()),
            ..Removal::default()
        };
        match std::fs::read_to_string(&record) {
            Ok(why) => {
                let why = format!("{} (recorded in {})", why.trim(), record.display());
                error!(
                    node_id,
                    why, "this node was removed from the cluster: it serves nothing more; stop it"
                );
                let _ = removal.why.set(why);
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                let why = format!("{} is unreadable: {error}", record.display());
                error!(node_id, why, "taking this node as removed from the cluster");
                let _ = removal.why.set(why);
            }
        }
        removal
    }

    /// Whether the node was removed.
    pub fn is_removed(&self) -> bool {
        self.why.get().is_some()
    }

    /// Records that the node was removed, for `why`; the first time only,
    /// logs it and wakes [`Removal::shut_down_when_marked`]. Returns whether
    /// this was the first time.
    pub fn mark(&self, node_id: NodeId, why: String) -> bool {
        if self.why.set(why.clone()).is_err() {
            return false;
        }
        error!(
            node_id,
            why, "this node was removed from the cluster: it serves nothing more; stop it"
        );
        if let Some(record) = &self.record {
            if let Err(error) = compaction::fsutil::write_atomic(record, why.as_bytes()) {
                warn!(%error, "the removal could not be recorded: a restart will not know it");
            }
        }
        self.marked.notify_one();
        true
    }

    /// Shuts `raft` down once the node is marked removed, whenever that
    /// was (the network may mark it before this starts).
    pub async fn shut_down_when_marked(self: Arc<Self>, raft: Raft) {
        if !self.is_removed() {
            self.marked.notified().await;
        }
        self.shut_down_raft(&raft, "after the removal").await;
    }

    /// Shuts `raft` down, once: a second caller waits for the first.
    pub async fn shut_down_raft(&self, raft: &Raft, when: &str) {
        self.raft_stopped
            .get_or_init(|| async {
                if let Err(error) = raft.shutdown().await {
                    warn!(%error, when, "raft did not shut down cleanly");
                }
            })
            .await;
    }

    /// The answer every client route gives once the node was removed.
    fn refusal(&self, node_id: NodeId) -> ApiError {
        let why = self.why.get().map_or("", String::as_str);
        ApiError::new(
            ErrorCode::NotAMember,
            format!("node {node_id} was removed from the cluster ({why}); ask another node"),
        )
    }
}

/// The answer of every public route once the node was removed (503
/// `not_a_member`), before any handler waits for a leader that will not
/// come; `None` while it is a member. Checked by the route layer of the
/// public routes (`forward::ForwardWrites`) rather than by a layer of its
/// own: each route layer costs every request in flight, which a parked
/// long-poll pays for its whole wait.
pub fn refusal_if_removed(state: &AppState) -> Option<Response> {
    state
        .removal
        .is_removed()
        .then(|| state.removal.refusal(state.node_id).into_response())
}

/// Watches the membership this node applied; marks the node removed once
/// an applied membership no longer names it. Ends when Raft stops.
///
/// Only a node that has been a member since it started can find itself
/// removed: one that joins, or catches up from far behind, applies the
/// memberships from before it was added first. A node that joins under an
/// id the cluster once removed (rebuilt with `--join` after a wipe) holds
/// that id's history too, where it was a member and then removed; so the
/// watch begins once its join is answered, when it is a voter.
pub async fn watch_membership(state: AppState) {
    while state.joining.load(std::sync::atomic::Ordering::Acquire) {
        tokio::time::sleep(JOINING_POLL).await;
    }
    // Woken by membership changes (openraft's server metrics), not by
    // every entry; the applied index is watched only while a membership
    // without this node waits to be applied.
    let mut server = state.raft.server_metrics();
    let mut was_member = false;
    loop {
        let membership = std::sync::Arc::clone(&server.borrow_and_update().membership_config);
        let mut data = state.raft.data_metrics();
        loop {
            let applied = data
                .borrow_and_update()
                .last_applied
                .map_or(0, |id| id.index);
            if let Some(index) = removed_at(state.node_id, &membership, applied, &mut was_member) {
                let why = format!("the membership applied at index {index} does not name it");
                state.removal.mark(state.node_id, why);
                return;
            }
            if !pending_removal(state.node_id, &membership, was_member) {
                break;
            }
            tokio::select! {
                changed = data.changed() => if changed.is_err() { return },
                changed = server.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        if !server.has_changed().unwrap_or(false) && server.changed().await.is_err() {
            return;
        }
    }
}

/// Whether `membership` leaves out `node_id`, once a member, and is still
/// to be applied: what [`removed_at`] waits for.
fn pending_removal(node_id: NodeId, membership: &StoredMembership, was_member: bool) -> bool {
    membership.log_id().is_some()
        && was_member
        && membership.membership().get_node(&node_id).is_none()
}

/// The index of the membership that removed `node_id`, if `membership` is
/// one (applied: at or below `applied`) that no longer names it while an
/// earlier one did; `was_member` remembers whether one did.
fn removed_at(
    node_id: NodeId,
    membership: &StoredMembership,
    applied: u64,
    was_member: &mut bool,
) -> Option<u64> {
    // A node that joins has no membership yet (no log id).
    let at = membership.log_id().as_ref()?.index;
    let named = membership.membership().get_node(&node_id).is_some();
    *was_member |= named;
    (*was_member && !named && at <= applied).then_some(at)
}

/// What the leader tells a node it removed, and a member a removed node
/// that asks for its vote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemovedNotice {
    /// The node removed.
    pub node_id: NodeId,
    /// The leader that removed it, or the member answering its vote request.
    pub leader: NodeId,
    /// The log index the membership without it committed at.
    pub log_index: u64,
    /// The members after the change.
    pub members: BTreeSet<NodeId>,
}

impl RemovedNotice {
    /// Whether the notice removes `node_id`: it names it, and the members
    /// it lists do not.
    pub fn removes(&self, node_id: NodeId) -> bool {
        self.node_id == node_id && !self.members.contains(&node_id)
    }
}

/// `POST /raft/removed` (peer port): the leader says this node was removed.
/// Taken only if it names this node and the members it lists do not, comes
/// from a member of the latest membership this node knows, and is not older
/// than one naming this node (a notice held up past the node's return).
pub async fn removed(
    State(state): State<AppState>,
    body: Result<Json<RemovedNotice>, JsonRejection>,
) -> Result<Json<bool>, ApiError> {
    let Json(notice) = body.map_err(|rejection| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!(
                "the body is not a removal notice: {}",
                rejection.body_text()
            ),
        )
    })?;
    let known = Arc::clone(&state.raft.server_metrics().borrow().membership_config);
    let joining = state.joining.load(std::sync::atomic::Ordering::Acquire);
    if let Some(refusal) = stale_or_foreign(state.node_id, &notice, &known, joining) {
        warn!(
            from = notice.leader,
            log_index = notice.log_index,
            refusal = ?refusal,
            "refused a removal notice"
        );
        return Err(refusal);
    }
    if !notice.removes(state.node_id) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidId,
            "node_id",
            format!(
                "the notice removes node {} leaving {:?}; this is node {}",
                notice.node_id, notice.members, state.node_id
            ),
        ));
    }
    let why = format!(
        "leader {} removed it at log index {}",
        notice.leader, notice.log_index
    );
    state.removal.mark(state.node_id, why);
    Ok(Json(true))
}

/// Why `notice` cannot be taken by node `node_id`, whose latest membership
/// (applied or only in its log) is `known`: its sender is not a member of
/// it, or it is at or past the notice's index and names this node.
fn stale_or_foreign(
    node_id: NodeId,
    notice: &RemovedNotice,
    known: &StoredMembership,
    joining: bool,
) -> Option<ApiError> {
    // A node that joins, or holds no membership yet, was not removed: the
    // notice is about an earlier node under its id and address, whose
    // removal the leader may still be telling (a member rebuilt at once).
    let Some(known_at) = known
        .log_id()
        .as_ref()
        .map(|id| id.index)
        .filter(|_| !joining)
    else {
        return Some(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "this node is joining the cluster (it holds no membership of its own yet): \
                 the removal at log index {} is of the node that had its id before",
                notice.log_index
            ),
        ));
    };
    let members = known.membership();
    if members.get_node(&notice.leader).is_none() {
        return Some(ApiError::bad_field(
            ErrorCode::InvalidId,
            "leader",
            format!(
                "node {} is not a member of the membership this node holds (index {known_at})",
                notice.leader
            ),
        ));
    }
    if members.get_node(&node_id).is_some() && known_at >= notice.log_index {
        return Some(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "this node holds a membership naming it at log index {known_at}, \
                 not older than the notice's {}",
                notice.log_index
            ),
        ));
    }
    None
}

/// The removal to tell the candidate of `request`, if it was removed from
/// the cluster before the last entry it holds: this node applied a
/// membership that does not name it, at an index past that entry. A node
/// removed while it was down asks for votes once it is back, and learns it
/// from the answer. A member only lagging behind is named by the
/// membership; one added later holds the entries past it (it learned its
/// membership from them), so neither is told.
pub fn removed_candidate(state: &AppState, request: &VoteRequest<NodeId>) -> Option<RemovedNotice> {
    let candidate = request.vote.leader_id().voted_for()?;
    let membership = Arc::clone(&state.raft.server_metrics().borrow().membership_config);
    let applied = state
        .raft
        .data_metrics()
        .borrow()
        .last_applied
        .map_or(0, |id| id.index);
    let candidate_last = request.last_log_id.map_or(0, |id| id.index);
    let at = removed_before(candidate, candidate_last, &membership, applied)?;
    Some(RemovedNotice {
        node_id: candidate,
        leader: state.node_id,
        log_index: at,
        members: membership.membership().nodes().map(|(id, _)| *id).collect(),
    })
}

/// The index of `membership` if it removed `candidate`, whose last entry is
/// at `candidate_last`: applied here (at or below `applied`), not naming
/// the candidate, and past the candidate's last entry.
fn removed_before(
    candidate: NodeId,
    candidate_last: u64,
    membership: &StoredMembership,
    applied: u64,
) -> Option<u64> {
    let at = membership.log_id().as_ref()?.index;
    let named = membership.membership().get_node(&candidate).is_some();
    (!named && at <= applied && candidate_last < at).then_some(at)
}

/// Tells the node at `peer_url` that it was removed (best effort: a node
/// that is down learns nothing, and keeps its data for the operator).
/// Before each attempt `still_removed` says whether the id is still out of
/// the membership: an id added again meanwhile (its node wiped and joined
/// again, as docs/operations.md says) is a new node, which an old notice
/// would stop for good while the cluster lists it.
pub async fn tell_removed(
    peers: PeerClient,
    peer_url: String,
    notice: RemovedNotice,
    still_removed: impl Fn() -> bool,
) {
    let url = format!("{}/raft/removed", peer_url.trim_end_matches('/'));
    let per_attempt = TELL_TIMEOUT / TELL_ATTEMPTS;
    for attempt in 1..=TELL_ATTEMPTS {
        if !still_removed() {
            debug!(
                node = notice.node_id,
                "the removed node was added again: not told"
            );
            return;
        }
        let sent = peers
            .post(&url)
            .timeout(per_attempt)
            .json(&notice)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                warn!(node = notice.node_id, status = %response.status(), "the removed node refused the notice");
                return;
            }
            Err(error) if attempt == TELL_ATTEMPTS => {
                warn!(node = notice.node_id, %error, "could not tell the removed node");
            }
            Err(_) => tokio::time::sleep(per_attempt).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::{CommittedLeaderId, LogId, Membership};

    use super::*;
    use crate::types::Node;

    /// The membership of `members`, at log index `index`.
    fn membership(index: u64, members: &[NodeId]) -> StoredMembership {
        let nodes: BTreeMap<NodeId, Node> =
            members.iter().map(|id| (*id, Node::default())).collect();
        let voters = members.iter().copied().collect::<BTreeSet<_>>();
        StoredMembership::new(
            Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            Membership::new(vec![voters], nodes),
        )
    }

    /// Node 3 takes a notice only from a member of the membership it holds,
    /// and only one newer than a membership naming it; a node that holds no
    /// membership yet, or still joins, takes none: the notice is of the
    /// node that had its id before.
    #[test]
    fn a_notice_from_a_stranger_or_older_than_the_nodes_membership_is_refused() {
        let notice = |leader: NodeId, log_index: u64| RemovedNotice {
            node_id: 3,
            leader,
            log_index,
            members: BTreeSet::from([1, 2]),
        };
        let code = |notice: RemovedNotice, known: &StoredMembership| {
            stale_or_foreign(3, &notice, known, false).map(|refusal| refusal.code())
        };
        let joint = membership(9, &[1, 2, 3]);
        assert_eq!(code(notice(1, 12), &joint), None, "the usual notice");
        assert_eq!(
            code(notice(99, 12), &joint),
            Some(ErrorCode::InvalidId),
            "from no member"
        );
        assert_eq!(
            code(notice(1, 9), &joint),
            Some(ErrorCode::Conflict),
            "as old as the membership naming the node"
        );
        assert_eq!(
            code(notice(1, 5), &membership(12, &[1, 2])),
            None,
            "the node already holds a membership without it"
        );
        assert_eq!(
            code(notice(1, 1), &StoredMembership::default()),
            Some(ErrorCode::Conflict),
            "a node that holds no membership"
        );
        assert_eq!(
            stale_or_foreign(3, &notice(1, 12), &joint, true).map(|refusal| refusal.code()),
            Some(ErrorCode::Conflict),
            "a joining node"
        );
    }

    /// Node 3 sees a run of memberships (index, members, applied index);
    /// the index of the one that tells it it was removed, if any.
    #[test]
    fn a_node_is_removed_only_by_an_applied_membership_without_it_after_one_with_it() {
        type Run = &'static [(u64, &'static [NodeId], u64)];
        let cases: [(&str, Run, Option<u64>); 5] = [
            ("a member stays", &[(5, &[1, 2, 3], 5)], None),
            (
                "removed, applied",
                &[(5, &[1, 2, 3], 5), (9, &[1, 2], 9)],
                Some(9),
            ),
            (
                "removed, not applied yet",
                &[(5, &[1, 2, 3], 5), (9, &[1, 2], 8)],
                None,
            ),
            (
                "joining: the memberships from before it was added come first",
                &[(5, &[1, 2], 5), (9, &[1, 2, 3], 9)],
                None,
            ),
            (
                "joined, then removed",
                &[(5, &[1, 2], 5), (9, &[1, 2, 3], 9), (12, &[1, 2], 12)],
                Some(12),
            ),
        ];
        for (what, run, expected) in cases {
            let mut was_member = false;
            let mut found = None;
            for (index, members, applied) in run {
                found = removed_at(3, &membership(*index, members), *applied, &mut was_member);
            }
            assert_eq!(found, expected, "{what}");
        }
        let mut was_member = false;
        let none = StoredMembership::default();
        assert_eq!(
            removed_at(3, &none, 0, &mut was_member),
            None,
            "no membership yet"
        );
    }

    /// A candidate asks node 1 for its vote; whether node 1 tells it that
    /// it was removed, and at which index.
    #[test]
    fn only_a_candidate_left_out_by_an_applied_membership_past_its_log_is_told() {
        let without_3 = membership(9, &[1, 2]);
        let cases = [
            ("removed while down", 3, 7, &without_3, 9, Some(9)),
            ("a lagging member", 2, 3, &without_3, 9, None),
            ("not applied here yet", 3, 7, &without_3, 8, None),
            ("holds the removal itself", 3, 9, &without_3, 9, None),
            // A node added after the membership here holds entries past it.
            ("added since", 3, 12, &without_3, 9, None),
            ("a member", 3, 7, &membership(9, &[1, 2, 3]), 9, None),
        ];
        for (what, candidate, candidate_last, membership, applied, expected) in cases {
            assert_eq!(
                removed_before(candidate, candidate_last, membership, applied),
                expected,
                "{what}"
            );
        }
        assert_eq!(
            removed_before(3, 0, &StoredMembership::default(), 0),
            None,
            "no membership yet"
        );
    }

    /// A removed id added again while the notice is still being retried is
    /// not told: the node under it now is a new one. Each attempt asks
    /// first; the retries stop at the first answer that it is a member.
    #[tokio::test]
    async fn a_node_added_again_meanwhile_is_not_told_it_was_removed() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let peers = crate::api::test_peers::peer_client(&dir);
        let unreachable = crate::api::test_peers::closed_port().await;
        let notice = RemovedNotice {
            node_id: 4,
            leader: 1,
            log_index: 708,
            members: BTreeSet::from([1, 2, 3]),
        };
        let asked = AtomicU32::new(0);
        let started = std::time::Instant::now();
        // Removed at the first attempt, added again by the second.
        tell_removed(peers, unreachable, notice, || {
            asked.fetch_add(1, Ordering::SeqCst) == 0
        })
        .await;
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert!(
            started.elapsed() < TELL_TIMEOUT,
            "retried on after the re-add: {:?}",
            started.elapsed()
        );
    }
}
