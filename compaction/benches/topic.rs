//! Benchmarks of the compacted topic: the append path, replay from offset 0,
//! and one cleaner pass.
//!
//! Every benchmark reports records/s and MB/s (criterion's `thrpt` lines).
//! The data lives in temporary directories that are removed afterwards.
//!
//! * `append`: 256-byte values on 10,000 keys, 100 records per `append`,
//!   `sync` after every 1,000 records.
//! * `replay`: `read_from(0)` over a topic of 1,000,000 such records (built
//!   once, 64 MiB segments, all closed).
//! * `clean`: one `clean_once_at` over a copy of that topic (the copy is made
//!   and fsynced outside the measurement); the on-disk sizes before and after
//!   the pass and the live-data size are printed.

use std::fs::{self, File};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compaction::{CleanReport, Record, Topic, TopicConfig};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use tempfile::TempDir;

/// Bytes of every value.
const VALUE_BYTES: usize = 256;
/// Distinct keys; record `n` has key `topics/t{n % KEYS}`.
const KEYS: u64 = 10_000;
/// Records of the topic the replay and cleaner benchmarks work on.
const TOPIC_RECORDS: u64 = 1_000_000;
/// Records per `append` call in the append benchmark.
const APPEND_BATCH: u64 = 100;
/// Records between two `sync` calls.
const SYNC_EVERY: u64 = 1_000;
/// Timestamp of offset 0; record `n` is stamped `n` ms later.
const BASE_TIMESTAMP_MS: u64 = 1_700_000_000_000;

/// The records the benchmarks write: record `n` is fully determined by `n`.
struct Workload {
    keys: Vec<Bytes>,
    value: Bytes,
}

impl Workload {
    fn new() -> Self {
        let keys = (0..KEYS)
            .map(|n| Bytes::from(format!("topics/t{n}")))
            .collect();
        let value = (0..VALUE_BYTES)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>();
        Workload {
            keys,
            value: Bytes::from(value),
        }
    }

    fn record(&self, offset: u64) -> Record {
        Record::put(
            offset,
            BASE_TIMESTAMP_MS + offset,
            self.keys[(offset % KEYS) as usize].clone(),
            self.value.clone(),
        )
    }

    fn batch(&self, first: u64, len: u64) -> Vec<Record> {
        (first..first + len)
            .map(|offset| self.record(offset))
            .collect()
    }

    /// Mean frame size over one cycle of the keys.
    fn mean_frame_bytes(&self) -> f64 {
        let total: usize = (0..KEYS).map(|n| self.record(n).frame_len()).sum();
        total as f64 / KEYS as f64
    }

    /// Bytes of the latest record of every key once `records` were written:
    /// what a fully compacted topic must hold.
    fn live_bytes(&self, records: u64) -> u64 {
        (records.saturating_sub(KEYS)..records)
            .map(|offset| self.record(offset).frame_len() as u64)
            .sum()
    }
}

/// The configuration of the replay and cleaner topic: default segments, and
/// a cleaner that runs whatever the dirty ratio and age.
fn cleaner_config() -> TopicConfig {
    TopicConfig {
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        ..TopicConfig::default()
    }
}

/// Writes `TOPIC_RECORDS` records into a new topic and rolls it, so every
/// record sits in a closed segment.
fn build_topic(workload: &Workload) -> (TempDir, Topic) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let topic = Topic::open(dir.path(), cleaner_config()).expect("open the topic");
    let started = Instant::now();
    for first in (0..TOPIC_RECORDS).step_by(SYNC_EVERY as usize) {
        let len = SYNC_EVERY.min(TOPIC_RECORDS - first);
        topic
            .append(&workload.batch(first, len))
            .expect("append to the topic");
    }
    topic.sync().expect("sync the topic");
    topic.roll().expect("roll the topic");
    let stats = topic.stats();
    println!(
        "built a topic of {TOPIC_RECORDS} records, {} bytes in {} segments, in {:.2} s",
        stats.bytes,
        stats.segments,
        started.elapsed().as_secs_f64()
    );
    (dir, topic)
}

/// Copies the files of the topic in `source` into a new directory and makes
/// them durable, so the copy behaves like a topic that has been on disk.
fn copy_topic(source: &Path) -> TempDir {
    let copy = tempfile::tempdir().expect("create a temporary directory");
    for entry in fs::read_dir(source).expect("list the topic") {
        let entry = entry.expect("list the topic");
        if !entry.file_type().expect("stat a topic file").is_file() {
            continue;
        }
        let target = copy.path().join(entry.file_name());
        fs::copy(entry.path(), &target).expect("copy a topic file");
        File::open(&target)
            .and_then(|file| file.sync_all())
            .expect("fsync a copied file");
    }
    File::open(copy.path())
        .and_then(|dir| dir.sync_all())
        .expect("fsync the copy's directory");
    copy
}

