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
//!
//! The append openraft sends a follower after each commit, telling it only
//! the new commit id, is answered at once and sent a millisecond later,
//! unless the next append carried that id first
//! ([`Connection::hold_commit`]): openraft sends a follower the next
//! entries only once the append before is answered.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tracing::{info, warn};

use crate::peer_channel::{CallError, PeerChannel, CONNECT_TIMEOUT};
use crate::peer_codec::Encoding;
use crate::removal::{Removal, RemovedNotice};
use crate::snapshot_transfer::{encode_chunk, ChunkHeader, ChunkReply, SnapshotEnd, CHUNK_BYTES};
use crate::store::log_store::Durability;
use crate::types::{LogId, Node, NodeId, TypeConfig};

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
    reach: Arc<PeerReach>,
}

/// Which peers' appends (or votes) fail, and since when: a leader logs a
/// peer's first failed append and its recovery, once each, and a candidate
/// its first failed vote request and the next answered one. openraft logs
/// every failed retry (an ERROR about every two seconds per stopped
/// follower, as in any rolling restart), every linearizable read and every
/// vote that cannot reach it; those lines are left out by default (see
/// `logging`), and these say the same once.
#[derive(Debug, Default)]
pub struct PeerReach {
    failing_since: Mutex<HashMap<(Call, NodeId), Instant>>,
    /// How many entries `failing_since` holds: an answered call, the usual
    /// case, looks at nothing else.
    failing: std::sync::atomic::AtomicUsize,
}

/// The calls to a peer [`PeerReach`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Call {
    /// Appends and heartbeats, a leader's.
    Appends,
    /// Vote requests, a candidate's.
    Votes,
}

impl PeerReach {
    /// Notes a call to `target` (at `addr`) that failed with `error`.
    fn failed(&self, call: Call, target: NodeId, addr: &str, error: &dyn std::fmt::Display) {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            self.failing_since.lock().entry((call, target))
        {
            entry.insert(Instant::now());
            self.failing.fetch_add(1, Ordering::AcqRel);
            match call {
                Call::Appends => {
                    warn!(peer = target, %addr, %error, "appends to a peer fail; retrying it with backoff (logged again when it answers)")
                }
                Call::Votes => {
                    warn!(peer = target, %addr, %error, "vote requests to a peer fail (logged again when it answers one)")
                }
            }
        }
    }

