//! Crash safety against real process deaths. A child process (this test
//! binary re-executed to run only `crash_child`) appends to or cleans a topic
//! and is killed with SIGKILL at a random moment; reopening the topic must
//! succeed, keep every record the child reported as synced, invent nothing,
//! split no batch across segments, and show a cleaner pass either wholly
//! applied or not at all.
//!
//! Every run prints its seed on failure; `COMPACTION_CRASH_SEED=<seed>`
//! replays it.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{copy_dir, dir_contents, file_names, read_all};
use compaction::{BatchPos, Offset, Record, Topic, TopicConfig, CLEANED_SUFFIX, SWAP_MARKER_FILE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

/// Child processes started (and killed) per test.
const ITERATIONS: usize = 40;
/// The test the child process runs.
const CHILD_TEST: &str = "crash_child";
const ENV_MODE: &str = "COMPACTION_CRASH_CHILD_MODE";
const ENV_DIR: &str = "COMPACTION_CRASH_CHILD_DIR";
const ENV_CHILD_SEED: &str = "COMPACTION_CRASH_CHILD_SEED";
const ENV_SEED: &str = "COMPACTION_CRASH_SEED";
/// Starts every line the child reports on; libtest writes to stdout too.
const TAG: &str = "crash-child:";
/// Records an appending child writes before it waits to be killed.
const RECORDS_PER_CHILD: u64 = 1_000;
/// How long the parent waits for the child at most before giving up.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The child process.

/// Runs in the child process only: does what the environment says until it
/// is killed. In a normal test run it is listed as ignored.
#[test]
#[ignore = "the crash tests run it in a child process"]
fn crash_child() {
    let Ok(mode) = std::env::var(ENV_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(ENV_DIR).expect("the topic directory"));
    match mode.as_str() {
        "append" => {
            let seed = std::env::var(ENV_CHILD_SEED).expect("a seed");
            append_until_killed(&dir, seed.parse().expect("a numeric seed"));
        }
        "clean" => clean_one_pass(&dir),
        other => panic!("unknown crash child mode {other:?}"),
    }
}

/// Appends the deterministic sequence one or two of its batches per call
/// (first finishing a batch a crash tore), syncing every third call and
/// reporting the synced offset; after `RECORDS_PER_CHILD` records it
/// reports that it is done and waits to be killed.
fn append_until_killed(dir: &Path, seed: u64) {
    let topic = Topic::open(dir, append_config()).expect("open the topic");
    let first = topic.last_offset().map_or(0, records_through);
    let mut next = first;
    let mut rng = StdRng::seed_from_u64(seed);
    report(Event::Ready);
    let start = Instant::now();
    for batch in 1.. {
        let len = SEQUENCE_BATCH - next % SEQUENCE_BATCH + SEQUENCE_BATCH * rng.random_range(0..=1);
        let records: Vec<Record> = (next..next + len).map(sequence_record).collect();
        topic.append(&records).expect("append");
        next += len;
        if batch % 3 == 0 {
            topic.sync().expect("sync");
            report(Event::Synced(
                topic.last_offset().expect("records appended"),
            ));
            if next - first >= RECORDS_PER_CHILD {
                break;
            }
        }
    }
    report(Event::Done(start.elapsed()));
    // Should the parent be gone, give up eventually.
    thread::sleep(PATIENCE);
}

/// Runs one cleaner pass and reports how long it took.
fn clean_one_pass(dir: &Path) {
    let topic = Topic::open(dir, clean_config()).expect("open the topic");
    report(Event::Ready);
    let start = Instant::now();
    let report_of_pass = topic.clean_once_at(CLEAN_NOW_MS).expect("clean");
    assert!(report_of_pass.cleaned, "{report_of_pass:?}");
    report(Event::Done(start.elapsed()));
}

/// What the child tells the parent, one line each.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Event {
    /// The topic is open; the work starts now.
    Ready,
    /// Everything up to this offset is synced.
    Synced(Offset),
    /// The work (a pass, or the appends) finished after this long.
    Done(Duration),
}

