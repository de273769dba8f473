//! One node of openmessaging-kv: Raft (openraft) over the compacted topic,
//! the sled view, watches and the HTTP/JSON API.
//!
//! * `types` — the Raft type configuration and the commands.
//! * `store` — the raft log store, the state machine (topic + view),
//!   snapshots in the topic's segment format.
//! * `watch` — the long-poll registry.
//! * `leases` — the leader's lease deadlines and the loop that ends the
//!   leases nobody kept alive.
//! * `network` — Raft RPC to other nodes over HTTP.
//! * `read_index` — read-index rounds shared by concurrent reads.
//! * `api` — the axum routers, one module per area.
//! * `namesrv` — the RocketMQ name server: remoting listener, handlers,
//!   route state under `namesrv/` keys.
//! * `http` — HTTP/1.1 and HTTP/2 serving with graceful shutdown.
//! * `write_stall` — closing connections whose peer stops reading.
//! * `tls` — rustls on both listeners and on the calls between nodes.
//! * [`server`] — start-up and shutdown.
//! * [`backup`] — restoring a new cluster's members from a backup.
//! * `crash` — named crash points for the fault tests.
//! * `clock` — the wall clock that stamps commands.
//! * `write_budget` — backpressure on writes, in bytes.
//! * `space` — the space quota, the free-space floor and a full disk.
//! * `slow_sync` — a warning for a sync that held the node up.
//!
//! ```no_run
//! # async fn run() -> Result<(), kv_server::server::ServerError> {
//! use clap::Parser;
//! let cli = kv_server::config::Cli::parse_from(["kv-server", "--data-dir", "/tmp/kv"]);
//! kv_server::server::serve(cli.config, std::future::pending()).await
//! # }
//! ```

/// The version of this build, as the package names it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build was made from ("unknown" outside a git checkout).
pub const COMMIT: &str = env!("KV_BUILD_COMMIT");
/// `--version`: the version and the commit.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KV_BUILD_COMMIT"),
    ")"
);

pub(crate) mod acl;
pub(crate) mod api;
pub mod backup;
pub(crate) mod caught_up;
pub(crate) mod clock;
pub mod config;
pub(crate) mod crash;
pub(crate) mod error;
pub(crate) mod http;
pub(crate) mod http_error_body;
pub(crate) mod join;
pub(crate) mod leases;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod namesrv;
pub(crate) mod network;
pub(crate) mod peer;
pub(crate) mod peer_channel;
pub(crate) mod peer_codec;
pub(crate) mod read_index;
pub(crate) mod removal;
pub mod server;
pub(crate) mod slow_sync;
pub(crate) mod snapshot_transfer;
pub(crate) mod snapshot_trigger;
pub(crate) mod space;
pub(crate) mod store;
pub(crate) mod tls;
pub(crate) mod types;
pub(crate) mod watch;
pub(crate) mod write_budget;
pub(crate) mod write_stall;

#[cfg(test)]
mod fuzz;
