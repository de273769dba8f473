//! Room on disk: the space quota (`--quota-bytes`), the free-space floor
//! (`--min-free-bytes`), and a disk found full by a write.
//!
//! * A node measures itself every second ([`Space::measure`]): the bytes of
//!   its topic and of its raft log's entries, and the space free on its
//!   data directory's file system; between two measures it counts what
//!   each write it admits adds ([`Space::admit`]), and refuses writes that
//!   add data once past a limit. Crossing either limit raises the cluster's
//!   NOSPACE alarm through Raft (`api::alarms`), after which the cluster
//!   takes no write that adds data until an operator disarms it.
//! * A write that finds the disk full anyway (another process filled it)
//!   marks [`DiskFull`] with the path and waits for room: the raft log's
//!   writer and the apply try again every second, and the node answers
//!   `no_space` to writes and 503 on `/readyz` meanwhile. Only what wrote
//!   nothing durable is tried again (see [`crate::error::StoreError::is_no_space`]).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

/// How often a node measures its space, and how often a write that found
/// the disk full tries again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Whether `error` says the file system (or the user's disk quota) is full.
pub fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || error.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

/// Bytes free to this process on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The writers that found the disk full, each with the path it could not
/// write; shared by the raft log's writer, the apply and the checkpoints.
/// Each writer clears its own mark once it writes again, so the disk counts
/// as full while any of them still waits.
#[derive(Debug, Default)]
pub struct DiskFull {
    waiting: Mutex<BTreeMap<&'static str, PathBuf>>,
}

impl DiskFull {
    /// `writer` could not write `path` for want of space.
    pub fn set(&self, writer: &'static str, path: &Path) {
        let mut waiting = self.waiting.lock();
        if waiting.insert(writer, path.to_path_buf()).is_none() {
            warn!(writer, path = %path.display(), "no space left on the disk; waiting for room");
        }
        ::metrics::gauge!(crate::metrics::DISK_FULL).set(1.0);
    }

    /// `writer` wrote again. Called after every write, so it touches the
    /// gauge only when the disk stops counting as full (each scrape sets it
    /// too, see `api::metrics`).
    pub fn clear(&self, writer: &'static str) {
        let mut waiting = self.waiting.lock();
        if let Some(path) = waiting.remove(writer) {
            info!(writer, path = %path.display(), "space returned; writing again");
            if waiting.is_empty() {
                ::metrics::gauge!(crate::metrics::DISK_FULL).set(0.0);
            }
        }
    }

    /// A path some writer cannot write for want of space, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.waiting.lock().values().next().cloned()
    }

    /// "no space left on <path>", if the disk is full.
    pub fn describe(&self) -> Option<String> {
        self.path()
            .map(|path| format!("no space left on {}", path.display()))
    }
}

/// What a node measured of its own disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Bytes of the topic and of the raft log's entries.
    pub used_bytes: u64,
    /// Bytes free on the data directory's file system.
    pub free_bytes: u64,
}

/// A limit a node's disk has crossed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breach {
    /// The topic and the raft log's entries hold more than `--quota-bytes`.
    Quota {
        /// Bytes held.
        used_bytes: u64,
        /// The quota.
        quota_bytes: u64,
    },
    /// Less than `--min-free-bytes` is free on the file system.
    MinFree {
        /// Bytes free.
        free_bytes: u64,
        /// The floor.
        min_free_bytes: u64,
    },
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::Quota {
                used_bytes,
                quota_bytes,
            } => write!(
                f,
                "the topic and raft log hold {used_bytes} bytes, over --quota-bytes {quota_bytes}"
            ),
            Breach::MinFree {
                free_bytes,
                min_free_bytes,
            } => write!(
                f,
                "{free_bytes} bytes are free on the data directory's file system, under \
                 --min-free-bytes {min_free_bytes}"
            ),
        }
    }
}

/// Reads the bytes of the entries the raft log holds.
pub type RaftLogBytes = Box<dyn Fn() -> u64 + Send + Sync>;

/// One node's limits and its last measure of them.
pub struct Space {
    /// The data directory, whose file system `--min-free-bytes` is about.
    data_dir: PathBuf,
    /// The files `--quota-bytes` counts whole: the topic's. The view is a
    /// copy of the topic's keys whose sled files do not shrink when keys
    /// are deleted: counted, it would hold an alarm up that deletes
    /// cannot lower. The free-space floor covers it.
    counted: Vec<PathBuf>,
    /// What it counts of the raft log: its entries, not the space its
    /// segments allocate ahead (a purge gives the former back).
    raft_log_bytes: RaftLogBytes,
    /// `--quota-bytes`; 0 for none.
    pub quota_bytes: u64,
    /// `--min-free-bytes`; 0 for none.
    pub min_free_bytes: u64,
    /// The last measure, and what the writes admitted since add.
    measured: Mutex<Measured>,
    /// Woken when a write is refused on what was counted since the last
    /// measure, for a measure that confirms it.
    measure_now: tokio::sync::Notify,
}

