//! `kv-chaos`: the fault-injection run of `make chaos`. Runs histories of
//! concurrent clients against a real cluster under a seeded random fault
//! schedule, checks each, then runs the kill -9 durability cycles; prints
//! what it found and exits 1 if it found anything. docs/reliability.md
//! tells how to replay a seed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use integration_tests::chaos::clients::{group_of, KeySpace};
use integration_tests::chaos::history::Operation;
use integration_tests::chaos::kill_cycles::run_kill_cycles;
use integration_tests::chaos::linearizability::{check, Verdict};
use integration_tests::chaos::report::Totals;
use integration_tests::chaos::run::{run_history, HistoryConfig};

/// The run's knobs.
#[derive(Debug, Parser)]
#[command(about = "Fault injection against a real kv-server cluster, checked for linearizability")]
struct Args {
    /// Histories to run.
    #[arg(long, env = "CHAOS_HISTORIES", default_value_t = 20)]
    histories: usize,
    /// Seconds of client load per history.
    #[arg(long, env = "CHAOS_SECONDS", default_value_t = 60)]
    seconds: u64,
    /// The seed of the first history (history i uses seed + i, and the
    /// kill cycles use this seed); random when not given.
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// kill -9 durability cycles after the histories.
    #[arg(long, env = "CHAOS_KILL_CYCLES", default_value_t = 1_000)]
    kill_cycles: usize,
    /// Nodes in the cluster.
    #[arg(long, env = "CHAOS_NODES", default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=5))]
    nodes: u64,
    /// Concurrent clients.
    #[arg(long, env = "CHAOS_CLIENTS", default_value_t = 12)]
    clients: usize,
    /// Key groups (every operation touches one group).
    #[arg(long, default_value_t = 16)]
    groups: usize,
    /// Keys per group.
    #[arg(long, default_value_t = 3)]
    keys_per_group: usize,
    /// Seconds the linearizability check may search one history.
    #[arg(long, default_value_t = 120)]
    check_seconds: u64,
    /// Where failing histories are saved (every history with `--keep`).
    #[arg(long, env = "CHAOS_OUT", default_value = "target/chaos")]
    out: PathBuf,
    /// Save every history, not only failing ones.
    #[arg(long)]
    keep: bool,
    /// Check a saved history (`history-<seed>.json`) again and run nothing.
    #[arg(long, value_name = "FILE")]
    recheck: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.recheck {
        return recheck(file, Duration::from_secs(args.check_seconds));
    }
    use_sibling_server();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds")
        .block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "kv-chaos: seed {seed}, {} histories of {} s on {} nodes with {} clients, then {} kill -9 cycles",
        args.histories, args.seconds, args.nodes, args.clients, args.kill_cycles
    );
    let mut totals = Totals::default();
    for index in 0..args.histories {
        let config = HistoryConfig {
            seed: seed.wrapping_add(index as u64),
            length: Duration::from_secs(args.seconds),
            nodes: args.nodes,
            clients: args.clients,
            keys: KeySpace {
                groups: args.groups,
                keys_per_group: args.keys_per_group,
            },
            check_limit: Duration::from_secs(args.check_seconds),
        };
        let report = run_history(&config).await;
        println!("history {}/{}: {report}", index + 1, args.histories);
        if args.keep || report.found_anything() {
            match report.save(&args.out) {
                Ok(path) => println!("  saved to {}", path.display()),
                Err(error) => println!("  could not be saved to {}: {error}", args.out.display()),
            }
        }
        totals.add(&report);
    }
    if args.histories > 0 {
        println!("histories: {totals}");
    }
    let mut failed = totals.anomalies + totals.liveness > 0;
    if args.kill_cycles > 0 {
        let kills = run_kill_cycles(seed, args.kill_cycles).await;
        println!("{kills}");
        failed |= !kills.lost.is_empty() || !kills.anomalies.is_empty();
    }
    if failed {
        println!(
            "kv-chaos: FOUND ANOMALIES (replay one history with --seed <its seed> --histories 1)"
        );
        ExitCode::FAILURE
    } else {
        println!("kv-chaos: no anomalies");
        ExitCode::SUCCESS
    }
}

/// Points the harness at the `kv-server` next to this binary (the harness
/// otherwise looks where a test executable's would be), unless
/// `KV_SERVER_BIN` says otherwise.
fn use_sibling_server() {
    if std::env::var_os("KV_SERVER_BIN").is_some() {
        return;
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("kv-server")));
    if let Some(server) = sibling.filter(|path| path.is_file()) {
        // Set before the runtime starts: no other thread reads the
        // environment yet.
        std::env::set_var("KV_SERVER_BIN", server);
    }
}

/// Checks the history saved in `file` again and prints the verdict.
fn recheck(file: &std::path::Path, limit: Duration) -> ExitCode {
    let saved = std::fs::read(file)
        .map_err(|error| error.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        })
        .and_then(|saved| {
            serde_json::from_value::<Vec<Operation>>(saved["history"].clone())
                .map_err(|error| format!("no history in it: {error}"))
        });
    let history = match saved {
        Ok(history) => history,
        Err(error) => {
            println!("kv-chaos: cannot read {}: {error}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match check(&history, group_of, limit) {
        Verdict::Linearizable => {
            println!(
                "{}: {} operations, linearizable",
                file.display(),
                history.len()
            );
            ExitCode::SUCCESS
        }
        Verdict::NotLinearizable { group, explanation } => {
            println!(
                "{}: group {group} is NOT linearizable: {explanation}",
                file.display()
            );
            ExitCode::FAILURE
        }
        Verdict::Unknown { group } => {
            println!(
                "{}: the search of group {group} ran out of {limit:?}",
                file.display()
            );
            ExitCode::FAILURE
        }
    }
}
