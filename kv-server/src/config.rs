//! The server's configuration: command-line flags, each with a `KV_*`
//! environment variable and a default that runs one node with no setup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::types::NodeId;

/// The largest `--max-value-bytes`: a request body of that (and its 64 KiB
/// of slack), each value escaped in the entry's JSON, stays well within
/// the 64 MiB a raft log frame holds (`store::log_frame`).
pub const MAX_VALUE_BYTES_LIMIT: u64 = 16 << 20;

/// The largest record the topic takes: the largest value any node may
/// accept, its key and the record's fields. The same on every node, whatever
/// its `--max-value-bytes`: a record refused at apply would stop every
/// node that applies it.
const MAX_RECORD_BYTES: usize = MAX_VALUE_BYTES_LIMIT as usize + (1 << 20);

/// The topic's configuration where no flags set it (a restore, an offline
/// rebuild): compaction's defaults, with records as large as any node
/// writes.
pub fn topic_defaults() -> compaction::TopicConfig {
    compaction::TopicConfig {
        max_record_bytes: MAX_RECORD_BYTES,
        ..compaction::TopicConfig::default()
    }
}

/// One node of openmessaging-kv.
#[derive(Clone, Debug, Parser)]
#[command(name = "kv-server", version = crate::LONG_VERSION, about)]
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
    /// Lay down a member of a new cluster from a backup (`kvctl snapshot
    /// save`, `GET /v1/snapshot`), then exit: run it for every member, with
    /// the same file and `--peers`, then start them.
    Restore {
        /// The backup.
        #[arg(long)]
        from: PathBuf,
        /// The new member's data directory; must not exist, or be empty.
        #[arg(long)]
        data_dir: PathBuf,
        /// The new member's id.
        #[arg(long)]
        node_id: NodeId,
        /// The new cluster's members, `id=peer-url,…`, as `--peers` of
        /// `kv-server`; the same for every member.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<String>,
    },
    /// Print the man page (roff) to stdout, for `make man`.
    #[command(hide = true)]
    Man,
}

/// Where the name server listens: an address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamesrvListen(pub Option<SocketAddr>);

impl std::str::FromStr for NamesrvListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(NamesrvListen(None));
        }
        text.parse()
            .map(|addr| NamesrvListen(Some(addr)))
            .map_err(|_| format!("{text:?} is neither an address (host:port) nor `off`"))
    }
}

impl std::fmt::Display for NamesrvListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

