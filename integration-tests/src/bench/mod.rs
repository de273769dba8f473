//! `kv-bench`, the benchmark tool: drives kv-server's HTTP/JSON API, or
//! etcd 3.4's JSON gateway with the same workloads, from one client, and
//! prints throughput, latency percentiles (HDR histogram) and errors by kind.
//!
//! * [`cli`]: the flags, checked, and the dispatch to a workload.
//! * [`run`]: one function per workload that runs it and prints its report.
//! * [`closed_loop`]: N workers, one connection each, one request at a time
//!   (`put`, `txn`, `get`, `mixed`), bounded by a duration and an operation
//!   count.
//! * [`connection`]: a worker's own HTTP/1.1 connection.
//! * [`target`]: the request shapes of kv-server and etcd, loopback checks.
//! * [`watch`]: watchers and their delivery latency: long-polls on
//!   kv-server, gRPC watch streams on etcd ([`etcd_watch`]).
//! * [`leases`]: leases kept alive once a second, the server's CPU and memory.
//! * [`process`]: a server's CPU time and memory, read from `/proc`.
//! * [`namesrv`]: route lookups and broker registrations over RocketMQ's
//!   remoting protocol, against kv-server's name-server port or RocketMQ's
//!   own name server.
//! * [`replay`]: reading the compacted topic back, online and offline.
//! * [`report`]: histograms, error counts and the `summary` line.
//! * [`tls`]: `--cacert`, `--cert`, `--key` for a cluster that speaks HTTPS.
//!
//! Every run stops by itself (its duration, its operation count, and a hard
//! cap) and only talks to loopback addresses.
//!
//! ```text
//! kv-bench put --connections 64 --duration 10s
//! kv-bench --target etcd --endpoints http://127.0.0.1:2379 get --consistency stale
//! kv-bench route-lookup --namesrv 127.0.0.1:9876,127.0.0.1:9877 --connections 64
//! kv-bench watch --watchers 10000 --watch-keys 1000 --server-pid 4242
//! ```

pub mod cli;
pub mod closed_loop;
pub mod connection;
pub mod etcd_watch;
pub mod leases;
pub mod namesrv;
pub mod process;
pub mod replay;
pub mod report;
pub mod run;
pub mod target;
pub mod tls;
pub mod watch;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An endpoint is not a URL the tool may drive.
    #[error("endpoint {url:?} is not usable: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint is not on this machine.
    #[error(
        "endpoint {url:?} is not a loopback address: kv-bench only drives servers on 127.0.0.1"
    )]
    NotLoopback {
        /// The endpoint as given.
        url: String,
    },
    /// The workload does not exist for this target.
    #[error("the {workload} workload does not exist for {target}: {why}")]
    Unsupported {
        /// The workload.
        workload: &'static str,
        /// The target's name.
        target: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// A flag is out of its range.
    #[error("{0}")]
    BadFlag(String),
    /// Preparing or running the workload failed.
    #[error("{0}")]
    Setup(String),
    /// The run outlived its hard cap.
    #[error("stopped: the run outlived its hard cap of {0:?}")]
    HardCap(std::time::Duration),
}