/// Bytes of all files in `dir`: logs, indexes, checkpoint.
fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list the topic")
        .map(|entry| {
            entry
                .expect("list the topic")
                .metadata()
                .expect("stat")
                .len()
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bench_append(c: &mut Criterion, workload: &Workload) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let topic = Topic::open(dir.path(), TopicConfig::default()).expect("open the topic");
    let bytes_per_sync = (workload.mean_frame_bytes() * SYNC_EVERY as f64).round() as u64;
    let mut next = 0;

    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::ElementsAndBytes {
            elements: SYNC_EVERY,
            bytes: bytes_per_sync,
        });
    group.bench_function("256B values, 100 per append, sync every 1000", |b| {
        b.iter(|| {
            for _ in 0..SYNC_EVERY / APPEND_BATCH {
                topic
                    .append(&workload.batch(next, APPEND_BATCH))
                    .expect("append");
                next += APPEND_BATCH;
            }
            topic.sync().expect("sync");
        })
    });
    group.finish();

    let stats = topic.stats();
    println!(
        "append: {next} records written in all, {:.1} MiB in {} segments",
        mib(stats.bytes),
        stats.segments
    );
}

fn bench_replay(c: &mut Criterion, topic: &Topic) {
    let bytes = topic.stats().bytes;
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::ElementsAndBytes {
            elements: TOPIC_RECORDS,
            bytes,
        });
    group.bench_function("read_from(0), 1M records of 256B", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for record in topic.read_from(0) {
                black_box(record.expect("read a record"));
                count += 1;
            }
            assert_eq!(count, TOPIC_RECORDS);
            count
        })
    });
    group.finish();
}

/// What one measured cleaner pass left behind.
struct CleanOutcome {
    report: CleanReport,
    disk_before: u64,
    disk_after: u64,
    segments_after: usize,
}

fn bench_clean(c: &mut Criterion, workload: &Workload, pristine: &Path) {
    let pristine_bytes = Topic::open(pristine, cleaner_config())
        .expect("open the pristine topic")
        .stats()
        .bytes;
    let now_ms = BASE_TIMESTAMP_MS + TOPIC_RECORDS;
    let mut last: Option<CleanOutcome> = None;
    let mut passes = Vec::new();

    let mut group = c.benchmark_group("clean");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::ElementsAndBytes {
            elements: TOPIC_RECORDS,
            bytes: pristine_bytes,
        });
    group.bench_function("one pass, 1M records on 10k keys", |b| {
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let copy = copy_topic(pristine);
                let disk_before = dir_bytes(copy.path());
                let topic = Topic::open(copy.path(), cleaner_config()).expect("open the copy");

                let started = Instant::now();
                let report = topic.clean_once_at(now_ms).expect("clean");
                let elapsed = started.elapsed();
                measured += elapsed;
                passes.push(elapsed);

                assert!(report.cleaned, "the pass cleaned nothing: {report:?}");
                // Segments with nothing live are dropped without being read.
                assert!(report.records_read <= TOPIC_RECORDS);
                assert_eq!(report.records_kept, KEYS);
                let live = topic.read_from(0).count() as u64;
                assert_eq!(live, KEYS, "records left after cleaning");
                last = Some(CleanOutcome {
                    report,
                    disk_before,
                    disk_after: dir_bytes(copy.path()),
                    segments_after: topic.stats().segments,
                });
            }
            measured
        })
    });
    group.finish();

    let Some(outcome) = last else { return };
    let live = workload.live_bytes(TOPIC_RECORDS);
    let seconds: Vec<String> = passes
        .iter()
        .map(|pass| format!("{:.3}", pass.as_secs_f64()))
        .collect();
    let report = &outcome.report;
    println!("clean: every pass in s: [{}]", seconds.join(", "));
    println!(
        "clean: records read {}, kept {}, segments {} -> {} (+1 active)",
        report.records_read,
        report.records_kept,
        report.segments_before,
        outcome.segments_after - 1
    );
    println!(
        "clean: on disk before {} bytes ({:.1} MiB), after {} bytes ({:.2} MiB); \
         record bytes before {}, after {}",
        outcome.disk_before,
        mib(outcome.disk_before),
        outcome.disk_after,
        mib(outcome.disk_after),
        report.bytes_before,
        report.bytes_after
    );
    println!(
        "clean: live data {} bytes ({:.2} MiB) = {KEYS} keys x latest frame; \
         on disk after / live = {:.4}, before / after = {:.1}",
        live,
        mib(live),
        outcome.disk_after as f64 / live as f64,
        outcome.disk_before as f64 / outcome.disk_after as f64
    );
}

fn benches(c: &mut Criterion) {
    let workload = Workload::new();
    bench_append(c, &workload);
    let (dir, topic) = build_topic(&workload);
    bench_replay(c, &topic);
    drop(topic);
    bench_clean(c, &workload, dir.path());
}

criterion_group!(topic, benches);
criterion_main!(topic);
