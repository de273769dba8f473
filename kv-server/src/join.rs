//! How a node enters a cluster and keeps its entry true: joining through a
//! member (`--join`), and publishing its own addresses once it is a member.

use std::time::Duration;

use tracing::{debug, info, warn};

use crate::peer::PeerClient;
use crate::types::{Node, NodeId, Raft};

/// How long a joining node keeps asking to be added.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// Pauses between a joining node's attempts: growing from the first to the last.
const JOIN_RETRY_FIRST: Duration = Duration::from_millis(200);
const JOIN_RETRY_MAX: Duration = Duration::from_secs(5);
/// Time one join request is given beyond the leader's catch-up wait.
const JOIN_REQUEST_SLACK: Duration = Duration::from_secs(30);

/// Why a node started with `--join` gave up joining.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The cluster answered with a refusal that retrying cannot change.
    #[error("the cluster at {url} refused to add node {node_id}: {status} {body}")]
    Refused {
        /// The member asked.
        url: String,
        /// This node.
        node_id: NodeId,
        /// The answer's status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
    /// No attempt succeeded before the deadline.
    #[error("could not join the cluster at {url} within {timeout:?} ({attempts} attempts); last: {last}")]
    TimedOut {
        /// The member asked.
        url: String,
        /// How long the node kept trying.
        timeout: Duration,
        /// How many requests it sent.
        attempts: u32,
        /// Why the last attempt failed.
        last: String,
    },
    /// A `--peers` member started with an empty raft log, and a peer's
    /// membership lists it as a member that served: its data is gone.
    #[error(
        "node {node_id} starts with an empty raft log, but the cluster {cluster_id} (as node \
         {peer} at {peer_url} knows it) counts it as a member that has served: its data was \
         lost, and with it the votes and writes it acknowledged. Put its data directory back, \
         or remove it (kvctl cluster remove {node_id}) and start it with --join and an empty \
         data directory (docs/recovery.md). If node {node_id} still runs elsewhere, this is a \
         second process given its id: stop this one, and remove nothing"
    )]
    DataLost {
        /// This node.
        node_id: NodeId,
        /// The peer that listed it.
        peer: NodeId,
        /// That peer's URL.
        peer_url: String,
        /// The cluster's id as the peer knows it.
        cluster_id: String,
    },
    /// A node restarted on its data directory with `--join` naming a
    /// member of another cluster: it would serve the cluster it holds.
    #[error(
        "node {node_id}'s data directory holds cluster {ours}, and --join names {url}, a member \
         of cluster {theirs}. --join is read only by a node whose data directory is empty: \
         empty it to join {theirs}, or start without --join to serve {ours}"
    )]
    OtherCluster {
        /// This node.
        node_id: NodeId,
        /// The member `--join` names.
        url: String,
        /// The cluster the data directory holds.
        ours: String,
        /// The cluster of the member named.
        theirs: String,
    },
    /// A peer was given other members in its `--peers` than this node:
    /// formed so, the cluster would count voters some nodes do not know.
    #[error(
        "node {node_id} was started with --peers naming nodes {ours:?}, and node {peer} with \
         nodes {theirs:?}: every node of a cluster must be given the same --peers (a cluster \
         formed with an extra member could lose its quorum to one failure)"
    )]
    PeersDiffer {
        /// This node.
        node_id: NodeId,
        /// The peer that answered.
        peer: NodeId,
        /// This node's `--peers` ids.
        ours: Vec<NodeId>,
        /// The peer's `--peers` ids.
        theirs: Vec<NodeId>,
    },
    /// The membership lists this node at a peer URL that no longer reaches
    /// it: the others cannot pass it writes nor reach it as a leader.
    #[error(
        "node {node_id} is a member at peer URL {listed}, which does not reach it ({why}); it \
         now listens at {listening}. The other members reach it at {listed} only: a leader \
         there would take no write through them. Start it at {listed} again, or remove it \
         (kvctl cluster remove {node_id}), empty its data directory and let it join at the \
         new address (docs/recovery.md)"
    )]
    Moved {
        /// This node.
        node_id: NodeId,
        /// Its peer URL in the membership.
        listed: String,
        /// The peer address it listens at.
        listening: std::net::SocketAddr,
        /// What asking the listed URL gave.
        why: String,
    },
}

