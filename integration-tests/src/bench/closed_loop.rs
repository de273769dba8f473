//! The closed-loop driver of `put`, `get` and `mixed`: N workers, each with
//! its own connection, send one request at a time on random keys until the
//! duration or the operation count runs out.
//!
//! Each worker keeps its own histogram and error counts and hands them back
//! when it stops, so nothing is shared on the hot path but one atomic
//! counter (of operations started, for `--ops`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::connection::Connection;
use crate::bench::report::{count_text, Errors, Latency};
use crate::bench::target::{Consistency, Operation, Requests};
use crate::bench::BenchError;

/// Pause after a failed connect, so a dead server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);
/// How often a load tells how far it has come.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// When a run stops: at the deadline, or after `ops` operations, whichever
/// comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest time operations are started for.
    pub duration: Duration,
    /// Most operations started, if bounded.
    pub ops: Option<u64>,
}

/// What a closed-loop run does per operation.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Percentage (0..=100) of operations that are puts; the rest are gets.
    pub put_percent: u8,
    /// How the gets read.
    pub consistency: Consistency,
    /// What a write is: a put, a transaction of three puts, or the no-op
    /// route's put.
    pub write: Operation,
}

impl Mix {
    /// Only writes, each a `write`.
    pub fn writes(write: Operation) -> Mix {
        Mix {
            put_percent: 100,
            consistency: Consistency::Linearizable,
            write,
        }
    }
}

/// The outcome of a closed-loop run.
pub struct RunResult {
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of the successful operations.
    pub latency: Latency,
    /// Failed operations.
    pub errors: Errors,
    /// Successful writes (puts, transactions or no-op puts).
    pub puts: u64,
    /// Successful gets.
    pub gets: u64,
}

impl RunResult {
    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.puts + self.gets
    }
}

/// Runs `mix` on `keys` keys with `connections` workers within `limits`.
pub async fn run(
    requests: Arc<Requests>,
    connections: usize,
    keys: usize,
    mix: Mix,
    limits: Limits,
    request_timeout: Duration,
) -> Result<RunResult, BenchError> {
    let started_ops = Arc::new(AtomicU64::new(0));
    let connections = connections_of(&requests, connections, request_timeout)?;
    let started = Instant::now();
    let deadline = started + limits.duration;
    let workers: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let requests = Arc::clone(&requests);
            let started_ops = Arc::clone(&started_ops);
            tokio::spawn(async move {
                let mut result = RunResult {
                    elapsed: Duration::ZERO,
                    latency: Latency::new(),
                    errors: Errors::default(),
                    puts: 0,
                    gets: 0,
                };
                while Instant::now() < deadline {
                    if let Some(ops) = limits.ops {
                        if started_ops.fetch_add(1, Ordering::Relaxed) >= ops {
                            break;
                        }
                    }
                    let key = rand::random_range(0..keys);
                    let operation = if rand::random_range(0..100u8) < mix.put_percent {
                        mix.write
                    } else {
                        Operation::Get(mix.consistency)
                    };
                    let sent = Instant::now();
                    match requests.execute(&mut connection, key, operation).await {
                        Ok(()) => {
                            result.latency.record(sent.elapsed());
                            match operation {
                                Operation::Put | Operation::Txn | Operation::Noop => {
                                    result.puts += 1
                                }
                                Operation::Get(_) => result.gets += 1,
                            }
                        }
                        Err(kind) => {
                            if kind == "connect" {
                                tokio::time::sleep(CONNECT_BACKOFF).await;
                            }
                            result.errors.add(kind);
                        }
                    }
                }
                result
            })
        })
        .collect();
    let mut total = RunResult {
        elapsed: Duration::ZERO,
        latency: Latency::new(),
        errors: Errors::default(),
        puts: 0,
        gets: 0,
    };
    for worker in workers {
        let result = worker
            .await
            .map_err(|error| BenchError::Setup(format!("a worker failed: {error}")))?;
        total.latency.merge(&result.latency);
        total.errors.merge(&result.errors);
        total.puts += result.puts;
        total.gets += result.gets;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// `count` connections, number i to endpoint i mod n.
fn connections_of(
    requests: &Requests,
    count: usize,
    request_timeout: Duration,
) -> Result<Vec<Connection>, BenchError> {
    let endpoints = requests.parsed_endpoints()?;
    Ok((0..count)
        .map(|i| Connection::new(Arc::clone(&endpoints[i % endpoints.len()]), request_timeout))
        .collect())
}

/// Puts every key from 0 to `count` once, `connections` at a time, and
/// fails on the first key that could not be written. Returns the time taken.
pub async fn fill(
    requests: Arc<Requests>,
    connections: usize,
    count: usize,
    request_timeout: Duration,
) -> Result<Duration, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let connections = connections_of(&requests, connections, request_timeout)?;
    let started = Instant::now();
    let progress = tokio::spawn(report_progress(Arc::clone(&next), count));
    let writers: Vec<_> = connections
        .into_iter()
        .map(|mut connection| {
            let requests = Arc::clone(&requests);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                loop {
                    let key = next.fetch_add(1, Ordering::Relaxed);
                    if key >= count {
                        return Ok(());
                    }
                    requests
                        .execute(&mut connection, key, Operation::Put)
                        .await
                        .map_err(|kind| {
                            BenchError::Setup(format!("loading key {}: {kind}", requests.key(key)))
                        })?;
                }
            })
        })
        .collect();
    for writer in writers {
        writer
            .await
            .map_err(|error| BenchError::Setup(format!("a loader failed: {error}")))??;
    }
    progress.abort();
    Ok(started.elapsed())
}

/// Every few seconds, tells on stderr how far a long load has come.
async fn report_progress(next: Arc<AtomicUsize>, count: usize) {
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let done = next.load(Ordering::Relaxed).min(count);
        eprintln!(
            "loaded {} of {} keys",
            count_text(done as u64),
            count_text(count as u64)
        );
    }
}

/// Whether keys 0 and `count - 1` can be read (stale), i.e. an earlier run
/// loaded them and they need not be written again.
pub async fn is_filled(
    requests: &Requests,
    count: usize,
    request_timeout: Duration,
) -> Result<bool, BenchError> {
    let mut connection = connections_of(requests, 1, request_timeout)?.remove(0);
    for key in [0, count.saturating_sub(1)] {
        let read = Operation::Get(Consistency::Stale);
        if requests.execute(&mut connection, key, read).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}