/// A node's last measure and the bytes of the writes admitted since.
#[derive(Debug, Default)]
struct Measured {
    /// The last measure.
    last: Option<Sample>,
    /// Bytes of every write admitted since the node started.
    admitted: u64,
    /// `admitted` as it was when the last measure began: the writes
    /// admitted after it are not in the measure.
    admitted_at_last: u64,
}

impl Measured {
    /// The last measure with what the writes admitted since add.
    fn with_admitted(&self) -> Option<Sample> {
        let added = self.admitted.saturating_sub(self.admitted_at_last);
        self.last.map(|last| Sample {
            used_bytes: last.used_bytes.saturating_add(added),
            free_bytes: last.free_bytes.saturating_sub(added),
        })
    }
}

impl Space {
    /// The limits of the node whose data is under `data_dir`.
    pub fn new(
        data_dir: &Path,
        quota_bytes: u64,
        min_free_bytes: u64,
        raft_log_bytes: RaftLogBytes,
    ) -> Space {
        let dirs = crate::store::DataDirs::new(data_dir);
        Space {
            data_dir: data_dir.to_path_buf(),
            counted: vec![dirs.topic],
            raft_log_bytes,
            quota_bytes,
            min_free_bytes,
            measured: Mutex::new(Measured::default()),
            measure_now: tokio::sync::Notify::new(),
        }
    }

    /// Measures the node's disk now, and keeps the measure for
    /// [`Space::breach`]. Blocking: it walks the data directories.
    pub fn measure(&self) -> io::Result<Sample> {
        // Writes admitted while the files are walked may be counted twice,
        // in the measure and in what is admitted after it: until the next
        // measure, the node errs towards refusing.
        let admitted_before = self.measured.lock().admitted;
        let used_bytes = self
            .counted
            .iter()
            .map(|dir| tree_bytes(dir))
            .sum::<io::Result<u64>>()?
            + (self.raft_log_bytes)();
        let sample = Sample {
            used_bytes,
            free_bytes: free_bytes(&self.data_dir)?,
        };
        {
            // Of two measures made at once, the one begun later is kept.
            let mut measured = self.measured.lock();
            if measured.last.is_none() || admitted_before >= measured.admitted_at_last {
                measured.last = Some(sample);
                measured.admitted_at_last = admitted_before;
            }
        }
        ::metrics::gauge!(crate::metrics::SPACE_USED_BYTES).set(used_bytes as f64);
        ::metrics::gauge!(crate::metrics::SPACE_FREE_BYTES).set(sample.free_bytes as f64);
        Ok(sample)
    }

    /// The last measure, if one was made.
    pub fn last(&self) -> Option<Sample> {
        self.measured.lock().last
    }

    /// The limit `sample` crosses, if any (the quota first).
    pub fn breach_of(&self, sample: Sample) -> Option<Breach> {
        if self.quota_bytes > 0 && sample.used_bytes > self.quota_bytes {
            return Some(Breach::Quota {
                used_bytes: sample.used_bytes,
                quota_bytes: self.quota_bytes,
            });
        }
        if self.min_free_bytes > 0 && sample.free_bytes < self.min_free_bytes {
            return Some(Breach::MinFree {
                free_bytes: sample.free_bytes,
                min_free_bytes: self.min_free_bytes,
            });
        }
        None
    }

    /// Waits until a write was refused on what was counted since the last
    /// measure (at once if one was since this was last woken).
    pub async fn measure_requested(&self) {
        self.measure_now.notified().await
    }

    /// The limit the last measure crossed, if any.
    pub fn breach(&self) -> Option<Breach> {
        self.last().and_then(|sample| self.breach_of(sample))
    }

    /// Admits a write that will add `bytes` to this node's topic and raft
    /// log, unless the node is past a limit as last measured with what the
    /// writes admitted since add: then the limit crossed, and a measure is
    /// asked for ([`Space::measure_requested`]). As etcd weighs each write
    /// against its quota, so that a fill stops near the limit; measured
    /// only once a second, a fast one ran far past it, further than deletes
    /// could win back while the raft log still held it. What a measure
    /// misses of the writes admitted before it (not yet on the disk) comes
    /// in the next one.
    pub fn admit(&self, bytes: u64) -> Result<(), Breach> {
        if self.quota_bytes == 0 && self.min_free_bytes == 0 {
            return Ok(());
        }
        let mut measured = self.measured.lock();
        let Some(with_admitted) = measured.with_admitted() else {
            return Ok(());
        };
        if let Some(breach) = self.breach_of(with_admitted) {
            drop(measured);
            self.measure_now.notify_one();
            return Err(breach);
        }
        measured.admitted = measured.admitted.saturating_add(bytes);
        Ok(())
    }
}

/// Files whose bytes the quota leaves out: the cleaner's copy of segments
/// it is rewriting (which replaces segments counted already, and is gone
/// in a moment) and temporaries written before a rename. Counting them let
/// one cleaner pass near the quota raise the alarm, which stays until
/// someone disarms it.
fn in_progress(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.ends_with(compaction::CLEANED_SUFFIX) || name.ends_with(".tmp")
}

