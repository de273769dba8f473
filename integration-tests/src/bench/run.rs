//! One function per workload: it runs the workload with the checked flags
//! and prints what it measured, for people and (with `--summary`) scripts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::bench::cli::{Common, CpuFlags, NamesrvFlags};
use crate::bench::closed_loop::{self, Limits, Mix};
use crate::bench::leases as lease_keepers;
use crate::bench::namesrv;
use crate::bench::process::total_cpu_time;
use crate::bench::replay as topic;
use crate::bench::report::{count_text, per_second, Summary};
use crate::bench::target::{Requests, TargetKind};
use crate::bench::watch::{self as watchers, WatchOptions};
use crate::bench::BenchError;

/// Time limit of the one request that reads the whole topic.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(3600);

/// `fill`: every key once.
pub async fn fill(common: &Common, endpoints: Vec<String>) -> Result<(), BenchError> {
    let requests = Arc::new(Requests::new(
        common.target,
        endpoints,
        "bench/k",
        common.value_bytes,
    ));
    let took = closed_loop::fill(
        requests,
        common.connections,
        common.keys,
        common.request_timeout,
    )
    .await?;
    println!(
        "loaded {} keys on {} in {:.2} s ({} puts/s)",
        count_text(common.keys as u64),
        common.target.name(),
        took.as_secs_f64(),
        count_text(per_second(common.keys as u64, took) as u64)
    );
    Ok(())
}

/// `put`, `txn`, `noop`, `get` and `mixed`; with `cpu`'s pids, the
/// servers' CPU time per successful operation too.
pub async fn closed_loop(
    name: &str,
    common: &Common,
    endpoints: Vec<String>,
    mix: Mix,
    needs_keys: bool,
    cpu: &CpuFlags,
) -> Result<(), BenchError> {
    let endpoint_count = endpoints.len();
    let requests = Arc::new(Requests::new(
        common.target,
        endpoints,
        "bench/k",
        common.value_bytes,
    ));
    if needs_keys && !closed_loop::is_filled(&requests, common.keys, common.request_timeout).await?
    {
        let took = closed_loop::fill(
            Arc::clone(&requests),
            common.connections,
            common.keys,
            common.request_timeout,
        )
        .await?;
        println!(
            "loaded {} keys in {:.2} s",
            count_text(common.keys as u64),
            took.as_secs_f64()
        );
    }
    let limits = Limits {
        duration: common.duration,
        ops: common.ops,
    };
    let cpu_before = total_cpu_time(&cpu.server_pids)?;
    let result = closed_loop::run(
        requests,
        common.connections,
        common.keys,
        mix,
        limits,
        common.request_timeout,
    )
    .await?;
    let cpu_used = total_cpu_time(&cpu.server_pids)?.saturating_sub(cpu_before);
    let ops_per_sec = per_second(result.ok(), result.elapsed);
    // Per successful operation: failures cost CPU too, but a server that
    // refuses work should not look cheaper for it.
    let cpu_us_per_op = (!cpu.server_pids.is_empty() && result.ok() > 0)
        .then(|| cpu_used.as_secs_f64() * 1e6 / result.ok() as f64);
    println!(
        "kv-bench {name} on {} ({endpoint_count} endpoint{}), {} connections, {:.2} s",
        common.target.name(),
        if endpoint_count == 1 { "" } else { "s" },
        common.connections,
        result.elapsed.as_secs_f64()
    );
    println!(
        "  operations  {} ok ({} put, {} get), {} failed",
        count_text(result.ok()),
        count_text(result.puts),
        count_text(result.gets),
        count_text(result.errors.total())
    );
    println!("  throughput  {} ops/s", count_text(ops_per_sec as u64));
    println!("  latency     {}", result.latency.describe());
    if let Some(us) = cpu_us_per_op {
        println!(
            "  server CPU  {:.2} s over {} process{}: {us:.1} µs per operation",
            cpu_used.as_secs_f64(),
            cpu.server_pids.len(),
            if cpu.server_pids.len() == 1 { "" } else { "es" }
        );
    }
    println!("  errors      {}", result.errors.describe());
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", name);
        summary.add("target", common.target.name());
        summary.add("endpoints", endpoint_count);
        summary.add("connections", common.connections);
        summary.add("seconds", format!("{:.3}", result.elapsed.as_secs_f64()));
        summary.add("ok", result.ok());
        summary.add("errors", result.errors.total());
        summary.add("ops_per_sec", format!("{ops_per_sec:.1}"));
        result.latency.add_fields(&mut summary);
        if let Some(us) = cpu_us_per_op {
            summary.add("cpu_seconds", format!("{:.3}", cpu_used.as_secs_f64()));
            summary.add("cpu_us_per_op", format!("{us:.1}"));
        }
        println!("{}", summary.line());
    }
    Ok(())
}

