//! The cluster (`/v1/cluster`): who leads, how far each node is, and
//! membership changes.

use std::collections::BTreeMap;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::error::Result;
use crate::Revision;

/// How long the server may take to let a new member catch up before it
/// makes it a voter.
const MEMBER_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(130);

/// A node's id in the cluster.
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// let leader: Option<kv_client::NodeId> = client.cluster_status().await?.leader;
/// # let _ = leader;
/// # Ok(())
/// # }
/// ```
pub type NodeId = u64;

/// The cluster as the answering node sees it. Fields a newer server adds
/// are kept in `extra`.
///
/// ```
/// let status: kv_client::ClusterStatus = serde_json::from_str(r#"{
///     "node_id": 1, "leader": 1, "term": 3, "state": "Leader",
///     "applied_index": 42, "committed_index": 42, "last_log_index": 42, "snapshot_index": 0,
///     "members": [{"id": 1, "addr": "http://127.0.0.1:7070", "voter": true, "matched_index": 42}],
///     "role": "leader"
/// }"#).unwrap();
/// assert_eq!(status.leader_member().unwrap().addr, "http://127.0.0.1:7070");
/// assert_eq!(status.extra["role"], "leader");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: NodeId,
    /// The leader it knows of, if any.
    #[serde(default)]
    pub leader: Option<NodeId>,
    /// The current Raft term.
    #[serde(default)]
    pub term: u64,
    /// The answering node's Raft state (`Leader`, `Follower`, …).
    #[serde(default)]
    pub state: String,
    /// Last log index applied to the store there: its revision.
    #[serde(default)]
    pub applied_index: Revision,
    /// Last log index known committed.
    #[serde(default)]
    pub committed_index: Revision,
    /// Last log index held.
    #[serde(default)]
    pub last_log_index: Revision,
    /// Index of the last snapshot.
    #[serde(default)]
    pub snapshot_index: Revision,
    /// The members, voters and learners.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Fields this client does not know, kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One member of the cluster.
///
/// ```
/// let member: kv_client::Member =
///     serde_json::from_str(r#"{"id": 2, "addr": "http://127.0.0.1:7071", "voter": false, "lag": 7}"#)
///         .unwrap();
/// assert!(!member.voter);
/// assert_eq!(member.extra["lag"], 7);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id.
    pub id: NodeId,
    /// The URL other nodes and clients reach it at.
    pub addr: String,
    /// Whether it votes (a learner does not).
    #[serde(default)]
    pub voter: bool,
    /// Replicated up to this index (known on the leader only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<Revision>,
    /// Fields this client does not know (`role`, `lag`, …), kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ClusterStatus {
    /// The leader among the members, if one is known.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let status = client.cluster_status().await?;
    /// match status.leader_member() {
    ///     Some(leader) => println!("node {} at {} leads", leader.id, leader.addr),
    ///     None => println!("no leader yet"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn leader_member(&self) -> Option<&Member> {
        let leader = self.leader?;
        self.members.iter().find(|member| member.id == leader)
    }
}

#[derive(Serialize)]
struct AddMember<'a> {
    id: NodeId,
    addr: &'a str,
}

impl Client {
    /// The cluster's status, as the node that answers sees it.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let status = client.cluster_status().await?;
    /// println!("term {}, applied {}", status.term, status.applied_index);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let request = crate::transport::Request::new(Method::GET, ["v1", "cluster"]);
        self.call(&request).await?.success()?.json()
    }

    /// Adds node `id`, reachable at `addr` (`http://host:port`), to the
    /// cluster: as a learner, made a voter once it has caught up. That may
    /// take the server up to two minutes, so this call waits that much
    /// longer than others; asking again for a node already added is safe.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.add_member(4, "http://10.0.0.4:7070").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_member(&self, id: NodeId, addr: &str) -> Result<()> {
        let body = crate::kv::to_json(&AddMember { id, addr })?;
        let mut request =
            crate::transport::Request::write(Method::POST, ["v1", "cluster", "members"]).json(body);
        request.extra_time = MEMBER_CATCH_UP;
        self.call(&request).await?.success()?;
        Ok(())
    }

    /// Removes node `id` from the cluster.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.remove_member(4).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        let request = crate::transport::Request::write(
            Method::DELETE,
            [
                "v1".to_string(),
                "cluster".into(),
                "members".into(),
                id.to_string(),
            ],
        );
        self.call(&request).await?.success()?;
        Ok(())
    }
}
