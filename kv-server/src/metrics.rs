//! Prometheus metrics: the recorder, and the gauges read at scrape time.
//!
//! Counters and histograms are recorded where things happen (requests in the
//! API middleware); gauges of Raft, the topic, the cleaner and the watchers
//! are sampled when `/metrics` is scraped, so they cost nothing in between.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    60.0, 300.0,
];

/// Name of the request counter.
pub const REQUESTS: &str = "kv_http_requests_total";
/// Name of the request latency histogram.
pub const REQUEST_SECONDS: &str = "kv_http_request_duration_seconds";
/// Name of the histogram of raft log appends made durable by one fsync.
pub const LOG_FLUSH_ENTRIES: &str = "kv_raft_log_appends_per_flush";

/// Name of the histogram of log entries applied per state-machine call.
pub const APPLY_ENTRIES: &str = "kv_apply_entries_per_batch";

/// Name of the histogram of client commands per raft entry this node
/// proposed (more than one when writes arrived together).
pub const ENTRY_COMMANDS: &str = "kv_commands_per_entry";

/// Name of the histogram of key-value writes per request a follower
/// relayed to the leader (see `api::relay`).
pub const RELAY_COMMANDS: &str = "kv_commands_per_relay";

/// Name of the histogram of the time one raft-log group takes to write
/// and fsync.
pub const LOG_FLUSH_SECONDS: &str = "kv_raft_log_flush_duration_seconds";

/// Name of the histogram of the time one state-machine apply takes.
pub const APPLY_SECONDS: &str = "kv_apply_duration_seconds";

/// Name of the gauge of long-polls registered with the watch registry;
/// tests poll it to know a long-poll waits before they write.
pub const WATCH_WAITERS: &str = "kv_watch_waiters";

/// Name of the gauge of long-polls holding a slot now, of every kind
/// (`--max-long-polls` bounds it).
pub const LONG_POLLS: &str = "kv_long_polls";

/// Name of the gauge that is 1 while a write of this node waits for room
/// on a full disk (see `space`).
pub const DISK_FULL: &str = "kv_disk_full";

/// Name of the gauge of the bytes `--quota-bytes` counts: topic, view and
/// raft log, as last measured.
pub const SPACE_USED_BYTES: &str = "kv_space_used_bytes";

/// Name of the gauge of the bytes free on the data directory's file system,
/// as last measured.
pub const SPACE_FREE_BYTES: &str = "kv_space_free_bytes";

/// Name of the counter of connections refused before any request, by
/// `listener` and `reason` (`plain_http`, `handshake_failed`,
/// `handshake_timed_out`): every one, where the log names one per 10 s.
pub const CONNECTIONS_REFUSED: &str = "kv_connections_refused_total";

/// Appends-per-flush buckets.
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// A histogram recorded on a hot path (every flush, entry or apply), looked
/// up in the registry once: `histogram!` hashes the name, takes the
/// registry's lock and allocates on every call. Kept in a `static` at the
/// place it is recorded.
pub struct HotHistogram {
    /// The histogram's name.
    name: &'static str,
    /// Its handle, from the first record on.
    handle: OnceLock<metrics::Histogram>,
}

impl HotHistogram {
    /// The histogram `name`, looked up at its first record.
    pub const fn new(name: &'static str) -> HotHistogram {
        HotHistogram {
            name,
            handle: OnceLock::new(),
        }
    }

