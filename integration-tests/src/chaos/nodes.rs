//! The cluster a chaos history runs against: real `kv-server` processes
//! whose peers reach each other through the [`PeerNetwork`], and the
//! faults' actions on them. Nothing here panics on a misbehaving node: a
//! node that does not come back is an anomaly the run reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::partition::PeerNetwork;
use crate::server::free_ports;
use crate::TestServer;

/// Times a cluster is started on new ports when one was taken meanwhile.
const START_ATTEMPTS: usize = 3;
/// How long a restarted node may take to answer `/readyz`.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the healed cluster may take to agree on a leader and converge.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(50);
/// Entries [`ChaosCluster::replace_leader`] writes while a node is cut
/// off: more than two snapshots' worth (`--snapshot-every 50`, 10 kept
/// behind), so the log it needs is purged.
const FILL_ENTRIES: usize = 120;
/// How long [`ChaosCluster::replace_leader`] waits for a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long [`ChaosCluster::fill_log`] may take.
const FILL_TIMEOUT: Duration = Duration::from_secs(20);
/// Puts [`ChaosCluster::fill_log`] has in flight at once.
const FILL_CONCURRENCY: usize = 8;
/// What a node logs when it aborts at its `KV_CRASH_AT` point.
const CRASH_POINT_REACHED: &str = "KV_CRASH_AT reached";
/// Log lines kept of a node that misbehaved.
const LOG_LINES: usize = 40;

/// The flags of every chaos node: snapshots often, and a small catch-up
/// window, so a node that was down or cut off catches up by a snapshot
/// install as well as from the log.
const NODE_FLAGS: &[&str] = &["--snapshot-every", "50", "--snapshot-catchup-entries", "10"];

/// Why a node is not serving after a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotServing {
    /// It exited by itself (with the end of its log): a finding.
    Exited(String),
    /// It did not answer in time, or the cluster found no leader: on a
    /// loaded machine, possibly only slow.
    Slow(String),
}

impl std::fmt::Display for NotServing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotServing::Exited(why) | NotServing::Slow(why) => f.write_str(why),
        }
    }
}

/// The nodes, their proxies, and which of them clients may send to.
pub struct ChaosCluster {
    nodes: BTreeMap<u64, TestServer>,
    network: PeerNetwork,
    /// Per node (in id order): whether it runs, for the clients' choice.
    up: Arc<Vec<AtomicBool>>,
    /// The nodes started with `KV_CRASH_AT` set.
    crash_armed: BTreeSet<u64>,
    /// Per node, the crash points reached that were already told.
    crash_hits_counted: BTreeMap<u64, usize>,
    client: reqwest::Client,
}

impl ChaosCluster {
    /// Starts `size` nodes (ids 1…size) behind their proxies and waits
    /// until they agree on a leader. The ports are free when picked, but
    /// another process (a connection's local port, say) may take one before
    /// a node binds it: then the node cannot listen, which is no finding
    /// of the run, and the cluster is started again on new ports.
    pub async fn start(size: u64) -> Result<ChaosCluster, String> {
        for _ in 1..START_ATTEMPTS {
            match ChaosCluster::start_once(size).await {
                Err(error) if error.contains("cannot listen") => {}
                outcome => return outcome,
            }
        }
        ChaosCluster::start_once(size).await
    }

    async fn start_once(size: u64) -> Result<ChaosCluster, String> {
        let ports = free_ports(2 * size as usize);
        let targets: Vec<(u64, SocketAddr)> = (1..=size)
            .zip(ports.chunks(2))
            .map(|(id, pair)| (id, SocketAddr::from(([127, 0, 0, 1], pair[1]))))
            .collect();
        let network = PeerNetwork::start(&targets)
            .await
            .map_err(|error| format!("the peer proxies cannot start: {error}"))?;
        let peers = (1..=size)
            .map(|id| format!("{id}={}", network.peer_url(id)))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<&str> = NODE_FLAGS.to_vec();
        args.extend(["--peers", &peers]);
        let mut nodes = BTreeMap::new();
        for (id, pair) in (1..=size).zip(ports.chunks(2)) {
            nodes.insert(id, TestServer::unstarted(id, pair[0], pair[1], &args));
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| error.to_string())?;
        let up = Arc::new((1..=size).map(|_| AtomicBool::new(false)).collect());
        let mut cluster = ChaosCluster {
            nodes,
            network,
            up,
            crash_armed: BTreeSet::new(),
            crash_hits_counted: BTreeMap::new(),
            client,
        };
        for id in cluster.ids() {
            cluster.spawn(id);
        }
        for id in cluster.ids() {
            cluster
                .wait_healthy(id)
                .await
                .map_err(|trouble| trouble.to_string())?;
        }
        cluster.leader(QUIESCE_TIMEOUT).await?;
        Ok(cluster)
    }

