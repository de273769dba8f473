//! Opening a node: the configuration checked, storage, Raft and the
//! cleaner started, the cluster formed on the first start; and closing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use compaction::CleanerHandle;
use openraft::error::{InitializeError, RaftError};
use openraft::SnapshotPolicy;
use tracing::{info, warn};

use super::ServerError;
use crate::api::AppState;
use crate::config::Config;
use crate::network::Network;
use crate::peer::{ClusterId, PeerClient};
use crate::store::log_store::LogStore;
use crate::store::state_machine::StateMachine;
use crate::store::{DataDirs, Store};
use crate::types::{Node, NodeId, Raft};

/// How long a snapshot may take to reach a node and be installed there (ms).
const SNAPSHOT_SEND_TIMEOUT_MS: u64 = 120_000;

/// A node's storage, Raft and cleaner, opened; nothing listens yet.
pub(super) struct Opened {
    /// The node's configuration.
    pub(super) config: Arc<Config>,
    /// This node's URLs, as it advertises them.
    pub(super) this_node: Node,
    /// The fixed initial cluster of `--peers` (empty without it).
    pub(super) peers: BTreeMap<NodeId, String>,
    /// The checked `--join` URL.
    pub(super) join: Option<String>,
    /// The TLS settings of both listeners and of the calls to other nodes.
    pub(super) tls: crate::tls::NodeTls,
    /// The cluster's id, read from the data directory.
    pub(super) cluster_id: Arc<ClusterId>,
    /// The topic, the view and the watchers.
    pub(super) store: Arc<Store>,
    /// The raft log, kept to close it at shutdown.
    pub(super) log: LogStore,
    /// The committed log index, as the log store last saved it.
    pub(super) committed: Arc<std::sync::atomic::AtomicU64>,
    /// The background cleaner.
    pub(super) cleaner: Arc<CleanerHandle>,
    /// The HTTP client for the other nodes.
    pub(super) peers_http: PeerClient,
    /// Whether this node was removed from the cluster, shared with the
    /// network and the routes.
    pub(super) removal: Arc<crate::removal::Removal>,
    /// Whether this node has caught up since it started.
    pub(super) caught_up: Arc<crate::caught_up::CaughtUp>,
    /// The openraft handle.
    pub(super) raft: Raft,
}

/// Checks the configuration, opens the storage and starts Raft and the
/// cleaner.
pub(super) async fn open(config: Config) -> Result<Opened, ServerError> {
    let peers = config.peer_map().map_err(ServerError::Config)?;
    if !peers.is_empty() && config.join.is_some() {
        return Err(ServerError::Config(
            "--peers (form a new cluster) and --join (enter an existing one) exclude each other"
                .into(),
        ));
    }
    let join = match &config.join {
        Some(url) => Some(
            crate::config::check_node_url(url)
                .map_err(|why| ServerError::Config(format!("--join: {why}")))?,
        ),
        None => None,
    };
    config.check_compaction_lag().map_err(ServerError::Config)?;
    config.check_learner().map_err(ServerError::Config)?;
    config.check_timers().map_err(ServerError::Config)?;
    let peer_listen = config.peer_listen_addr().map_err(ServerError::Config)?;
    let this_node = Node {
        addr: config.advertise_url(),
        peer_addr: config.peer_advertise_url().map_err(ServerError::Config)?,
    };
    let tls = crate::tls::NodeTls::from_config(&config)?;
    check_schemes(&config, &this_node, &peers, join.as_deref())?;
    if config.auth && config.peer_tls_cert.is_none() {
        // The peer port serves the API to other nodes without tokens; only
        // mutual TLS (or a network only the nodes reach) keeps others out.
        warn!(
            peer_listen = %peer_listen,
            "--auth without --peer-tls-cert: whoever reaches the peer port is trusted as a node; \
             give the peer port mutual TLS or keep it on a network only the nodes reach"
        );
    }
    let config = Arc::new(config);
    let dirs = DataDirs::new(&config.data_dir);
    crate::store::dir_lock::DataDirLock::take(&config.data_dir)?.hold_until_exit();
    crate::backup::refuse_cut_restore(&config.data_dir)?;
    let cluster_id = Arc::new(ClusterId::open(&config.data_dir)?);
    crate::store::data_format::check_or_mark(&config.data_dir)?;
    check_node_id(&config.data_dir, config.node_id)?;
    let log = LogStore::open(&dirs.raft, Some(config.node_id))?;
    log.check_vote_kept(&dirs.raft)?;
    cluster_id.check_kept(log.reach())?;
    crate::store::set_view_cache_bytes(config.view_cache_bytes);
    let store = Arc::new(Store::open(&dirs, config.topic_config(), &log)?);
    store.check_log_reaches_applied(&log, &dirs.raft)?;
    store.start_checkpointer()?;
    let committed = log.committed_index();
    crate::metrics::handle();
    let cleaner = CleanerHandle::spawn(
        Arc::clone(&store.topic),
        Duration::from_millis(config.cleaner_interval_ms),
    )
    .map_err(ServerError::CleanerThread)?;
    let cleaner = Arc::new(cleaner);

    let raft_config = openraft::Config {
        cluster_name: "openmessaging-kv".into(),
        heartbeat_interval: config.heartbeat_ms,
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: 2 * config.election_timeout_ms,
        // Not used by this server's network, which gives each snapshot
        // chunk a timeout of its own (network.rs).
        install_snapshot_timeout: SNAPSHOT_SEND_TIMEOUT_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        ..openraft::Config::default()
    }
    .validate()?;
    // One client for every call to another node (appends, votes and
    // relayed writes on its kept connections per node; snapshots, joins,
    // forwarded writes and read indexes through reqwest): it alone holds
    // the peer TLS identity.
    let peers_http = crate::network::peer_http_client(&tls).map_err(ServerError::PeerClient)?;
    let peers_http = PeerClient::new(peers_http, tls.peer_connector(), Arc::clone(&cluster_id));
    let durability = log.durability();
    // Shared with the network: a member may say so in answer to a vote.
    let removal = Arc::new(crate::removal::Removal::open(
        &config.data_dir,
        config.node_id,
    ));
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        Network::new(
            config.node_id,
            durability.clone(),
            peers_http.clone(),
            Arc::clone(&removal),
        ),
        log.clone(),
        StateMachine::new(Arc::clone(&store), durability),
    )
    .await?;
    // openraft has applied what the log says is committed by now.
    let (applied, _) = store.view.applied_state()?;
    let clean_stop = crate::caught_up::take_clean_stop(&config.data_dir)
        .map_err(crate::error::StoreError::from)?;
    let caught_up = crate::caught_up::CaughtUp::at_start(
        log.reach(),
        applied.map_or(0, |id| id.index),
        clean_stop,
    );
    Ok(Opened {
        config,
        this_node,
        peers,
        join,
        tls,
        cluster_id,
        store,
        log,
        committed,
        cleaner,
        peers_http,
        removal,
        caught_up,
        raft,
    })
}

