//! RocketMQ peers we did not write, pointed at a name server: a producer and a
//! consumer on rocketmq-rust's client, a route probe, and a conformance check
//! that sends every name-server request code with rocketmq-rust's wire types.
//! Every subcommand is bounded in count and time and exits non-zero, with a
//! message saying what failed, when it does not finish.

mod client;
mod conformance;
mod consume;
mod produce;
mod route;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::Subcommand;

/// The command line.
#[derive(Parser)]
#[command(
    name = "rocketmq-e2e",
    about = "RocketMQ client and wire checks against a name server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to do.
#[derive(Subcommand)]
enum Command {
    /// Send COUNT messages synchronously; prints how many were sent.
    Produce {
        /// Name servers, "host:port;host:port".
        #[arg(long)]
        namesrv: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        count: u32,
        /// Attempts per message before giving up on it (and on the run).
        #[arg(long, default_value_t = 10)]
        attempts: u32,
        /// Bound on the whole run.
        #[arg(long, default_value_t = 300)]
        timeout_s: u64,
        /// Body prefix; bodies are "{prefix}-{i}" (default: topic and process id).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Receive until COUNT distinct messages arrived (exit 0) or the timeout.
    Consume {
        #[arg(long)]
        namesrv: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
    },
    /// Ask one name server for a topic's route and print it on one line.
    Route {
        #[arg(long)]
        namesrv: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 3)]
        timeout_s: u64,
    },
    /// Send every request code a name server answers, check each answer.
    Conformance {
        #[arg(long)]
        namesrv: String,
        #[arg(long, default_value_t = 5)]
        timeout_s: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rocketmq-e2e: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Produce {
                namesrv,
                topic,
                count,
                attempts,
                timeout_s,
                prefix,
            } => {
                let prefix = prefix.unwrap_or_else(|| format!("{topic}-{}", std::process::id()));
                produce::run(
                    &namesrv,
                    &topic,
                    count,
                    attempts,
                    &prefix,
                    Duration::from_secs(timeout_s),
                )
                .await
            }
            Command::Consume {
                namesrv,
                topic,
                group,
                count,
                timeout_s,
            } => {
                consume::run(
                    &namesrv,
                    &topic,
                    &group,
                    count,
                    Duration::from_secs(timeout_s),
                )
                .await
            }
            Command::Route {
                namesrv,
                topic,
                timeout_s,
            } => route::run(&namesrv, &topic, Duration::from_secs(timeout_s)).await,
            Command::Conformance { namesrv, timeout_s } => {
                conformance::run(&namesrv, Duration::from_secs(timeout_s)).await
            }
        }
    });
    // The client keeps background tasks; do not wait for them past the answer.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rocketmq-e2e: {error:#}");
            ExitCode::FAILURE
        }
    }
}