    /// Records `value`.
    pub fn record(&self, value: f64) {
        self.handle
            .get_or_init(|| {
                // The recorder first, or the handle would record nowhere.
                handle();
                metrics::histogram!(self.name)
            })
            .record(value);
    }
}

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS_S)
            .expect("the latency buckets are not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(LOG_FLUSH_ENTRIES.to_string()),
                GROUP_BUCKETS,
            )
            .expect("the group buckets are not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(APPLY_ENTRIES.to_string()),
                GROUP_BUCKETS,
            )
            .expect("the group buckets are not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(ENTRY_COMMANDS.to_string()),
                GROUP_BUCKETS,
            )
            .expect("the group buckets are not empty")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(RELAY_COMMANDS.to_string()),
                GROUP_BUCKETS,
            )
            .expect("the group buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // A second recorder (a library user installed one) keeps theirs;
        // our handle then renders only what it sees.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// What the gauges are read from at scrape time.
pub struct Gauges {
    /// Raft's term.
    pub term: u64,
    /// Last log index.
    pub last_log_index: u64,
    /// Committed index.
    pub committed_index: u64,
    /// Applied index.
    pub applied_index: u64,
    /// Whether this node leads.
    pub is_leader: bool,
    /// On a leader, milliseconds since a majority last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// The topic's stats.
    pub topic: compaction::TopicStats,
    /// The cleaner's status.
    pub cleaner: compaction::CleanerStatus,
    /// Long-polls registered with the watch registry now (its count is
    /// kept under the registry's lock on register and leave, so reading
    /// it costs one lock and nothing per waiter).
    pub watchers: usize,
    /// Long-polls holding one of the node's slots (`--max-long-polls`):
    /// watches, change-feed reads, and the cluster and broker views.
    pub long_polls: usize,
    /// Members whose NOSPACE alarm is raised.
    pub nospace_alarms: usize,
    /// Whether a writer of this node waits for room on its disk.
    pub disk_full: bool,
    /// Whether this node met damaged data while it ran (`/readyz` names it).
    pub damaged_data: bool,
    /// `--quota-bytes` and `--min-free-bytes` (0: none).
    pub quota_bytes: u64,
    /// See `quota_bytes`.
    pub min_free_bytes: u64,
}

/// Sets the gauges and renders everything in the Prometheus text format.
pub fn render(gauges: &Gauges) -> String {
    let handle = handle();
    metrics::gauge!("kv_raft_term").set(gauges.term as f64);
    metrics::gauge!("kv_raft_last_log_index").set(gauges.last_log_index as f64);
    metrics::gauge!("kv_raft_committed_index").set(gauges.committed_index as f64);
    metrics::gauge!("kv_raft_applied_index").set(gauges.applied_index as f64);
    metrics::gauge!("kv_raft_is_leader").set(if gauges.is_leader { 1.0 } else { 0.0 });
    // 0 off a leader: a leader cut off from a majority still leads by its
    // own account, and only this grows.
    metrics::gauge!("kv_raft_quorum_ack_age_seconds")
        .set(gauges.quorum_ack_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    let topic = &gauges.topic;
    metrics::gauge!("kv_topic_segments").set(topic.segments as f64);
    metrics::gauge!("kv_topic_bytes").set(topic.bytes as f64);
    metrics::gauge!("kv_topic_dirty_ratio").set(topic.dirty_ratio);
    metrics::gauge!("kv_topic_clean_offset").set(topic.clean_offset as f64);
    metrics::gauge!("kv_topic_tombstone_floor").set(topic.tombstone_floor as f64);
    let cleaner = &gauges.cleaner;
    metrics::gauge!("kv_cleaner_runs").set(cleaner.runs as f64);
    metrics::gauge!("kv_cleaner_failures").set(cleaner.failures as f64);
    metrics::gauge!("kv_cleaner_last_success_timestamp_seconds")
        .set(cleaner.last_success_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    metrics::gauge!("kv_cleaner_failing").set(if cleaner.last_error.is_some() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!(WATCH_WAITERS).set(gauges.watchers as f64);
    metrics::gauge!(LONG_POLLS).set(gauges.long_polls as f64);
    metrics::gauge!("kv_alarms", "alarm" => "NOSPACE").set(gauges.nospace_alarms as f64);
    metrics::gauge!(DISK_FULL).set(if gauges.disk_full { 1.0 } else { 0.0 });
    metrics::gauge!("kv_damaged_data").set(if gauges.damaged_data { 1.0 } else { 0.0 });
    metrics::gauge!("kv_space_quota_bytes").set(gauges.quota_bytes as f64);
    metrics::gauge!("kv_space_min_free_bytes").set(gauges.min_free_bytes as f64);
    handle.render()
}
