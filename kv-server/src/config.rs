//! The server's configuration: command-line flags, each with a `KV_*`
//! environment variable and a default that runs one node with no setup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::types::NodeId;

/// One node of openmessaging-kv.
#[derive(Clone, Debug, Parser)]
#[command(name = "kv-server", version, about)]
pub struct Cli {
    /// What to do; with none, serve.
    #[command(subcommand)]
    pub command: Option<CliCommand>,
    /// How to serve.
    #[command(flatten)]
    pub config: Config,
}

/// Offline commands.
#[derive(Clone, Debug, Subcommand)]
pub enum CliCommand {
    /// Rebuild the materialized view from the compacted topic, then exit.
    Rebuild {
        /// The node's data directory.
        #[arg(long, env = "KV_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

/// How a node runs.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// This node's id in the cluster.
    #[arg(long, env = "KV_NODE_ID", default_value_t = 1)]
    pub node_id: NodeId,

    /// Address the HTTP API (and the node-to-node Raft RPC under /raft/) listens on.
    #[arg(long, env = "KV_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// URL other nodes and forwarded requests use to reach this node
    /// [default: http://<listen>].
    #[arg(long, env = "KV_ADVERTISE")]
    pub advertise: Option<String>,

    /// Directory for the raft log, the compacted topic, the view and snapshots.
    #[arg(long, env = "KV_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// A fixed initial cluster, `id=url,…`; the lowest id initializes it once.
    /// Without it (and without --join) the node forms a cluster of its own.
    #[arg(long, env = "KV_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// Join an existing cluster through any of its members (URL).
    #[arg(long, env = "KV_JOIN")]
    pub join: Option<String>,

    /// Largest value accepted by PUT, in bytes.
    #[arg(long, env = "KV_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,

    /// Longest long-poll `wait`, in milliseconds.
    #[arg(long, env = "KV_MAX_WAIT_MS", default_value_t = 5 * 60 * 1000)]
    pub max_wait_ms: u64,

    /// Requests served at once before new ones are refused with 503.
    #[arg(long, env = "KV_MAX_CONCURRENT_REQUESTS", default_value_t = 20_000)]
    pub max_concurrent_requests: usize,

    /// Time limit of a request that is not a long-poll, in milliseconds.
    #[arg(long, env = "KV_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Raft log entries applied between two snapshots.
    #[arg(long, env = "KV_SNAPSHOT_EVERY", default_value_t = 50_000)]
    pub snapshot_every: u64,

    /// Raft log entries kept behind a snapshot, so a follower that lags by
    /// fewer catches up from the log instead of by a snapshot.
    #[arg(long, env = "KV_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5_000)]
    pub snapshot_catchup_entries: u64,

    /// Milliseconds between the leader's heartbeats.
    #[arg(long, env = "KV_HEARTBEAT_MS", default_value_t = 100)]
    pub heartbeat_ms: u64,

    /// A follower that hears no leader for this long (ms, randomized up to
    /// twice as long) starts an election.
    #[arg(long, env = "KV_ELECTION_TIMEOUT_MS", default_value_t = 500)]
    pub election_timeout_ms: u64,

    /// Bytes at which the topic's active segment rolls.
    #[arg(long, env = "KV_SEGMENT_BYTES", default_value_t = 64 << 20)]
    pub segment_bytes: u64,

    /// Milliseconds after which the topic's active segment rolls, so the
    /// cleaner can compact it.
    #[arg(long, env = "KV_SEGMENT_MS", default_value_t = 60 * 60 * 1000)]
    pub segment_ms: u64,

    /// Milliseconds between background cleaner checks.
    #[arg(long, env = "KV_CLEANER_INTERVAL_MS", default_value_t = 15_000)]
    pub cleaner_interval_ms: u64,

    /// A record is compacted only this long after it was written (ms); at
    /// least the idempotency window, so a rebuilt node dedupes like the others.
    #[arg(long, env = "KV_MIN_COMPACTION_LAG_MS", default_value_t = 15 * 60 * 1000)]
    pub min_compaction_lag_ms: u64,

    /// How long a tombstone stays after it became clean (ms).
    #[arg(long, env = "KV_DELETE_RETENTION_MS", default_value_t = 24 * 60 * 60 * 1000)]
    pub delete_retention_ms: u64,
}

impl Config {
    /// The URL this node is reached at: `--advertise`, else this node's
    /// entry in `--peers`, else `http://<listen>`.
    pub fn advertise_url(&self) -> String {
        let from_peers = || {
            self.peer_map()
                .ok()
                .and_then(|peers| peers.get(&self.node_id).cloned())
        };
        self.advertise
            .clone()
            .or_else(from_peers)
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// `--peers` as id → URL, checked: every entry is `id=http://…`, ids
    /// are unique and this node is one of them.
    pub fn peer_map(&self) -> Result<BTreeMap<NodeId, String>, String> {
        let mut peers = BTreeMap::new();
        for entry in &self.peers {
            let entry = entry.trim();
            let (id, url) = entry
                .split_once('=')
                .ok_or_else(|| format!("--peers entry {entry:?} is not id=url"))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| format!("--peers entry {entry:?}: {id:?} is not a node id"))?;
            let url = check_node_url(url.trim())
                .map_err(|why| format!("--peers entry {entry:?}: {why}"))?;
            if peers.insert(id, url).is_some() {
                return Err(format!("--peers names node {id} twice"));
            }
        }
        if !peers.is_empty() && !peers.contains_key(&self.node_id) {
            return Err(format!(
                "--peers does not name this node (--node-id {})",
                self.node_id
            ));
        }
        Ok(peers)
    }

    /// The topic's configuration.
    pub fn topic_config(&self) -> compaction::TopicConfig {
        compaction::TopicConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            delete_retention_ms: self.delete_retention_ms,
            ..compaction::TopicConfig::default()
        }
    }
}

/// Checks a node's base URL (`http://host:port`, no path) and returns it
/// without a trailing slash.
pub fn check_node_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!("{url:?} must be http://host:port with no path"));
    }
    Ok(format!("http://{authority}"))
}
