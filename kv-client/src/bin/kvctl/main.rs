//! `kvctl`: the command-line tool of openmessaging-kv.
//!
//! Raw keys (`get`, `put`, `del`, `ls`, `watch`, `cas`), transactions
//! (`txn`), leases (`lease …`), RocketMQ topics
//! and groups (`topic …`, `group …`), replay of the compacted topic,
//! import and export of a broker's own metadata files, and the cluster.
//! Every command is a thin layer over `kv_client::Client`; one module per
//! area. `docs/kvctl.md` is the reference.
//!
//! Output goes to stdout (tables, or JSON with `-o json`); errors and
//! progress bars to stderr. Exit codes: 0 success, 1 error, 2 usage.

mod acl;
mod cli;
mod cluster;
mod keys;
mod lease;
mod metadata;
mod output;
mod progress;
mod replay;
mod rocketmq;
mod snapshot;
mod txn;

use std::process::ExitCode;

use clap::Parser;
use kv_client::Client;

use crate::cli::{Cli, Command, SnapshotCommand};
use crate::output::{Failure, Printer};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = if cli.verbose {
        "kv_client=debug,kvctl=debug"
    } else {
        "error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        // Colours only for a terminal, not for a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "kvctl", &mut script);
        // A reader that stops early (`| head`) is not an error.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        return Ok(());
    }
    if let Command::Man = cli.command {
        let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
        let mut roff = Vec::new();
        page.render(&mut roff)
            .map_err(|error| Failure::error(format!("cannot render the man page: {error}")))?;
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &roff);
        return Ok(());
    }
    let client = connect(&cli)?;
    let printer = Printer::new(cli.output);
    match cli.command {
        Command::Get { key, stale } => keys::get(&client, &printer, &key, stale).await,
        Command::Put {
            key,
            value,
            string,
            create,
            if_revision,
            lease,
        } => {
            let value = keys::parse_value(&value, string)?;
            let condition = match (create, if_revision) {
                (true, _) => kv_client::Condition::Absent,
                (false, Some(revision)) => kv_client::Condition::ModRevision(revision),
                (false, None) => kv_client::Condition::Always,
            };
            let mut options = kv_client::WriteOptions::new().condition(condition);
            if let Some(lease) = lease {
                options = options.lease(lease);
            }
            keys::put(&client, &printer, &key, &value, options).await
        }
        Command::Del { key, if_revision } => {
            keys::delete(&client, &printer, &key, if_revision).await
        }
        Command::Ls {
            prefix,
            keys_only,
            limit,
        } => keys::list(&client, &printer, &prefix, keys_only, limit).await,
        Command::Watch {
            key,
            prefix,
            after,
            count,
            duration,
        } => {
            let watch = if prefix {
                kv_client::Watch::prefix(key)
            } else {
                kv_client::Watch::key(key)
            };
            let watch = match after {
                Some(revision) => watch.after(revision),
                None => watch,
            };
            keys::watch(&client, &printer, watch, count, duration).await
        }
        Command::Cas {
            key,
            revision,
            value,
            string,
        } => {
            let value = keys::parse_value(&value, string)?;
            let condition = match revision {
                0 => kv_client::Condition::Absent,
                revision => kv_client::Condition::ModRevision(revision),
            };
            let options = kv_client::WriteOptions::new().condition(condition);
            keys::put(&client, &printer, &key, &value, options).await
        }
        Command::Txn { file } => txn::run(&client, &printer, &file).await,
        Command::Topic(command) => metadata::topic(&client, &printer, command).await,
        Command::Group(command) => metadata::group(&client, &printer, command).await,
        Command::Replay { from, out } => replay::run(&client, from, out.as_deref()).await,
        Command::ImportRocketmq {
            topics,
            subscription_groups,
        } => rocketmq::import(&client, &printer, &topics, &subscription_groups).await,
        Command::ExportRocketmq { dir } => rocketmq::export(&client, &printer, &dir).await,
        Command::Lease(command) => lease::run(&client, &printer, command).await,
        Command::Cluster(command) => cluster::run(&client, &printer, command).await,
        Command::Alarm(command) => cluster::alarm(&client, &printer, command).await,
        Command::Snapshot(SnapshotCommand::Save { file, stale }) => {
            snapshot::save(&client, &printer, &file, stale).await
        }
        Command::Completion { .. } | Command::Man => unreachable!("answered before connecting"),
        Command::Acl(command) => acl::run(&client, &printer, command).await,
    }
}

/// The client of `--endpoints`; `host:port` without a scheme means `http://`.
fn connect(cli: &Cli) -> Result<Client, Failure> {
    let endpoints: Vec<String> = cli
        .endpoints
        .iter()
        .map(|endpoint| endpoint.trim())
        .filter(|endpoint| !endpoint.is_empty())
        .map(|endpoint| {
            if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("http://{endpoint}")
            }
        })
        .collect();
    let mut builder = Client::builder(endpoints)
        .deadline(cli.timeout)
        .request_timeout(cli.timeout.min(kv_client::DEFAULT_REQUEST_TIMEOUT));
    if let Some(token) = &cli.token {
        builder = builder.token(token.trim());
    }
    if let Some(cacert) = &cli.cacert {
        builder = builder.ca_certificate_file(cacert);
    }
    if let (Some(cert), Some(key)) = (&cli.client_cert, &cli.client_key) {
        builder = builder.client_certificate_files(cert, key);
    }
    builder.build().map_err(Failure::from)
}
