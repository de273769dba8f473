//! Leases kept alive: `leases` leases (60 s TTL) granted, then each kept
//! alive once a second for the run, spread evenly over the second by
//! `connections` workers. Reports the keep-alives' latency and errors and,
//! with the server's pid, its CPU time over the keep-alive phase (from
//! `/proc/<pid>/stat`) and its memory before the grants and after the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::process::{cpu_time, rss_bytes};
use crate::bench::report::{Errors, Latency};
use crate::bench::target::{connection_client, error_kind};
use crate::bench::BenchError;

/// The TTL of the leases: long enough that a slow round never loses one.
const TTL_S: u64 = 60;

/// What a keep-alive run measured.
pub struct LeaseRun {
    /// Keep-alives answered 200.
    pub kept: u64,
    /// From the first keep-alive to the last answer.
    pub elapsed: Duration,
    /// Their latency.
    pub latency: Latency,
    /// Failed grants and keep-alives, by kind.
    pub errors: Errors,
    /// The time the grants took.
    pub granted_in: Duration,
    /// The server's CPU time over the keep-alive phase.
    pub cpu: Option<Duration>,
    /// Server VmRSS before the grants and after the run, in bytes.
    pub rss: Option<(u64, u64)>,
}

/// Grants `leases` leases on `endpoint`, then keeps each alive once a
/// second for `duration`.
pub async fn run(
    endpoint: &str,
    leases: usize,
    connections: usize,
    duration: Duration,
    request_timeout: Duration,
    server_pid: Option<u32>,
) -> Result<LeaseRun, BenchError> {
    let rss_before = server_pid.map(rss_bytes).transpose()?;
    let clients = (0..connections)
        .map(|_| connection_client(request_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let endpoint: Arc<str> = Arc::from(endpoint);

    // Grants: each worker grants its share.
    let started = Instant::now();
    let per_worker = leases.div_ceil(connections);
    let grants: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(worker, client)| {
            let (client, endpoint) = (client.clone(), Arc::clone(&endpoint));
            let count = per_worker.min(leases.saturating_sub(worker * per_worker));
            tokio::spawn(async move { grant(&client, &endpoint, count).await })
        })
        .collect();
    let mut ids = Vec::with_capacity(connections);
    let mut errors = Errors::default();
    for grant in grants {
        let (granted, failed) = grant
            .await
            .map_err(|error| BenchError::Setup(format!("a grant worker failed: {error}")))?;
        ids.push(granted);
        for kind in failed {
            errors.add(kind);
        }
    }
    let granted_in = started.elapsed();
    if ids.iter().map(Vec::len).sum::<usize>() < leases {
        return Err(BenchError::Setup(format!(
            "only {} of {leases} leases were granted: {}",
            ids.iter().map(Vec::len).sum::<usize>(),
            errors.describe()
        )));
    }

    // Keep-alives: each worker walks its leases once a second.
    let cpu_before = server_pid.map(cpu_time).transpose()?;
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = clients
        .into_iter()
        .zip(ids)
        .map(|(client, ids)| {
            let endpoint = Arc::clone(&endpoint);
            tokio::spawn(async move { keep_alive(&client, &endpoint, &ids, deadline).await })
        })
        .collect();
    let mut kept = 0;
    let mut latency = Latency::new();
    for worker in workers {
        let (worker_kept, worker_latency, failed) = worker
            .await
            .map_err(|error| BenchError::Setup(format!("a keep-alive worker failed: {error}")))?;
        kept += worker_kept;
        latency.merge(&worker_latency);
        for kind in failed {
            errors.add(kind);
        }
    }
    let elapsed = started.elapsed();
    let cpu = match (server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_time(pid)?.saturating_sub(before)),
        _ => None,
    };
    let rss = match (server_pid, rss_before) {
        (Some(pid), Some(before)) => Some((before, rss_bytes(pid)?)),
        _ => None,
    };
    Ok(LeaseRun {
        kept,
        elapsed,
        latency,
        errors,
        granted_in,
        cpu,
        rss,
    })
}

/// Grants `count` leases; the ids granted and the kinds of the failures.
async fn grant(client: &reqwest::Client, endpoint: &str, count: usize) -> (Vec<u64>, Vec<String>) {
    let mut ids = Vec::with_capacity(count);
    let mut failed = Vec::new();
    for _ in 0..count {
        let answer = client
            .post(format!("{endpoint}/v1/leases"))
            .header("content-type", "application/json")
            .body(format!("{{\"ttl_s\":{TTL_S}}}"))
            .send()
            .await;
        let body = match answer {
            Ok(answer) if answer.status().is_success() => answer.json::<serde_json::Value>().await,
            Ok(answer) => {
                failed.push(format!("grant http {}", answer.status().as_u16()));
                continue;
            }
            Err(error) => {
                failed.push(format!("grant {}", error_kind(&error)));
                continue;
            }
        };
        match body.ok().and_then(|body| body["id"].as_u64()) {
            Some(id) => ids.push(id),
            None => failed.push("grant answer without an id".into()),
        }
    }
    (ids, failed)
}

/// Keeps each of `ids` alive once a second until `deadline`, spread over
/// the second; the keep-alives answered, their latency, the failures.
async fn keep_alive(
    client: &reqwest::Client,
    endpoint: &str,
    ids: &[u64],
    deadline: Instant,
) -> (u64, Latency, Vec<String>) {
    let mut kept = 0;
    let mut latency = Latency::new();
    let mut failed = Vec::new();
    if ids.is_empty() {
        return (kept, latency, failed);
    }
    let spacing = Duration::from_secs(1) / ids.len() as u32;
    let mut next = Instant::now();
    'rounds: loop {
        for id in ids {
            if Instant::now() >= deadline {
                break 'rounds;
            }
            tokio::time::sleep_until(next.into()).await;
            next += spacing;
            let sent = Instant::now();
            let answer = client
                .post(format!("{endpoint}/v1/leases/{id}/keepalive"))
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    let _ = answer.bytes().await;
                    latency.record(sent.elapsed());
                    kept += 1;
                }
                Ok(answer) => failed.push(format!("keepalive http {}", answer.status().as_u16())),
                Err(error) => failed.push(format!("keepalive {}", error_kind(&error))),
            }
        }
    }
    (kept, latency, failed)
}