/// What forming the cluster on a first start needs (see
/// [`Forming::initialize_once`]), apart from the rest of [`Opened`], and
/// asking the peers whether this node's data was lost, in the background.
#[derive(Clone)]
pub(super) struct Forming {
    raft: Raft,
    config: Arc<Config>,
    this_node: Node,
    peers: BTreeMap<NodeId, String>,
    join: Option<String>,
    cluster_id: Arc<ClusterId>,
}

impl Forming {
    /// Whether this node forms a cluster of `--peers` on its first start.
    fn forms_peers(&self) -> bool {
        self.join.is_none()
            && self
                .peers
                .keys()
                .next()
                .is_none_or(|first| *first == self.config.node_id)
    }

    /// Whether this node asks the other peers about their cluster before
    /// it takes part in it (see [`Forming::ask_peers_then_take_part`]): a
    /// member of `--peers` whose raft log is empty. The one that forms the
    /// cluster forms it only then.
    pub(super) async fn asks_peers_first(&self) -> Result<bool, ServerError> {
        Ok(self.peers.len() > 1 && self.join.is_none() && !self.raft.is_initialized().await?)
    }

    /// Asks the other peers about their cluster, then takes part in it
    /// (`asking` done), forming it if this node is the one to and the
    /// peers have none yet. A peer that lists this node as a member that
    /// served means its data was lost (a wiped or replaced data
    /// directory): it stops, saying so, as etcd refuses a member
    /// bootstrapped before. Voting with an empty log it could elect a
    /// member lacking writes it had acknowledged, and the leader, which
    /// keeps its progress, would send it entries it cannot take. Forming
    /// anyway, the lowest id would start a cluster of its own, which the
    /// others refuse as foreign.
    pub(super) async fn ask_peers_then_take_part(
        &self,
        http: &PeerClient,
        asking: &crate::join::AskingPeers,
    ) -> Result<(), ServerError> {
        let formed =
            match crate::join::ask_peers(http, self.config.node_id, &self.peers, asking).await {
                crate::join::PeersSaid::Stop(why) => return Err(ServerError::Join(why)),
                crate::join::PeersSaid::New(formed) => formed,
            };
        asking.done();
        if !self.forms_peers() {
            return Ok(());
        }
        match formed {
            Some((peer, cluster_id)) => {
                warn!(
                    node_id = self.config.node_id,
                    peer,
                    %cluster_id,
                    "this node's raft log is empty, but its peers formed their cluster \
                     already: it forms no new one, and catches up once the cluster's leader \
                     reaches it; if the cluster no longer counts it, empty its data directory \
                     and start it with --join"
                );
                Ok(())
            }
            None => self.initialize_once().await.map(drop),
        }
    }