/// Bytes of the files under `dir` (0 if it does not exist): their length,
/// as a file system's quota counts what a file holds; files being written
/// to replace others are left out ([`in_progress`]).
fn tree_bytes(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut bytes = 0;
    for entry in entries {
        let entry = entry?;
        if in_progress(&entry.file_name()) {
            continue;
        }
        // A file removed meanwhile (a purged segment) counts as nothing.
        let metadata = match entry.metadata() {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        bytes += if metadata.is_dir() {
            tree_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_quota_counts_the_topic_and_the_raft_logs_entries_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let dirs = crate::store::DataDirs::new(root.path());
        for (dir, bytes) in [
            (&dirs.topic, 1000),
            (&dirs.view, 200),
            (&dirs.raft, 7000),
            (&dirs.snapshot, 5000),
        ] {
            std::fs::create_dir_all(dir.join("nested")).unwrap();
            std::fs::write(dir.join("nested").join("file"), vec![0u8; bytes]).unwrap();
        }
        // A cleaner pass's copy and a temporary, about to replace others.
        let cleaned = format!("00000000000000000000.log{}", compaction::CLEANED_SUFFIX);
        for name in [cleaned.as_str(), "segments.json.tmp"] {
            std::fs::write(dirs.topic.join(name), vec![0u8; 4000]).unwrap();
        }
        let space = Space::new(root.path(), 1029, 0, Box::new(|| 30));
        let sample = space.measure().unwrap();
        assert_eq!(sample.used_bytes, 1030);
        assert!(sample.free_bytes > 0);
        assert_eq!(
            space.breach(),
            Some(Breach::Quota {
                used_bytes: 1030,
                quota_bytes: 1029
            })
        );
        let roomy = Space::new(root.path(), 1030, 0, Box::new(|| 30));
        roomy.measure().unwrap();
        assert_eq!(roomy.breach(), None);
    }

    #[test]
    fn a_floor_above_the_free_space_is_crossed_and_none_is_never() {
        let root = tempfile::tempdir().unwrap();
        let space = Space::new(root.path(), 0, u64::MAX, Box::new(|| 0));
        assert_eq!(space.breach(), None, "nothing measured yet");
        let sample = space.measure().unwrap();
        assert!(
            matches!(space.breach(), Some(Breach::MinFree { free_bytes, .. }) if free_bytes == sample.free_bytes)
        );
        let unlimited = Space::new(root.path(), 0, 0, Box::new(|| 0));
        unlimited.measure().unwrap();
        assert_eq!(unlimited.breach(), None);
    }

    #[test]
    fn writes_are_admitted_until_what_they_add_takes_the_node_past_the_quota() {
        let root = tempfile::tempdir().unwrap();
        let log_bytes = Arc::new(AtomicU64::new(600));
        let held = Arc::clone(&log_bytes);
        let space = Space::new(
            root.path(),
            1000,
            0,
            Box::new(move || held.load(Ordering::Relaxed)),
        );
        assert_eq!(space.admit(10_000), Ok(()), "nothing measured yet");
        space.measure().unwrap();
        // 600 measured: writes go while the node is within the quota with
        // what they add, so the last goes one write past it.
        for _ in 0..5 {
            assert_eq!(space.admit(100), Ok(()));
        }
        assert_eq!(
            space.admit(1),
            Err(Breach::Quota {
                used_bytes: 1100,
                quota_bytes: 1000
            })
        );
        // A measure takes the place of what was counted: here the log was
        // purged meanwhile, and writes go again.
        log_bytes.store(100, Ordering::Relaxed);
        space.measure().unwrap();
        assert_eq!(space.admit(100), Ok(()));
        let unlimited = Space::new(root.path(), 0, 0, Box::new(|| 0));
        unlimited.measure().unwrap();
        assert_eq!(unlimited.admit(u64::MAX), Ok(()));
        assert_eq!(unlimited.admit(u64::MAX), Ok(()));
    }

    #[tokio::test]
    async fn a_refused_write_asks_for_a_measure_at_once() {
        let root = tempfile::tempdir().unwrap();
        let space = Space::new(root.path(), 1, 0, Box::new(|| 2));
        space.measure().unwrap();
        assert!(space.admit(1).is_err());
        tokio::time::timeout(Duration::from_secs(5), space.measure_requested())
            .await
            .expect("a measure was asked for");
    }

    #[test]
    fn the_disk_counts_as_full_while_any_writer_waits() {
        let full = DiskFull::default();
        full.set("raft log", Path::new("/data/raft"));
        full.set("apply", Path::new("/data/topic"));
        full.clear("raft log");
        assert_eq!(
            full.describe().as_deref(),
            Some("no space left on /data/topic")
        );
        full.clear("apply");
        assert_eq!(full.path(), None);
    }

    #[test]
    fn enospc_and_edquot_are_no_space_and_other_errors_are_not() {
        assert!(is_no_space(&io::Error::from_raw_os_error(
            rustix::io::Errno::NOSPC.raw_os_error()
        )));
        assert!(is_no_space(&io::Error::from_raw_os_error(
            rustix::io::Errno::DQUOT.raw_os_error()
        )));
        assert!(!is_no_space(&io::Error::from_raw_os_error(
            rustix::io::Errno::IO.raw_os_error()
        )));
    }
}