/// Whether a node restarted on its data directory with `--join` (which
/// only a node with an empty one reads) holds the cluster `join` names:
/// `Err` when that member answers with another cluster's id. A member that
/// does not answer says nothing.
async fn check_join_target(
    http: &PeerClient,
    node_id: NodeId,
    join: &str,
    ours: uuid::Uuid,
) -> Result<(), JoinError> {
    let theirs = match cluster_of(http, join, node_id).await {
        Ok(response) => match response.json::<schemas::api::ClusterStatus>().await {
            Ok(status) => status.cluster_id,
            Err(_) => None,
        },
        Err(error) => {
            warn!(node_id, %join, %error, "--join: the member named did not answer; serving the cluster the data directory holds");
            None
        }
    };
    match theirs.and_then(|id| uuid::Uuid::parse_str(&id).ok()) {
        Some(theirs) if theirs != ours => Err(JoinError::OtherCluster {
            node_id,
            url: join.to_string(),
            ours: ours.to_string(),
            theirs: theirs.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Times a node asks its listed peer URL whether it reaches it, and the
/// pause between two tries.
const REACH_TRIES: u32 = 3;
const REACH_PAUSE: Duration = Duration::from_secs(1);

/// `GET /v1/cluster` of the node at `peer_url`, asked by node `node_id`
/// as a node's call naming no cluster (the asker may know none yet, or
/// hold another).
pub(crate) async fn cluster_of(
    http: &PeerClient,
    peer_url: &str,
    node_id: NodeId,
) -> reqwest::Result<reqwest::Response> {
    http.get_naming_no_cluster(&format!("{}/v1/cluster", peer_url.trim_end_matches('/')))
        .header(crate::api::FORWARDED_HEADER, node_id)
        .timeout(PEER_CLUSTER_REQUEST)
        .send()
        .await
}

/// What asking a peer URL for its node gave.
enum Reached {
    /// This node answered.
    This,
    /// Another node answered.
    Another(NodeId),
    /// Nothing readable answered; why.
    Nothing(String),
}

/// Whether `peer_url` reaches node `node_id` (its `/v1/cluster` answers
/// with that id), tried up to [`REACH_TRIES`] times.
async fn reaches(http: &PeerClient, peer_url: &str, node_id: NodeId) -> Reached {
    let mut last = Reached::Nothing(String::new());
    for attempt in 1..=REACH_TRIES {
        last = match cluster_of(http, peer_url, node_id).await {
            Ok(response) if !response.status().is_success() => {
                let status = response.status();
                match response.json::<schemas::api::ErrorBody>().await {
                    // This node, removed from the cluster since: it answers
                    // every route so, and says which node it is.
                    Ok(body)
                        if body.error.code == schemas::api::ErrorCode::NotAMember
                            && body
                                .error
                                .message
                                .starts_with(&format!("node {node_id} was removed")) =>
                    {
                        return Reached::This
                    }
                    Ok(body) => Reached::Nothing(format!(
                        "it answered {status} {}: {}",
                        body.error.code.as_str(),
                        body.error.message
                    )),
                    Err(_) => Reached::Nothing(format!("it answered {status}")),
                }
            }
            Ok(response) => match response.json::<schemas::api::ClusterStatus>().await {
                Ok(status) if status.node_id == node_id => return Reached::This,
                Ok(status) => return Reached::Another(status.node_id),
                Err(error) => Reached::Nothing(format!("an unreadable answer: {error}")),
            },
            Err(error) => Reached::Nothing(format!("no answer: {error}")),
        };
        if attempt < REACH_TRIES {
            tokio::time::sleep(REACH_PAUSE).await;
        }
    }
    last
}

/// Whether node `node_id`, listening at `listening`, is reached at the
/// peer URL its membership lists (`listed`); `Err` if it surely is not:
/// another node answers there, or nothing does and the URL names another
/// port. Nothing answering at the same port (a name or address this host
/// cannot reach itself by) is only logged.
async fn check_listed(
    http: &PeerClient,
    node_id: NodeId,
    listed: &str,
    listening: std::net::SocketAddr,
) -> Result<(), JoinError> {
    let moved = |why: String| JoinError::Moved {
        node_id,
        listed: listed.to_string(),
        listening,
        why,
    };
    match reaches(http, listed, node_id).await {
        Reached::This => Ok(()),
        Reached::Another(other) => Err(moved(format!("node {other} answers there"))),
        Reached::Nothing(why) => {
            let port = reqwest::Url::parse(listed)
                .ok()
                .and_then(|url| url.port_or_known_default());
            if port.is_some_and(|port| port != listening.port()) {
                return Err(moved(why));
            }
            warn!(node_id, %listed, %why, "this node's peer URL in the membership does not reach it from here; the other members may still reach it");
            Ok(())
        }
    }
}

/// The node a join asks to add, and as what.
pub(crate) struct Joiner {
    /// Its id.
    pub node_id: NodeId,
    /// Its addresses.
    pub node: Node,
    /// A voter, or a learner that stays one (`--learner`).
    pub voter: bool,
}

/// Asks the cluster at `url` (any member) to add this node, retrying while
/// the cluster is unreachable or busy; gives up on a refusal or after
/// [`JOIN_TIMEOUT`], and then stops the server through `failed`. Until the
/// cluster has taken it, `joining` is set, and the node grants no vote: with
/// an empty log it would vote for any candidate, a stale one included.
pub(crate) async fn join_cluster(
    raft: Raft,
    http: PeerClient,
    url: String,
    joiner: Joiner,
    joining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    failed: tokio::sync::oneshot::Sender<JoinError>,
) {
    let Joiner {
        node_id,
        node,
        voter,
    } = joiner;
    let role = if voter { "a voter" } else { "a learner" };
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut pause = JOIN_RETRY_FIRST;
    let mut attempt = 0u32;
    let why = loop {
        attempt += 1;
        // Asked again after an answer that was lost, the node may have
        // been taken and caught up already: it says what its log holds now.
        let empty_log = raft.metrics().borrow().last_log_index.is_none();
        let body = schemas::api::AddMember {
            id: node_id,
            addr: node.addr.clone(),
            peer_addr: node.peer_addr.clone(),
            voter,
            update_only: false,
            empty_log,
        };
        let reply = http
            .post(&format!("{url}/v1/cluster/members"))
            .json(&body)
            .timeout(crate::api::cluster::CATCH_UP_TIMEOUT + JOIN_REQUEST_SLACK)
            .send()
            .await;
        let retry_because = match reply {
            Ok(response) if response.status().is_success() => {
                info!(node_id, via = %url, "joined the cluster as {role}");
                joining.store(false, std::sync::atomic::Ordering::Release);
                return;
            }
            Ok(response) => {
                let status = response.status();
                let text = response
                    .text()
                    .await
                    .unwrap_or_else(|error| format!("(unreadable body: {error})"));
                // A change in progress is worth waiting for; a member of
                // this id already there is not.
                let retryable = status.is_server_error()
                    || (status == reqwest::StatusCode::CONFLICT && !text.contains("member_exists"));
                if !retryable {
                    break JoinError::Refused {
                        url,
                        node_id,
                        status,
                        body: text,
                    };
                }
                format!("{status} {text}")
            }
            Err(error) => error.to_string(),
        };
        if tokio::time::Instant::now() + pause >= deadline {
            break JoinError::TimedOut {
                url,
                timeout: JOIN_TIMEOUT,
                attempts: attempt,
                last: retry_because,
            };
        }
        warn!(node_id, via = %url, attempt, reason = %retry_because, "joining: will retry");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(JOIN_RETRY_MAX);
    };
    tracing::error!(node_id, %why, "joining failed");
    // No receiver means the server is already stopping: nothing to stop.
    let _ = failed.send(why);
}

/// Whether this node, started with `--join`, finds itself a learner of
/// the cluster: its join was cut off between its addition as a learner and
/// its promotion (the node killed, or the leader lost, while the leader
/// waited for it to catch up), and nothing else would ever ask for the
/// promotion. Waits (at most [`JOIN_TIMEOUT`]) until the node's membership
/// lists it; a voter, or a node not listed (removed), is not.
pub(crate) async fn is_cut_off_learner(raft: &Raft, node_id: NodeId) -> bool {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut metrics = raft.metrics();
    loop {
        let listed_as_voter = {
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            membership
                .get_node(&node_id)
                .map(|_| membership.voter_ids().any(|id| id == node_id))
        };
        if let Some(voter) = listed_as_voter {
            return !voter;
        }
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// How long one peer is given to answer [`ask_peers`].
const PEER_CLUSTER_REQUEST: Duration = Duration::from_secs(2);

/// Whether this node, a `--peers` member started with an empty raft log,
/// still asks its peers whether its data was lost (see [`ask_peers`]): it
/// takes no vote, entries or snapshot meanwhile. A call refused so wakes
/// the asking at once, so the caller (a leader retrying at once) waits for
/// one more round of answers, not for a pause.
#[derive(Debug, Default)]
pub struct AskingPeers {
    asking: std::sync::atomic::AtomicBool,
    called: tokio::sync::Notify,
}

impl AskingPeers {
    /// Whether the node still asks.
    pub fn is_asking(&self) -> bool {
        self.asking.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The node asks (at its start).
    pub fn start(&self) {
        self.asking
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The peers have answered: the node takes part.
    pub fn done(&self) {
        self.asking
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// A call was refused because the node still asks.
    pub fn refused_a_call(&self) {
        self.called.notify_one();
    }
}

/// What the other peers of `--peers` said to a node starting with an
/// empty raft log.
#[derive(Debug)]
pub(crate) enum PeersSaid {
    /// None lists it as a member that served: it is new (a first start, or
    /// a member started after the others formed the cluster). A peer whose
    /// cluster has formed (it holds a membership), and that cluster's id,
    /// if one has.
    New(Option<(NodeId, String)>),
    /// It must not take part: a peer lists it as a member that served
    /// (with its client URL, which a member publishes once it is one, see
    /// [`publish_addresses`]), so its data was lost; or a peer was given
    /// other `--peers`.
    Stop(JoinError),
}

/// Asks the other peers of `--peers` about their cluster (`GET
/// /v1/cluster` on their peer ports), as etcd asks whether a member was
/// bootstrapped before, until one lists this node as a member that served,
/// or until enough have answered that, with this node, they are a majority
/// of the peers: fewer could not form or run the cluster anyway, and the
/// one answering could have lost its data too. Answers are gathered round
/// after round, with pauses between.
pub(crate) async fn ask_peers(
    http: &PeerClient,
    node_id: NodeId,
    peers: &std::collections::BTreeMap<NodeId, String>,
    asking: &AskingPeers,
) -> PeersSaid {
    let needed = peers.len() / 2;
    let mut answered: std::collections::BTreeMap<NodeId, Option<String>> = Default::default();
    // Peers whose failure to answer was logged at WARN: the next ones go
    // at DEBUG until it answers (a peer not started yet fails every round).
    let mut silent: std::collections::BTreeSet<NodeId> = Default::default();
    let mut pause = JOIN_RETRY_FIRST;
    // The peers start one by one: ask again soon, the leader's calls wait.
    const ASK_RETRY_MAX: Duration = Duration::from_secs(1);
    loop {
        for (peer, peer_url) in peers.iter().filter(|(id, _)| **id != node_id) {
            let status = match cluster_of(http, peer_url, node_id).await {
                Ok(response) if response.status().is_success() => response
                    .json::<schemas::api::ClusterStatus>()
                    .await
                    .map_err(|error| format!("unreadable answer: {error}")),
                Ok(response) => Err(format!("refused: {}", response.status())),
                Err(error) => Err(format!("no answer: {error}")),
            };
            let status = match status {
                Ok(status) => status,
                Err(why) => {
                    if silent.insert(*peer) {
                        warn!(
                            node_id,
                            peer,
                            "asking a peer about its cluster: {why} (logged once until it answers)"
                        );
                    } else {
                        debug!(node_id, peer, "asking a peer about its cluster: {why}");
                    }
                    continue;
                }
            };
            silent.remove(peer);
            if status.node_id != *peer {
                // Two ids of --peers at one endpoint (this node's own, say):
                // an answer counts for the node that gave it, not the one
                // asked, or a node could make its own majority.
                warn!(
                    node_id,
                    peer,
                    answered_by = status.node_id,
                    %peer_url,
                    "asking a peer about its cluster: another node answered; check --peers"
                );
                continue;
            }
            let ours: Vec<NodeId> = peers.keys().copied().collect();
            if !status.peers.is_empty() && status.peers != ours {
                return PeersSaid::Stop(JoinError::PeersDiffer {
                    node_id,
                    peer: *peer,
                    ours,
                    theirs: status.peers,
                });
            }
            let served = status
                .members
                .iter()
                .any(|member| member.id == node_id && !member.addr.is_empty());
            if served {
                return PeersSaid::Stop(JoinError::DataLost {
                    node_id,
                    peer: *peer,
                    peer_url: peer_url.clone(),
                    cluster_id: status.cluster_id.unwrap_or_else(|| "(unnamed)".into()),
                });
            }
            // A peer takes a cluster's id from the first call naming one
            // (a vote, say): only a membership says the cluster formed.
            let formed = status.cluster_id.filter(|_| !status.members.is_empty());
            answered.insert(*peer, formed);
        }
        if answered.len() >= needed {
            let formed = answered
                .into_iter()
                .find_map(|(peer, cluster_id)| Some((peer, cluster_id?)));
            return PeersSaid::New(formed);
        }
        info!(
            node_id,
            answered = answered.len(),
            needed,
            "asking the peers about their cluster: waiting for more to answer"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = asking.called.notified() => {}
        }
        pause = (pause * 2).min(ASK_RETRY_MAX);
    }
}

/// Once this node is a member, makes sure the membership holds its own
/// addresses: a cluster formed by `--peers` starts knowing only the peer
/// URLs, and `--advertise` may have changed since. The change goes to the
/// leader through this node's own peer port (writes there are passed on),
/// retried with backoff, for at most [`JOIN_TIMEOUT`]. It only updates a
/// member (`update_only`): a node removed while it was down still finds
/// itself in its own membership, and must not add itself back; the leader's
/// 404 ends it. A member listed at a peer URL that no longer reaches it
/// (started at another address) cannot be changed so (the cluster asks for
/// a removal first), and no other member could pass it a write: it stops
/// the server through `failed`. So does a node restarted on its data
/// directory with `--join` (`held`: the member named, and the cluster the
/// directory holds) when that member is of another cluster.
pub(crate) async fn publish_addresses(
    raft: Raft,
    http: PeerClient,
    node_id: NodeId,
    node: Node,
    listening: std::net::SocketAddr,
    held: Option<(String, uuid::Uuid)>,
    failed: tokio::sync::oneshot::Sender<JoinError>,
) {
    if let Some((join, ours)) = held {
        if let Err(other) = check_join_target(&http, node_id, &join, ours).await {
            let _ = failed.send(other);
            return;
        }
    }
    let mut checked = false;
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut pause = JOIN_RETRY_FIRST;
    let url = format!("{}/v1/cluster/members", node.peer_addr);
    loop {
        let (listed, voter) = {
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let voter = membership.voter_ids().any(|id| id == node_id);
            (membership.get_node(&node_id).cloned(), voter)
        };
        if let (Some(listed), false) = (&listed, checked) {
            checked = true;
            if let Err(moved) = check_listed(&http, node_id, &listed.peer_addr, listening).await {
                let _ = failed.send(moved);
                return;
            }
        }
        match listed {
            Some(listed) if listed == node => return,
            Some(listed) if listed.peer_addr != node.peer_addr => {
                // The cluster changes a member's peer URL only through a
                // removal; the listed one reaches this node, so it stays.
                warn!(
                    node_id,
                    listed = %listed.peer_addr,
                    ours = %node.peer_addr,
                    "the membership lists this node at another peer URL, which reaches it: kept \
                     (changing it needs a removal first)"
                );
                return;
            }
            Some(_) => {
                let body = schemas::api::AddMember {
                    id: node_id,
                    addr: node.addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    voter,
                    update_only: true,
                    empty_log: false,
                };
                match http
                    .post(&url)
                    .json(&body)
                    .timeout(JOIN_REQUEST_SLACK)
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => {
                        info!(node_id, %node, "published this node's addresses");
                        return;
                    }
                    Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                        warn!(
                            node_id,
                            "publishing addresses: the leader says this node is not a member"
                        );
                        return;
                    }
                    Ok(response) => {
                        let status = response.status();
                        let why = response.text().await.unwrap_or_default();
                        warn!(node_id, %status, %why, "publishing addresses: will retry")
                    }
                    Err(error) => warn!(node_id, %error, "publishing addresses: will retry"),
                }
            }
            // Not a member (yet): a joining node is added by its join.
            None => {}
        }
        if tokio::time::Instant::now() + pause >= deadline {
            warn!(node_id, "gave up publishing this node's addresses");
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(JOIN_RETRY_MAX);
    }
}
