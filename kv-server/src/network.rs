//! The client side of node-to-node Raft RPC: HTTP POSTs to `/raft/*` on the
//! target node's API port.
//!
//! Append-entries and vote go in postcard (JSON to a node that answers 415
//! to it, see [`crate::peer_codec`]) and come back as a `Result` in the
//! same encoding.
//! A snapshot is streamed from its file in chunks, one request each
//! ([`crate::snapshot_transfer`]), each with its own timeout: a request
//! that fails or times out is sent again from where the receiver says it
//! stopped, so the transfer as a whole has no deadline as long as it makes
//! progress, and the sender holds one chunk in memory. Appends and votes
//! keep connections of their own to each node ([`crate::peer_channel`]);
//! snapshot chunks go through the pooled client of the other calls between
//! nodes. Both reconnect on their own; a node that cannot be reached is
//! retried after a growing pause.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::{StatusCode, Uri};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Snapshot, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::warn;

use crate::peer_channel::{CallError, PeerChannel, CONNECT_TIMEOUT};
use crate::peer_codec::Encoding;
use crate::removal::{Removal, RemovedNotice};
use crate::snapshot_transfer::{encode_chunk, ChunkHeader, ChunkReply, SnapshotEnd, CHUNK_BYTES};
use crate::store::log_store::Durability;
use crate::types::{Node, NodeId, TypeConfig};

/// Pauses before reconnecting to an unreachable node: growing, then steady.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long an idle connection to a node is kept for the next RPC.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest time an RPC is given, whatever openraft's TTL says.
const MIN_RPC_TIMEOUT: Duration = Duration::from_millis(100);

/// How long one chunk of a snapshot may take to be sent and written.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the last chunk may take: the receiver checks the whole file
/// and installs it (replays it into its view) before it answers.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Failed chunk requests in a row, without progress, after which the
/// transfer is given up (openraft starts it again later; it resumes).
const MAX_FAILURES_WITHOUT_PROGRESS: u32 = 8;

/// Makes connections to other nodes; one shared HTTP client pools them.
#[derive(Clone)]
pub struct Network {
    http: crate::peer::PeerClient,
    node_id: NodeId,
    durability: Durability,
    removal: Arc<Removal>,
}

impl Network {
    /// The network of node `node_id`, whose raft log `durability` tracks,
    /// calling the other nodes through `http`; a member's word that this
    /// node was removed goes to `removal`.
    pub fn new(
        node_id: NodeId,
        durability: Durability,
        http: crate::peer::PeerClient,
        removal: Arc<Removal>,
    ) -> Self {
        Network {
            http,
            node_id,
            durability,
            removal,
        }
    }
}

/// The HTTP client of every call to another node: pooled, no proxy, no
/// redirects (no node answers one), and with peer TLS, trusting
/// `--peer-tls-ca` only and presenting `--peer-tls-cert`.
pub fn peer_http_client(tls: &crate::tls::NodeTls) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
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
    /// Kept-alive connections to the target, for appends and votes, and
    /// their routes.
    channel: PeerChannel,
    append_route: Uri,
    vote_route: Uri,
    /// Whether the target reads postcard bodies; cleared for good by its
    /// first 415 (see `peer_codec`).
    postcard: AtomicBool,
    removal: Arc<Removal>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let channel = self.http.channel(node.peer_url());
        Connection {
            http: self.http.clone(),
            node_id: self.node_id,
            durability: self.durability.clone(),
            target,
            addr: node.peer_url().to_string(),
            append_route: channel.route("/raft/append"),
            vote_route: channel.route("/raft/vote"),
            channel,
            postcard: AtomicBool::new(true),
            removal: Arc::clone(&self.removal),
        }
    }
}

fn transport_error<E: std::error::Error>(error: CallError) -> RPCError<NodeId, Node, E> {
    if error.surely_unsent() {
        RPCError::Unreachable(Unreachable::new(&error))
    } else {
        RPCError::Network(NetworkError::new(&error))
    }
}

fn network_error<E, R>(error: &E) -> RPCError<NodeId, Node, R>
where
    E: std::error::Error + 'static,
    R: std::error::Error,
{
    RPCError::Network(NetworkError::new(error))
}