    /// Notes a call to `target` that was answered.
    fn answered(&self, call: Call, target: NodeId, addr: &str) {
        if self.failing.load(Ordering::Acquire) == 0 {
            return;
        }
        let since = self.failing_since.lock().remove(&(call, target));
        if let Some(since) = since {
            self.failing.fetch_sub(1, Ordering::AcqRel);
            let after_ms = since.elapsed().as_millis() as u64;
            match call {
                Call::Appends => {
                    info!(peer = target, %addr, after_ms, "a peer answers appends again")
                }
                Call::Votes => {
                    info!(peer = target, %addr, after_ms, "a peer answers vote requests again")
                }
            }
        }
    }
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
            reach: Arc::default(),
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

/// The connection to one node, as openraft holds it: one per replication
/// stream, election round or leadership check.
pub struct Connection {
    link: Arc<Link>,
    /// The last log id the target said it holds, in its answer to this
    /// connection's last append; `None` after any other answer.
    matched: Option<LogId>,
    /// The greatest commit id this connection sent or holds.
    told: Option<LogId>,
    /// Its commit-only append held back, if any (see
    /// [`Connection::hold_commit`]), and for how long.
    held: Arc<Mutex<HeldCommit>>,
    hold: Duration,
}

/// What a connection calls the target with; shared with the task that
/// sends a held commit.
struct Link {
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
    /// The node's record of which peers fail their appends.
    reach: Arc<PeerReach>,
}

/// How long a commit-only append is held for the next append to carry its
/// commit id: the runtime's timer resolution. Under load the next entry
/// goes well within it.
const COMMIT_HOLD: Duration = Duration::from_millis(1);

/// A connection's commit-only append, answered at once and sent after
/// [`COMMIT_HOLD`] unless an append sent meanwhile carried its commit id.
#[derive(Default)]
struct HeldCommit {
    /// The newest one not sent yet, and its time limits.
    request: Option<(AppendEntriesRequest<TypeConfig>, RPCOption)>,
    /// Whether a task is to send it.
    sending: bool,
    /// The target answered one with this higher vote: the next call says so.
    higher: Option<Vote<NodeId>>,
    /// One was not taken: the next commit-only append goes at once, and
    /// openraft sees the answer.
    failed: bool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        let channel = self.http.channel(node.peer_url());
        let link = Link {
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
            reach: Arc::clone(&self.reach),
        };
        Connection {
            link: Arc::new(link),
            matched: None,
            told: None,
            held: Arc::default(),
            hold: COMMIT_HOLD,
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

impl Link {
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
                // 403: a node of another cluster or data format, which
                // refuses every call alike. openraft backs off from an
                // unreachable node; a network error it retries at once.
                if status == StatusCode::FORBIDDEN {
                    return Err(RPCError::Unreachable(Unreachable::new(&error)));
                }
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

impl Connection {
    /// Whether `request` only tells the target a newer commit id, right
    /// after the target said, answering this connection, that it holds
    /// everything up to `prev_log_id`. openraft's replication stream sends
    /// one after every commit, and sends the next entries only once it is
    /// answered.
    fn only_commit(&self, request: &AppendEntriesRequest<TypeConfig>) -> bool {
        request.entries.is_empty()
            && request.prev_log_id.is_some()
            && request.prev_log_id == self.matched
            && request.leader_commit > self.told
    }

    /// Holds a commit-only append: the caller answers it at once, and a
    /// task sends it after `hold` ([`COMMIT_HOLD`]) unless an append sent
    /// meanwhile carried its commit id (see [`Connection::carried`]).
    ///
    /// Only the target's knowledge of the commit waits: a commit needs no
    /// follower to hear of it. openraft takes the answer as the target's
    /// acknowledgement at the time it was sent, but one is held only right
    /// after the target acknowledged the entry before, and the commit it
    /// tells of took a quorum's real acknowledgements. A connection's
    /// first call is never held, so the heartbeats of a leadership check
    /// (the read index), on new connections, all go out and are answered.
    fn hold_commit(&mut self, request: AppendEntriesRequest<TypeConfig>, option: RPCOption) {
        self.told = request.leader_commit;
        let mut held = self.held.lock();
        held.request = Some((request, option));
        if std::mem::replace(&mut held.sending, true) {
            return;
        }
        drop(held);
        let link = Arc::clone(&self.link);
        let held = Arc::clone(&self.held);
        let hold = self.hold;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(hold).await;
                let next = {
                    let mut held = held.lock();
                    let next = held.request.take();
                    held.sending = next.is_some();
                    next
                };
                let Some((request, option)) = next else {
                    return;
                };
                let answer = link.append(request, &option).await;
                let mut held = held.lock();
                match answer {
                    Ok(
                        AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_),
                    ) => {}
                    Ok(AppendEntriesResponse::HigherVote(vote)) => held.higher = Some(vote),
                    Ok(AppendEntriesResponse::Conflict) | Err(_) => held.failed = true,
                }
                if held.request.is_none() {
                    held.sending = false;
                    return;
                }
            }
        });
    }

    /// An append carrying `commit` goes out: a held commit id at or below
    /// it need not.
    fn carried(&mut self, commit: Option<LogId>) {
        self.told = self.told.max(commit);
        let mut held = self.held.lock();
        if held
            .request
            .as_ref()
            .is_some_and(|(request, _)| request.leader_commit <= commit)
        {
            held.request = None;
        }
    }
}

