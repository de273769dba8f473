//! `kv-server`: one node of openmessaging-kv. `--help` lists the flags.

use clap::Parser;
use kv_server::config::{Cli, CliCommand};

/// jemalloc, not the C library's malloc: a put costs about a tenth less
/// CPU, the rebuild runs almost twice as fast, and memory a burst of
/// watchers took goes back to the system (docs/performance.md).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    // Logs go to stderr, as etcd's do: stdout is for what a command
    // prints (`kv-server man`), and a service manager keeps both.
    kv_server::logging::init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(CliCommand::Rebuild { data_dir }) => {
            kv_server::server::rebuild(&data_dir).map(|(revision, applied)| {
                tracing::info!(revision, applied, "view rebuilt");
            })
        }
        Some(CliCommand::Restore {
            from,
            data_dir,
            node_id,
            peers,
        }) => restore(&from, &data_dir, node_id, &peers).await,
        Some(CliCommand::Man) => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut roff = Vec::new();
            page.render(&mut roff)
                .map_err(|error| kv_server::server::ServerError::Config(error.to_string()))
                .map(|()| {
                    // A reader that stops early is not an error.
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), &roff);
                })
        }
        None => kv_server::server::serve(cli.config, shutdown_signal()).await,
    };
    if let Err(error) = outcome {
        if error.lacks_space() {
            tracing::error!(%error, "kv-server failed: no room on the disk; exiting, to be restarted once there is room");
        } else {
            tracing::error!(%error, "kv-server failed");
        }
        // The log may go to a collector; whoever started the process reads
        // why it stopped on stderr too.
        eprintln!("kv-server: {error}");
        std::process::exit(error.exit_code());
    }
}

/// `kv-server restore`: one member of a new cluster from a backup.
async fn restore(
    from: &std::path::Path,
    data_dir: &std::path::Path,
    node_id: u64,
    peers: &[String],
) -> Result<(), kv_server::server::ServerError> {
    let peers = kv_server::config::parse_peers(peers, node_id)
        .map_err(kv_server::server::ServerError::Config)?;
    let restored = kv_server::backup::restore(from, data_dir, node_id, &peers).await?;
    tracing::info!(
        revision = restored.revision,
        records = restored.records,
        cluster_id = %restored.cluster_id,
        data_dir = %data_dir.display(),
        "restored; start the member with this --data-dir, --node-id and --peers"
    );
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
