//! Starting and stopping a node: storage, Raft, the cleaner, the HTTP server.
//!
//! * `open` — the configuration checked, storage and Raft opened, the
//!   cluster formed on the first start; closing at the end.
//! * `error` — [`ServerError`].

mod error;
mod open;

use std::sync::Arc;
use std::time::Duration;

use openraft::error::Fatal;
use tokio::net::TcpListener;
use tracing::info;

use crate::api::{client_router, peer_router};
use crate::config::Config;
use crate::store::log_store::LogStore;
use crate::store::{DataDirs, Store};
use crate::types::Raft;

/// The errors a [`ServerError`] may carry.
pub use crate::{error::StoreError, join::JoinError, tls::TlsError};
pub use error::ServerError;
use open::{open, Opened};

/// Runs a node until `shutdown` resolves, then stops gracefully: in-flight
/// requests finish, Raft stops, the topic and the view are flushed.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let opened = open(config).await?;
    let config = Arc::clone(&opened.config);
    let peer_listen = config.peer_listen_addr().map_err(ServerError::Config)?;
    let listener = bind(config.listen).await?;
    let peer_listener = bind(peer_listen).await?;
    let namesrv_listener = match config.namesrv_listen.0 {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // A --peers member with an empty log asks the others, in the
    // background, whether it served before (its data lost); it takes no
    // vote or entries meanwhile, and forms the cluster, if it is the one
    // to, only then.
    let forming = opened.forming();
    let asks_first = forming.asks_peers_first().await?;
    let initialized = match asks_first {
        true => false,
        false => forming.initialize_once().await?,
    };
    let joining = opened.join.is_some() && !initialized;
    let state = opened.start_state(joining);
    let (asking_failed_tx, asking_failed) = tokio::sync::oneshot::channel::<ServerError>();
    if asks_first {
        state.asking_peers.start();
        let (http, asking) = (opened.peers_http.clone(), Arc::clone(&state.asking_peers));
        tokio::spawn(async move {
            if let Err(why) = forming.ask_peers_then_take_part(&http, &asking).await {
                tracing::error!(%why, "stopping");
                // No receiver means the server is already stopping.
                let _ = asking_failed_tx.send(why);
            }
        });
    }
    tokio::spawn(exit_when_raft_stops(
        opened.raft.clone(),
        Arc::clone(&opened.store.disk_full),
    ));
    tokio::spawn(say_where_once_led(
        opened.raft.clone(),
        config.advertise_url(),
    ));
    let (peers_http, this_node) = (opened.peers_http.clone(), opened.this_node.clone());
    info!(
        node_id = config.node_id,
        listen = %config.listen,
        peer_listen = %peer_listen,
        namesrv_listen = %config.namesrv_listen,
        data_dir = %config.data_dir.display(),
        "serving"
    );
    let (join_failed_tx, join_failed) = tokio::sync::oneshot::channel::<crate::join::JoinError>();
    match (opened.join.clone(), initialized) {
        (Some(url), false) => {
            tokio::spawn(crate::join::join_cluster(
                opened.raft.clone(),
                peers_http,
                url,
                crate::join::Joiner {
                    node_id: config.node_id,
                    node: this_node,
                    voter: !config.learner,
                },
                Arc::clone(&state.joining),
                join_failed_tx,
            ));
        }
        (join, _) => {
            // A learner by --learner stays one: only a voter's cut-off
            // join is taken up again.
            if let Some(url) = join.filter(|_| !config.learner) {
                let (raft, http, node) =
                    (opened.raft.clone(), peers_http.clone(), this_node.clone());
                let (node_id, joining) = (config.node_id, Arc::clone(&state.joining));
                tokio::spawn(async move {
                    if crate::join::is_cut_off_learner(&raft, node_id).await {
                        tracing::warn!(node_id, via = %url, "this node is a learner: its join was cut off; asking again to be promoted");
                        // No one listens: a failed resume leaves the node
                        // serving as the learner it is.
                        let (failed, _) = tokio::sync::oneshot::channel();
                        let joiner = crate::join::Joiner {
                            node_id,
                            node,
                            voter: true,
                        };
                        crate::join::join_cluster(raft, http, url, joiner, joining, failed).await;
                    }
                });
            }
            if state.removal.is_removed() {
                // It answers every route not_a_member, its own calls too.
                tracing::info!(
                    node_id = config.node_id,
                    "this node was removed from the cluster: its addresses are not published"
                );
            } else {
                tokio::spawn(crate::join::publish_addresses(
                    opened.raft.clone(),
                    peers_http,
                    config.node_id,
                    this_node,
                    peer_listen,
                    // A restart with --join (kept in the unit's environment):
                    // the member named must be of the cluster the dir holds.
                    opened.join.clone().zip(opened.cluster_id.get()),
                    join_failed_tx,
                ));
            }
        }
    }
    let stop_failure = Arc::new(parking_lot::Mutex::new(None));
    let stop = {
        let stop_failure = Arc::clone(&stop_failure);
        async move {
            tokio::select! {
                () = shutdown => {}
                Ok(why) = join_failed => {
                    *stop_failure.lock() = Some(ServerError::Join(why));
                }
                Ok(why) = asking_failed => {
                    *stop_failure.lock() = Some(why);
                }
            }
        }
    };
    let limits = crate::http::ListenerLimits::of(&config);
    let stopping = tokio_util::sync::CancellationToken::new();
    let stopped = stopping.clone();
    let peers_stopped = stopping.clone();
    let namesrv_stopped = stopping.clone();
    let namesrv = crate::namesrv::NameServer::new(state.clone());
    let max_connections = config.max_connections as usize;
    let namesrv_idle = std::time::Duration::from_secs(config.namesrv_idle_timeout_s);
    let (long_polls, watches) = (state.long_polls.clone(), Arc::clone(&state.store.watches));
    tokio::join!(
        async move {
            stop.await;
            // Waiting long-polls answer now, and no more wait: the graceful
            // shutdown below would otherwise hold each to its end.
            long_polls.close();
            watches.wake_all();
            stopping.cancel();
        },
        crate::http::serve(
            "client",
            listener,
            client_router(state.clone()),
            limits,
            opened.tls.client.clone(),
            async move { stopped.cancelled().await }
        ),
        crate::http::serve(
            "peer",
            peer_listener,
            peer_router(state),
            limits,
            opened.tls.peer.clone(),
            async move { peers_stopped.cancelled().await }
        ),
        async move {
            if let Some(listener) = namesrv_listener {
                crate::namesrv::listener::serve(
                    listener,
                    namesrv,
                    max_connections,
                    namesrv_idle,
                    async move { namesrv_stopped.cancelled().await },
                )
                .await;
            }
        },
    );
    info!("shutting down");
    opened.close().await?;
    info!("stopped");
    let failure = stop_failure.lock().take();
    match failure {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

/// The exit status of a node whose Raft stopped on an error it cannot go
/// past (a failed write of the raft log): sysexits' `EX_IOERR`, as a failed
/// checkpoint. A full disk exits with [`crate::store::EXIT_NO_SPACE`].
pub const EXIT_RAFT_STOPPED: i32 = 74;
/// The exit status of a node that met damaged data while running, as of
/// one that found it at open.
pub const EXIT_DAMAGE: i32 = 1;

/// Stops the process when openraft stops for good (a storage error),
/// rather than leave a node that answers nothing but stale reads: a
/// supervisor restarts it, and it catches up from its raft log. Saying
/// `no space left on <path>` when a write failed for want of space.
///
/// openraft's core owns the sender of its server metrics: their channel
/// closes when the core ends, after it has set the reason in the full
/// metrics. Waiting on it rather than on the full metrics, which change
/// with every entry, costs nothing per write.
async fn exit_when_raft_stops(raft: Raft, disk_full: Arc<crate::space::DiskFull>) {
    let mut server = raft.server_metrics();
    while server.changed().await.is_ok() {}
    let running_state = raft.metrics().borrow().running_state.clone();
    let stopped = match running_state {
        // Stopped is a shutdown this process asked for.
        Err(Fatal::Stopped) => None,
        Err(fatal) => Some(fatal.to_string()),
        // A core that panicked set no reason: its task's end tells it.
        Ok(()) => match raft.with_raft_state(|_| ()).await {
            Err(Fatal::Stopped) | Ok(()) => None,
            Err(fatal) => Some(fatal.to_string()),
        },
    };
    if let Some(fatal) = stopped {
        if let Some(full) = disk_full.describe() {
            tracing::error!(%fatal, "{full}: raft stopped; exiting, to be restarted with room");
            std::process::exit(crate::store::EXIT_NO_SPACE);
        }
        if let Some(damage) = crate::store::damage_met() {
            // Not 74: a restart does not mend damage, and one found only
            // where it is read (a snapshot's records, a closed segment's
            // middle) would let a restarted node run until it meets it
            // again. 1, as damage found at open exits.
            tracing::error!(
                %fatal,
                "raft stopped, and this node met damaged data: {damage}; this node's data cannot be \
                 trusted: rebuild this member from the others (see docs/recovery.md)"
            );
            std::process::exit(EXIT_DAMAGE);
        }
        tracing::error!(%fatal, "raft stopped; exiting, to be restarted");
        std::process::exit(EXIT_RAFT_STOPPED);
    }
}

/// How long a node waits for a leader before it stops waiting to say
/// where it serves (the cluster may never form: a lone node of --peers).
const LEADER_WAIT: Duration = Duration::from_secs(3600);

/// Logs where the console, the API, readiness, metrics and the API's
/// description are, once the node knows a leader (`make run` shows it when
/// it is up).
async fn say_where_once_led(raft: Raft, url: String) {
    let led = raft
        .wait(Some(LEADER_WAIT))
        .metrics(|metrics| metrics.current_leader.is_some(), "a leader")
        .await;
    if led.is_ok() {
        info!(
            "up: console {url}/ui/, API {url}/v1/kv, readiness {url}/readyz, \
             metrics {url}/metrics, API description {url}/v1/openapi.json"
        );
    }
}

/// A node started in this process with nothing listening: its client API
/// is driven by calling [`InProcessNode::client_router`] directly (tower's
/// `oneshot`), so a benchmark sees what a request costs the server alone.
pub struct InProcessNode {
    /// Storage, Raft and the cleaner.
    opened: Opened,
    /// The client port's router.
    router: axum::Router,
}

impl InProcessNode {
    /// Opens the node `config` describes and forms its cluster as
    /// [`serve`] would, without binding a port.
    pub async fn start(config: Config) -> Result<InProcessNode, ServerError> {
        let opened = open(config).await?;
        opened.forming().initialize_once().await?;
        let router = client_router(opened.start_state(false));
        Ok(InProcessNode { opened, router })
    }

    /// The client port's router, with the layers the listener serves
    /// (limits, forwarding, `--auth`, metrics).
    pub fn client_router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Stops Raft and flushes the storage, as [`serve`] does at shutdown.
    pub async fn stop(self) -> Result<(), ServerError> {
        drop(self.router);
        self.opened.close().await
    }
}

/// Binds a listener, naming the address when it cannot.
async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { addr, source })
}

