//! The `watch` workload: W watchers spread over K keys while one writer
//! updates the keys in turn. On kv-server they are long-polls over a few
//! HTTP/2 connections; on etcd, watches on gRPC streams (`etcd_watch`).
//!
//! Delivery latency is the time from the writer's acknowledgement of a
//! write to a watcher of that key receiving the answer's headers. A server
//! wakes watchers while it applies the write, before it answers the writer,
//! so a watcher may wake first: that counts as 0 and is reported apart.
//! Watchers only record what they saw (revision, instant); the join with the
//! writer's acknowledgements happens after the run, so nothing is shared
//! between the tasks but a channel.
//!
//! Server memory is the VmRSS of `--server-pid`, read before the watchers
//! are sent, once the server reports them all waiting, and at its peak
//! while the writer runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::bench::closed_loop::fill;
use crate::bench::etcd_watch::{self, EtcdWatchers};
use crate::bench::process::rss_bytes;
use crate::bench::report::{Errors, Latency};
use crate::bench::target::{connection_client, default_headers, error_kind, Requests, TargetKind};
use crate::bench::BenchError;

/// How long a watcher's long-poll waits before it asks again.
const LONG_POLL_WAIT: &str = "30s";
/// Longest wait for the server to report every watcher waiting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
/// After the writer stops, how long late deliveries are still counted.
const DELIVERY_GRACE: Duration = Duration::from_secs(1);
/// Pause of a watcher after a failed long-poll.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Writers that create the watched keys.
const FILL_CONNECTIONS: usize = 16;

/// The knobs of a watch run.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Long-poll watchers (W).
    pub watchers: usize,
    /// Keys they are spread over (K); watcher w watches key w mod K.
    pub keys: usize,
    /// HTTP/2 connections the watchers share.
    pub h2_connections: usize,
    /// Writes per second of the writer.
    pub writes_per_sec: u32,
    /// How long the writer runs.
    pub duration: Duration,
    /// The server process whose memory is reported.
    pub server_pid: Option<u32>,
}

/// What a watch run measured.
pub struct WatchResult {
    /// From the first long-poll sent to the server reporting them all waiting.
    pub registered_in: Duration,
    /// Server VmRSS before the watchers, in bytes.
    pub rss_before: Option<u64>,
    /// Server VmRSS with every watcher waiting, in bytes.
    pub rss_registered: Option<u64>,
    /// Largest server VmRSS seen while the writer ran, in bytes.
    pub rss_peak: Option<u64>,
    /// Writes acknowledged.
    pub writes: u64,
    /// Deliveries the acknowledged writes should cause (watchers of each written key).
    pub expected_deliveries: u64,
    /// Deliveries seen of an acknowledged write.
    pub delivered: u64,
    /// Deliveries that arrived before the writer had its acknowledgement.
    pub woke_before_ack: u64,
    /// Delivery latency, acknowledgement to wake-up.
    pub latency: Latency,
    /// Failed long-polls and writes.
    pub errors: Errors,
}

/// What a watcher tells the collector.
pub enum WatchEvent {
    /// The key changed to `revision`; the answer arrived at `at`.
    Delivered { revision: u64, at: Instant },
    /// A long-poll failed.
    Failed(String),
}

/// The watchers of a run, as each target has them.
enum Watchers {
    /// kv-server's long-polls, one task each.
    Kv(Vec<tokio::task::JoinHandle<()>>),
    /// etcd's watch streams.
    Etcd(EtcdWatchers),
}

impl Watchers {
    fn abort(&self) {
        let tasks = match self {
            Watchers::Kv(tasks) => tasks,
            Watchers::Etcd(watchers) => &watchers.tasks,
        };
        for task in tasks {
            task.abort();
        }
    }
}