/// How a node runs.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// This node's id in the cluster (at most 2^53 − 1, so that every JSON
    /// client reads it exactly).
    #[arg(long, env = "KV_NODE_ID", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(..=schemas::api::MAX_NODE_ID))]
    pub node_id: NodeId,

    /// Address the client API listens on.
    #[arg(long, env = "KV_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,

    /// URL clients are told to reach this node at (leader hints, cluster
    /// status) [default: http://<listen>].
    #[arg(long, env = "KV_ADVERTISE", value_parser = check_node_url)]
    pub advertise: Option<String>,

    /// Address the peer port listens on: Raft RPC, forwarded writes, read
    /// index and joins, for the other nodes only [default: the --listen
    /// address with its port + 100, e.g. 127.0.0.1:7170].
    #[arg(long, env = "KV_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,

    /// Address the RocketMQ name server (remoting protocol) listens on, or
    /// `off` for none.
    #[arg(long, env = "KV_NAMESRV_LISTEN", default_value = "127.0.0.1:9876")]
    pub namesrv_listen: NamesrvListen,

    /// Seconds a broker's registration lives without a heartbeat
    /// (RocketMQ's BROKER_CHANNEL_EXPIRED_TIME); a lease's range, 5 to
    /// 86,400.
    #[arg(long, env = "KV_NAMESRV_BROKER_TTL_S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub namesrv_broker_ttl_s: u64,

    /// Seconds a name-server connection may neither send a request nor
    /// wait for an answer (nor take one) before it is closed (RocketMQ's
    /// serverChannelMaxIdleTimeSeconds).
    #[arg(long, env = "KV_NAMESRV_IDLE_TIMEOUT_S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub namesrv_idle_timeout_s: u64,

    /// URL other nodes reach this node's peer port at [default: this
    /// node's entry in --peers, else http://<peer-listen>].
    #[arg(long, env = "KV_PEER_ADVERTISE", value_parser = check_node_url)]
    pub peer_advertise: Option<String>,

    /// PEM certificate chain of the client port; with --tls-key, the client
    /// port speaks HTTPS only.
    #[arg(long, env = "KV_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "KV_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates; with it the client port requires a client
    /// certificate signed by one of them.
    #[arg(long, env = "KV_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// PEM certificate chain of the peer port, which then speaks mutual
    /// TLS; also this node's identity when it calls the other nodes.
    #[arg(long, env = "KV_PEER_TLS_CERT", value_name = "FILE")]
    pub peer_tls_cert: Option<PathBuf>,

    /// PEM private key of --peer-tls-cert.
    #[arg(long, env = "KV_PEER_TLS_KEY", value_name = "FILE")]
    pub peer_tls_key: Option<PathBuf>,

    /// PEM CA certificates the nodes' peer certificates are signed by: the
    /// only ones trusted, both for nodes calling this one and for the nodes
    /// this one calls.
    #[arg(long, env = "KV_PEER_TLS_CA", value_name = "FILE")]
    pub peer_tls_ca: Option<PathBuf>,

    /// Directory for the raft log, the compacted topic, the view and snapshots.
    #[arg(long, env = "KV_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Require a token (`Authorization: Bearer`) on the client port for
    /// every route but /healthz, /readyz, /metrics, the console's files
    /// (/ui/) and /v1/acl/bootstrap;
    /// give it to every node of the cluster. `--auth` alone is `--auth
    /// true`.
    #[arg(long, env = "KV_AUTH", action = clap::ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    pub auth: bool,

    /// A fixed initial cluster, `id=peer-url,…` (each node's peer port);
    /// the lowest id initializes it once. Without it (and without --join)
    /// the node forms a cluster of its own.
    #[arg(long, env = "KV_PEERS", value_delimiter = ',', value_parser = check_peer_entry)]
    pub peers: Vec<String>,

    /// Join an existing cluster through any of its members (its peer URL).
    #[arg(long, env = "KV_JOIN", value_parser = check_node_url)]
    pub join: Option<String>,

    /// With --join: join as a learner, which serves reads and watches and
    /// takes no part in quorums, and stay one (promote it by the API).
    /// Kept with --join for restarts. `--learner` alone is `--learner true`.
    #[arg(long, env = "KV_LEARNER", action = clap::ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub learner: bool,

    /// Largest value accepted by PUT, in bytes: at most 16 MiB, since a raft
    /// log entry holds its values as escaped JSON strings (up to twice
    /// their bytes) and a log frame at most 64 MiB.
    #[arg(long, env = "KV_MAX_VALUE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=MAX_VALUE_BYTES_LIMIT))]
    pub max_value_bytes: usize,

    /// Bytes of values one page of a list or of the change feed holds at
    /// most; a page stops before the entry that would pass it (its first
    /// entry is always taken) and says `more`.
    #[arg(long, env = "KV_MAX_PAGE_BYTES", default_value_t = 4 << 20)]
    pub max_page_bytes: usize,

    /// Longest long-poll `wait`, in milliseconds.
    #[arg(long, env = "KV_MAX_WAIT_MS", default_value_t = 5 * 60 * 1000)]
    pub max_wait_ms: u64,

    /// Long-polls (watches of a key or prefix, waiting change-feed reads)
    /// waiting at once; one more that would wait is refused with 503.
    /// Below --max-concurrent-requests, so watchers leave room for others.
    #[arg(long, env = "KV_MAX_LONG_POLLS", default_value_t = 15_000)]
    pub max_long_polls: usize,

    /// Long-polls one connection may have waiting at once; one more on it
    /// is refused with 503. Below --max-http2-streams, so a connection full
    /// of watchers keeps streams for its other requests.
    #[arg(long, env = "KV_MAX_LONG_POLLS_PER_CONNECTION", default_value_t = 900,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_long_polls_per_connection: u32,

    /// Leases that may exist at once; a grant beyond them is refused with
    /// 429 `lease_limit`.
    #[arg(long, env = "KV_MAX_LEASES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_leases: u64,

    /// Lease expiries the leader proposes per second at most: leases that
    /// all come due at once (after a leader change) end spread over time.
    #[arg(long, env = "KV_LEASE_EXPIRIES_PER_SEC", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub lease_expiries_per_sec: u32,

    /// Requests served at once before new ones are refused with 503.
    #[arg(long, env = "KV_MAX_CONCURRENT_REQUESTS", default_value_t = 20_000,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_concurrent_requests: usize,

    /// Connections the listener keeps open at once; beyond it, new ones
    /// wait (in the kernel's backlog) until one closes.
    #[arg(long, env = "KV_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Concurrent HTTP/2 streams one connection may carry; a client waits
    /// for one of its streams to end before it opens another.
    #[arg(long, env = "KV_MAX_HTTP2_STREAMS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_http2_streams: u32,

    /// Milliseconds a streamed answer (a replay) or a connection's writes
    /// may make no progress before the stream or connection is closed.
    #[arg(long, env = "KV_STREAM_IDLE_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub stream_idle_timeout_ms: u64,

    /// Time limit of a request that is not a long-poll, in milliseconds;
    /// also how long a request's body may send nothing before it is refused.
    #[arg(long, env = "KV_REQUEST_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub request_timeout_ms: u64,

    /// Bytes the writes this node proposes may hold until Raft is done
    /// with them; a write finding no room within 2 s gets 503.
    #[arg(long, env = "KV_MAX_PENDING_WRITE_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pending_write_bytes: u64,

    /// Bytes the node's topic and raft log entries may hold (0: no
    /// quota). Past it the node raises the cluster's NOSPACE alarm: writes
    /// that add data get 507 until space is won back and the alarm
    /// disarmed.
    #[arg(long, env = "KV_QUOTA_BYTES", default_value_t = 2 << 30)]
    pub quota_bytes: u64,

    /// Bytes that must stay free on the data directory's file system (0:
    /// no floor). Below it the node raises the NOSPACE alarm, as past
    /// `--quota-bytes`.
    #[arg(long, env = "KV_MIN_FREE_BYTES", default_value_t = 64 << 20)]
    pub min_free_bytes: u64,

    /// Bytes of a node-to-node Raft request body (a batch of log entries,
    /// a vote, a read index) read at most; a larger one is refused with 413.
    #[arg(long, env = "KV_MAX_RAFT_BODY_BYTES", default_value_t = 64 << 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_raft_body_bytes: usize,

    /// Bytes of a snapshot a leader sends read at most; a larger one is
    /// refused with 413, so a data set beyond it needs a larger setting.
    #[arg(long, env = "KV_MAX_SNAPSHOT_BYTES", default_value_t = 1 << 30,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_snapshot_bytes: usize,

    /// Milliseconds a node-to-node Raft request body (snapshots included)
    /// may take to arrive whole; a slower one is refused with 400.
    #[arg(long, env = "KV_RAFT_BODY_TIMEOUT_MS", default_value_t = 120_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub raft_body_timeout_ms: u64,

    /// Writes applied between two snapshots (a snapshot also comes after
    /// this many raft log entries, should entries come first).
    #[arg(long, env = "KV_SNAPSHOT_EVERY", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,

    /// Raft log entries kept behind a snapshot, so a follower that lags by
    /// fewer catches up from the log instead of by a snapshot.
    #[arg(long, env = "KV_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = 5_000)]
    pub snapshot_catchup_entries: u64,

    /// Milliseconds between the leader's heartbeats.
    #[arg(long, env = "KV_HEARTBEAT_MS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_ms: u64,

    /// A follower that hears no leader for this long (ms, randomized up to
    /// twice as long) starts an election.
    #[arg(long, env = "KV_ELECTION_TIMEOUT_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(50..))]
    pub election_timeout_ms: u64,

    /// Bytes of the view's page cache (sled's `cache_capacity`), the
    /// largest part of a node's memory once it holds many keys. Reads of
    /// keys outside it go to the disk.
    #[arg(long, env = "KV_VIEW_CACHE_BYTES", default_value_t = 1 << 30,
          value_parser = clap::value_parser!(u64).range(1 << 20..))]
    pub view_cache_bytes: u64,

    /// Bytes at which the topic's active segment rolls.
    #[arg(long, env = "KV_SEGMENT_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub segment_bytes: u64,

    /// Milliseconds after which the topic's active segment rolls, so the
    /// cleaner can compact it.
    #[arg(long, env = "KV_SEGMENT_MS", default_value_t = 60 * 60 * 1000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub segment_ms: u64,

    /// Milliseconds between background cleaner checks.
    #[arg(long, env = "KV_CLEANER_INTERVAL_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub cleaner_interval_ms: u64,

    /// A record is compacted only this long after it was written (ms); at
    /// least the idempotency window, so a rebuilt node dedupes like the others.
    #[arg(long, env = "KV_MIN_COMPACTION_LAG_MS", default_value_t = 15 * 60 * 1000)]
    pub min_compaction_lag_ms: u64,

    /// How long a tombstone stays after it became clean (ms).
    #[arg(long, env = "KV_DELETE_RETENTION_MS", default_value_t = 24 * 60 * 60 * 1000)]
    pub delete_retention_ms: u64,

    /// Takes a `--min-compaction-lag-ms` shorter than the idempotency
    /// window (for tests of the cleaner): a node rebuilt from its topic may
    /// then apply a retry the others dedupe. Alone it is `true`.
    #[arg(long, env = "KV_ALLOW_SHORT_COMPACTION_LAG", action = clap::ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub allow_short_compaction_lag: bool,

    /// Raft entries this node's write proposer keeps in flight at most,
    /// and requests its relay to the leader keeps out; writes arriving
    /// meanwhile wait and go together as the next entry. Unset: 2 entries
    /// while this node is the only voter, 1 while others vote, and 8
    /// relay requests.
    #[arg(long, env = "KV_MAX_PROPOSALS_IN_FLIGHT",
          value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_proposals_in_flight: Option<u64>,
    /// Serves `PUT /v1/bench/noop/{key}`, which reads the body and answers
    /// 204 through the same layers as `/v1/kv`: the HTTP ceiling of
    /// `make bench-compare`. Hidden: for benchmarking only.
    #[arg(long, env = "KV_BENCH_NOOP_ROUTE", hide = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub bench_noop_route: bool,
}