fn report(event: Event) {
    let line = match event {
        Event::Ready => format!("{TAG} ready"),
        Event::Synced(offset) => format!("{TAG} synced {offset}"),
        Event::Done(elapsed) => format!("{TAG} done {}", elapsed.as_micros()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").expect("write to the parent");
    out.flush().expect("flush to the parent");
}

/// The duration a `Done` event reports.
fn done(event: &Event) -> Option<Duration> {
    match event {
        Event::Done(elapsed) => Some(*elapsed),
        _ => None,
    }
}

fn parse_event(line: &str) -> Option<Event> {
    let rest = &line[line.find(TAG)? + TAG.len()..];
    let mut words = rest.split_whitespace();
    match (words.next()?, words.next()) {
        ("ready", None) => Some(Event::Ready),
        ("synced", Some(offset)) => Some(Event::Synced(offset.parse().ok()?)),
        ("done", Some(micros)) => Some(Event::Done(Duration::from_micros(micros.parse().ok()?))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The parent's handle on a child.

/// A running child process and what it has reported so far.
struct ChildRun {
    child: Child,
    events: Receiver<Event>,
    seen: Vec<Event>,
    stderr: Option<JoinHandle<String>>,
}

/// How a child ended.
struct Ended {
    status: ExitStatus,
    events: Vec<Event>,
    stderr: String,
}

impl ChildRun {
    fn spawn(mode: &str, dir: &Path, env: &[(&str, String)]) -> ChildRun {
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
            .env(ENV_MODE, mode)
            .env(ENV_DIR, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start the child process");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (sender, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(event) = parse_event(&line) {
                    if sender.send(event).is_err() {
                        break;
                    }
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        ChildRun {
            child,
            events,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// The next event, or `None` once the child has closed its stdout.
    fn next_event(&mut self) -> Option<Event> {
        match self.events.recv_timeout(PATIENCE) {
            Ok(event) => {
                self.seen.push(event);
                Some(event)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("the child reported nothing for {PATIENCE:?}");
            }
        }
    }

    /// Waits until the child reports `wanted`; panics if it ends first.
    fn wait_for(&mut self, wanted: impl Fn(&Event) -> bool) {
        loop {
            match self.next_event() {
                Some(event) if wanted(&event) => return,
                Some(_) => {}
                None => {
                    let ended = self.finish();
                    panic!(
                        "the child ended early ({}); its stderr:\n{}",
                        ended.status, ended.stderr
                    );
                }
            }
        }
    }

    /// Whether the child has exited on its own.
    fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_some()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then collects the rest.
    fn kill(mut self) -> Ended {
        // An error here means the child already exited; `finish` tells how.
        let _ = self.child.kill();
        self.finish()
    }

    /// Waits for the child to end on its own.
    fn wait(mut self) -> Ended {
        self.finish()
    }

    fn finish(&mut self) -> Ended {
        let status = self.child.wait().expect("wait for the child");
        self.seen.extend(self.events.iter());
        let stderr = self.stderr.take().map_or_else(String::new, |reader| {
            reader.join().expect("the stderr reader")
        });
        Ended {
            status,
            events: std::mem::take(&mut self.seen),
            stderr,
        }
    }
}

impl Ended {
    fn killed(&self) -> bool {
        self.status.signal() == Some(libc::SIGKILL)
    }

    /// Panics unless the child was killed or finished its work cleanly.
    fn assert_killed_or_finished(&self) {
        assert!(
            self.killed() || self.status.success(),
            "the child failed ({}); its stderr:\n{}",
            self.status,
            self.stderr
        );
    }
}

// ---------------------------------------------------------------------------
// Appends.

fn append_config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..TopicConfig::default()
    }
}

/// Records in each batch of the sequence.
const SEQUENCE_BATCH: u64 = 3;

/// Offset of the `n`-th record of the sequence: every fourth offset is left
/// out, a gap between two batches.
fn sequence_offset(n: u64) -> Offset {
    n + n / SEQUENCE_BATCH
}

/// How many records of the sequence have offsets up to `last` (a sequence
/// offset): the index of the record after it.
fn records_through(last: Offset) -> u64 {
    last - last / (SEQUENCE_BATCH + 1) + 1
}

/// The `n`-th record of the deterministic append sequence: 50 keys
/// overwritten in turn, some deletes, some headers, values of varying size.
fn sequence_record(n: u64) -> Record {
    let offset = sequence_offset(n);
    let sub = (n % SEQUENCE_BATCH) as u32;
    let batch = BatchPos::new(sub, SEQUENCE_BATCH as u32 - 1 - sub);
    let key = format!("k{}", n % 50);
    let timestamp_ms = 1_000 + n;
    let record = if n % 13 == 12 {
        Record::tombstone(offset, timestamp_ms, key)
    } else {
        let padding = "x".repeat((n * 7 % 60) as usize);
        Record::put(offset, timestamp_ms, key, format!("v{n}:{padding}"))
    };
    let record = record.with_batch(batch);
    if n.is_multiple_of(5) {
        record.with_headers(format!("h{n}"))
    } else {
        record
    }
}

/// Panics unless every segment starts with the first record of a batch and
/// every closed one ends with the last record of one.
fn assert_no_batch_split(topic: &Topic, records: &[Record], iteration: usize) {
    for segment in topic.segments() {
        let (Some(first), Some(last)) = (segment.first_offset, segment.last_offset) else {
            continue;
        };
        let find = |offset| {
            records
                .iter()
                .find(|record| record.offset == offset)
                .expect("a segment's records are read")
        };
        assert!(
            find(first).batch.is_first(),
            "iteration {iteration}: {segment:?} starts inside a batch"
        );
        assert!(
            segment.active || find(last).batch.is_last(),
            "iteration {iteration}: {segment:?} ends inside a batch"
        );
    }
}

#[test]
fn appends_killed_at_random_moments_keep_every_synced_record_invent_none_and_split_no_batch() {
    let seed = test_seed();
    let _replay = ReplayHint(seed);
    let _alone = one_at_a_time();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = scratch_dir();
    let mut synced: Option<Offset> = None;
    let mut seen_before = 0;
    let mut killed_idle = 0;
    // How long a child takes for its appends: the span kill delays cover,
    // learnt from the children that finished before their kill.
    let mut run = Duration::from_millis(20);
    let started = Instant::now();
    for iteration in 0..ITERATIONS {
        let mut child = ChildRun::spawn(
            "append",
            dir.path(),
            &[(ENV_CHILD_SEED, rng.random::<u64>().to_string())],
        );
        child.wait_for(|event| *event == Event::Ready);
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(0..=40) {
                child.wait_for(|event| matches!(event, Event::Synced(_)));
            }
        } else {
            let micros = run.as_micros() as u64 * 11 / 10;
            thread::sleep(Duration::from_micros(rng.random_range(0..=micros)));
        }
        let ended = child.kill();
        assert!(ended.killed(), "{}: {}", ended.status, ended.stderr);
        if let Some(elapsed) = ended.events.iter().find_map(done) {
            killed_idle += 1;
            run = run.min(elapsed);
        }
        let reported = ended.events.iter().filter_map(|event| match event {
            Event::Synced(offset) => Some(*offset),
            _ => None,
        });
        synced = synced.max(reported.max());

        let topic = Topic::open(dir.path(), append_config())
            .unwrap_or_else(|error| panic!("iteration {iteration}: open failed: {error}"));
        let records = read_all(&topic);
        for (n, record) in records.iter().enumerate() {
            assert_eq!(
                *record,
                sequence_record(n as u64),
                "iteration {iteration}: record {n} is not the sequence's"
            );
        }
        let last = records.last().map(|record| record.offset);
        assert!(
            last >= synced,
            "iteration {iteration}: synced up to {synced:?}, found up to {last:?}"
        );
        assert!(
            records.len() >= seen_before,
            "iteration {iteration}: {} records, a reopen before saw {seen_before}",
            records.len()
        );
        seen_before = records.len();
        assert_eq!(topic.last_offset(), last, "iteration {iteration}");
        assert_no_batch_split(&topic, &records, iteration);
        let from = rng.random_range(0..=last.map_or(0, |last| last + 1));
        let tail: Vec<Record> = topic.read_from(from).map(Result::unwrap).collect();
        let expected: Vec<&Record> = records.iter().filter(|r| r.offset >= from).collect();
        assert_eq!(
            tail.iter().collect::<Vec<_>>(),
            expected,
            "iteration {iteration}: reading from {from}"
        );
    }
    let topic = Topic::open(dir.path(), append_config()).unwrap();
    let segments = topic.segments().len();
    assert!(
        segments > 10,
        "only {segments} segments: the children hardly rolled"
    );
    eprintln!(
        "{ITERATIONS} appending children killed in {:?}, {killed_idle} of them after their last \
         append (which takes {run:?}): {seen_before} records in {segments} segments",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Cleaner passes.

/// The time of the pass under test.
const CLEAN_NOW_MS: u64 = 10_000_000;
/// Tombstone retention: the fixture's first pass ran two retentions before
/// `CLEAN_NOW_MS`, so the pass under test drops that pass's tombstones.
const RETENTION_MS: u64 = 1_000_000;

fn clean_config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        delete_retention_ms: RETENTION_MS,
        ..TopicConfig::default()
    }
}

/// A topic worth cleaning: a clean head from an earlier pass whose
/// tombstones have expired, then 50+ closed dirty segments of overwritten
/// keys and deletes, then an active segment the cleaner must not touch.
fn build_dirty_topic(dir: &Path, rng: &mut StdRng) {
    let topic = Topic::open(dir, clean_config()).unwrap();
    let mut offset = 1;
    let mut append = |topic: &Topic, keys: std::ops::Range<u32>, count: usize, rng: &mut StdRng| {
        for _ in 0..count {
            let key = format!("key-{}", rng.random_range(keys.clone()));
            let record = if rng.random_ratio(1, 10) {
                Record::tombstone(offset, 1_000, key)
            } else {
                let padding = "p".repeat(rng.random_range(0..60));
                Record::put(offset, 1_000, key, format!("value-{offset}-{padding}"))
            };
            topic.append(&[record]).unwrap();
            offset += rng.random_range(1..=2);
        }
    };
    // Keys below 100 are written only before the first pass, so their
    // deletes are still there, clean, when the pass under test runs.
    append(&topic, 0..500, 1_500, rng);
    topic.roll().unwrap();
    assert!(
        topic
            .clean_once_at(CLEAN_NOW_MS - 2 * RETENTION_MS)
            .unwrap()
            .cleaned
    );
    append(&topic, 100..500, 4_000, rng);
    topic.roll().unwrap();
    append(&topic, 100..500, 20, rng);
    topic.sync().unwrap();
    let closed = topic.segments().len() - 1;
    assert!(closed >= 50, "only {closed} closed segments");
}

/// A topic directory as the tests compare it: its records and every byte of
/// its files.
#[derive(PartialEq)]
struct Snapshot {
    records: Vec<Record>,
    files: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    fn of(topic: &Topic) -> Snapshot {
        Snapshot {
            records: read_all(topic),
            files: dir_contents(topic.dir()),
        }
    }
}

/// How the parent picks the moment of the kill.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after the child reported the pass started.
    Delay(Duration),
    /// As soon as the swap marker appears: the pass is committed and the
    /// files are being swapped.
    Commit,
}

/// Where the killed pass stood, judged by the files it left.
#[derive(Debug, Default)]
struct Tally {
    /// No cleaned files and no marker: killed before writing or after the end.
    nothing_pending: usize,
    /// Cleaned files but no marker: killed while writing them.
    writing: usize,
    /// The marker: killed between commit and the end of the swap.
    swapping: usize,
    /// The records read back were the ones from before the pass.
    old: usize,
    /// The records read back were the ones after the pass.
    new: usize,
    /// The child finished before the kill.
    finished: usize,
}

impl Tally {
    /// Whether kills landed in both the writing and the swapping phase, and
    /// both outcomes were seen.
    fn saw_everything(&self) -> bool {
        self.writing > 0 && self.swapping > 0 && self.old > 0 && self.new > 0
    }
}

#[test]
fn a_cleaner_pass_killed_at_any_moment_is_wholly_applied_or_not_at_all() {
    let seed = test_seed();
    let _replay = ReplayHint(seed);
    let _alone = one_at_a_time();
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let pristine = scratch_dir();
    build_dirty_topic(pristine.path(), &mut rng);
    let old = Snapshot::of(&Topic::open(pristine.path(), clean_config()).unwrap());

    let cleaned = scratch_dir();
    copy_dir(pristine.path(), cleaned.path());
    let new = {
        let topic = Topic::open(cleaned.path(), clean_config()).unwrap();
        let report = topic.clean_once_at(CLEAN_NOW_MS).unwrap();
        assert!(report.tombstones_dropped > 0, "{report:?}");
        assert!(report.segments_before >= 50, "{report:?}");
        Snapshot::of(&topic)
    };
    assert!(new.records.len() < old.records.len());

    // Passes run faster or slower as the machine is busy; kill delays
    // cover the fastest seen.
    let mut pass = (0..3)
        .map(|_| time_one_pass(pristine.path()))
        .min()
        .unwrap();
    let mut tally = Tally::default();
    let mut iteration = 0;
    // Kills land by chance; should a phase or an outcome have been missed,
    // a few more runs aimed at it make up for it.
    while iteration < ITERATIONS || (!tally.saw_everything() && iteration < 3 * ITERATIONS) {
        let aim_at_commit = if iteration < ITERATIONS {
            rng.random_ratio(1, 4)
        } else {
            iteration % 2 == 0
        };
        let kill_at = if aim_at_commit {
            KillAt::Commit
        } else {
            let micros = pass.as_micros() as u64 * 12 / 10;
            KillAt::Delay(Duration::from_micros(rng.random_range(0..=micros)))
        };
        let context = format!("iteration {iteration}, kill at {kill_at:?}");
        let work = scratch_dir();
        copy_dir(pristine.path(), work.path());
        if let Some(elapsed) = kill_one_pass(work.path(), kill_at, &mut tally) {
            pass = pass.min(elapsed);
        }

        let topic = Topic::open(work.path(), clean_config())
            .unwrap_or_else(|error| panic!("{context}: open failed: {error}"));
        let stray: Vec<String> = file_names(work.path())
            .into_iter()
            .filter(|name| {
                name.ends_with(CLEANED_SUFFIX) || name.ends_with(".tmp") || name == SWAP_MARKER_FILE
            })
            .collect();
        assert!(stray.is_empty(), "{context}: left behind {stray:?}");
        let found = Snapshot::of(&topic);
        if found.records == old.records {
            tally.old += 1;
            assert!(
                found.files == old.files,
                "{context}: old records, other files"
            );
        } else if found.records == new.records {
            tally.new += 1;
            assert!(
                found.files == new.files,
                "{context}: new records, other files"
            );
        } else {
            panic!(
                "{context}: {} records, neither the {} before the pass nor the {} after it",
                found.records.len(),
                old.records.len(),
                new.records.len()
            );
        }
        topic.clean_once_at(CLEAN_NOW_MS).unwrap();
        assert!(Snapshot::of(&topic) == new, "{context}: a second pass");
        iteration += 1;
    }
    eprintln!(
        "{iteration} cleaning children killed in {:?} (a pass takes {pass:?}): {tally:?}",
        started.elapsed()
    );
    assert!(tally.saw_everything(), "{tally:?}");
}

/// Starts a pass in a child on the topic in `dir` and kills it as `kill_at`
/// says; counts where the pass stood by the files it left. Returns how long
/// the pass took if it finished before the kill.
fn kill_one_pass(dir: &Path, kill_at: KillAt, tally: &mut Tally) -> Option<Duration> {
    let mut child = ChildRun::spawn("clean", dir, &[]);
    child.wait_for(|event| *event == Event::Ready);
    match kill_at {
        KillAt::Delay(delay) => thread::sleep(delay),
        KillAt::Commit => {
            let marker = dir.join(SWAP_MARKER_FILE);
            let give_up = Instant::now() + PATIENCE;
            // Polling the child is slower than looking for the file, and
            // the swap is over quickly.
            for spin in 0u64.. {
                if marker.exists() {
                    break;
                }
                if spin % 256 == 0 && (child.has_exited() || Instant::now() > give_up) {
                    break;
                }
            }
        }
    }
    let ended = child.kill();
    ended.assert_killed_or_finished();
    if !ended.killed() {
        tally.finished += 1;
    }
    let left = file_names(dir);
    if left.iter().any(|name| name == SWAP_MARKER_FILE) {
        tally.swapping += 1;
    } else if left.iter().any(|name| name.ends_with(CLEANED_SUFFIX)) {
        tally.writing += 1;
    } else {
        tally.nothing_pending += 1;
    }
    ended.events.iter().find_map(done)
}

/// Runs a pass to its end in a child on a copy of `pristine`; how long it
/// took.
fn time_one_pass(pristine: &Path) -> Duration {
    let work = scratch_dir();
    copy_dir(pristine, work.path());
    let child = ChildRun::spawn("clean", work.path(), &[]);
    let ended = child.wait();
    ended.assert_killed_or_finished();
    ended
        .events
        .iter()
        .find_map(done)
        .unwrap_or_else(|| panic!("the pass did not finish: {}", ended.stderr))
}

// ---------------------------------------------------------------------------
// Shared.

/// Where the topics of a crash test live: in memory when the system has a
/// tmpfs at `/dev/shm`. A SIGKILL loses nothing the kernel holds, so the
/// disk adds no realism, only fsyncs that make a pass last most of a second.
fn scratch_dir() -> TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("compaction-crash");
    builder
        .tempdir_in("/dev/shm")
        .or_else(|_| builder.tempdir())
        .unwrap()
}

/// Keeps the crash tests from running side by side: each keeps the CPUs
/// busy with its children, and the kill timing is measured in isolation.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The seed of this run: `COMPACTION_CRASH_SEED` if set, else fresh.
fn test_seed() -> u64 {
    match std::env::var(ENV_SEED) {
        Ok(seed) => seed.parse().expect("COMPACTION_CRASH_SEED is a number"),
        Err(_) => rand::random(),
    }
}

/// Tells how to replay a run that panics.
struct ReplayHint(u64);

impl Drop for ReplayHint {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("replay with {ENV_SEED}={}", self.0);
        }
    }
}