fn kv_only(common: &Common, workload: &'static str, why: &'static str) -> Result<(), BenchError> {
    match common.target {
        TargetKind::Kv => Ok(()),
        TargetKind::Etcd => Err(BenchError::Unsupported {
            workload,
            target: common.target.name(),
            why,
        }),
    }
}

pub async fn watch(
    common: &Common,
    endpoint: &str,
    options: &WatchOptions,
) -> Result<(), BenchError> {
    let result = watchers::run(common.target, endpoint, options, common.request_timeout).await?;
    let how = match common.target {
        TargetKind::Kv => "long-polls",
        TargetKind::Etcd => "gRPC watches, one stream per connection",
    };
    println!(
        "kv-bench watch on {}, {} watchers ({how}) over {} keys on {} HTTP/2 connections, {} writes/s for {:.0} s",
        common.target.name(),
        count_text(options.watchers as u64),
        count_text(options.keys as u64),
        options.h2_connections,
        options.writes_per_sec,
        options.duration.as_secs_f64()
    );
    println!(
        "  registered  all waiting after {:.2} s",
        result.registered_in.as_secs_f64()
    );
    println!(
        "  writes      {} acknowledged; {} of {} deliveries seen ({} before the writer's acknowledgement, counted as 0)",
        count_text(result.writes),
        count_text(result.delivered),
        count_text(result.expected_deliveries),
        count_text(result.woke_before_ack)
    );
    println!("  delivery    {}", result.latency.describe());
    let mb = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    let growth = result
        .rss_before
        .zip(result.rss_registered)
        .map(|(before, after)| mb(after) - mb(before));
    match (result.rss_before, result.rss_registered, result.rss_peak) {
        (Some(before), Some(after), Some(peak)) => println!(
            "  memory      VmRSS {:.1} MB before, {:.1} MB with every watcher waiting ({:+.1} MB), {:.1} MB at most while writing",
            mb(before),
            mb(after),
            mb(after) - mb(before),
            mb(peak)
        ),
        _ => println!("  memory      not measured (pass --server-pid)"),
    }
    println!("  errors      {}", result.errors.describe());
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", "watch");
        summary.add("target", common.target.name());
        summary.add("watchers", options.watchers);
        summary.add("keys", options.keys);
        summary.add("h2_connections", options.h2_connections);
        summary.add("writes", result.writes);
        summary.add("deliveries", result.delivered);
        summary.add("expected_deliveries", result.expected_deliveries);
        summary.add("errors", result.errors.total());
        summary.add(
            "register_seconds",
            format!("{:.3}", result.registered_in.as_secs_f64()),
        );
        result.latency.add_fields(&mut summary);
        if let Some(growth) = growth {
            summary.add("rss_growth_mb", format!("{growth:.1}"));
        }
        if let Some(peak) = result.rss_peak {
            summary.add("rss_peak_mb", format!("{:.1}", mb(peak)));
        }
        println!("{}", summary.line());
    }
    Ok(())
}

