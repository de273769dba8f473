//! The flags of `kv-bench`: parsed, checked against their bounds, and
//! handed to the workload's function in [`crate::bench::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bench::closed_loop::Mix;
use crate::bench::run as workloads;
use crate::bench::target::{loopback_endpoint, Consistency, Operation, TargetKind};
use crate::bench::watch::WatchOptions;
use crate::bench::BenchError;

/// Longest `--duration`.
const MAX_DURATION: Duration = Duration::from_secs(3600);
/// What a run may take beyond its `--duration` (loading keys or records,
/// registering watchers) before it is stopped.
const HARD_CAP_MARGIN: Duration = Duration::from_secs(3600);
/// Most connections (and watchers' HTTP/2 connections).
const MAX_CONNECTIONS: usize = 10_000;
/// Most watchers.
const MAX_WATCHERS: usize = 100_000;
/// Most records the replay workload loads.
const MAX_RECORDS: usize = 20_000_000;
/// Most leases the lease-keepalive workload grants.
const MAX_LEASES: usize = 100_000;
/// Most brokers the register workload registers.
const MAX_BROKERS: usize = 10_000;
/// Most topics per broker (a registration of 10,000 topics is a few MB).
const MAX_TOPICS: usize = 10_000;
/// Largest value, as kv-server's default limit.
const MAX_VALUE_BYTES: usize = 1 << 20;

/// Load an HTTP/JSON key-value endpoint on this machine and report
/// throughput, latency percentiles and errors.
#[derive(Debug, Parser)]
#[command(name = "kv-bench", version, about)]
pub struct Cli {
    /// The workload.
    #[command(subcommand)]
    pub workload: Workload,
    /// Flags every workload takes.
    #[command(flatten)]
    pub common: Common,
}

/// Flags every workload takes.
#[derive(Debug, Args)]
pub struct Common {
    /// The server behind the endpoints.
    #[arg(long, value_enum, default_value_t = TargetKind::Kv, global = true)]
    pub target: TargetKind,

    /// Base URLs (http:// or https://), comma-separated, on 127.0.0.1;
    /// connection i talks to endpoint i mod n.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub endpoints: Vec<String>,

    /// Concurrent connections, each with one request in flight.
    #[arg(short = 'c', long, default_value_t = 16, global = true)]
    pub connections: usize,

    /// How long operations are started for (`10s`, `500ms`, `2m`).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub duration: Duration,

    /// Stop after this many operations, if that comes before the duration.
    #[arg(short = 'n', long, global = true)]
    pub ops: Option<u64>,

    /// Keys the operations are spread over.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub keys: usize,

    /// Bytes of each value written.
    #[arg(long, default_value_t = 256, global = true)]
    pub value_bytes: usize,

    /// Time limit of one request.
    #[arg(long, default_value = "10s", value_parser = parse_duration, global = true)]
    pub request_timeout: Duration,

    /// The token every request presents (`Authorization: Bearer`), for a
    /// server run with --auth.
    #[arg(long, env = "KV_BENCH_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// End with one `summary key=value …` line for scripts.
    #[arg(long, global = true)]
    pub summary: bool,

