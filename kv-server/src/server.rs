//! Starting and stopping a node: storage, Raft, the cleaner, the HTTP server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use compaction::CleanerHandle;
use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tracing::info;

use crate::api::{router, AppState};
use crate::config::Config;
use crate::network::Network;
use crate::store::log_store::LogStore;
use crate::store::state_machine::StateMachine;
use crate::store::{DataDirs, Store};
use crate::types::{Node, Raft};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage failed to open.
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Raft could not start or initialize.
    #[error("raft: {0}")]
    Raft(String),
    /// The configuration is not usable.
    #[error("configuration: {0}")]
    Config(String),
}

/// Runs a node until `shutdown` resolves, then stops gracefully: in-flight
/// requests finish, Raft stops, the topic and the view are flushed.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if !config.peers.is_empty() || config.join.is_some() {
        return Err(ServerError::Config(
            "--peers and --join (multi-node clusters) are not supported yet; run one node".into(),
        ));
    }
    let config = Arc::new(config);
    let dirs = DataDirs::new(&config.data_dir);
    let log = LogStore::open(&dirs.raft)?;
    let store = Arc::new(Store::open(&dirs, config.topic_config(), &log)?);
    let committed = log.committed_index();
    crate::metrics::handle();
    let cleaner = CleanerHandle::spawn(
        Arc::clone(&store.topic),
        Duration::from_millis(config.cleaner_interval_ms),
    )
    .map_err(|error| ServerError::Config(format!("cannot start the cleaner thread: {error}")))?;
    let cleaner = Arc::new(cleaner);

    let raft_config = openraft::Config {
        cluster_name: "openmessaging-kv".into(),
        heartbeat_interval: 100,
        election_timeout_min: 300,
        election_timeout_max: 600,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: 1_000,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|error| ServerError::Raft(error.to_string()))?;
    let http = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| ServerError::Raft(format!("cannot build the HTTP client: {error}")))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        Network::new(http),
        log,
        StateMachine::new(Arc::clone(&store)),
    )
    .await
    .map_err(|error| ServerError::Raft(error.to_string()))?;

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
    initialize_single_node(&raft, &config).await?;

    let state = AppState {
        node_id: config.node_id,
        raft: raft.clone(),
        store: Arc::clone(&store),
        config: Arc::clone(&config),
        cleaner: Arc::clone(&cleaner),
        committed,
    };
    info!(
        node_id = config.node_id,
        listen = %config.listen,
        data_dir = %config.data_dir.display(),
        "serving"
    );
    crate::http::serve(listener, router(state), shutdown).await;
    info!("shutting down");
    let _ = raft.shutdown().await;
    drop(cleaner);
    store.topic.sync().map_err(crate::error::StoreError::from)?;
    store.view.flush()?;
    info!("stopped");
    Ok(())
}

/// On first start, a node without peers forms a cluster of its own; later
/// starts find it initialized and simply reopen it.
async fn initialize_single_node(raft: &Raft, config: &Config) -> Result<(), ServerError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|error| ServerError::Raft(error.to_string()))?;
    if initialized {
        return Ok(());
    }
    let mut members = BTreeMap::new();
    members.insert(
        config.node_id,
        Node {
            addr: config.advertise_url(),
        },
    );
    raft.initialize(members)
        .await
        .map_err(|error| ServerError::Raft(error.to_string()))?;
    info!(
        node_id = config.node_id,
        "initialized a single-node cluster"
    );
    Ok(())
}

/// Rebuilds the view of `data_dir` from its topic, offline.
pub fn rebuild(data_dir: &std::path::Path) -> Result<u64, ServerError> {
    let dirs = DataDirs::new(data_dir);
    if dirs.view.exists() {
        std::fs::remove_dir_all(&dirs.view)
            .map_err(crate::error::StoreError::io("remove", &dirs.view))?;
    }
    let log = LogStore::open(&dirs.raft)?;
    let store = Store::open(&dirs, compaction::TopicConfig::default(), &log)?;
    let (applied, _) = store.view.applied_state()?;
    Ok(applied.map_or(0, |id| id.index))
}