    /// The node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The client API base URL of every node, in id order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.values().map(TestServer::base_url).collect()
    }

    /// Per node, in id order, whether it runs (shared with the clients).
    pub fn up_flags(&self) -> Arc<Vec<AtomicBool>> {
        Arc::clone(&self.up)
    }

    /// The partitioning proxies.
    pub fn network(&self) -> &PeerNetwork {
        &self.network
    }

    fn node_mut(&mut self, id: u64) -> &mut TestServer {
        self.nodes
            .get_mut(&id)
            .expect("the schedule names nodes 1…size")
    }

    fn set_up(&self, id: u64, up: bool) {
        self.up[(id - 1) as usize].store(up, Ordering::Release);
    }

    fn spawn(&mut self, id: u64) {
        let node = self.node_mut(id);
        node.spawn();
        let pid = node.pid();
        self.network.set_pid(id, pid);
        self.set_up(id, true);
    }

    /// Kills node `id` with SIGKILL (a no-op if it is not running).
    pub async fn kill9(&mut self, id: u64) {
        self.set_up(id, false);
        self.network.set_pid(id, None);
        let node = self.node_mut(id);
        if node.is_running() {
            // A node paused by SIGSTOP dies of SIGKILL all the same.
            node.kill9().await;
        }
    }

    /// Pauses node `id` with SIGSTOP.
    pub fn pause(&mut self, id: u64) {
        let node = self.node_mut(id);
        if node.is_running() {
            node.pause();
        }
    }

    /// Resumes node `id` with SIGCONT.
    pub fn resume(&mut self, id: u64) {
        let node = self.node_mut(id);
        if node.is_running() {
            node.resume();
        }
    }

    /// Kills node `id` and starts it again, with `KV_CRASH_AT` set to
    /// `crash_at` (or unset), and waits until it answers.
    pub async fn restart(&mut self, id: u64, crash_at: Option<&str>) -> Result<(), NotServing> {
        self.kill9(id).await;
        self.node_mut(id).set_env("KV_CRASH_AT", crash_at);
        match crash_at {
            Some(_) => self.crash_armed.insert(id),
            None => self.crash_armed.remove(&id),
        };
        self.spawn(id);
        self.wait_healthy(id).await
    }

    /// Whether node `id` exited by itself; reaps it if so.
    pub async fn exited(&mut self, id: u64) -> bool {
        let node = self.node_mut(id);
        if !node.is_running() {
            return false;
        }
        let exited = node.wait_exit(Duration::ZERO).await.is_some();
        if exited {
            self.set_up(id, false);
            self.network.set_pid(id, None);
        }
        exited
    }

    /// Whether node `id` was started with `KV_CRASH_AT` set.
    pub fn is_armed(&self, id: u64) -> bool {
        self.crash_armed.contains(&id)
    }

    /// Whether node `id`'s process runs (as far as the harness knows).
    pub fn is_running(&self, id: u64) -> bool {
        self.nodes[&id].is_running()
    }

    /// Whether node `id`'s log tells of a crash point reached since the
    /// last call; each one is told once.
    pub fn take_crash_hit(&mut self, id: u64) -> bool {
        let in_log = self.crash_hits_in_log(id);
        let counted = self.crash_hits_counted.entry(id).or_default();
        let new = in_log > *counted;
        *counted = in_log;
        new
    }

    /// How many times node `id`'s log says it reached its crash point.
    fn crash_hits_in_log(&self, id: u64) -> usize {
        self.nodes[&id]
            .log_tail(usize::MAX)
            .matches(CRASH_POINT_REACHED)
            .count()
    }

    /// The last `lines` lines of every node's log.
    pub fn logs(&self, lines: usize) -> Vec<(u64, String)> {
        self.nodes
            .iter()
            .map(|(id, node)| (*id, node.log_tail(lines)))
            .collect()
    }

    /// The tail of node `id`'s log.
    pub fn log_tail(&self, id: u64) -> String {
        self.nodes[&id].log_tail(LOG_LINES)
    }

    async fn wait_healthy(&mut self, id: u64) -> Result<(), NotServing> {
        let url = self.nodes[&id].url("/readyz");
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            if self.exited(id).await {
                // An armed node may reach its point while it starts (an
                // install it was in is finished at open): expected.
                let counted = self.crash_hits_counted.get(&id).copied().unwrap_or(0);
                if self.is_armed(id) && self.crash_hits_in_log(id) > counted {
                    return Ok(());
                }
                return Err(NotServing::Exited(format!(
                    "node {id} exited while starting\n{}",
                    self.log_tail(id)
                )));
            }
            let health = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if matches!(&health, Ok(response) if response.status() == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(NotServing::Slow(format!(
                    "node {id} did not answer /readyz within {RESTART_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Heals every fault: links healed, paused nodes resumed, crash
    /// points cleared, stopped nodes started; then waits until every node
    /// has applied the leader's whole log.
    pub async fn quiesce(&mut self) -> Result<(), NotServing> {
        self.network.heal();
        for id in self.ids() {
            self.resume(id);
            let armed = self.crash_armed.contains(&id);
            if !self.nodes[&id].is_running() || self.exited(id).await || armed {
                self.restart(id, None).await?;
            }
        }
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let leader = self.leader(remaining).await.map_err(NotServing::Slow)?;
            let target = self
                .status(leader)
                .await
                .and_then(|s| s["last_log_index"].as_u64());
            let mut applied = BTreeMap::new();
            for id in self.ids() {
                let index = self
                    .status(id)
                    .await
                    .and_then(|s| s["applied_index"].as_u64());
                applied.insert(id, index);
            }
            if target.is_some() && applied.values().all(|index| *index == target) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(NotServing::Slow(format!(
                    "the healed cluster did not converge within {QUIESCE_TIMEOUT:?}: leader {leader} at {target:?}, applied {applied:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `GET /v1/cluster` of node `id`, if it answers.
    async fn status(&self, id: u64) -> Option<Value> {
        let response = self
            .client
            .get(self.nodes[&id].url("/v1/cluster"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// Waits (at most `limit`) until every running node names the same
    /// leader and it says it leads.
    pub async fn leader(&self, limit: Duration) -> Result<u64, String> {
        self.leader_except(&[], limit).await
    }

    /// Waits (at most `limit`) until every running node but `except`
    /// names the same leader, one of them, and it says it leads.
    pub async fn leader_except(&self, except: &[u64], limit: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + limit;
        loop {
            let mut named = BTreeMap::new();
            for (id, node) in &self.nodes {
                if node.is_running() && !except.contains(id) {
                    let status = self.status(*id).await;
                    named.insert(*id, status.and_then(|s| s["leader"].as_u64()));
                }
            }
            let first = named.values().next().copied().flatten();
            let agreed = first.filter(|leader| {
                named.values().all(|id| *id == first) && named.contains_key(leader)
            });
            if let Some(leader) = agreed {
                let state = self.status(leader).await.map(|s| s["state"].clone());
                if state.is_some_and(|state| state == "Leader") {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no agreed leader within {limit:?}: {named:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Puts `entries` keys `chaos-fill/<n>` through node `id` (8 at a
    /// time, each its own Raft entry), so the log moves past snapshots and
    /// purges; returns how many were acknowledged. Bounded by
    /// [`FILL_TIMEOUT`].
    pub async fn fill_log(&self, id: u64, entries: usize) -> usize {
        let url = self.url(id);
        let puts = (0..entries).map(|n| {
            let request = self
                .client
                .put(format!("{url}/v1/kv/chaos-fill/{n}"))
                .json(&n)
                .send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        });
        let acked = futures::stream::iter(puts)
            .buffer_unordered(FILL_CONCURRENCY)
            .filter(|acked| std::future::ready(*acked))
            .count();
        tokio::time::timeout(FILL_TIMEOUT, acked).await.unwrap_or(0)
    }

    /// Writes enough through the leader of the others to pass two
    /// snapshots, kills that leader, heals the links, and starts it again
    /// once the others elect a new one; returns the leader it killed
    /// (`None` when the others had none). A leader keeps the log a lagging
    /// follower still needs and would send it the moment the links heal;
    /// the new leader has purged its own up to its last snapshot, so it
    /// catches `behind` (cut off until now) up by a snapshot install.
    pub async fn replace_leader(&mut self, behind: u64) -> Result<Option<u64>, NotServing> {
        let Ok(leader) = self.leader_except(&[behind], LEADER_WAIT).await else {
            self.network.heal();
            return Ok(None);
        };
        self.fill_log(leader, FILL_ENTRIES).await;
        self.kill9(leader).await;
        self.network.heal();
        // Bounded: the old leader starts again whether or not one was elected.
        let _ = self.leader_except(&[leader], LEADER_WAIT).await;
        self.restart(leader, None).await.map(|()| Some(leader))
    }

    /// Node `id`'s client API base URL.
    pub fn url(&self, id: u64) -> String {
        self.nodes[&id].base_url()
    }
}
