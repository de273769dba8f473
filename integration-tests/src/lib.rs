//! The harness of the integration tests: it starts real `kv-server`
//! processes on free loopback ports, each with its own temporary data
//! directory, talks HTTP/JSON to them, and cleans up.
//!
//! * [`TestServer`] owns one server process: start, SIGKILL, graceful stop,
//!   restart on the same port and data directory. When a test panics, the
//!   tail of the server's log is printed with the failure.
//! * [`TestCluster`] starts several servers as one cluster (`--peers`),
//!   adds nodes with `--join`, finds the leader and waits for convergence;
//!   [`WriteLoad`] writes in the background and records what was
//!   acknowledged, for the failure scenarios.
//! * [`api`] has small helpers for the JSON API (`call`, the error body) so
//!   a test body reads as its scenario.
//! * [`TestServer::wait_for_waiters`] (in `metrics.rs`) polls `/metrics`
//!   until a number of long-polls wait, so a test never sleeps hoping one
//!   has registered.
//! * [`raw_http`] streams uploads larger than memory by hand, for the
//!   limit tests, and reads the answer while the body is still being sent.
//! * [`leases`] grants and keeps alive leases over raw HTTP, and reads a
//!   node's keys and leases whole, to compare two views.
//! * [`remoting`] is a small RocketMQ remoting client for the name
//!   server's port ([`TestServer::namesrv_addr`]): send a command, read
//!   the answer with its opaque, or send raw bytes; and the captured frames
//!   of real RocketMQ peers, with requests built from them.
//! * [`kvctl`] runs the `kvctl` binary as a child process with a time limit.
//! * [`faults`] has faulty nodes for failover tests: a closed port, a node
//!   that answers one fixed error, a proxy that loses a write's answer.
//! * [`tmpfs`] mounts a small tmpfs under a node's data directory, fills
//!   it and grows it, for the full-disk tests (root needed).
//! * [`tls`] tells the harness which ports of a node speak HTTPS and what
//!   CA and client certificate its HTTP clients use.
//! * [`bench`] is the benchmark tool `kv-bench` (`src/bin/kv-bench.rs`),
//!   which drives kv-server or etcd with the same workloads.
//!
//! The server binary is `$KV_SERVER_BIN` if set, else `kv-server` in the
//! target directory the tests were built in; `cargo build -p kv-server`
//! puts it there.
//!
//! ```no_run
//! use integration_tests::{call, TestServer};
//! use serde_json::json;
//!
//! # async fn example() {
//! let mut server = TestServer::start().await;
//! let (status, _) = call(&server, "PUT", "/v1/kv/apps/a", Some(json!({"replicas": 3}))).await;
//! assert_eq!(status, 201);
//! server.restart().await;
//! let (status, entry) = call(&server, "GET", "/v1/kv/apps/a", None).await;
//! assert_eq!((status, &entry["value"]["replicas"]), (200, &json!(3)));
//! # }
//! ```

pub mod api;
pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod faults;
pub mod kvctl;
pub mod leases;
pub mod load;
mod metrics;
pub mod raw_http;
pub mod remoting;
mod server;
pub mod tls;
pub mod tmpfs;

pub use api::{
    assert_openapi_lists, call, error_of, http2_client, openapi_operation, stingy_http2_client,
};
pub use cluster::TestCluster;
pub use faults::{closed_port_url, silent_port_url, AnswerDroppingProxy, CuttingProxy, StubNode};
pub use kvctl::{kvctl, KvctlRun};
pub use load::{assert_all_acked_present, bulk_load, WriteLoad};
pub use server::{copy_tree, free_ports, server_binary, TestServer};
pub use tls::HarnessTls;