    /// TLS: the CA to trust and the client certificate to present.
    #[command(flatten)]
    pub tls: crate::bench::tls::TlsFlags,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Puts every key once, so that reads find them all.
    Fill,
    /// Puts of the value on random keys.
    Put {
        /// The servers' CPU.
        #[command(flatten)]
        cpu: CpuFlags,
    },
    /// Transactions on random keys: a condition on one key's mod revision
    /// (always true), then puts of the value to it and the next two keys.
    Txn {
        /// The servers' CPU.
        #[command(flatten)]
        cpu: CpuFlags,
    },
    /// The HTTP ceiling: puts' requests sent to `/v1/bench/noop/{key}`,
    /// which reads the body and answers 204 behind the same layers
    /// (kv-server started with `--bench-noop-route`).
    Noop {
        /// The servers' CPU.
        #[command(flatten)]
        cpu: CpuFlags,
    },
    /// Gets of random keys (loaded first if missing).
    Get {
        /// linearizable (etcd: default range) or stale (etcd: serializable).
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
        /// The servers' CPU.
        #[command(flatten)]
        cpu: CpuFlags,
    },
    /// Gets and puts on random keys, 90 % gets by default.
    Mixed {
        /// How the gets read.
        #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
        consistency: Consistency,
        /// Percentage of operations that are puts.
        #[arg(long, default_value_t = 10)]
        put_percent: u8,
        /// The servers' CPU.
        #[command(flatten)]
        cpu: CpuFlags,
    },
    /// Watchers on keys a writer updates: delivery latency and server
    /// memory. kv-server: long-polls; etcd: gRPC watch streams.
    Watch {
        /// Watchers.
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        /// Keys the watchers are spread over.
        #[arg(long, default_value_t = 1_000)]
        watch_keys: usize,
        /// HTTP/2 connections the watchers share (kv-server carries 1,000
        /// streams per connection by default: 10,000 watchers need 10; on
        /// etcd each connection is one watch stream carrying its share).
        #[arg(long, default_value_t = 16)]
        h2_connections: usize,
        /// Writes per second to the watched keys.
        #[arg(long, default_value_t = 100)]
        writes_per_sec: u32,
        /// The server's process id, to report its memory (VmRSS).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Leases kept alive once a second each: the keep-alives' latency, and
    /// the server's CPU and memory (kv-server only).
    LeaseKeepalive {
        /// Leases granted and kept alive.
        #[arg(long, default_value_t = 10_000)]
        leases: usize,
        /// The server's process id, to report its CPU time and memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Route lookups (GET_ROUTEINFO_BY_TOPIC) over RocketMQ's remoting
    /// protocol on random topics, after registering the brokers that hold
    /// them.
    RouteLookup {
        /// The name servers.
        #[command(flatten)]
        namesrv: NamesrvFlags,
        /// Topics the lookups are spread over.
        #[arg(long, default_value_t = 1_000)]
        topics: usize,
        /// Brokers holding every topic.
        #[arg(long, default_value_t = 2)]
        brokers: usize,
    },
    /// Brokers registering their topics (REGISTER_BROKER) with every name
    /// server, then again with nothing changed, as their 30 s heartbeat
    /// does: the time and server CPU of each round.
    Register {
        /// The name servers.
        #[command(flatten)]
        namesrv: NamesrvFlags,
        /// Brokers registering.
        #[arg(long, default_value_t = 100)]
        brokers: usize,
        /// Topics each broker holds.
        #[arg(long, default_value_t = 1_000)]
        topics: usize,
        /// The servers' process ids, comma-separated, to report their CPU
        /// time.
        #[arg(long, value_delimiter = ',')]
        server_pids: Vec<u32>,
        /// A kv-server HTTP endpoint whose revision is read before and
        /// after the unchanged round, to count its raft writes.
        #[arg(long)]
        revision_from: Option<String>,
    },
    /// Records per second of `/v1/topic/records?from=0`, after loading
    /// `--records` records if an earlier run did not (kv-server only).
    Replay {
        /// Records (distinct keys) the topic holds at least.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
    },
    /// Records per second of an offline view rebuild, `kv-server rebuild`
    /// (the server must be stopped).
    Rebuild {
        /// The kv-server binary.
        #[arg(long)]
        server_bin: PathBuf,
        /// The stopped server's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Whose CPU time a closed-loop run measures.
#[derive(Debug, Default, Args)]
pub struct CpuFlags {
    /// Server process ids, comma-separated (every member of a cluster):
    /// their CPU time (user + system, from /proc) over the run is reported
    /// per successful operation.
    #[arg(long, value_delimiter = ',')]
    pub server_pids: Vec<u32>,
}

/// Where the name-server workloads connect, and what the report calls
/// the server.
#[derive(Debug, Args)]
pub struct NamesrvFlags {
    /// Name-server addresses (ip:port on loopback), comma-separated;
    /// connection i talks to address i mod n.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:9876")]
    pub namesrv: Vec<String>,
    /// The server's name in the report.
    #[arg(long, default_value = "kv-server")]
    pub label: String,
}

impl Cli {
    /// How long this run may take at most.
    pub fn hard_cap(&self) -> Duration {
        self.common.duration + HARD_CAP_MARGIN
    }
}

/// Runs the workload `cli` asks for and prints its report.
pub async fn run(cli: Cli) -> Result<(), BenchError> {
    let common = &cli.common;
    check_common(common)?;
    if let Some(token) = &common.token {
        super::target::present_token(token.trim())?;
    }
    common.tls.load()?;
    let endpoints = common
        .endpoints
        .iter()
        .map(|url| loopback_endpoint(url))
        .collect::<Result<Vec<_>, _>>()?;
    match cli.workload {
        Workload::Fill => workloads::fill(common, endpoints).await,
        Workload::Put { cpu } => {
            let mix = Mix::writes(Operation::Put);
            workloads::closed_loop("put", common, endpoints, mix, false, &cpu).await
        }
        Workload::Txn { cpu } => {
            let mix = Mix::writes(Operation::Txn);
            workloads::closed_loop("txn", common, endpoints, mix, false, &cpu).await
        }
        Workload::Noop { cpu } => {
            if common.target != TargetKind::Kv {
                return Err(BenchError::Unsupported {
                    workload: "noop",
                    target: common.target.name(),
                    why: "the no-op route is kv-server's own (--bench-noop-route)",
                });
            }
            let mix = Mix::writes(Operation::Noop);
            workloads::closed_loop("noop", common, endpoints, mix, false, &cpu).await
        }
        Workload::LeaseKeepalive { leases, server_pid } => {
            if !(1..=MAX_LEASES).contains(&leases) {
                return Err(BenchError::BadFlag(format!(
                    "--leases must be 1 to {MAX_LEASES}"
                )));
            }
            workloads::lease_keepalive(common, &endpoints[0], leases, server_pid).await
        }
        Workload::Get { consistency, cpu } => {
            let mix = Mix {
                put_percent: 0,
                consistency,
                write: Operation::Put,
            };
            let name = format!("get-{}", consistency.name());
            workloads::closed_loop(&name, common, endpoints, mix, true, &cpu).await
        }
        Workload::Mixed {
            consistency,
            put_percent,
            cpu,
        } => {
            if put_percent > 100 {
                return Err(BenchError::BadFlag(
                    "--put-percent is a percentage, 0 to 100".into(),
                ));
            }
            let mix = Mix {
                put_percent,
                consistency,
                write: Operation::Put,
            };
            let name = format!("mixed-{}", consistency.name());
            workloads::closed_loop(&name, common, endpoints, mix, true, &cpu).await
        }
        Workload::Watch {
            watchers,
            watch_keys,
            h2_connections,
            writes_per_sec,
            server_pid,
        } => {
            if watchers > MAX_WATCHERS || h2_connections > MAX_CONNECTIONS {
                return Err(BenchError::BadFlag(format!(
                    "at most {MAX_WATCHERS} watchers on {MAX_CONNECTIONS} connections"
                )));
            }
            let options = WatchOptions {
                watchers,
                keys: watch_keys,
                h2_connections,
                writes_per_sec,
                duration: common.duration,
                server_pid,
            };
            workloads::watch(common, &endpoints[0], &options).await
        }
        Workload::RouteLookup {
            namesrv,
            topics,
            brokers,
        } => {
            if topics == 0 || brokers == 0 {
                return Err(BenchError::BadFlag(
                    "--topics and --brokers must be at least 1".into(),
                ));
            }
            workloads::route_lookup(common, &namesrv, topics, brokers).await
        }
        Workload::Register {
            namesrv,
            brokers,
            topics,
            server_pids,
            revision_from,
        } => {
            if !(1..=MAX_BROKERS).contains(&brokers) || !(1..=MAX_TOPICS).contains(&topics) {
                return Err(BenchError::BadFlag(format!(
                    "--brokers must be 1 to {MAX_BROKERS}, --topics 1 to {MAX_TOPICS}"
                )));
            }
            let revision_from = revision_from
                .map(|url| loopback_endpoint(&url))
                .transpose()?;
            let shape = workloads::RegisterShape {
                brokers,
                topics,
                server_pids,
                revision_from,
            };
            workloads::register(common, &namesrv, &shape).await
        }
        Workload::Replay { records } => {
            if records > MAX_RECORDS {
                return Err(BenchError::BadFlag(format!(
                    "--records must be at most {MAX_RECORDS}"
                )));
            }
            workloads::replay(common, &endpoints[0], records).await
        }
        Workload::Rebuild {
            server_bin,
            data_dir,
        } => workloads::rebuild(common, &server_bin, &data_dir),
    }
}

fn check_common(common: &Common) -> Result<(), BenchError> {
    let bad = |message: String| Err(BenchError::BadFlag(message));
    if common.endpoints.is_empty() {
        return bad("--endpoints needs at least one URL".into());
    }
    if !(1..=MAX_CONNECTIONS).contains(&common.connections) {
        return bad(format!("--connections must be 1 to {MAX_CONNECTIONS}"));
    }
    if common.duration.is_zero() || common.duration > MAX_DURATION {
        return bad(format!(
            "--duration must be above 0 and at most {MAX_DURATION:?}"
        ));
    }
    if common.ops == Some(0) {
        return bad("--ops must be at least 1".into());
    }
    if common.keys == 0 {
        return bad("--keys must be at least 1".into());
    }
    if !(2..=MAX_VALUE_BYTES).contains(&common.value_bytes) {
        return bad(format!("--value-bytes must be 2 to {MAX_VALUE_BYTES}"));
    }
    if common.request_timeout.is_zero() {
        return bad("--request-timeout must be above 0".into());
    }
    Ok(())
}

/// Parses `10`, `10s`, `500ms`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?}: use ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10 days").is_err());
    }

    #[test]
    fn the_flags_parse() {
        Cli::command().debug_assert();
    }

    use clap::CommandFactory as _;
}