/// Runs the watch workload against one `endpoint` of `target`: kv-server's
/// long-polls, or etcd's gRPC watch streams (`etcd_watch`).
pub async fn run(
    target: TargetKind,
    endpoint: &str,
    options: &WatchOptions,
    request_timeout: Duration,
) -> Result<WatchResult, BenchError> {
    if options.keys == 0 || options.watchers == 0 || options.h2_connections == 0 {
        return Err(BenchError::Setup(
            "watch needs at least one key, one watcher and one connection".into(),
        ));
    }
    let requests = Arc::new(Requests::new(
        target,
        vec![endpoint.to_string()],
        "watch/k",
        16,
    ));
    fill(
        Arc::clone(&requests),
        FILL_CONNECTIONS.min(options.keys),
        options.keys,
        request_timeout,
    )
    .await?;
    let writer = connection_client(request_timeout)?;
    let rss_before = options.server_pid.map(rss_bytes).transpose()?;

    let (events, mut received) = mpsc::unbounded_channel();
    let registering = Instant::now();
    let watchers = match target {
        TargetKind::Kv => {
            let start_index = store_revision(&writer, endpoint).await?;
            let tasks = spawn_watchers(endpoint, options, start_index, request_timeout, events)?;
            wait_until_waiting(&writer, endpoint, options.watchers as u64).await?;
            Watchers::Kv(tasks)
        }
        TargetKind::Etcd => {
            // Events from the next write on.
            let start = etcd_watch::revision(&writer, endpoint).await? + 1;
            let keys: Vec<String> = (0..options.keys).map(|key| requests.key(key)).collect();
            let watchers =
                etcd_watch::spawn_watchers(endpoint, options, &keys, start, events).await?;
            wait_until_created(&watchers.created, options.watchers as u64).await?;
            Watchers::Etcd(watchers)
        }
    };
    let registered_in = registering.elapsed();
    let rss_registered = options.server_pid.map(rss_bytes).transpose()?;

    let mut errors = Errors::default();
    let mut acks: HashMap<u64, Instant> = HashMap::new();
    let mut expected_deliveries = 0u64;
    let mut rss_peak = rss_registered;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(options.writes_per_sec.max(1)),
    ));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = Instant::now() + options.duration;
    let mut last_rss_sample = Instant::now();
    let mut write = 0usize;
    while Instant::now() < deadline {
        ticks.tick().await;
        let key = write % options.keys;
        write += 1;
        let written = match target {
            TargetKind::Kv => put(&writer, endpoint, &requests.key(key), write).await,
            TargetKind::Etcd => etcd_watch::put(&writer, endpoint, &requests.key(key), write).await,
        };
        match written {
            Ok((revision, acknowledged)) => {
                acks.insert(revision, acknowledged);
                expected_deliveries += watchers_of(key, options) as u64;
            }
            Err(kind) => errors.add(kind),
        }
        if let Some(pid) = options.server_pid {
            if last_rss_sample.elapsed() >= Duration::from_millis(500) {
                rss_peak = rss_peak.max(Some(rss_bytes(pid)?));
                last_rss_sample = Instant::now();
            }
        }
    }
    tokio::time::sleep(DELIVERY_GRACE).await;
    watchers.abort();

    let mut latency = Latency::new();
    let mut delivered = 0;
    let mut woke_before_ack = 0;
    while let Ok(event) = received.try_recv() {
        match event {
            WatchEvent::Delivered { revision, at } => {
                let Some(&ack) = acks.get(&revision) else {
                    continue;
                };
                delivered += 1;
                if at < ack {
                    woke_before_ack += 1;
                }
                latency.record(at.saturating_duration_since(ack));
            }
            WatchEvent::Failed(kind) => errors.add(kind),
        }
    }
    Ok(WatchResult {
        registered_in,
        rss_before,
        rss_registered,
        rss_peak,
        writes: acks.len() as u64,
        expected_deliveries,
        delivered,
        woke_before_ack,
        latency,
        errors,
    })
}

/// How many watchers watch key number `key`.
fn watchers_of(key: usize, options: &WatchOptions) -> usize {
    options.watchers / options.keys + usize::from(key < options.watchers % options.keys)
}