    /// Forms the cluster on the node's first start (see [`initialize`]);
    /// whether it was initialized before.
    pub(super) async fn initialize_once(&self) -> Result<bool, ServerError> {
        let initialized = self.raft.is_initialized().await?;
        if !initialized {
            let config = &self.config;
            let joining = self.join.is_some();
            if self.forms_peers() {
                // This node forms the cluster: it names it, before its log
                // takes an entry (a restart finds the id, or forms again).
                let id = self.cluster_id.create()?;
                info!(cluster_id = %id, "the cluster's id");
            }
            initialize(&self.raft, config, &self.this_node, &self.peers, joining).await?;
        }
        Ok(initialized)
    }
}

impl Opened {
    /// What forming the cluster needs.
    pub(super) fn forming(&self) -> Forming {
        Forming {
            raft: self.raft.clone(),
            config: Arc::clone(&self.config),
            this_node: self.this_node.clone(),
            peers: self.peers.clone(),
            join: self.join.clone(),
            cluster_id: Arc::clone(&self.cluster_id),
        }
    }

    /// What the routers share; starts the lease loop and the watch on
    /// this node's membership. `joining` says the node is yet to be added
    /// through `--join`: it is set before the watch starts, which waits
    /// while it is.
    pub(super) fn start_state(&self, joining: bool) -> AppState {
        let config = &self.config;
        tokio::spawn(
            crate::leases::LeaseLoop {
                raft: self.raft.clone(),
                node_id: config.node_id,
                store: Arc::clone(&self.store),
                expiries_per_sec: config.lease_expiries_per_sec,
                propose_timeout: Duration::from_millis(config.request_timeout_ms),
            }
            .run(),
        );
        let state = AppState::new(crate::api::NodeState {
            node_id: config.node_id,
            raft: self.raft.clone(),
            store: Arc::clone(&self.store),
            config: Arc::clone(config),
            cleaner: Arc::clone(&self.cleaner),
            committed: Arc::clone(&self.committed),
            peers: self.peers_http.clone(),
            cluster_id: Arc::clone(&self.cluster_id),
            read_index: Default::default(),
            remote_read_index: Default::default(),
            long_polls: crate::api::long_polls::LongPolls::new(config.max_long_polls),
            tokens: Default::default(),
            leader_contact: Default::default(),
            write_budget: crate::write_budget::WriteBudget::new(config.max_pending_write_bytes),
            removal: Arc::clone(&self.removal),
            caught_up: Arc::clone(&self.caught_up),
            snapshot_receiver: Arc::new(crate::store::snapshot_receive::SnapshotReceiver::new(
                &self.store.snapshot_dir,
                config.max_snapshot_bytes as u64,
            )),
            batcher: crate::api::batcher::Batcher::start(
                self.raft.clone(),
                config.max_proposals_in_flight.map(|slots| slots as usize),
            ),
            relay: crate::api::relay::Relay::start(
                self.raft.clone(),
                config.node_id,
                self.peers_http.clone(),
                Duration::from_millis(config.request_timeout_ms),
                config
                    .max_proposals_in_flight
                    .map_or(crate::api::relay::RELAYS_IN_FLIGHT, |slots| slots as usize),
                config.max_raft_body_bytes,
            ),
            space: Arc::new(crate::space::Space::new(
                &config.data_dir,
                config.quota_bytes,
                config.min_free_bytes,
                Box::new(self.log.held_bytes()),
            )),
            membership_changes: Default::default(),
            joining: Arc::new(std::sync::atomic::AtomicBool::new(joining)),
            asking_peers: Default::default(),
        });
        tokio::spawn(crate::api::alarms::raise_when_over(state.clone()));
        tokio::spawn(crate::removal::watch_membership(state.clone()));
        tokio::spawn(crate::caught_up::catch_up(state.clone()));
        tokio::spawn(Arc::clone(&self.removal).shut_down_when_marked(self.raft.clone()));
        tokio::spawn(crate::snapshot_trigger::snapshot_every_writes(
            self.raft.clone(),
            Arc::clone(&self.store),
            config.snapshot_every,
        ));
        state
    }

    /// Stops Raft, closes the raft log, stops the cleaner and flushes the
    /// topic and the view.
    pub(super) async fn close(self) -> Result<(), ServerError> {
        // The node is stopping anyway; the storage is still closed below.
        self.removal
            .shut_down_raft(&self.raft, "at the node's stop")
            .await;
        self.log.close().await?;
        drop(self.cleaner);
        // Without room the view stays as it is: the restart brings it up to
        // date from the raft log, as after a crash.
        if !self.store.checkpoint_if_room()? {
            warn!("no room for the last checkpoint; the next start catches up from the raft log");
        } else if let Err(error) = crate::caught_up::record_clean_stop(&self.config.data_dir) {
            // The next start then waits to catch up before it serves reads.
            warn!(%error, "the clean stop could not be recorded");
        }
        Ok(())
    }
}