impl Link {
    /// Sends an append, its commit id as far as this node's own disk
    /// covers it.
    async fn append(
        &self,
        mut request: AppendEntriesRequest<TypeConfig>,
        option: &RPCOption,
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
        self.call(&self.append_route, &request, option).await
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let failed = {
            let mut held = self.held.lock();
            if let Some(vote) = held.higher.take() {
                return Ok(AppendEntriesResponse::HigherVote(vote));
            }
            held.failed
        };
        if !failed && self.only_commit(&request) {
            self.hold_commit(request, option);
            return Ok(AppendEntriesResponse::Success);
        }
        self.carried(request.leader_commit);
        let last = match request.entries.last() {
            Some(entry) => Some(entry.log_id),
            None => request.prev_log_id,
        };
        let answer = self.link.append(request, &option).await;
        match &answer {
            Ok(_) => self
                .link
                .reach
                .answered(Call::Appends, self.link.target, &self.link.addr),
            Err(error) => {
                self.link
                    .reach
                    .failed(Call::Appends, self.link.target, &self.link.addr, error)
            }
        }
        self.matched = match &answer {
            Ok(AppendEntriesResponse::Success) => last,
            Ok(AppendEntriesResponse::PartialSuccess(matched)) => *matched,
            _ => None,
        };
        if self.matched.is_some() {
            self.held.lock().failed = false;
        }
        answer
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
        let answer = self
            .link
            .call(&self.link.vote_route, &request, &option)
            .await;
        match &answer {
            Ok(_) => self
                .link
                .reach
                .answered(Call::Votes, self.link.target, &self.link.addr),
            Err(error) => {
                self.link
                    .reach
                    .failed(Call::Votes, self.link.target, &self.link.addr, error)
            }
        }
        answer
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
            reply = self.link.send_snapshot(vote, snapshot) => reply,
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
    use std::time::Instant;

    use axum::extract::State;
    use axum::routing::post;
    use axum::{Json, Router};
    use openraft::error::RaftError;
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::peer::{ClusterId, PeerClient};
    use crate::peer_codec::{PeerReply, PeerRequest};

    /// A connection from node 1 to the node serving `app`, whose raft log
    /// is durable up to index 100.
    async fn connect(app: Router) -> (Connection, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds loopback");
        let addr = listener.local_addr().expect("an address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serves");
        });
        let dir = tempfile::tempdir().expect("a temp dir");
        let cluster_id = Arc::new(ClusterId::open(dir.path()).expect("no id yet"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("builds");
        let mut network = Network::new(
            1,
            Durability::new(Some(log_id(100))),
            PeerClient::new(http, None, cluster_id),
            Arc::default(),
        );
        let node = Node {
            addr: String::new(),
            peer_addr: format!("http://{addr}"),
        };
        (network.new_client(2, &node).await, server)
    }

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
        let (mut connection, server) = connect(app).await;
        let option = RPCOption::new(Duration::from_secs(5));
        for round in 1..=2 {
            let vote = Vote::new(round, 1);
            let reply = connection
                .vote(VoteRequest::new(vote, None), option.clone())
                .await
                .expect("the JSON-only node answers");
            assert_eq!(reply.vote, vote, "round {round}");
            assert!(
                !connection.link.postcard.load(Ordering::SeqCst),
                "round {round}"
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "each vote reached it once, in JSON"
        );
        server.abort();
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// An append from the leader of term 1: entries `first..=last` (none
    /// when `first > last`) after `prev`, and commit id `commit`.
    fn append(prev: u64, first: u64, last: u64, commit: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(prev)),
            entries: (first..=last)
                .map(|index| openraft::Entry {
                    log_id: log_id(index),
                    payload: EntryPayload::Blank,
                })
                .collect(),
            leader_commit: Some(log_id(commit)),
        }
    }

    /// What the follower stand-in saw (each append's entry count and
    /// commit index) and answers next.
    #[derive(Clone)]
    struct Follower {
        seen: Arc<Mutex<Vec<(usize, u64)>>>,
        answer: Arc<Mutex<AppendEntriesResponse<NodeId>>>,
    }

    impl Follower {
        fn new() -> Follower {
            Follower {
                seen: Arc::default(),
                answer: Arc::new(Mutex::new(AppendEntriesResponse::Success)),
            }
        }

        fn app(&self) -> Router {
            Router::new()
                .route("/raft/append", post(Follower::take))
                .with_state(self.clone())
        }

        async fn take(
            State(follower): State<Follower>,
            PeerRequest(encoding, request): PeerRequest<AppendEntriesRequest<TypeConfig>>,
        ) -> PeerReply<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
            let commit = request.leader_commit.map_or(0, |id| id.index);
            follower.seen.lock().push((request.entries.len(), commit));
            let answer = match &*follower.answer.lock() {
                AppendEntriesResponse::Success => AppendEntriesResponse::Success,
                AppendEntriesResponse::PartialSuccess(matched) => {
                    AppendEntriesResponse::PartialSuccess(*matched)
                }
                AppendEntriesResponse::Conflict => AppendEntriesResponse::Conflict,
                AppendEntriesResponse::HigherVote(vote) => AppendEntriesResponse::HigherVote(*vote),
            };
            PeerReply(encoding, Ok(answer))
        }

        fn seen(&self) -> Vec<(usize, u64)> {
            self.seen.lock().clone()
        }