impl Connection {
    async fn call<Req, Resp, Err>(
        &self,
        route: &Uri,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, Err>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        Err: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl().max(MIN_RPC_TIMEOUT);
        loop {
            let encoding = if self.postcard.load(Ordering::Relaxed) {
                Encoding::Postcard
            } else {
                Encoding::Json
            };
            let body = encoding
                .encode(request)
                .map_err(|error| network_error(&error))?;
            let reply = self
                .channel
                .post(route, encoding.content_type(), body.into(), timeout)
                .await
                .map_err(transport_error)?;
            let status = reply.status;
            if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && encoding == Encoding::Postcard {
                // A node that reads JSON only: speak JSON to it from now on.
                warn!(
                    target_node = self.target,
                    "the node does not read postcard; sending it JSON"
                );
                self.postcard.store(false, Ordering::Relaxed);
                continue;
            }
            // An error body is the API's JSON, whatever the request was.
            let answered = Encoding::of(&reply.headers).unwrap_or(Encoding::Json);
            let bytes = reply.body;
            if status == StatusCode::GONE {
                self.take_removal(&bytes);
            }
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes);
                let error = std::io::Error::other(format!(
                    "{} answered {route} {status}: {text}",
                    self.addr
                ));
                return Err(network_error(&error));
            }
            let reply: Result<Resp, Err> = answered
                .decode(&bytes)
                .map_err(|error| network_error(&error))?;
            return reply
                .map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)));
        }
    }

    /// The target answered 410: this node asked for votes after the cluster
    /// removed it (see `removal`). Marks it removed if `body`, the
    /// target's notice, says so.
    fn take_removal(&self, body: &[u8]) {
        match serde_json::from_slice::<RemovedNotice>(body) {
            Ok(notice) if notice.removes(self.node_id) => {
                let why = format!(
                    "node {} answered its vote request: the membership applied at index {} \
                     leaves it out",
                    self.target, notice.log_index
                );
                self.removal.mark(self.node_id, why);
            }
            _ => warn!(
                target_node = self.target,
                "a 410 that does not remove this node: {}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    /// Streams a snapshot in chunks from where the target holds it, and
    /// waits until the target has installed it (or refused it).
    async fn send_snapshot(
        &self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let Snapshot { meta, snapshot } = snapshot;
        let mut file = *snapshot;
        let end = whole_file(&mut file)
            .await
            .map_err(|e| NetworkError::new(&e))?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        // An empty chunk at 0 first asks how much the target holds already.
        let mut offset = 0u64;
        let mut probe = true;
        let mut failures = 0u32;
        loop {
            if offset > end.len {
                return Err(NetworkError::new(&std::io::Error::other(format!(
                    "node {} holds {offset} bytes of snapshot {}, which has {}",
                    self.target, meta.snapshot_id, end.len
                )))
                .into());
            }
            let len = if probe {
                0
            } else {
                CHUNK_BYTES.min((end.len - offset) as usize)
            };
            let data = &mut buf[..len];
            read_at(&mut file, offset, data)
                .await
                .map_err(|e| NetworkError::new(&e))?;
            let last = !probe && offset + len as u64 == end.len;
            let header = ChunkHeader {
                vote,
                meta: meta.clone(),
                offset,
                crc32c: crc32c::crc32c(data),
                end: last.then_some(end),
            };
            let timeout = if last { FINISH_TIMEOUT } else { CHUNK_TIMEOUT };
            let sent = self.send_chunk(&header, data, timeout).await;
            probe = false;
            let failure = match sent {
                Ok(ChunkReply::Installed(reply)) => {
                    return reply.map_err(|fatal| RemoteError::new(self.target, fatal).into());
                }
                Ok(ChunkReply::Held { held }) => {
                    failures = 0;
                    offset = held;
                    continue;
                }
                Ok(ChunkReply::Refused { held, reason }) => {
                    // The target says where it stands: go on from there.
                    let progress = held > offset;
                    offset = held;
                    if progress {
                        failures = 0;
                        continue;
                    }
                    NetworkError::new(&std::io::Error::other(format!(
                        "node {} refused a snapshot chunk: {reason}",
                        self.target
                    )))
                }
                Err(error) => error,
            };
            failures += 1;
            warn!(
                node = self.node_id,
                target_node = self.target,
                snapshot = %meta.snapshot_id,
                offset,
                failures,
                error = %failure,
                "a snapshot chunk failed; resending from the offset the target holds"
            );
            if failures >= MAX_FAILURES_WITHOUT_PROGRESS {
                return Err(failure.into());
            }
            // The target may hold more than we know (the chunk was written
            // but the answer lost): a chunk resent at `offset` asks too, as
            // its refusal names what is held; at 0 an empty one asks first.
            probe = offset == 0;
            tokio::time::sleep(BACKOFF_START * failures).await;
        }
    }

    /// Sends one chunk; `Err` when no answer of the transfer came back.
    async fn send_chunk(
        &self,
        header: &ChunkHeader,
        data: &[u8],
        timeout: Duration,
    ) -> Result<ChunkReply, NetworkError> {
        let url = format!("{}/raft/snapshot", self.addr);
        let response = self
            .http
            .post(&url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(encode_chunk(header, data))
            .send()
            .await
            .map_err(|error| NetworkError::new(&error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| NetworkError::new(&error))?;
        serde_json::from_str(&text).map_err(|_| {
            NetworkError::new(&std::io::Error::other(format!(
                "node {} answered a snapshot chunk with {status}: {text}",
                self.target
            )))
        })
    }
}

/// The length and CRC32C of a snapshot file, read a chunk at a time.
async fn whole_file(file: &mut tokio::fs::File) -> std::io::Result<SnapshotEnd> {
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut len = 0u64;
    let mut crc = 0u32;
    loop {
        let read = file.read(&mut buf).await?;
        if read == 0 {
            return Ok(SnapshotEnd { len, crc32c: crc });
        }
        crc = crc32c::crc32c_append(crc, &buf[..read]);
        len += read as u64;
    }
}

/// Fills `buf` from byte `offset` of `file`.
async fn read_at(file: &mut tokio::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    file.read_exact(buf).await.map(drop)
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
        self.call(&self.append_route, &request, &option).await
    }

    /// Snapshots go through [`RaftNetwork::full_snapshot`], in chunks of
    /// this server's own format; openraft sends its chunks only through the
    /// default `full_snapshot`, which this connection replaces, so one is
    /// refused as a network error.
    async fn install_snapshot(
        &mut self,
        _request: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(
            &std::io::Error::other("snapshots are sent through full_snapshot"),
        )))
    }

    async fn vote(
        &mut self,
        request: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(&self.vote_route, &request, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        // Each chunk has a timeout of its own; the transfer as a whole has
        // none (`_option`'s) beyond making progress.
        tokio::select! {
            closed = cancel => Err(closed.into()),
            reply = self.send_snapshot(vote, snapshot) => reply,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use axum::routing::post;
    use axum::{Json, Router};
    use openraft::error::RaftError;

    use super::*;
    use crate::peer::{ClusterId, PeerClient};

    /// A node that reads only JSON (axum's `Json` extractor, as every
    /// node did before postcard) answers the first postcard vote 415: the
    /// vote is sent again in JSON, and so is every later call.
    #[tokio::test]
    async fn a_peer_that_reads_only_json_is_spoken_json_after_its_first_415() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let app = Router::new().route(
            "/raft/vote",
            post(move |Json(request): Json<VoteRequest<NodeId>>| async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Json(Ok::<_, RaftError<NodeId>>(VoteResponse::new(
                    request.vote,
                    None,
                    false,
                )))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds loopback");
        let addr = listener.local_addr().expect("an address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().expect("a temp dir");
        let cluster_id = Arc::new(ClusterId::open(dir.path()).expect("no id yet"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("builds");
        let mut network = Network::new(
            1,
            Durability::new(None),
            PeerClient::new(http, None, cluster_id),
            Arc::default(),
        );
        let node = Node {
            addr: String::new(),
            peer_addr: format!("http://{addr}"),
        };
        let mut connection = network.new_client(2, &node).await;
        let option = RPCOption::new(Duration::from_secs(5));
        for round in 1..=2 {
            let vote = Vote::new(round, 1);
            let reply = connection
                .vote(VoteRequest::new(vote, None), option.clone())
                .await
                .expect("the JSON-only node answers");
            assert_eq!(reply.vote, vote, "round {round}");
            assert!(!connection.postcard.load(Ordering::SeqCst), "round {round}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "each vote reached it once, in JSON"
        );
        server.abort();
    }
}