impl Config {
    /// Refuses an election timeout that is not above the heartbeat
    /// interval: a follower would stand for election between two of its
    /// leader's heartbeats.
    pub fn check_timers(&self) -> Result<(), String> {
        if self.election_timeout_ms <= self.heartbeat_ms {
            return Err(format!(
                "--election-timeout-ms {} must be above --heartbeat-ms {}: a follower would stand \
                 for election between two heartbeats (the defaults are 500 and 100)",
                self.election_timeout_ms, self.heartbeat_ms
            ));
        }
        Ok(())
    }

    /// Refuses `--learner` without `--join`: a node with an empty data
    /// directory and no `--join` forms a cluster of its own.
    pub fn check_learner(&self) -> Result<(), String> {
        if self.learner && self.join.is_none() {
            return Err(
                "--learner joins a cluster as a learner: give --join <a member's peer URL> \
                        too (keep both for restarts)"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// Refuses a `--min-compaction-lag-ms` shorter than the idempotency
    /// window (unless `--allow-short-compaction-lag`): the cleaner could
    /// drop a record whose idempotency key is still remembered, and a node
    /// rebuilt from its topic would then forget it where the others do not.
    pub fn check_compaction_lag(&self) -> Result<(), String> {
        let window_ms = crate::store::apply::IDEMPOTENCY_WINDOW_MS;
        if self.min_compaction_lag_ms < window_ms && !self.allow_short_compaction_lag {
            return Err(format!(
                "--min-compaction-lag-ms {} is shorter than the idempotency window of {window_ms} ms: \
                 a node rebuilt from its topic could apply a retry the others dedupe; \
                 give at least {window_ms} (or --allow-short-compaction-lag, for tests)",
                self.min_compaction_lag_ms
            ));
        }
        Ok(())
    }

    /// The URL clients reach this node at: `--advertise`, else
    /// `http://<listen>`.
    pub fn advertise_url(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| format!("{}://{}", self.client_scheme(), self.listen))
            .trim_end_matches('/')
            .to_string()
    }

    /// `https` when the client port speaks TLS (`--tls-cert`), else `http`.
    pub fn client_scheme(&self) -> &'static str {
        match self.tls_cert {
            Some(_) => "https",
            None => "http",
        }
    }

    /// `https` when the peer port speaks TLS (`--peer-tls-cert`), else `http`.
    pub fn peer_scheme(&self) -> &'static str {
        match self.peer_tls_cert {
            Some(_) => "https",
            None => "http",
        }
    }

    /// The peer port's address: `--peer-listen`, else the client
    /// address with its port + [`PEER_PORT_OFFSET`].
    pub fn peer_listen_addr(&self) -> Result<SocketAddr, String> {
        if let Some(addr) = self.peer_listen {
            return Ok(addr);
        }
        let port = self.listen.port().checked_add(PEER_PORT_OFFSET).ok_or_else(|| {
            format!(
                "--listen port {} leaves no room for the peer port (+{PEER_PORT_OFFSET}): give --peer-listen",
                self.listen.port()
            )
        })?;
        Ok(SocketAddr::new(self.listen.ip(), port))
    }

    /// The URL other nodes reach this node's peer port at:
    /// `--peer-advertise`, else this node's entry in `--peers`, else
    /// `http://<peer-listen>`.
    pub fn peer_advertise_url(&self) -> Result<String, String> {
        let from_peers = || {
            self.peer_map()
                .ok()
                .and_then(|peers| peers.get(&self.node_id).cloned())
        };
        let url = match self.peer_advertise.clone().or_else(from_peers) {
            Some(url) => url,
            None => format!("{}://{}", self.peer_scheme(), self.peer_listen_addr()?),
        };
        Ok(url.trim_end_matches('/').to_string())
    }

    /// `--peers` as id → URL, checked: every entry is `id=http://…`, ids
    /// are unique and this node is one of them.
    pub fn peer_map(&self) -> Result<BTreeMap<NodeId, String>, String> {
        parse_peers(&self.peers, self.node_id)
    }

    /// The topic's configuration.
    pub fn topic_config(&self) -> compaction::TopicConfig {
        compaction::TopicConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            delete_retention_ms: self.delete_retention_ms,
            ..topic_defaults()
        }
    }
}

