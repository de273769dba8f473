//! The client side of node-to-node Raft RPC: HTTP POSTs to `/raft/*` on the
//! target node's API port.
//!
//! Append-entries and vote go as JSON and come back as a JSON `Result`.
//! A snapshot goes whole, in one request, as bytes: a small JSON preamble
//! (the leader's vote and the snapshot's meta) followed by the snapshot file
//! itself, so a snapshot of a large topic is not inflated into a JSON array
//! of numbers. Connections are pooled by one shared HTTP client, which
//! reconnects on its own; a node that cannot be reached is retried after a
//! growing pause.

use std::future::Future;
use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::log_store::Durability;
use crate::types::{Node, NodeId, TypeConfig};

/// Longest time spent connecting to a node before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Pauses before reconnecting to an unreachable node: growing, then steady.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long an idle connection to a node is kept for the next RPC.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest time an RPC is given, whatever openraft's TTL says.
const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(100);

/// What precedes the snapshot bytes in `/raft/snapshot`.
#[derive(Serialize, Deserialize)]
pub struct SnapshotPreamble {
    /// The sender's vote: the receiver refuses a snapshot from a stale leader.
    pub vote: Vote<NodeId>,
    /// The snapshot's meta.
    pub meta: SnapshotMeta<NodeId, Node>,
}

/// Frames a snapshot for `/raft/snapshot`: preamble length (u32 LE),
/// preamble (JSON), snapshot bytes.
pub fn encode_snapshot(preamble: &SnapshotPreamble, data: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(preamble).expect("a snapshot preamble serializes");
    let mut body = Vec::with_capacity(4 + head.len() + data.len());
    body.extend_from_slice(&(head.len() as u32).to_le_bytes());
    body.extend_from_slice(&head);
    body.extend_from_slice(data);
    body
}

/// Splits a `/raft/snapshot` body into its preamble and snapshot bytes.
pub fn decode_snapshot(body: &[u8]) -> Result<(SnapshotPreamble, &[u8]), String> {
    let len_bytes: [u8; 4] = body
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("the snapshot body is shorter than its preamble length")?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let head = body
        .get(4..4 + len)
        .ok_or("the snapshot preamble runs past the end of the body")?;
    let preamble =
        serde_json::from_slice(head).map_err(|e| format!("unreadable snapshot preamble: {e}"))?;
    Ok((preamble, &body[4 + len..]))
}

/// Makes connections to other nodes; one shared HTTP client pools them.
#[derive(Clone)]
pub struct Network {
    http: crate::peer::PeerClient,
    node_id: NodeId,
    durability: Durability,
}

impl Network {
    /// The network of node `node_id`, whose raft log `durability` tracks,
    /// calling the other nodes through `http`.
    pub fn new(node_id: NodeId, durability: Durability, http: crate::peer::PeerClient) -> Self {
        Network {
            http,
            node_id,
            durability,
        }
    }
}

/// The HTTP client of every call to another node: pooled, no proxy, and
/// with peer TLS, trusting `--peer-tls-ca` only and presenting
/// `--peer-tls-cert`.
pub fn peer_http_client(tls: &crate::tls::NodeTls) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT);
    tls.peer_client(builder)?.build()
}

/// The connection to one node.
pub struct Connection {
    http: crate::peer::PeerClient,
    node_id: NodeId,
    durability: Durability,
    target: NodeId,
    addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            http: self.http.clone(),
            node_id: self.node_id,
            durability: self.durability.clone(),
            target,
            addr: node.peer_url().to_string(),
        }
    }
}

fn transport_error<E: std::error::Error>(error: reqwest::Error) -> RPCError<NodeId, Node, E> {
    if error.is_connect() {
        RPCError::Unreachable(Unreachable::new(&error))
    } else {
        RPCError::Network(NetworkError::new(&error))
    }
}

impl Connection {
    async fn call<Req, Resp, Err>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, Err>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        Err: std::error::Error + DeserializeOwned,
    {
        let url = format!("{}/raft/{path}", self.addr);
        let timeout = option.hard_ttl().max(MIN_RPC_TIMEOUT);
        let response = self
            .http
            .post(&url)
            .timeout(timeout)
            .json(request)
            .send()
            .await
            .map_err(transport_error)?;
        let reply: Result<Resp, Err> = response
            .json()
            .await
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        reply.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }

    /// Sends a whole snapshot in one request and waits until the target has
    /// installed it (or refused it).
    async fn send_snapshot(
        &self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        timeout: Duration,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let preamble = SnapshotPreamble {
            vote,
            meta: snapshot.meta,
        };
        let body = encode_snapshot(&preamble, snapshot.snapshot.get_ref());
        let url = format!("{}/raft/snapshot", self.addr);
        let response = self
            .http
            .post(&url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|error| -> StreamingError<TypeConfig, Fatal<NodeId>> {
                if error.is_timeout() {
                    Timeout {
                        action: RPCTypes::InstallSnapshot,
                        id: self.node_id,
                        target: self.target,
                        timeout,
                    }
                    .into()
                } else if error.is_connect() {
                    Unreachable::new(&error).into()
                } else {
                    NetworkError::new(&error).into()
                }
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| NetworkError::new(&error))?;
        if !status.is_success() {
            // The receiver refused the bytes (a damaged transfer): send again.
            return Err(NetworkError::new(&std::io::Error::other(format!(
                "node {} refused the snapshot with {status}: {text}",
                self.target
            )))
            .into());
        }
        let reply: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            serde_json::from_str(&text).map_err(|error| NetworkError::new(&error))?;
        reply.map_err(|fatal| RemoteError::new(self.target, fatal).into())
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        mut request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        // The leader counts its own entries before they are on its disk;
        // a follower must not apply up to a commit index until they are.
        // Waiting out a slow fsync would time the heartbeat out (and with
        // it every read index), so past half the RPC's time the follower is
        // told the commit the disk covers instead.
        request.leader_commit = self
            .durability
            .commit_to_send(request.leader_commit, option.soft_ttl() / 2)
            .await
            .map_err(|error| RPCError::Network(NetworkError::new(&error)))?;
        self.call("append", &request, &option).await
    }

    /// Snapshots go whole through [`RaftNetwork::full_snapshot`]; openraft
    /// sends chunks only through the default `full_snapshot`, which this
    /// connection replaces, so a chunk is refused as a network error.
    async fn install_snapshot(
        &mut self,
        _request: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("snapshots are sent whole, not in chunks"),
        )))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call("vote", &request, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        tokio::select! {
            closed = cancel => Err(closed.into()),
            reply = self.send_snapshot(vote, snapshot, option.hard_ttl()) => reply,
        }
    }

    fn backoff(&self) -> Backoff {
        let mut pause = BACKOFF_START;
        Backoff::new(std::iter::from_fn(move || {
            let now = pause;
            pause = (pause * 2).min(BACKOFF_MAX);
            Some(now)
        }))
    }
}
