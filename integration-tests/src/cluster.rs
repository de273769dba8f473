//! Several `kv-server` processes forming one cluster on loopback, and the
//! tools the failure scenarios use: find the leader, wait for convergence,
//! join and remove nodes, and the state of a node folded from its replay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use schemas::api::{ClusterStatus, Member};

use crate::server::free_ports;
use crate::TestServer;

/// How long a cluster may take to agree on a leader, or to converge.
pub(crate) const AGREE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to catch up after a restart or a join (a
/// snapshot of many keys is built, sent and installed in a debug build).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between two polls of a condition.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// Time limit of one request of the harness.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A cluster of `kv-server` processes, node ids 1…n, each with its own port
/// and data directory. Dropping it kills every process.
pub struct TestCluster {
    nodes: BTreeMap<u64, TestServer>,
    /// Flags every node gets, kept for nodes added later.
    extra_args: Vec<String>,
    client: reqwest::Client,
    /// How the harness reaches the nodes over TLS, kept for nodes added
    /// later; plain HTTP without it.
    tls: Option<crate::HarnessTls>,
}

impl TestCluster {
    /// Starts `size` nodes with `--peers` naming all of them (plus
    /// `extra_args` on each) and waits until every node knows the leader.
    pub async fn start(size: u64, extra_args: &[&str]) -> TestCluster {
        TestCluster::start_inner(size, extra_args, None, &mut |_, _| None, &mut |_, _, _| {}).await
    }

    /// Starts `size` nodes as [`TestCluster::start`] does, after
    /// `prepare(id, data_dir, peers)` laid down each node's data directory
    /// (`peers` is the `--peers` value).
    pub async fn start_prepared(
        size: u64,
        extra_args: &[&str],
        prepare: &mut dyn FnMut(u64, &std::path::Path, &str),
    ) -> TestCluster {
        TestCluster::start_inner(size, extra_args, None, &mut |_, _| None, prepare).await
    }

    /// Starts `size` nodes as [`TestCluster::start`] does, except that
    /// where `route(id, peer_port)` gives a URL, `--peers` names node `id`
    /// by it (a proxy in front of its peer port, say).
    pub async fn start_routed(
        size: u64,
        extra_args: &[&str],
        route: &mut dyn FnMut(u64, u16) -> Option<String>,
    ) -> TestCluster {
        TestCluster::start_inner(size, extra_args, None, route, &mut |_, _, _| {}).await
    }

    /// Three nodes as [`TestCluster::start`] starts them with `extra_args`
    /// and a 3 s election timeout, the others reaching node 3's peer port
    /// through a [`crate::CuttingProxy`], and a leader other than node 3:
    /// `proxy.slow_to(1)` then keeps node 3 from hearing the leader (it
    /// applies nothing more) while it can still pass requests on to it.
    /// Gives the cluster, the proxy and the leader.
    pub async fn start_with_a_follower_behind_a_proxy(
        extra_args: &[&str],
    ) -> (TestCluster, crate::CuttingProxy, u64) {
        const BEHIND: u64 = 3;
        let mut args = vec!["--election-timeout-ms", "3000"];
        args.extend_from_slice(extra_args);
        let mut proxy = None;
        let mut cluster = TestCluster::start_routed(3, &args, &mut |id, peer_port| {
            (id == BEHIND).then(|| {
                let started = crate::CuttingProxy::start(([127, 0, 0, 1], peer_port).into());
                let url = started.url();
                proxy = Some(started);
                url
            })
        })
        .await;
        let proxy = proxy.expect("node 3 was routed through the proxy");
        if cluster.leader().await == BEHIND {
            cluster.node_mut(BEHIND).stop().await;
            cluster.leader_among(&[BEHIND]).await;
            cluster.node_mut(BEHIND).restart().await;
        }
        let leader = cluster.leader_among(&[BEHIND]).await;
        (cluster, proxy, leader)
    }

    /// Starts `size` nodes as [`TestCluster::start`] does, whose ports
    /// speak TLS as `tls` says (`extra_args` hold the nodes' TLS flags);
    /// the `--peers` URLs and the harness's clients follow it.
    pub async fn start_tls(size: u64, extra_args: &[&str], tls: crate::HarnessTls) -> TestCluster {
        TestCluster::start_inner(
            size,
            extra_args,
            Some(tls),
            &mut |_, _| None,
            &mut |_, _, _| {},
        )
        .await
    }

    async fn start_inner(
        size: u64,
        extra_args: &[&str],
        tls: Option<crate::HarnessTls>,
        route: &mut dyn FnMut(u64, u16) -> Option<String>,
        prepare: &mut dyn FnMut(u64, &std::path::Path, &str),
    ) -> TestCluster {
        let ports = free_ports(2 * size as usize);
        let ports: Vec<(u16, u16)> = ports.chunks(2).map(|pair| (pair[0], pair[1])).collect();
        let peer_scheme = tls.as_ref().map_or("http", |tls| tls.peer_scheme());
        let peers = (1..=size)
            .zip(&ports)
            .map(|(id, (_, peer_port))| match route(id, *peer_port) {
                Some(url) => format!("{id}={url}"),
                None => format!("{id}={peer_scheme}://127.0.0.1:{peer_port}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = BTreeMap::new();
        for (id, (port, peer_port)) in (1..=size).zip(&ports) {
            let mut args: Vec<&str> = extra_args.to_vec();
            args.extend(["--peers", &peers]);
            let mut node = TestServer::unstarted(id, *port, *peer_port, &args);
            if let Some(tls) = &tls {
                node.set_tls(tls.clone());
            }
            prepare(id, &node.data_dir(), &peers);
            node.spawn();
            nodes.insert(id, node);
        }
        for node in nodes.values_mut() {
            node.wait_ready().await;
        }
        let cluster = TestCluster {
            nodes,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            client: crate::tls::harness_client(tls.as_ref(), REQUEST_TIMEOUT),
            tls,
        };
        cluster.leader().await;
        cluster
    }

    /// Node `id`.
    pub fn node(&self, id: u64) -> &TestServer {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node `id`, to kill, pause or restart it.
    pub fn node_mut(&mut self, id: u64) -> &mut TestServer {
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// The ids of every node the harness started (running or not).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The ids of every node but `id` (the followers of a leader `id`).
    pub fn ids_but(&self, id: u64) -> Vec<u64> {
        self.nodes
            .keys()
            .copied()
            .filter(|other| *other != id)
            .collect()
    }

    /// The base URLs of the running nodes.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| node.is_running())
            .map(TestServer::base_url)
            .collect()
    }

    /// `GET /v1/cluster` of node `id`, if it answers. With `--auth` it is
    /// asked on the peer port, which wants no token (as the nodes ask
    /// each other), so a cluster is watched before it has any token.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let node = self.node(id);
        let url = if self.extra_args.iter().any(|arg| arg == "--auth") {
            format!("{}/v1/cluster", node.peer_url())
        } else {
            node.url("/v1/cluster")
        };
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The members as node `id` reports them.
    pub async fn members(&self, id: u64) -> Vec<Member> {
        let status = self.status(id).await.expect("the node answers /v1/cluster");
        let status: ClusterStatus =
            serde_json::from_value(status).expect("/v1/cluster answers a ClusterStatus");
        status.members
    }

    /// Waits until one running node says it leads and every running node
    /// names it, skipping `except` (a paused node); returns its id.
    pub async fn leader_among(&self, except: &[u64]) -> u64 {
        let deadline = Instant::now() + AGREE_TIMEOUT;
        loop {
            if let Some(leader) = self.agreed_leader(except).await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "the running nodes did not agree on a leader within {AGREE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the running nodes agree on a leader; returns its id.
    pub async fn leader(&self) -> u64 {
        self.leader_among(&[]).await
    }

    /// A member other than `leader` (the first by id).
    pub fn follower_of(&self, leader: u64) -> u64 {
        self.ids()
            .into_iter()
            .find(|id| *id != leader)
            .expect("a cluster of more than one node")
    }

    async fn agreed_leader(&self, except: &[u64]) -> Option<u64> {
        let mut agreed = None;
        for (id, node) in &self.nodes {
            if !node.is_running() || except.contains(id) {
                continue;
            }
            let status = self.status(*id).await?;
            let leader = status["leader"].as_u64()?;
            if agreed.is_some_and(|agreed| agreed != leader) {
                return None;
            }
            agreed = Some(leader);
        }
        let leader = agreed?;
        let status = self.status(leader).await?;
        (status["state"] == "Leader").then_some(leader)
    }

    /// Waits until every running node (but `except`) has applied all the
    /// leader has: the same applied index as the leader's last log index.
    pub async fn wait_converged_except(&self, except: &[u64]) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        let mut last_seen = BTreeMap::new();
        loop {
            let leader = self.leader_among(except).await;
            let target = self
                .status(leader)
                .await
                .and_then(|status| status["last_log_index"].as_u64());
            let mut all = target.is_some();
            for (id, node) in &self.nodes {
                if !node.is_running() || except.contains(id) {
                    continue;
                }
                let applied = self
                    .status(*id)
                    .await
                    .and_then(|status| status["applied_index"].as_u64());
                last_seen.insert(*id, applied);
                all &= applied.is_some() && applied == target;
            }
            if all {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not converge within {CONVERGE_TIMEOUT:?}: leader {leader} at {target:?}, applied {last_seen:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running node has applied all the leader has.
    pub async fn wait_converged(&self) {
        self.wait_converged_except(&[]).await
    }

    /// Starts node `id` with `--join` through node `via`, waits until it is
    /// ready and the leader lists it as a voter.
    pub async fn join(&mut self, id: u64, via: u64) {
        self.join_as(id, via, true).await
    }

    /// [`TestCluster::join`] as a voter, or with `--learner` as a learner
    /// (then waits until the leader lists it as one).
    pub async fn join_as(&mut self, id: u64, via: u64, voter: bool) {
        let via_url = self.node(via).peer_url();
        let [port, peer_port] = free_ports(2)[..] else {
            unreachable!("two ports were asked for")
        };
        let mut args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
        args.extend(["--join", &via_url]);
        if !voter {
            args.push("--learner");
        }
        let mut node = TestServer::unstarted(id, port, peer_port, &args);
        if let Some(tls) = &self.tls {
            node.set_tls(tls.clone());
        }
        node.spawn();
        node.wait_ready().await;
        self.nodes.insert(id, node);
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let leader = self.leader().await;
            let joined = self
                .members(leader)
                .await
                .iter()
                .any(|member| member.id == id && member.voter == voter);
            if joined {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} was not listed as a {} within {CONVERGE_TIMEOUT:?}",
                if voter { "voter" } else { "learner" }
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes node `id` from the cluster through node `via` (any member),
    /// retrying while the cluster is busy, then stops its process.
    pub async fn remove(&mut self, id: u64, via: u64) {
        let deadline = Instant::now() + AGREE_TIMEOUT;
        loop {
            let response = self
                .client
                .delete(self.node(via).url(&format!("/v1/cluster/members/{id}")))
                .send()
                .await;
            match response {
                Ok(response) if response.status().is_success() => break,
                Ok(response) if response.status() == 404 => break,
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    assert!(
                        status == 503 || status == 409,
                        "removing node {id} failed: {status} {body}"
                    );
                }
                Err(error) => panic!("removing node {id}: {error}"),
            }
            assert!(
                Instant::now() < deadline,
                "node {id} was not removed within {AGREE_TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
        let node = self.node_mut(id);
        if node.is_running() {
            node.kill9().await;
        }
        self.nodes.remove(&id);
    }

    /// The state of node `id` folded from its replay: key → (value,
    /// mod_revision), deletes applied.
    pub async fn replayed_state(&self, id: u64) -> BTreeMap<String, (Value, u64)> {
        self.replayed_state_at(id, u64::MAX).await
    }

    /// [`TestCluster::replayed_state`] as of `revision`: the records after
    /// it left out.
    pub async fn replayed_state_at(
        &self,
        id: u64,
        revision: u64,
    ) -> BTreeMap<String, (Value, u64)> {
        let body = self
            .client
            .get(self.node(id).url("/v1/topic/records?from=0"))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("replay answers")
            .text()
            .await
            .expect("replay body reads");
        let mut state = BTreeMap::new();
        for line in body.lines() {
            let record: Value = serde_json::from_str(line).expect("one JSON record per line");
            let key = record["key"]
                .as_str()
                .expect("a record has a key")
                .to_string();
            let offset = record["offset"].as_u64().expect("a record has an offset");
            if offset > revision {
                break;
            }
            match &record["value"] {
                Value::Null => {
                    state.remove(&key);
                }
                value => {
                    state.insert(key, (value.clone(), offset));
                }
            }
        }
        state
    }

    /// Every key under `prefix` on node `id` with its value, read from the
    /// node's own view (`consistency=stale`), page by page.
    pub async fn keys(&self, id: u64, prefix: &str) -> BTreeMap<String, Value> {
        let mut keys = BTreeMap::new();
        let mut start_after: Option<String> = None;
        for _page in 0..1_000 {
            let mut url = format!("/v1/kv?prefix={prefix}&limit=10000&consistency=stale");
            if let Some(after) = &start_after {
                url.push_str(&format!("&start_after={after}"));
            }
            let page: Value = self
                .client
                .get(self.node(id).url(&url))
                .send()
                .await
                .expect("list answers")
                .json()
                .await
                .expect("a list page is JSON");
            let entries = page["entries"].as_array().expect("entries");
            for entry in entries {
                let key = entry["key"].as_str().expect("key").to_string();
                keys.insert(key, entry["value"].clone());
            }
            start_after = entries
                .last()
                .and_then(|entry| entry["key"].as_str())
                .map(str::to_string);
            if page["more"] != json!(true) {
                return keys;
            }
        }
        panic!("more than 1,000 pages under {prefix}");
    }
}