/// Rebuilds the view of `data_dir` from its topic, offline; gives the
/// revision and the applied log index it rebuilt to.
pub fn rebuild(data_dir: &std::path::Path) -> Result<(u64, u64), ServerError> {
    let dirs = DataDirs::new(data_dir);
    // A rebuild makes a view of a node's data: a mistyped path would
    // otherwise be made into an empty node and reported rebuilt.
    let marker = data_dir.join(crate::store::data_format::FORMAT_FILE);
    if !marker.is_file() {
        return Err(ServerError::Config(format!(
            "--data-dir {}: no node's data there (no {} file)",
            data_dir.display(),
            marker.display()
        )));
    }
    let _lock = crate::store::dir_lock::DataDirLock::take(data_dir)?;
    crate::backup::refuse_cut_restore(data_dir)?;
    crate::store::data_format::check_or_mark(data_dir)?;
    let log = LogStore::open(&dirs.raft, None)?;
    let rebuilt = |store: Store| -> Result<(u64, u64), ServerError> {
        let (applied, _) = store.view.applied_state()?;
        Ok((store.revision(), applied.map_or(0, |id| id.index)))
    };
    if crate::store::snapshot::installing_marker(&dirs.snapshot).exists() {
        // An install cut short: opening finishes it, and that builds a
        // new view from the snapshot beside the one in use.
        return rebuilt(Store::open(&dirs, crate::config::topic_defaults(), &log)?);
    }
    // The new view is built beside the one in use, which it replaces only
    // once whole: a rebuild that fails (a topic record it cannot read, a
    // purged log without its snapshot) leaves the node as it was, and
    // removes what it built (or the next start does).
    let view_dirs = crate::store::view::ViewDirs::new(&dirs.view);
    let in_use = view_dirs.current()?;
    let next = view_dirs.next()?;
    let building = DataDirs {
        view: next.clone(),
        ..dirs
    };
    let answer = Store::open(&building, crate::config::topic_defaults(), &log)
        .map_err(ServerError::from)
        .and_then(rebuilt)
        .inspect_err(|_| {
            let _ = crate::store::view::ViewDirs::new(&next).remove_all();
            let _ = view_dirs.remove_stale();
            tracing::warn!(view = %in_use.display(), "the rebuild failed: the view in use is left as it was");
        })?;
    // Laying the current snapshot down again (a topic that ends before
    // it) builds the view one directory further: it comes back here.
    crate::store::view::ViewDirs::new(&next).collapse_into_base()?;
    view_dirs.switch_to(&next)?;
    view_dirs.remove_stale()?;
    Ok(answer)
}