/// Starts the watchers; watcher w watches key w mod K over connection
/// w mod C, from `start_index`, until aborted.
fn spawn_watchers(
    endpoint: &str,
    options: &WatchOptions,
    start_index: u64,
    request_timeout: Duration,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, BenchError> {
    // A long-poll may take its whole wait, plus a normal request's time.
    let poll_timeout = Duration::from_secs(30) + request_timeout;
    let clients = (0..options.h2_connections)
        .map(|_| {
            crate::bench::tls::apply(reqwest::Client::builder())
                .default_headers(default_headers()?)
                .no_proxy()
                .http2_prior_knowledge()
                .tcp_nodelay(true)
                .timeout(poll_timeout)
                .build()
                .map_err(|error| {
                    BenchError::Setup(format!("cannot build an HTTP/2 client: {error}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let watchers = (0..options.watchers)
        .map(|watcher| {
            let client = clients[watcher % clients.len()].clone();
            let url = format!(
                "{endpoint}/v1/kv/watch/k{:07}?consistency=stale&wait={LONG_POLL_WAIT}",
                watcher % options.keys
            );
            let events = events.clone();
            tokio::spawn(async move {
                let mut index = start_index;
                loop {
                    let answer = client.get(format!("{url}&index={index}")).send().await;
                    let at = Instant::now();
                    let response = match answer {
                        Ok(response) => response,
                        Err(error) => {
                            let _ = events.send(WatchEvent::Failed(error_kind(&error)));
                            tokio::time::sleep(RETRY_PAUSE).await;
                            continue;
                        }
                    };
                    let status = response.status().as_u16();
                    let next = response
                        .headers()
                        .get("x-kv-index")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<u64>().ok());
                    let _ = response.bytes().await;
                    match (status, next) {
                        (200, Some(next)) => {
                            if next > index {
                                let delivered = WatchEvent::Delivered { revision: next, at };
                                let _ = events.send(delivered);
                                index = next;
                            }
                        }
                        _ => {
                            let _ = events.send(WatchEvent::Failed(format!("http {status}")));
                            tokio::time::sleep(RETRY_PAUSE).await;
                        }
                    }
                }
            })
        })
        .collect();
    Ok(watchers)
}

/// Writes `{"n": n}` to `key`; returns the write's revision and when its
/// answer arrived.
async fn put(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    n: usize,
) -> Result<(u64, Instant), String> {
    let response = client
        .put(format!("{endpoint}/v1/kv/{key}"))
        .header("content-type", "application/json")
        .body(format!("{{\"n\":{n}}}"))
        .send()
        .await;
    acknowledged(response, |body| body["revision"].as_u64()).await
}

/// The revision a write's answer names (found by `revision` in its JSON
/// body), with when the answer arrived; the kind of failure otherwise.
pub async fn acknowledged(
    response: Result<reqwest::Response, reqwest::Error>,
    revision: impl Fn(&serde_json::Value) -> Option<u64>,
) -> Result<(u64, Instant), String> {
    let response = response.map_err(|error| error_kind(&error))?;
    let acknowledged = Instant::now();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.map_err(|error| error_kind(&error))?;
    match revision(&body) {
        Some(revision) if status < 300 => Ok((revision, acknowledged)),
        _ => Err(format!("http {status}")),
    }
}

/// The server's revision, from `X-Kv-Revision` of a stale read.
async fn store_revision(client: &reqwest::Client, endpoint: &str) -> Result<u64, BenchError> {
    let response = client
        .get(format!("{endpoint}/v1/kv/watch/k0000000?consistency=stale"))
        .send()
        .await
        .map_err(|error| BenchError::Setup(format!("reading the revision: {error}")))?;
    response
        .headers()
        .get("x-kv-revision")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| BenchError::Setup("the answer carries no X-Kv-Revision".into()))
}

/// Waits until etcd has confirmed the creation of `watchers` watches.
async fn wait_until_created(created: &AtomicU64, watchers: u64) -> Result<(), BenchError> {
    let deadline = Instant::now() + REGISTER_TIMEOUT;
    while Instant::now() < deadline {
        if created.load(Ordering::Acquire) >= watchers {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Setup(format!(
        "etcd created only {} of {watchers} watches within {REGISTER_TIMEOUT:?}",
        created.load(Ordering::Acquire)
    )))
}

/// Polls the server's `kv_watch_waiters` metric until `watchers` wait.
async fn wait_until_waiting(
    client: &reqwest::Client,
    endpoint: &str,
    watchers: u64,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + REGISTER_TIMEOUT;
    let mut waiting = 0;
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{endpoint}/metrics")).send().await {
            let text = response.text().await.unwrap_or_default();
            waiting = text
                .lines()
                .find_map(|line| line.strip_prefix("kv_watch_waiters "))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .map_or(0, |value| value as u64);
            if waiting >= watchers {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::Setup(format!(
        "only {waiting} of {watchers} watchers were waiting after {REGISTER_TIMEOUT:?}"
    )))
}