/// `lease-keepalive`: leases kept alive once a second each.
pub async fn lease_keepalive(
    common: &Common,
    endpoint: &str,
    leases: usize,
    server_pid: Option<u32>,
) -> Result<(), BenchError> {
    kv_only(
        common,
        "lease-keepalive",
        "etcd's keep-alives are a gRPC stream, not an HTTP call",
    )?;
    let result = lease_keepers::run(
        endpoint,
        leases,
        common.connections,
        common.duration,
        common.request_timeout,
        server_pid,
    )
    .await?;
    let per_sec = per_second(result.kept, result.elapsed);
    println!(
        "kv-bench lease-keepalive on kv-server, {} leases kept alive once a second over {} connections for {:.0} s",
        count_text(leases as u64),
        common.connections,
        result.elapsed.as_secs_f64()
    );
    println!("  granted     in {:.2} s", result.granted_in.as_secs_f64());
    println!(
        "  keep-alive  {} answered ({} /s)",
        count_text(result.kept),
        count_text(per_sec as u64)
    );
    println!("  latency     {}", result.latency.describe());
    let cpu_percent = result
        .cpu
        .map(|cpu| 100.0 * cpu.as_secs_f64() / result.elapsed.as_secs_f64().max(f64::EPSILON));
    let cpu_us = result
        .cpu
        .map(|cpu| cpu.as_secs_f64() * 1e6 / (result.kept.max(1) as f64));
    let mb = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    match (cpu_percent, cpu_us, result.rss) {
        (Some(percent), Some(us), Some((before, after))) => println!(
            "  server      {percent:.1}% of a core ({us:.0} µs of CPU per keep-alive); VmRSS {:.1} MB before the grants, {:.1} MB after ({:+.1} MB)",
            mb(before),
            mb(after),
            mb(after) - mb(before)
        ),
        _ => println!("  server      not measured (pass --server-pid)"),
    }
    println!("  errors      {}", result.errors.describe());
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", "lease-keepalive");
        summary.add("target", common.target.name());
        summary.add("leases", leases);
        summary.add("kept", result.kept);
        summary.add("errors", result.errors.total());
        summary.add("ops_per_sec", format!("{per_sec:.1}"));
        result.latency.add_fields(&mut summary);
        if let Some(percent) = cpu_percent {
            summary.add("cpu_percent", format!("{percent:.1}"));
        }
        if let Some(us) = cpu_us {
            summary.add("cpu_us_per_op", format!("{us:.0}"));
        }
        if let Some((before, after)) = result.rss {
            summary.add("rss_growth_mb", format!("{:.1}", mb(after) - mb(before)));
            summary.add("rss_mb", format!("{:.1}", mb(after)));
        }
        println!("{}", summary.line());
    }
    Ok(())
}

pub async fn replay(common: &Common, endpoint: &str, records: usize) -> Result<(), BenchError> {
    kv_only(
        common,
        "replay",
        "etcd has no replay of its history as one stream",
    )?;
    let loaded = topic::ensure_records(
        endpoint,
        records,
        common.value_bytes,
        common.connections,
        common.request_timeout,
    )
    .await?;
    // Reading the whole topic is one request; it may take far longer than
    // a normal one.
    let replayed = topic::replay(endpoint, REPLAY_TIMEOUT).await?;
    let records_per_sec = per_second(replayed.records, replayed.elapsed);
    let mib = replayed.bytes as f64 / f64::from(1u32 << 20);
    println!("kv-bench replay on kv-server");
    match &loaded {
        Some(loaded) => println!(
            "  loaded      {} records in {:.1} s ({} puts/s over {} connections)",
            count_text(loaded.records),
            loaded.elapsed.as_secs_f64(),
            count_text(per_second(loaded.records, loaded.elapsed) as u64),
            common.connections
        ),
        None => println!(
            "  loaded      {} records were already there",
            count_text(records as u64)
        ),
    }
    println!(
        "  replay      {} records, {mib:.1} MiB in {:.2} s: {} records/s, {:.1} MiB/s",
        count_text(replayed.records),
        replayed.elapsed.as_secs_f64(),
        count_text(records_per_sec as u64),
        mib / replayed.elapsed.as_secs_f64().max(f64::EPSILON)
    );
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", "replay");
        summary.add("target", common.target.name());
        summary.add("records", replayed.records);
        summary.add("seconds", format!("{:.3}", replayed.elapsed.as_secs_f64()));
        summary.add("records_per_sec", format!("{records_per_sec:.0}"));
        if let Some(loaded) = &loaded {
            let rate = per_second(loaded.records, loaded.elapsed);
            summary.add("load_puts_per_sec", format!("{rate:.0}"));
        }
        println!("{}", summary.line());
    }
    Ok(())
}