        /// A connection to it whose first append (entries 1 and 2) it
        /// answered, and the time limits of its calls.
        async fn confirmed(&self) -> (Connection, tokio::task::JoinHandle<()>, RPCOption) {
            let (mut connection, server) = connect(self.app()).await;
            let option = RPCOption::new(Duration::from_secs(5));
            let answer = connection.append_entries(append(0, 1, 2, 0), option.clone());
            assert_eq!(
                answer.await.expect("answered"),
                AppendEntriesResponse::Success
            );
            (connection, server, option)
        }
    }

    /// Polls until `done`, failing with `what` after 10 s.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// After the follower answered an append, the commit-only append that
    /// openraft sends next is answered at once, without waiting for the
    /// follower, and reaches it a moment later; the follower's answer to
    /// it (here: a higher vote) is the answer to the next call.
    #[tokio::test]
    async fn a_commit_only_append_is_answered_at_once_and_sent_after_the_hold() {
        let follower = Follower::new();
        let (mut connection, server, option) = follower.confirmed().await;

        *follower.answer.lock() = AppendEntriesResponse::HigherVote(Vote::new(2, 3));
        let answer = connection.append_entries(append(2, 1, 0, 2), option.clone());
        assert_eq!(
            answer.await.expect("answered"),
            AppendEntriesResponse::Success,
            "answered before the follower was asked"
        );
        until("the held append to reach the follower", || {
            follower.seen.lock().len() == 2
        })
        .await;
        assert_eq!(follower.seen(), [(2, 0), (0, 2)]);
        until("the follower's answer to come back", || {
            connection.held.lock().higher.is_some()
        })
        .await;
        let answer = connection.append_entries(append(2, 3, 3, 2), option);
        assert_eq!(
            answer.await.expect("answered"),
            AppendEntriesResponse::HigherVote(Vote::new(2, 3))
        );
        assert_eq!(follower.seen().len(), 2, "the next call was not sent");
        server.abort();
    }

    /// A held commit id that the next append carries is never sent on its
    /// own.
    #[tokio::test]
    async fn a_held_commit_that_the_next_append_carries_is_not_sent() {
        let follower = Follower::new();
        let (mut connection, server) = connect(follower.app()).await;
        // Held far longer than the test runs.
        connection.hold = Duration::from_secs(3600);
        let option = RPCOption::new(Duration::from_secs(5));
        for (request, what) in [
            (append(0, 1, 2, 0), "entries"),
            (append(2, 1, 0, 2), "the commit alone, held"),
            (append(2, 3, 4, 2), "entries carrying the commit"),
            (append(4, 1, 0, 4), "the next commit alone, held"),
        ] {
            let answer = connection.append_entries(request, option.clone()).await;
            assert_eq!(
                answer.expect(what),
                AppendEntriesResponse::Success,
                "{what}"
            );
        }
        assert_eq!(follower.seen(), [(2, 0), (2, 2)]);
        let held = connection.held.lock();
        assert!(held.sending);
        let commit = held
            .request
            .as_ref()
            .map(|(request, _)| request.leader_commit);
        assert_eq!(commit, Some(Some(log_id(4))), "only the last one is held");
        drop(held);
        server.abort();
    }

    /// A connection's first call is never held: openraft's leadership
    /// check makes a new connection to each follower and counts their
    /// answers. Nor is one that repeats a commit id the follower was
    /// already told (openraft's own heartbeats), or one whose previous
    /// entry the follower has not confirmed on this connection.
    #[tokio::test]
    async fn only_a_new_commit_after_a_confirmed_append_is_held() {
        let follower = Follower::new();
        let (mut connection, server) = connect(follower.app()).await;
        connection.hold = Duration::from_secs(3600);
        let option = RPCOption::new(Duration::from_secs(5));
        *follower.answer.lock() = AppendEntriesResponse::HigherVote(Vote::new(2, 3));
        let first = connection.append_entries(append(2, 1, 0, 2), option.clone());
        assert_eq!(
            first.await.expect("answered"),
            AppendEntriesResponse::HigherVote(Vote::new(2, 3)),
            "the first call went out and its answer came back"
        );

        *follower.answer.lock() = AppendEntriesResponse::Success;
        for (request, what) in [
            (append(0, 1, 2, 0), "entries"),
            (append(2, 1, 0, 0), "a heartbeat with the same commit id"),
            (
                append(1, 1, 0, 3),
                "a commit after an entry not confirmed here",
            ),
        ] {
            let answer = connection.append_entries(request, option.clone()).await;
            assert_eq!(
                answer.expect(what),
                AppendEntriesResponse::Success,
                "{what}"
            );
        }
        assert_eq!(follower.seen(), [(0, 2), (2, 0), (0, 0), (0, 3)]);
        assert!(connection.held.lock().request.is_none());
        server.abort();
    }

    /// A held commit the follower did not take (here: a conflict) makes
    /// the next commit-only append go out at once, so openraft sees the
    /// follower's answer itself.
    #[tokio::test]
    async fn after_a_held_commit_fails_the_next_one_goes_at_once() {
        let follower = Follower::new();
        let (mut connection, server, option) = follower.confirmed().await;

        *follower.answer.lock() = AppendEntriesResponse::Conflict;
        let held = connection.append_entries(append(2, 1, 0, 1), option.clone());
        assert_eq!(
            held.await.expect("answered"),
            AppendEntriesResponse::Success
        );
        until("the held append to fail", || connection.held.lock().failed).await;
        let next = connection.append_entries(append(2, 1, 0, 2), option);
        assert_eq!(
            next.await.expect("answered"),
            AppendEntriesResponse::Conflict,
            "openraft is told"
        );
        assert_eq!(follower.seen(), [(2, 0), (0, 1), (0, 2)]);
        server.abort();
    }
}
