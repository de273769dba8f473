//! `kv-bench`: load a key-value HTTP/JSON endpoint on this machine
//! (kv-server, or etcd 3.4's JSON gateway) and report throughput, latency
//! percentiles and errors. `kv-bench --help` lists the workloads and flags;
//! `integration_tests::bench` explains the design.

use clap::Parser;
use integration_tests::bench::cli::{self, Cli};
use integration_tests::bench::BenchError;

/// jemalloc, as the server's binary: the load generator shares the machine
/// with the servers it measures, so what it spends is taken from them.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let hard_cap = cli.hard_cap();
    let outcome = match tokio::time::timeout(hard_cap, cli::run(cli)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(BenchError::HardCap(hard_cap)),
    };
    if let Err(error) = outcome {
        eprintln!("kv-bench: {error}");
        std::process::exit(1);
    }
}