pub fn rebuild(common: &Common, server_bin: &Path, data_dir: &Path) -> Result<(), BenchError> {
    kv_only(common, "rebuild", "it runs kv-server's offline rebuild")?;
    let rebuilt = topic::rebuild(server_bin, data_dir)?;
    // The server reports whole milliseconds; a tiny rebuild may report 0.
    let rebuild_time = rebuilt.rebuild.max(Duration::from_millis(1));
    let records_per_sec = per_second(rebuilt.records, rebuild_time);
    println!("kv-bench rebuild of {}", data_dir.display());
    println!(
        "  rebuild     {} records in {:.2} s: {} records/s ({:.2} s for the whole command)",
        count_text(rebuilt.records),
        rebuilt.rebuild.as_secs_f64(),
        count_text(records_per_sec as u64),
        rebuilt.command.as_secs_f64()
    );
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", "rebuild");
        summary.add("target", common.target.name());
        summary.add("records", rebuilt.records);
        summary.add("seconds", format!("{:.3}", rebuilt.rebuild.as_secs_f64()));
        summary.add(
            "command_seconds",
            format!("{:.3}", rebuilt.command.as_secs_f64()),
        );
        summary.add("records_per_sec", format!("{records_per_sec:.0}"));
        println!("{}", summary.line());
    }
    Ok(())
}

/// The name servers of `flags`, checked.
fn namesrv_addresses(flags: &NamesrvFlags) -> Result<Vec<SocketAddr>, BenchError> {
    if flags.namesrv.is_empty() {
        return Err(BenchError::BadFlag(
            "--namesrv needs at least one address".into(),
        ));
    }
    flags
        .namesrv
        .iter()
        .map(|address| namesrv::loopback_namesrv(address))
        .collect()
}

/// `route-lookup`: GET_ROUTEINFO_BY_TOPIC on random topics.
pub async fn route_lookup(
    common: &Common,
    flags: &NamesrvFlags,
    topics: usize,
    brokers: usize,
) -> Result<(), BenchError> {
    let addresses = namesrv_addresses(flags)?;
    // The brokers stay connected until the lookups are done, as brokers do.
    let fleet = namesrv::Fleet::connect(&addresses, brokers, common.request_timeout).await?;
    let registered = fleet.register(topics, 1, common.connections).await?;
    println!(
        "registered {brokers} brokers × {topics} topics with {} name server(s) in {:.2} s",
        addresses.len(),
        registered.as_secs_f64()
    );
    let limits = Limits {
        duration: common.duration,
        ops: common.ops,
    };
    let result = namesrv::lookups(
        &addresses,
        common.connections,
        topics,
        limits,
        common.request_timeout,
    )
    .await?;
    drop(fleet);
    let ok = result.latency.count();
    let per_sec = per_second(ok, result.elapsed);
    println!(
        "kv-bench route-lookup on {} ({} name server{}), {} connections, {:.2} s",
        flags.label,
        addresses.len(),
        if addresses.len() == 1 { "" } else { "s" },
        common.connections,
        result.elapsed.as_secs_f64()
    );
    println!(
        "  lookups     {} ok, {} failed",
        count_text(ok),
        count_text(result.errors.total())
    );
    println!("  throughput  {} lookups/s", count_text(per_sec as u64));
    println!("  latency     {}", result.latency.describe());
    println!("  errors      {}", result.errors.describe());
    if common.summary {
        let mut summary = Summary::default();
        summary.add("workload", "route-lookup");
        summary.add("target", &flags.label);
        summary.add("endpoints", addresses.len());
        summary.add("connections", common.connections);
        summary.add("seconds", format!("{:.3}", result.elapsed.as_secs_f64()));
        summary.add("ok", ok);
        summary.add("errors", result.errors.total());
        summary.add("ops_per_sec", format!("{per_sec:.1}"));
        result.latency.add_fields(&mut summary);
        println!("{}", summary.line());
    }
    Ok(())
}