/// `--peers` entries as id → URL, checked: every entry is `id=http://…`,
/// ids are unique and `node_id` is one of them.
pub fn parse_peers(
    entries: &[String],
    node_id: NodeId,
) -> Result<BTreeMap<NodeId, String>, String> {
    let mut peers: BTreeMap<NodeId, String> = BTreeMap::new();
    for entry in entries {
        let (id, url) = peer_entry(entry).map_err(|why| format!("--peers entry {why}"))?;
        if let Some((other, _)) = peers
            .iter()
            .find(|(_, other)| other.eq_ignore_ascii_case(&url))
        {
            return Err(format!(
                "--peers names {url} for nodes {other} and {id}: each node needs its own"
            ));
        }
        if peers.insert(id, url).is_some() {
            return Err(format!("--peers names node {id} twice"));
        }
    }
    if !peers.is_empty() && !peers.contains_key(&node_id) {
        return Err(format!(
            "--peers does not name this node (--node-id {})",
            node_id
        ));
    }
    Ok(peers)
}

/// One `--peers` entry as clap parses it: `id=url` with a node id and a
/// node URL (whether the ids are unique and name this node is checked
/// with the whole list, by [`parse_peers`]).
fn check_peer_entry(entry: &str) -> Result<String, String> {
    let (id, url) = peer_entry(entry)?;
    Ok(format!("{id}={url}"))
}

/// A `--peers` entry's node id and URL, or why it is neither.
fn peer_entry(entry: &str) -> Result<(NodeId, String), String> {
    let entry = entry.trim();
    let (id, url) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not id=url"))?;
    let id: NodeId = id
        .trim()
        .parse()
        .ok()
        .filter(|id| *id <= schemas::api::MAX_NODE_ID)
        .ok_or_else(|| {
            format!(
                "{entry:?}: {id:?} is not a node id (0 to {})",
                schemas::api::MAX_NODE_ID
            )
        })?;
    let url = check_node_url(url.trim()).map_err(|why| format!("{entry:?}: {why}"))?;
    Ok((id, url))
}

/// How far above the client port the peer port is by default.
pub const PEER_PORT_OFFSET: u16 = 100;