/// On the first start of a node: with no flags it forms a cluster of its
/// own; with `--peers` the lowest id forms the cluster of all peers and the
/// others wait to hear from it; with `--join` the node waits to be added.
/// Later starts find the node initialized and skip this.
async fn initialize(
    raft: &Raft,
    config: &Config,
    this_node: &Node,
    peers: &BTreeMap<NodeId, String>,
    joining: bool,
) -> Result<(), ServerError> {
    if joining {
        info!(
            node_id = config.node_id,
            "waiting to be added to the cluster"
        );
        return Ok(());
    }
    // The others' client URLs are not known yet: each node tells its own
    // once it is a member (see `publish_addresses`).
    let members: BTreeMap<NodeId, Node> = if peers.is_empty() {
        BTreeMap::from([(config.node_id, this_node.clone())])
    } else {
        peers
            .iter()
            .map(|(id, peer_addr)| {
                let node = if *id == config.node_id {
                    this_node.clone()
                } else {
                    Node {
                        addr: String::new(),
                        peer_addr: peer_addr.clone(),
                    }
                };
                (*id, node)
            })
            .collect()
    };
    let first = *members.keys().next().expect("at least this node");
    if first != config.node_id {
        info!(
            node_id = config.node_id,
            initializer = first,
            "waiting for the lowest peer id to form the cluster"
        );
        return Ok(());
    }
    let ids: Vec<NodeId> = members.keys().copied().collect();
    match raft.initialize(members).await {
        Ok(()) => {
            info!(node_id = config.node_id, members = ?ids, "formed the cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Checks that every URL of this node and of its peers speaks TLS exactly
/// when the listener behind it does: the client URL follows `--tls-cert`,
/// the peer URLs (`--peer-advertise`, `--peers`, `--join`) follow
/// `--peer-tls-cert`, so no node is sent to the wrong protocol and no
/// peer traffic goes in the clear by mistake.
fn check_schemes(
    config: &Config,
    this_node: &Node,
    peers: &BTreeMap<NodeId, String>,
    join: Option<&str>,
) -> Result<(), ServerError> {
    use crate::tls::check_scheme;
    let client_tls = config.tls_cert.is_some();
    let peer_tls = config.peer_tls_cert.is_some();
    check_scheme("--advertise", &this_node.addr, client_tls)?;
    check_scheme("--peer-advertise", &this_node.peer_addr, peer_tls)?;
    for url in peers.values() {
        check_scheme("--peers", url, peer_tls)?;
    }
    if let Some(url) = join {
        check_scheme("--join", url, peer_tls)?;
    }
    Ok(())
}

/// The file in the data directory naming the node it belongs to.
const NODE_ID_FILE: &str = "node-id";

/// Refuses a data directory that belongs to another node: started under
/// another id, a node brings that node's votes and log to a cluster that
/// counts them as this one's (etcd refuses a member id that does not match
/// its data). A data directory without the file (new, or from before it)
/// is marked with this node's id.
fn check_node_id(root: &std::path::Path, node_id: NodeId) -> Result<(), ServerError> {
    let path = root.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<NodeId>() {
            Ok(owner) if owner == node_id => Ok(()),
            Ok(owner) => Err(ServerError::Config(format!(
                "the data directory {} belongs to node {owner} ({}), and this is --node-id \
                 {node_id}: give this node its own data directory, or start it as node {owner}",
                root.display(),
                path.display()
            ))),
            Err(error) => Err(ServerError::Config(format!(
                "{} does not name a node: {:?} ({error})",
                path.display(),
                text.trim()
            ))),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            compaction::fsutil::write_atomic(&path, format!("{node_id}\n").as_bytes())
                .map_err(crate::error::StoreError::from)?;
            Ok(())
        }
        Err(error) => Err(crate::error::StoreError::io("read", &path)(error).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_is_marked_with_its_node_and_refused_to_another() {
        let dir = tempfile::tempdir().unwrap();
        check_node_id(dir.path(), 3).expect("a new directory is marked");
        check_node_id(dir.path(), 3).expect("its own node opens it");
        let refused = check_node_id(dir.path(), 9).expect_err("another node is refused");
        let message = refused.to_string();
        assert!(
            message.contains("belongs to node 3") && message.contains("--node-id 9"),
            "{message}"
        );
        std::fs::write(dir.path().join(NODE_ID_FILE), "three").unwrap();
        let garbled = check_node_id(dir.path(), 3).expect_err("a garbled file is refused");
        assert!(garbled.to_string().contains("three"), "{garbled}");
    }
}