/// What the `register` workload registers and measures.
pub struct RegisterShape {
    /// Brokers registering.
    pub brokers: usize,
    /// Topics each holds.
    pub topics: usize,
    /// The servers whose CPU time is measured.
    pub server_pids: Vec<u32>,
    /// A kv-server HTTP endpoint to read the revision from.
    pub revision_from: Option<String>,
}

/// `register`: every broker registers its topics with every name server,
/// then again with nothing changed.
pub async fn register(
    common: &Common,
    flags: &NamesrvFlags,
    shape: &RegisterShape,
) -> Result<(), BenchError> {
    let addresses = namesrv_addresses(flags)?;
    // A data version this run has not used, so the first round changes
    // every broker's registration even on a server that kept the last run's.
    let counter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(2, |since| since.as_millis() as i64);
    println!(
        "kv-bench register on {} ({} name server{}): {} brokers × {} topics, {} at a time",
        flags.label,
        addresses.len(),
        if addresses.len() == 1 { "" } else { "s" },
        shape.brokers,
        shape.topics,
        common.connections
    );
    let fleet = namesrv::Fleet::connect(&addresses, shape.brokers, common.request_timeout).await?;
    let mut summary = Summary::default();
    summary.add("workload", "register");
    summary.add("target", &flags.label);
    summary.add("brokers", shape.brokers);
    summary.add("topics", shape.topics);
    for (round, name) in [("changed", "first"), ("unchanged", "again")] {
        let cpu_before = total_cpu_time(&shape.server_pids)?;
        let revision_before = match &shape.revision_from {
            Some(url) => Some(kv_revision(url, common.request_timeout).await?),
            None => None,
        };
        let took = fleet
            .register(shape.topics, counter, common.connections)
            .await?;
        let cpu_used = total_cpu_time(&shape.server_pids)? - cpu_before;
        let registrations = (shape.brokers * addresses.len()) as u64;
        let cpu_text = if shape.server_pids.is_empty() {
            "server CPU not measured (pass --server-pids)".to_string()
        } else {
            format!(
                "server CPU {:.2} s ({:.0} µs per registration)",
                cpu_used.as_secs_f64(),
                cpu_used.as_secs_f64() * 1e6 / registrations as f64
            )
        };
        let writes = match (&shape.revision_from, revision_before) {
            (Some(url), Some(before)) => {
                let after = kv_revision(url, common.request_timeout).await?;
                summary.add(
                    if round == "changed" {
                        "changed_revisions"
                    } else {
                        "unchanged_revisions"
                    },
                    after - before,
                );
                format!(", {} revisions written", after - before)
            }
            _ => String::new(),
        };
        println!(
            "  {name:<6} ({round}) {registrations} registrations in {:.2} s; {cpu_text}{writes}",
            took.as_secs_f64()
        );
        let (seconds, cpu_field) = if round == "changed" {
            ("changed_seconds", "changed_cpu_seconds")
        } else {
            ("unchanged_seconds", "unchanged_cpu_seconds")
        };
        summary.add(seconds, format!("{:.3}", took.as_secs_f64()));
        summary.add(cpu_field, format!("{:.3}", cpu_used.as_secs_f64()));
    }
    if common.summary {
        println!("{}", summary.line());
    }
    Ok(())
}

/// The store revision kv-server at `url` reports on `/v1/cluster`.
async fn kv_revision(url: &str, timeout: Duration) -> Result<u64, BenchError> {
    let failed = |why: String| BenchError::Setup(format!("reading the revision of {url}: {why}"));
    let answer: serde_json::Value = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|error| failed(error.to_string()))?
        .get(format!("{url}/v1/cluster"))
        .send()
        .await
        .map_err(|error| failed(error.to_string()))?
        .json()
        .await
        .map_err(|error| failed(error.to_string()))?;
    answer["revision"]
        .as_u64()
        .ok_or_else(|| failed(format!("no revision in {answer}")))
}