/// Checks a node's base URL (`http://host:port` or `https://host:port`: a
/// URL the peers can call, with no path, user, query or fragment) and
/// returns it without a trailing slash.
pub fn check_node_url(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .strip_prefix("http://")
        .map(|rest| ("http", rest))
        .or_else(|| url.strip_prefix("https://").map(|rest| ("https", rest)))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let authority = rest.trim_end_matches('/');
    let only =
        || format!("{url:?} must be {scheme}://host:port with no path, user, query or fragment");
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(only());
    }
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("{url:?} is not a URL: {error}"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(only());
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    //! Each flag, its `KV_*` variable and its default, as tables; then the
    //! checks `--peers`, `--advertise` and `--join` go through.

    use std::process::Command;

    use clap::error::ErrorKind;
    use clap::Parser;

    use super::{check_node_url, Cli, CliCommand, Config};

    /// Every flag with its default, as [`fields`] shows it.
    const DEFAULTS: &[(&str, &str)] = &[
        ("--node-id", "1"),
        ("--listen", "127.0.0.1:7070"),
        ("--advertise", "None"),
        ("--peer-listen", "None"),
        ("--namesrv-listen", "127.0.0.1:9876"),
        ("--namesrv-broker-ttl-s", "120"),
        ("--namesrv-idle-timeout-s", "120"),
        ("--peer-advertise", "None"),
        ("--tls-cert", "None"),
        ("--tls-key", "None"),
        ("--tls-client-ca", "None"),
        ("--peer-tls-cert", "None"),
        ("--peer-tls-key", "None"),
        ("--peer-tls-ca", "None"),
        ("--data-dir", "./data"),
        ("--auth", "false"),
        ("--peers", "[]"),
        ("--join", "None"),
        ("--learner", "false"),
        ("--max-value-bytes", "1048576"),
        ("--max-page-bytes", "4194304"),
        ("--max-wait-ms", "300000"),
        ("--max-long-polls", "15000"),
        ("--max-long-polls-per-connection", "900"),
        ("--max-leases", "100000"),
        ("--lease-expiries-per-sec", "1000"),
        ("--max-concurrent-requests", "20000"),
        ("--max-connections", "10000"),
        ("--max-http2-streams", "1000"),
        ("--stream-idle-timeout-ms", "30000"),
        ("--request-timeout-ms", "10000"),
        ("--max-pending-write-bytes", "67108864"),
        ("--quota-bytes", "2147483648"),
        ("--min-free-bytes", "67108864"),
        ("--max-raft-body-bytes", "67108864"),
        ("--max-snapshot-bytes", "1073741824"),
        ("--raft-body-timeout-ms", "120000"),
        ("--snapshot-every", "50000"),
        ("--snapshot-catchup-entries", "5000"),
        ("--heartbeat-ms", "100"),
        ("--election-timeout-ms", "500"),
        ("--view-cache-bytes", "1073741824"),
        ("--segment-bytes", "67108864"),
        ("--segment-ms", "3600000"),
        ("--cleaner-interval-ms", "15000"),
        ("--min-compaction-lag-ms", "900000"),
        ("--delete-retention-ms", "86400000"),
        ("--allow-short-compaction-lag", "false"),
        ("--max-proposals-in-flight", "None"),
        ("--bench-noop-route", "false"),
    ];

    /// Every flag given once: (flag, value, the field as [`fields`] shows it).
    const GIVEN: &[(&str, &str, &str)] = &[
        ("--node-id", "7", "7"),
        ("--listen", "0.0.0.0:8080", "0.0.0.0:8080"),
        (
            "--advertise",
            "http://kv-1:7070",
            r#"Some("http://kv-1:7070")"#,
        ),
        ("--peer-listen", "0.0.0.0:9090", "Some(0.0.0.0:9090)"),
        ("--namesrv-listen", "off", "off"),
        ("--namesrv-broker-ttl-s", "5", "5"),
        ("--namesrv-idle-timeout-s", "30", "30"),
        (
            "--peer-advertise",
            "http://kv-1:7170",
            r#"Some("http://kv-1:7170")"#,
        ),
        (
            "--tls-cert",
            "/etc/kv/tls.crt",
            r#"Some("/etc/kv/tls.crt")"#,
        ),
        ("--tls-key", "/etc/kv/tls.key", r#"Some("/etc/kv/tls.key")"#),
        (
            "--tls-client-ca",
            "/etc/kv/ca.crt",
            r#"Some("/etc/kv/ca.crt")"#,
        ),
        (
            "--peer-tls-cert",
            "/etc/kv/peer.crt",
            r#"Some("/etc/kv/peer.crt")"#,
        ),
        (
            "--peer-tls-key",
            "/etc/kv/peer.key",
            r#"Some("/etc/kv/peer.key")"#,
        ),
        (
            "--peer-tls-ca",
            "/etc/kv/peer-ca.crt",
            r#"Some("/etc/kv/peer-ca.crt")"#,
        ),
        ("--data-dir", "/var/lib/kv", "/var/lib/kv"),
        ("--auth", "true", "true"),
        (
            "--peers",
            "7=http://a:1,8=http://b:2",
            r#"["7=http://a:1", "8=http://b:2"]"#,
        ),
        ("--join", "http://a:1", r#"Some("http://a:1")"#),
        ("--learner", "true", "true"),
        ("--max-value-bytes", "4096", "4096"),
        ("--max-page-bytes", "65536", "65536"),
        ("--max-wait-ms", "1000", "1000"),
        ("--max-long-polls", "5", "5"),
        ("--max-long-polls-per-connection", "3", "3"),
        ("--max-leases", "10", "10"),
        ("--lease-expiries-per-sec", "7", "7"),
        ("--max-concurrent-requests", "10", "10"),
        ("--max-connections", "50", "50"),
        ("--max-http2-streams", "20", "20"),
        ("--stream-idle-timeout-ms", "700", "700"),
        ("--request-timeout-ms", "2500", "2500"),
        ("--max-pending-write-bytes", "4096", "4096"),
        ("--quota-bytes", "8000000", "8000000"),
        ("--min-free-bytes", "0", "0"),
        ("--max-raft-body-bytes", "1000", "1000"),
        ("--max-snapshot-bytes", "2000", "2000"),
        ("--raft-body-timeout-ms", "3000", "3000"),
        ("--snapshot-every", "200", "200"),
        ("--snapshot-catchup-entries", "10", "10"),
        ("--heartbeat-ms", "50", "50"),
        ("--election-timeout-ms", "300", "300"),
        ("--view-cache-bytes", "2097152", "2097152"),
        ("--segment-bytes", "1024", "1024"),
        ("--segment-ms", "60000", "60000"),
        ("--cleaner-interval-ms", "100", "100"),
        ("--min-compaction-lag-ms", "0", "0"),
        ("--delete-retention-ms", "5", "5"),
        ("--allow-short-compaction-lag", "true", "true"),
        ("--max-proposals-in-flight", "4", "Some(4)"),
        ("--bench-noop-route", "true", "true"),
    ];

    /// Names the test run in a child process with the variables set.
    const ENV_CHILD_TEST: &str = "config::tests::every_kv_variable_sets_its_field_in_a_child";
    /// Set in that child only, so it checks nothing when run by hand.
    const ENV_CHILD_MARKER: &str = "KV_CONFIG_TEST_CHILD";

    /// Every field of `config`, keyed by its flag.
    fn fields(config: &Config) -> Vec<(&'static str, String)> {
        vec![
            ("--node-id", config.node_id.to_string()),
            ("--listen", config.listen.to_string()),
            ("--advertise", format!("{:?}", config.advertise)),
            ("--peer-listen", format!("{:?}", config.peer_listen)),
            ("--namesrv-listen", config.namesrv_listen.to_string()),
            (
                "--namesrv-broker-ttl-s",
                config.namesrv_broker_ttl_s.to_string(),
            ),
            (
                "--namesrv-idle-timeout-s",
                config.namesrv_idle_timeout_s.to_string(),
            ),
            ("--peer-advertise", format!("{:?}", config.peer_advertise)),
            ("--tls-cert", format!("{:?}", config.tls_cert)),
            ("--tls-key", format!("{:?}", config.tls_key)),
            ("--tls-client-ca", format!("{:?}", config.tls_client_ca)),
            ("--peer-tls-cert", format!("{:?}", config.peer_tls_cert)),
            ("--peer-tls-key", format!("{:?}", config.peer_tls_key)),
            ("--peer-tls-ca", format!("{:?}", config.peer_tls_ca)),
            ("--data-dir", config.data_dir.display().to_string()),
            ("--auth", config.auth.to_string()),
            ("--peers", format!("{:?}", config.peers)),
            ("--join", format!("{:?}", config.join)),
            ("--learner", config.learner.to_string()),
            ("--max-value-bytes", config.max_value_bytes.to_string()),
            ("--max-page-bytes", config.max_page_bytes.to_string()),
            ("--max-wait-ms", config.max_wait_ms.to_string()),
            ("--max-long-polls", config.max_long_polls.to_string()),
            (
                "--max-long-polls-per-connection",
                config.max_long_polls_per_connection.to_string(),
            ),
            ("--max-leases", config.max_leases.to_string()),
            (
                "--lease-expiries-per-sec",
                config.lease_expiries_per_sec.to_string(),
            ),
            (
                "--max-concurrent-requests",
                config.max_concurrent_requests.to_string(),
            ),
            ("--max-connections", config.max_connections.to_string()),
            ("--max-http2-streams", config.max_http2_streams.to_string()),
            (
                "--stream-idle-timeout-ms",
                config.stream_idle_timeout_ms.to_string(),
            ),
            (
                "--request-timeout-ms",
                config.request_timeout_ms.to_string(),
            ),
            (
                "--max-pending-write-bytes",
                config.max_pending_write_bytes.to_string(),
            ),
            ("--quota-bytes", config.quota_bytes.to_string()),
            ("--min-free-bytes", config.min_free_bytes.to_string()),
            (
                "--max-raft-body-bytes",
                config.max_raft_body_bytes.to_string(),
            ),
            (
                "--max-snapshot-bytes",
                config.max_snapshot_bytes.to_string(),
            ),
            (
                "--raft-body-timeout-ms",
                config.raft_body_timeout_ms.to_string(),
            ),
            ("--snapshot-every", config.snapshot_every.to_string()),
            (
                "--snapshot-catchup-entries",
                config.snapshot_catchup_entries.to_string(),
            ),
            ("--heartbeat-ms", config.heartbeat_ms.to_string()),
            (
                "--election-timeout-ms",
                config.election_timeout_ms.to_string(),
            ),
            ("--view-cache-bytes", config.view_cache_bytes.to_string()),
            ("--segment-bytes", config.segment_bytes.to_string()),
            ("--segment-ms", config.segment_ms.to_string()),
            (
                "--cleaner-interval-ms",
                config.cleaner_interval_ms.to_string(),
            ),
            (
                "--min-compaction-lag-ms",
                config.min_compaction_lag_ms.to_string(),
            ),
            (
                "--delete-retention-ms",
                config.delete_retention_ms.to_string(),
            ),
            (
                "--allow-short-compaction-lag",
                config.allow_short_compaction_lag.to_string(),
            ),
            (
                "--max-proposals-in-flight",
                format!("{:?}", config.max_proposals_in_flight),
            ),
            ("--bench-noop-route", config.bench_noop_route.to_string()),
        ]
    }

    /// The `KV_*` variable of `flag`: `--max-wait-ms` → `KV_MAX_WAIT_MS`.
    fn env_var(flag: &str) -> String {
        format!(
            "KV_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        )
    }

    /// Parses `args` as `kv-server`'s command line.
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kv-server").chain(args.iter().copied()))
    }

    /// The serving configuration of `args`, which must parse.
    fn config(args: &[&str]) -> Config {
        parse(args)
            .unwrap_or_else(|error| panic!("{args:?} is refused: {error}"))
            .config
    }

    /// The defaults and flag tables assume no `KV_*` variable of a flag is
    /// set in the test's own environment.
    fn assert_no_kv_variables() {
        for (flag, _) in DEFAULTS {
            let name = env_var(flag);
            assert!(
                std::env::var_os(&name).is_none(),
                "unset {name} to run the config tests"
            );
        }
    }

    #[test]
    fn the_tables_name_every_field_once() {
        let flags: Vec<&str> = fields(&config(&[])).into_iter().map(|(f, _)| f).collect();
        let defaults: Vec<&str> = DEFAULTS.iter().map(|(flag, _)| *flag).collect();
        let given: Vec<&str> = GIVEN.iter().map(|(flag, _, _)| *flag).collect();
        assert_eq!(defaults, flags);
        assert_eq!(given, flags);
    }

    #[test]
    fn with_no_flags_a_node_runs_alone_on_the_defaults() {
        assert_no_kv_variables();
        let cli = parse(&[]).expect("no flags is a valid command line");
        assert!(cli.command.is_none(), "with no subcommand the node serves");
        for ((flag, shown), (expected_flag, default)) in fields(&cli.config).iter().zip(DEFAULTS) {
            assert_eq!((*flag, shown.as_str()), (*expected_flag, *default));
        }
    }

    #[test]
    fn each_flag_sets_its_own_field_and_no_other() {
        assert_no_kv_variables();
        for (given_flag, value, expected) in GIVEN {
            let config = config(&[given_flag, value]);
            for ((flag, shown), (_, default)) in fields(&config).iter().zip(DEFAULTS) {
                let wanted = if flag == given_flag {
                    expected
                } else {
                    default
                };
                assert_eq!(shown, wanted, "{given_flag} {value}: {flag}");
            }
        }
    }

    #[test]
    fn a_compaction_lag_shorter_than_the_idempotency_window_is_refused_naming_both() {
        // (flags, refused)
        let cases: &[(&[&str], bool)] = &[
            (&[], false),
            (&["--min-compaction-lag-ms", "600000"], false),
            (&["--min-compaction-lag-ms", "599999"], true),
            (&["--min-compaction-lag-ms", "0"], true),
            (
                &[
                    "--min-compaction-lag-ms",
                    "0",
                    "--allow-short-compaction-lag",
                ],
                false,
            ),
        ];
        for (args, refused) in cases {
            match config(args).check_compaction_lag() {
                Ok(()) => assert!(!refused, "{args:?} is refused"),
                Err(why) => {
                    assert!(refused, "{args:?} is taken: {why}");
                    let lag = args[1];
                    for named in ["--min-compaction-lag-ms", lag, "600000"] {
                        assert!(why.contains(named), "{args:?} names {named}: {why}");
                    }
                }
            }
        }
    }

    #[test]
    fn peers_may_be_given_one_flag_per_node() {
        let config = config(&["--peers", "1=http://a:1", "--peers", "2=http://b:2"]);
        assert_eq!(config.peers, ["1=http://a:1", "2=http://b:2"]);
    }

    #[test]
    fn the_rebuild_command_takes_the_data_directory() {
        let cases: &[(&[&str], &str)] = &[
            (&["rebuild"], "./data"),
            (&["rebuild", "--data-dir", "/srv/kv"], "/srv/kv"),
        ];
        for (args, data_dir) in cases {
            match parse(args).map(|cli| cli.command) {
                Ok(Some(CliCommand::Rebuild { data_dir: parsed })) => {
                    assert_eq!(parsed.display().to_string(), *data_dir, "{args:?}")
                }
                other => panic!("{args:?} parsed to {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_flags_are_refused_naming_the_flag() {
        let cases: &[(&[&str], ErrorKind, &str)] = &[
            (
                &["--node-id", "one"],
                ErrorKind::ValueValidation,
                "--node-id",
            ),
            (&["--node-id", "-1"], ErrorKind::UnknownArgument, "-1"),
            (
                &["--node-id", "9007199254740992"],
                ErrorKind::ValueValidation,
                "--node-id",
            ),
            (
                &["--listen", "localhost"],
                ErrorKind::ValueValidation,
                "--listen",
            ),
            (
                &["--namesrv-listen", "9876"],
                ErrorKind::ValueValidation,
                "--namesrv-listen",
            ),
            (
                &["--namesrv-broker-ttl-s", "2"],
                ErrorKind::ValueValidation,
                "--namesrv-broker-ttl-s",
            ),
            (
                &["--listen", "127.0.0.1"],
                ErrorKind::ValueValidation,
                "--listen",
            ),
            (
                &["--max-value-bytes", "1MB"],
                ErrorKind::ValueValidation,
                "--max-value-bytes",
            ),
            // Its entry would not fit a raft log frame.
            (
                &["--max-value-bytes", "16777217"],
                ErrorKind::ValueValidation,
                "--max-value-bytes",
            ),
            (
                &["--heartbeat-ms"],
                ErrorKind::InvalidValue,
                "--heartbeat-ms",
            ),
            (
                &["--max-connections", "0"],
                ErrorKind::ValueValidation,
                "--max-connections",
            ),
            (
                &["--max-http2-streams", "0"],
                ErrorKind::ValueValidation,
                "--max-http2-streams",
            ),
            // The membership keeps them; a path was accepted here while
            // the members' API refused it.
            (
                &["--advertise", "http://kv-1:7070/some/path"],
                ErrorKind::ValueValidation,
                "--advertise",
            ),
            (
                &["--peer-advertise", "kv-1:7170"],
                ErrorKind::ValueValidation,
                "--peer-advertise",
            ),
            // Values that left a node busy doing nothing, or refusing all.
            (
                &["--cleaner-interval-ms", "0"],
                ErrorKind::ValueValidation,
                "--cleaner-interval-ms",
            ),
            (
                &["--heartbeat-ms", "0"],
                ErrorKind::ValueValidation,
                "--heartbeat-ms",
            ),
            (
                &["--election-timeout-ms", "0"],
                ErrorKind::ValueValidation,
                "--election-timeout-ms",
            ),
            (
                &["--max-concurrent-requests", "0"],
                ErrorKind::ValueValidation,
                "--max-concurrent-requests",
            ),
            (
                &["--max-value-bytes", "0"],
                ErrorKind::ValueValidation,
                "--max-value-bytes",
            ),
            (
                &["--segment-ms", "0"],
                ErrorKind::ValueValidation,
                "--segment-ms",
            ),
            (
                &["--request-timeout-ms", "0"],
                ErrorKind::ValueValidation,
                "--request-timeout-ms",
            ),
            (
                &["--stream-idle-timeout-ms", "0"],
                ErrorKind::ValueValidation,
                "--stream-idle-timeout-ms",
            ),
            (
                &["--max-raft-body-bytes", "0"],
                ErrorKind::ValueValidation,
                "--max-raft-body-bytes",
            ),
            (
                &["--max-snapshot-bytes", "0"],
                ErrorKind::ValueValidation,
                "--max-snapshot-bytes",
            ),
            (
                &["--raft-body-timeout-ms", "0"],
                ErrorKind::ValueValidation,
                "--raft-body-timeout-ms",
            ),
            (
                &["--snapshot-every", "0"],
                ErrorKind::ValueValidation,
                "--snapshot-every",
            ),
            (
                &["--segment-bytes", "0"],
                ErrorKind::ValueValidation,
                "--segment-bytes",
            ),
            (
                &["--no-such-flag"],
                ErrorKind::UnknownArgument,
                "--no-such-flag",
            ),
            (
                &["--node-id", "1", "--node-id", "2"],
                ErrorKind::ArgumentConflict,
                "--node-id",
            ),
            (&["serve"], ErrorKind::InvalidSubcommand, "serve"),
        ];
        for (args, kind, named) in cases {
            let error = parse(args).expect_err(&format!("{args:?} is refused"));
            let message = error.to_string();
            assert_eq!(error.kind(), *kind, "{args:?}: {message}");
            assert!(
                message.contains(named),
                "{args:?} must name {named}: {message}"
            );
        }
    }

    #[test]
    fn an_election_timeout_not_above_the_heartbeat_is_refused_naming_both_flags() {
        assert_eq!(config(&[]).check_timers(), Ok(()));
        let refused = config(&["--election-timeout-ms", "100", "--heartbeat-ms", "100"])
            .check_timers()
            .unwrap_err();
        assert!(
            refused.contains("--election-timeout-ms 100 must be above --heartbeat-ms 100"),
            "{refused}"
        );
        let join = parse(&["--join", "notaurl"]).unwrap_err();
        assert_eq!(
            join.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{join}"
        );
    }

    #[test]
    fn peers_parse_to_a_map_of_node_urls_or_are_refused_with_the_reason() {
        /// The map as id=url pairs, or the error's text.
        type Parsed = Result<&'static [(u64, &'static str)], &'static str>;
        // (--node-id, --peers, what they parse to)
        let cases: &[(&str, &str, Parsed)] = &[
            ("1", "", Ok(&[])),
            ("1", "1=http://a:1", Ok(&[(1, "http://a:1")])),
            (
                "2",
                "1=http://a:1,2=http://b:2,3=http://c:3",
                Ok(&[(1, "http://a:1"), (2, "http://b:2"), (3, "http://c:3")]),
            ),
            (
                "1",
                " 1 = http://a:1/ , 2=http://b:2",
                Ok(&[(1, "http://a:1"), (2, "http://b:2")]),
            ),
            ("1", "1", Err(r#"for '--peers <PEERS>': "1" is not id=url"#)),
            (
                "1",
                "1=http://a:1,9007199254740992=http://b:2",
                Err(r#""9007199254740992" is not a node id (0 to 9007199254740991)"#),
            ),
            (
                "1",
                "one=http://a:1",
                Err(r#""one=http://a:1": "one" is not a node id"#),
            ),
            ("1", "1=https://a:1", Ok(&[(1, "https://a:1")])),
            (
                "1",
                "1=ftp://a:1",
                Err(r#""1=ftp://a:1": "ftp://a:1" is not an http:// or https:// URL"#),
            ),
            (
                "1",
                "1=http://a:1/kv",
                Err(r#""http://a:1/kv" must be http://host:port with no path"#),
            ),
            (
                "1",
                "1=http://",
                Err(r#""http://" must be http://host:port with no path"#),
            ),
            (
                "1",
                "1=http://a:1,1=http://b:2",
                Err("--peers names node 1 twice"),
            ),
            (
                "1",
                "1=http://a:1,2=http://A:1/",
                Err("--peers names http://A:1 for nodes 1 and 2: each node needs its own"),
            ),
            (
                "3",
                "1=http://a:1,2=http://b:2",
                Err("--peers does not name this node (--node-id 3)"),
            ),
        ];
        for (node_id, peers, expected) in cases {
            let mut args = vec!["--node-id", node_id];
            if !peers.is_empty() {
                args.extend(["--peers", peers]);
            }
            // An entry that does not parse is clap's refusal (exit 2); the
            // list as a whole is checked at start.
            let parsed = parse(&args)
                .map_err(|error| error.to_string())
                .and_then(|cli| cli.config.peer_map());
            match (parsed, expected) {
                (Ok(map), Ok(pairs)) => {
                    let map: Vec<(u64, &str)> =
                        map.iter().map(|(id, url)| (*id, url.as_str())).collect();
                    assert_eq!(map, *pairs, "--peers {peers:?}");
                }
                (Err(why), Err(text)) => {
                    assert!(why.contains(text), "--peers {peers:?}: {why}")
                }
                (parsed, expected) => {
                    panic!("--peers {peers:?} gave {parsed:?}, expected {expected:?}")
                }
            }
        }
    }

    #[test]
    fn a_node_advertises_its_client_url_from_the_flag_else_its_listen_address() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "http://127.0.0.1:7070"),
            (&["--listen", "0.0.0.0:8080"], "http://0.0.0.0:8080"),
            (&["--advertise", "http://kv-1:7070/"], "http://kv-1:7070"),
            (&["--tls-cert", "tls.crt"], "https://127.0.0.1:7070"),
            // --peers names peer ports, never the client's.
            (
                &["--peers", "1=http://p1:1,2=http://p2:2"],
                "http://127.0.0.1:7070",
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(config(args).advertise_url(), *expected, "{args:?}");
        }
    }

    #[test]
    fn the_peer_port_is_the_flag_else_the_client_port_plus_100() {
        let cases: &[(&[&str], Result<&str, &str>)] = &[
            (&[], Ok("127.0.0.1:7170")),
            (&["--listen", "0.0.0.0:8080"], Ok("0.0.0.0:8180")),
            (&["--peer-listen", "127.0.0.1:9999"], Ok("127.0.0.1:9999")),
            (&["--listen", "127.0.0.1:65500"], Err("give --peer-listen")),
        ];
        for (args, expected) in cases {
            let got = config(args).peer_listen_addr().map(|addr| addr.to_string());
            match (got, expected) {
                (Ok(addr), Ok(want)) => assert_eq!(addr, *want, "{args:?}"),
                (Err(why), Err(text)) => assert!(why.contains(text), "{args:?}: {why}"),
                (got, _) => panic!("{args:?} gave {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_node_advertises_its_peer_url_from_the_flag_else_its_peer_entry_else_its_peer_port() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "http://127.0.0.1:7170"),
            (&["--peer-listen", "0.0.0.0:9090"], "http://0.0.0.0:9090"),
            (
                &["--peer-advertise", "http://kv-1:7170/"],
                "http://kv-1:7170",
            ),
            (&["--peers", "1=http://p1:1,2=http://p2:2"], "http://p1:1"),
            (
                &["--node-id", "2", "--peers", "1=http://p1:1,2=http://p2:2"],
                "http://p2:2",
            ),
            (
                &[
                    "--peer-advertise",
                    "http://kv-1:7170",
                    "--peers",
                    "1=http://p1:1",
                ],
                "http://kv-1:7170",
            ),
            // With TLS on the peer port, its default URL is https.
            (&["--peer-tls-cert", "peer.crt"], "https://127.0.0.1:7170"),
        ];
        for (args, expected) in cases {
            assert_eq!(
                config(args).peer_advertise_url().unwrap(),
                *expected,
                "{args:?}"
            );
        }
    }

    #[test]
    fn a_join_url_is_a_node_base_url() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("http://a:1", Ok("http://a:1")),
            ("http://a:1/", Ok("http://a:1")),
            ("http://10.0.0.1:7070", Ok("http://10.0.0.1:7070")),
            ("https://a:1/", Ok("https://a:1")),
            ("ftp://a:1", Err("is not an http:// or https:// URL")),
            ("a:1", Err("is not an http:// or https:// URL")),
            (
                "https://a:1/v1",
                Err("must be https://host:port with no path"),
            ),
            ("http://", Err("must be http://host:port with no path")),
            (
                "http://a:1/v1",
                Err("must be http://host:port with no path"),
            ),
            ("http://a b c:1", Err("is not a URL")),
            ("http://[::1", Err("is not a URL")),
            ("http://%zz%:1", Err("is not a URL")),
            ("http://a:99999", Err("is not a URL")),
            ("http://[::1]:7170", Ok("http://[::1]:7170")),
            (
                "http://user:pw@127.0.0.1:5",
                Err("must be http://host:port with no path"),
            ),
            (
                "http://127.0.0.1:5?q",
                Err("must be http://host:port with no path"),
            ),
            (
                "http://127.0.0.1:5#f",
                Err("must be http://host:port with no path"),
            ),
        ];
        for (url, expected) in cases {
            match (check_node_url(url), expected) {
                (Ok(checked), Ok(wanted)) => assert_eq!(checked, *wanted, "{url}"),
                (Err(why), Err(text)) => assert!(why.contains(text), "{url}: {why}"),
                (checked, expected) => panic!("{url} gave {checked:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn the_topic_takes_its_segment_and_retention_settings_from_the_flags() {
        let topic = config(&[
            "--segment-bytes",
            "1024",
            "--segment-ms",
            "2000",
            "--min-compaction-lag-ms",
            "3000",
            "--delete-retention-ms",
            "4000",
        ])
        .topic_config();
        let defaults = compaction::TopicConfig::default();
        assert_eq!(
            (
                topic.segment_bytes,
                topic.segment_ms,
                topic.min_compaction_lag_ms,
                topic.delete_retention_ms
            ),
            (1024, 2000, 3000, 4000)
        );
        assert_eq!(topic.max_record_bytes, 17 << 20);
        assert_eq!(topic.cleaner_key_map_bytes, defaults.cleaner_key_map_bytes);
    }

    /// Setting variables in this process would race with the tests that
    /// run beside it, so a child process runs
    /// [`every_kv_variable_sets_its_field_in_a_child`] with them set.
    #[test]
    fn every_flag_can_be_given_as_its_kv_variable() {
        let test_binary = std::env::current_exe().expect("the test binary has a path");
        let mut child = Command::new(test_binary);
        child.args([ENV_CHILD_TEST, "--exact", "--ignored", "--test-threads=1"]);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KV_") {
                child.env_remove(name);
            }
        }
        for (flag, value, _) in GIVEN {
            child.env(env_var(flag), value);
        }
        child.env(ENV_CHILD_MARKER, "1");
        let output = child.output().expect("the test binary runs again");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the child run of {ENV_CHILD_TEST} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    #[ignore = "run by every_flag_can_be_given_as_its_kv_variable, with the variables set"]
    fn every_kv_variable_sets_its_field_in_a_child() {
        if std::env::var_os(ENV_CHILD_MARKER).is_none() {
            return;
        }
        let from_env = config(&[]);
        for ((flag, shown), (_, _, expected)) in fields(&from_env).iter().zip(GIVEN) {
            assert_eq!(shown, expected, "{} ({flag})", env_var(flag));
        }
        // A flag wins over its variable.
        assert_eq!(config(&["--node-id", "9"]).node_id, 9);
        // The rebuild command reads KV_DATA_DIR too.
        match parse(&["rebuild"]).map(|cli| cli.command) {
            Ok(Some(CliCommand::Rebuild { data_dir })) => {
                assert_eq!(data_dir.display().to_string(), "/var/lib/kv")
            }
            other => panic!("rebuild parsed to {other:?}"),
        }
    }
}
