//! `kv-bench`: load a key-value HTTP/JSON endpoint on this machine
//! (kv-server, or etcd 3.4's JSON gateway) and report throughput, latency
//! percentiles and errors. `kv-bench --help` lists the workloads and flags;
//! `integration_tests::bench` explains the design.

use clap::Parser;
use integration_tests::bench::cli::{self, Cli};
use integration_tests::bench::BenchError;

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
