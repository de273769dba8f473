//! Raft snapshots in the topic's own segment format.
//!
//! A snapshot at log index `i`, where the store's revision is `r`, is what
//! a fully compacted topic would hold at `r`: the latest record of every
//! key with an offset up to `r` (tombstones included), plus every
//! record that carries a client's idempotency key and is recent enough for
//! a retry to be checked against it (so a node installing the snapshot
//! deduplicates like the others). The records are framed exactly as in a
//! segment file, in offset order, after a small header:
//!
//! ```text
//! "OMKVSNP1" | header_len: u32 LE | header (JSON: meta, tombstone floor, revision, format)
//!   | CRC-32C of header_len and the header: u32 LE | frames…
//!   | "OMKVEND1" | frames' bytes: u64 LE | records: u64 LE | CRC-32C of the 24 bytes before: u32 LE
//! ```
//!
//! The header's `format` is 4. Its checksum makes a changed bit of the
//! header (the revision a build goes on from, the tombstone floor) a damaged
//! file, not another snapshot. The end marker makes a file cut short
//! anywhere, between two frames included, a damaged one: a file of format 3
//! or later that does not end in a marker agreeing with its frames is
//! refused on opening. Format 3 had no header checksum and format 2 no
//! marker either; such snapshots (a data dir's, an old backup) are still
//! read, the damage they cannot show unseen as before. Snapshots of format 1
//! (no `format`, no `revision`) were written while offsets were log
//! indices; like the data dirs of that time they are refused, as is a later
//! format.
//!
//! A build reads the records in passes and holds none of them (see
//! `snapshot_build`); it is sent and received in chunks, never held whole
//! (see `snapshot_transfer`, `snapshot_receive`).
//!
//! Installing one lays the frames down as the topic's base segment and
//! rebuilds the view by replay: one format, one replay path. The current
//! snapshot is kept in `data/snapshot/current.snap` so it can be sent again
//! after a restart.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use compaction::{fsutil, Record, TopicReader};
use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::StoreError;
use crate::store::snapshot_build::{self, MAX_KEY_MAP_ENTRIES};
use crate::types::{Node, NodeId, Revision};

/// The first bytes of every snapshot.
const MAGIC: &[u8; 8] = b"OMKVSNP1";
/// Where the header's length (u32 LE) sits: right after the magic.
const HEADER_LEN_AT: usize = MAGIC.len();
/// Where the header's JSON starts: after the magic and its length.
const HEADER_AT: usize = HEADER_LEN_AT + std::mem::size_of::<u32>();
/// The largest header read: far above any membership's, and a bound on
/// what a damaged length can make a reader allocate.
const MAX_HEADER_BYTES: usize = 16 << 20;
/// Buffer of the writer that lays a snapshot being built down on disk.
const BUILD_BUFFER_BYTES: usize = 1 << 20;
/// File name of the current snapshot.
pub const CURRENT_FILE: &str = "current.snap";
/// The snapshot being installed, present from the moment it is durable
/// until the install is done; at start-up it means the install must be
/// done again (from this file: the current one is not it).
pub const INSTALLING_FILE: &str = "installing.snap";
/// Prefix of the file a snapshot is built in before it becomes current.
const BUILDING_PREFIX: &str = "building-";

/// The header format written today: the header's checksum, frames, then
/// the end marker.
pub const HEADER_FORMAT: u32 = 4;
/// The first header format followed by its checksum.
const CHECKED_HEADER_FORMAT: u32 = 4;
/// Bytes of the header's checksum.
const HEADER_CRC_BYTES: usize = 4;
/// The oldest header format read: frames to the end of the file.
const UNMARKED_FORMAT: u32 = 2;
/// The first bytes of a snapshot's end marker.
const END_MAGIC: &[u8; 8] = b"OMKVEND1";
/// Bytes of the end marker: its magic, the frames' bytes and records
/// (u64 LE each) and the CRC-32C of those 24 bytes (u32 LE).
pub const END_BYTES: usize = END_MAGIC.len() + 8 + 8 + 4;

/// What the snapshot header records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// openraft's description of the snapshot.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// The topic's tombstone floor when the snapshot was built.
    pub tombstone_floor: u64,
    /// The store's revision at `meta.last_log_id`: the snapshot holds the
    /// topic's records up to this offset.
    #[serde(default)]
    pub revision: Revision,
    /// The header's format; format 1 headers did not say.
    #[serde(default = "format_1")]
    pub format: u32,
}

/// The format of a header that names none.
fn format_1() -> u32 {
    1
}

impl SnapshotHeader {
    /// A header of today's format.
    pub fn new(
        meta: SnapshotMeta<NodeId, Node>,
        revision: Revision,
        tombstone_floor: u64,
    ) -> SnapshotHeader {
        SnapshotHeader {
            meta,
            tombstone_floor,
            revision,
            format: HEADER_FORMAT,
        }
    }
}

/// A snapshot on disk: its header, read and checked, and the open file its
/// records are read from one chunk at a time, so none of it is held in
/// memory whatever its size.
pub struct SnapshotFile {
    /// The header.
    pub header: SnapshotHeader,
    /// Length of the whole file in bytes, header included.
    pub len: u64,
    /// The file (what is sent to followers).
    file: Arc<File>,
    /// Where the file was opened; errors name it, and [`SnapshotFile::store`]
    /// links it rather than copying when it still names this file.
    path: PathBuf,
    /// Where the frames start.
    frames_at: u64,
    /// Where the frames end: the end marker, or the end of a format 2 file.
    frames_end: u64,
    /// The records the end marker counts (none in format 2).
    marked_records: Option<u64>,
    /// Whether `path` is a build's own file, removed with this value.
    remove_on_drop: bool,
}

impl SnapshotFile {
    /// The file this snapshot was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Builds a snapshot in `dir` from the topic records `reader` yields,
    /// up to and including the header's revision. With the `previous`
    /// snapshot of the same topic, only the records after it are read: its
    /// records stand for those at or below its revision. The file is
    /// written and fsynced beside the current one; [`SnapshotFile::store`]
    /// makes it current.
    pub fn build_in(
        dir: &Path,
        header: SnapshotHeader,
        reader: TopicReader,
        previous: Option<&SnapshotFile>,
    ) -> Result<SnapshotFile, StoreError> {
        Self::build_with_map(dir, header, reader, previous, MAX_KEY_MAP_ENTRIES)
    }

    /// [`SnapshotFile::build_in`] with at most `max_key_map_entries` keys
    /// mapped at once (see `snapshot_build`).
    pub fn build_with_map(
        dir: &Path,
        header: SnapshotHeader,
        reader: TopicReader,
        previous: Option<&SnapshotFile>,
        max_key_map_entries: usize,
    ) -> Result<SnapshotFile, StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let build = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.join(format!(
            "{BUILDING_PREFIX}{}-{build}.tmp",
            std::process::id()
        ));
        let written = Self::write_kept(&path, &header, reader, previous, max_key_map_entries);
        if let Err(error) = written {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        let mut snapshot = SnapshotFile::open(&path)?;
        snapshot.remove_on_drop = true;
        Ok(snapshot)
    }

    /// [`SnapshotFile::build_in`] the system's temporary directory.
    #[cfg(test)]
    pub fn build(
        header: SnapshotHeader,
        reader: TopicReader,
        previous: Option<&SnapshotFile>,
    ) -> Result<SnapshotFile, StoreError> {
        SnapshotFile::build_in(&std::env::temp_dir(), header, reader, previous)
    }

    /// Writes `header` and the frames of the records the snapshot keeps
    /// to `path`, fsynced: the records of `previous` (when it is of the
    /// same topic and not newer) and those `reader` yields after it, up to
    /// the header's revision. They are read in passes, never held.
    fn write_kept(
        path: &Path,
        header: &SnapshotHeader,
        reader: TopicReader,
        previous: Option<&SnapshotFile>,
        max_key_map_entries: usize,
    ) -> Result<(), StoreError> {
        let revision = header.revision;
        // Built on the previous snapshot, the records after it must hold
        // every delete of a key it holds. Once the cleaner has dropped
        // tombstones past its revision (the floor above it) they do not,
        // and a key deleted since would come back from it: the whole
        // topic is read instead, which holds no value a delete superseded.
        let previous = previous.filter(|previous| {
            previous.header.meta.last_log_id.is_some()
                && previous.header.revision <= revision
                && header.tombstone_floor <= previous.header.revision + 1
        });
        let reader = match previous {
            Some(previous) => reader.skip_to(previous.header.revision + 1),
            None => reader,
        };
        let records = || {
            let earlier = previous.into_iter().flat_map(|previous| previous.records());
            earlier.chain(reader.rewound())
        };
        let kept = snapshot_build::find(
            records,
            revision,
            header.tombstone_floor,
            max_key_map_entries,
        )?;
        let mut out = SnapshotWriter::create(path, header)?;
        let mut filter = kept.filter();
        for record in records() {
            let record = record?;
            if record.offset > revision {
                break;
            }
            if filter.keeps(&record) {
                out.record(&record)?;
            }
        }
        info!(
            keys = kept.keys(),
            passes = kept.passes + 1,
            "wrote a snapshot at revision {revision}"
        );
        out.finish()
    }

    /// Opens the snapshot at `path`, reading and checking its header.
    pub fn open(path: &Path) -> Result<SnapshotFile, StoreError> {
        let file = File::open(path).map_err(StoreError::io("open", path))?;
        SnapshotFile::from_file(file, path)
    }

    /// The snapshot held by `file`, which was opened at `path` (named in
    /// errors; the file may since have been moved).
    pub fn from_file(file: File, path: &Path) -> Result<SnapshotFile, StoreError> {
        let len = file.metadata().map_err(StoreError::io("stat", path))?.len();
        let bad = |reason: String| StoreError::CorruptSnapshot {
            name: path.display().to_string(),
            reason,
        };
        let mut prefix = [0u8; HEADER_AT];
        if len < HEADER_AT as u64 {
            return Err(bad(format!("not a snapshot ({len} bytes)")));
        }
        file.read_exact_at(&mut prefix, 0)
            .map_err(StoreError::io("read", path))?;
        if &prefix[..MAGIC.len()] != MAGIC {
            return Err(bad("not a snapshot (bad magic)".to_string()));
        }
        let header_len = u32::from_le_bytes(
            prefix[HEADER_LEN_AT..HEADER_AT]
                .try_into()
                .expect("HEADER_AT - HEADER_LEN_AT is the 4 bytes of a u32"),
        ) as usize;
        let frames_at = (HEADER_AT + header_len) as u64;
        if header_len > MAX_HEADER_BYTES || len < frames_at {
            return Err(bad(format!(
                "header of {header_len} bytes at byte {HEADER_AT} runs past the end ({len} bytes)"
            )));
        }
        let mut header_json = vec![0u8; header_len];
        file.read_exact_at(&mut header_json, HEADER_AT as u64)
            .map_err(StoreError::io("read", path))?;
        let header = parse_header(&header_json).map_err(&bad)?;
        let mut frames_at = frames_at;
        if header.format >= CHECKED_HEADER_FORMAT {
            let mut crc = [0u8; HEADER_CRC_BYTES];
            if len < frames_at + HEADER_CRC_BYTES as u64 {
                return Err(bad(format!(
                    "the header's checksum at byte {frames_at} runs past the end ({len} bytes)"
                )));
            }
            file.read_exact_at(&mut crc, frames_at)
                .map_err(StoreError::io("read", path))?;
            if u32::from_le_bytes(crc) != header_crc(&header_json) {
                return Err(bad(format!(
                    "the header at byte {HEADER_LEN_AT} fails its checksum (at byte {frames_at})"
                )));
            }
            frames_at += HEADER_CRC_BYTES as u64;
        }
        let (frames_end, marked_records) = if header.format == UNMARKED_FORMAT {
            (len, None)
        } else {
            let end = read_end_marker(&file, path, frames_at, len)?.map_err(bad)?;
            (frames_at + end.frames_bytes, Some(end.records))
        };
        Ok(SnapshotFile {
            header,
            len,
            file: Arc::new(file),
            path: path.to_path_buf(),
            frames_at,
            frames_end,
            marked_records,
            remove_on_drop: false,
        })
    }

    /// Writes this snapshot's records that `keep` takes, under `header`, to
    /// `path`, fsynced, and opens the copy: a backup laid down for another
    /// cluster, whose membership differs.
    pub fn copy_with_header(
        &self,
        path: &Path,
        header: &SnapshotHeader,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<SnapshotFile, StoreError> {
        let mut out = SnapshotWriter::create(path, header)?;
        for record in self.records() {
            let record = record?;
            if keep(&record) {
                out.record(&record)?;
            }
        }
        out.finish()?;
        SnapshotFile::open(path)
    }

    /// The snapshot's records, read from the file as they are consumed.
    pub fn records(&self) -> impl Iterator<Item = compaction::Result<Record>> + '_ {
        compaction::FileRecords::new(
            Arc::clone(&self.file),
            self.path.clone(),
            self.frames_at,
            self.frames_end,
        )
    }

    /// Checks every record's frame, naming the file and byte of the first
    /// bad one, and their count against the end marker's.
    pub fn check_records(&self) -> Result<u64, StoreError> {
        let mut records = 0;
        for record in self.records() {
            record?;
            records += 1;
        }
        match self.marked_records {
            Some(marked) if marked != records => Err(StoreError::CorruptSnapshot {
                name: self.path.display().to_string(),
                reason: format!(
                    "{records} records in the frames before byte {}, where the end marker counts {marked}",
                    self.frames_end
                ),
            }),
            _ => Ok(records),
        }
    }

    /// A new handle on the file, at its start, as openraft's snapshot data.
    pub fn data(&self) -> Result<Box<tokio::fs::File>, StoreError> {
        let mut file = self
            .file
            .try_clone()
            .map_err(StoreError::io("duplicate", &self.path))?;
        file.seek(SeekFrom::Start(0))
            .map_err(StoreError::io("seek", &self.path))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    /// Makes this snapshot the current one of `dir`, atomically: a crash
    /// leaves the old current snapshot or this one.
    ///
    /// A snapshot built while an install ran (openraft builds beside the
    /// state machine's other work) can end after the install made a newer
    /// one current: it is not stored then, so the current snapshot never
    /// goes back behind the topic.
    pub fn store(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        let _turn = CURRENT_WRITES.lock();
        if let Some(current) = SnapshotFile::load(dir)? {
            if current.header.meta.last_log_id > self.header.meta.last_log_id {
                info!(
                    built = %self.header.meta.snapshot_id,
                    current = %current.header.meta.snapshot_id,
                    "a newer snapshot was installed meanwhile; the one built is not kept"
                );
                return Ok(());
            }
        }
        self.place(dir, CURRENT_FILE)
    }

    /// Lays the snapshot down as the one being installed in `dir`,
    /// atomically and durably: from then on a restart finishes the install.
    pub fn store_installing(&self, dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        fsutil::fsync_dir(dir)?;
        self.place(dir, INSTALLING_FILE)
    }

    /// Puts this snapshot's file at `dir/name`, atomically and durably. The
    /// file is linked in where it can be, copied (by the kernel, in bounded
    /// memory) where not.
    fn place(&self, dir: &Path, name: &str) -> Result<(), StoreError> {
        let target_path = dir.join(name);
        let identity = self
            .file
            .metadata()
            .map_err(StoreError::io("stat", &self.path))?;
        let same = |path: &Path| {
            std::fs::metadata(path)
                .is_ok_and(|meta| (meta.dev(), meta.ino()) == (identity.dev(), identity.ino()))
        };
        if same(&target_path) {
            return Ok(());
        }
        let tmp = dir.join(format!("{name}.tmp"));
        fsutil::remove_if_exists(&tmp)?;
        // The path may since name another file: a link is kept only when it
        // is this one.
        let linked = std::fs::hard_link(&self.path, &tmp).is_ok() && same(&tmp);
        if !linked {
            fsutil::remove_if_exists(&tmp)?;
            let mut target = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
            let mut source = &*self.file;
            source
                .seek(SeekFrom::Start(0))
                .map_err(StoreError::io("seek", &self.path))?;
            std::io::copy(&mut source, &mut target).map_err(StoreError::io("copy to", &tmp))?;
        }
        let synced = File::open(&tmp).and_then(|file| file.sync_all());
        synced.map_err(StoreError::io("fsync", &tmp))?;
        std::fs::rename(&tmp, &target_path).map_err(StoreError::io("rename", &target_path))?;
        Ok(fsutil::fsync_dir(dir)?)
    }

    /// Reads the current snapshot of `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        SnapshotFile::load_file(&dir.join(CURRENT_FILE))
    }

    /// Reads the snapshot an interrupted install left in `dir`, if any.
    pub fn load_installing(dir: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        SnapshotFile::load_file(&installing_marker(dir))
    }

    /// Opens the snapshot at `path`, if there is one.
    fn load_file(path: &Path) -> Result<Option<SnapshotFile>, StoreError> {
        match File::open(path) {
            Ok(file) => SnapshotFile::from_file(file, path).map(Some),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StoreError::io("open", path)(error)),
        }
    }
}

/// Taken while `current.snap` is replaced, so that a check of what it holds
/// and the write after it are one step.
static CURRENT_WRITES: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            // A build stored as current lives on under that name.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A snapshot file being written: the magic and header, each record's
/// frame, then the end marker and an fsync.
struct SnapshotWriter<'a> {
    out: BufWriter<File>,
    path: &'a Path,
    /// The frame being encoded, reused.
    frame: Vec<u8>,
    frames_bytes: u64,
    records: u64,
}

impl<'a> SnapshotWriter<'a> {
    /// Creates the file at `path` and writes the magic and `header`.
    fn create(path: &'a Path, header: &SnapshotHeader) -> Result<SnapshotWriter<'a>, StoreError> {
        // The layout written (the header's checksum, the end marker) is
        // today's: a header naming another format would misread.
        debug_assert_eq!(
            header.format, HEADER_FORMAT,
            "a snapshot is written in today's format"
        );
        let header_json = serde_json::to_vec(header).expect("a snapshot header serializes");
        let file = File::create(path).map_err(StoreError::io("create", path))?;
        let mut writer = SnapshotWriter {
            out: BufWriter::with_capacity(BUILD_BUFFER_BYTES, file),
            path,
            frame: Vec::new(),
            frames_bytes: 0,
            records: 0,
        };
        writer.write(MAGIC)?;
        writer.write(&(header_json.len() as u32).to_le_bytes())?;
        writer.write(&header_json)?;
        writer.write(&header_crc(&header_json).to_le_bytes())?;
        Ok(writer)
    }

    /// Writes `record`'s frame.
    fn record(&mut self, record: &Record) -> Result<(), StoreError> {
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        record.encode_into(&mut frame);
        let written = self.write(&frame);
        self.frames_bytes += frame.len() as u64;
        self.records += 1;
        self.frame = frame;
        written
    }

    /// Writes the end marker and makes the file durable.
    fn finish(mut self) -> Result<(), StoreError> {
        let marker = EndMarker {
            frames_bytes: self.frames_bytes,
            records: self.records,
        };
        self.write(&marker.encode())?;
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|error| StoreError::io("write", path)(error.into_error()))?;
        file.sync_all().map_err(StoreError::io("fsync", path))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.out
            .write_all(bytes)
            .map_err(StoreError::io("write", self.path))
    }
}

/// What a snapshot's end marker says.
#[derive(Debug)]
pub(crate) struct EndMarker {
    /// Bytes of the frames, from the end of the header to the marker.
    pub frames_bytes: u64,
    /// Records in those frames.
    pub records: u64,
}

impl EndMarker {
    /// The marker's bytes.
    pub fn encode(&self) -> [u8; END_BYTES] {
        let mut bytes = [0u8; END_BYTES];
        bytes[..8].copy_from_slice(END_MAGIC);
        bytes[8..16].copy_from_slice(&self.frames_bytes.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.records.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..24]);
        bytes[24..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads the marker in `bytes`, the file's last, which start at byte
    /// `at`; the reason it is not one.
    fn decode(bytes: &[u8; END_BYTES], at: u64) -> Result<EndMarker, String> {
        let word = |range: std::ops::Range<usize>| -> u64 {
            let mut le = [0u8; 8];
            le[..range.len()].copy_from_slice(&bytes[range]);
            u64::from_le_bytes(le)
        };
        if &bytes[..8] != END_MAGIC {
            return Err(format!(
                "no end marker at byte {at}: the file was cut short or not fully written"
            ));
        }
        if crc32c::crc32c(&bytes[..24]) as u64 != word(24..28) {
            return Err(format!("the end marker at byte {at} fails its checksum"));
        }
        Ok(EndMarker {
            frames_bytes: word(8..16),
            records: word(16..24),
        })
    }
}

/// How far before the file's last bytes [`marker_before`] looks for the
/// end marker.
const APPENDED_SEARCH_BYTES: u64 = 1 << 20;

/// Where an intact end marker that agrees with where the frames start lies
/// before `at` (within [`APPENDED_SEARCH_BYTES`]), if one does: bytes were
/// appended to a whole snapshot.
fn marker_before(
    file: &File,
    path: &Path,
    frames_at: u64,
    at: u64,
) -> Result<Option<u64>, StoreError> {
    let from = at.saturating_sub(APPENDED_SEARCH_BYTES).max(frames_at);
    let mut tail = vec![0u8; (at - from) as usize];
    file.read_exact_at(&mut tail, from)
        .map_err(StoreError::io("read", path))?;
    let found = (0..tail.len()).rev().find_map(|start| {
        let candidate: &[u8; END_BYTES] = tail.get(start..start + END_BYTES)?.try_into().ok()?;
        let marker_at = from + start as u64;
        let marker = EndMarker::decode(candidate, marker_at).ok()?;
        (frames_at.checked_add(marker.frames_bytes) == Some(marker_at)).then_some(marker_at)
    });
    Ok(found)
}

/// Reads the end marker of the snapshot `file` at `path`, `len` bytes long
/// with frames from `frames_at`: an I/O error, or the marker if it is there
/// and agrees with where the frames start.
fn read_end_marker(
    file: &File,
    path: &Path,
    frames_at: u64,
    len: u64,
) -> Result<Result<EndMarker, String>, StoreError> {
    let Some(at) = len
        .checked_sub(END_BYTES as u64)
        .filter(|at| *at >= frames_at)
    else {
        return Ok(Err(format!(
            "no end marker after the header, which ends at byte {frames_at}: \
             the file ({len} bytes) was cut short or not fully written"
        )));
    };
    let mut bytes = [0u8; END_BYTES];
    file.read_exact_at(&mut bytes, at)
        .map_err(StoreError::io("read", path))?;
    if bytes[..8] != *END_MAGIC {
        if let Some(marker_at) = marker_before(file, path, frames_at, at)? {
            return Ok(Err(format!(
                "{} bytes follow the end marker at byte {marker_at}: something was appended \
                 to the file",
                len - marker_at - END_BYTES as u64
            )));
        }
    }
    Ok(EndMarker::decode(&bytes, at).and_then(|marker| {
        if frames_at.checked_add(marker.frames_bytes) == Some(at) {
            Ok(marker)
        } else {
            Err(format!(
                "the end marker at byte {at} says the frames from byte {frames_at} \
                 end at byte {}: the file was cut or joined",
                frames_at.saturating_add(marker.frames_bytes)
            ))
        }
    }))
}

/// The CRC-32C of a header's length (u32 LE) and JSON, as written after
/// them from format 4 on.
pub(crate) fn header_crc(json: &[u8]) -> u32 {
    let len = (json.len() as u32).to_le_bytes();
    crc32c::crc32c_append(crc32c::crc32c(&len), json)
}

/// Reads a header's JSON, refusing formats this server does not read.
fn parse_header(json: &[u8]) -> Result<SnapshotHeader, String> {
    let header: SnapshotHeader = serde_json::from_slice(json)
        .map_err(|e| format!("unreadable header at byte {HEADER_AT}: {e}"))?;
    if header.format > HEADER_FORMAT {
        return Err(format!(
            "header format {} is newer than this server's ({HEADER_FORMAT})",
            header.format
        ));
    }
    if header.format < UNMARKED_FORMAT {
        return Err(format!(
            "header format {} was written while topic offsets were raft log indices; \
             this server reads formats {UNMARKED_FORMAT} to {HEADER_FORMAT} only",
            header.format
        ));
    }
    Ok(header)
}

/// Removes the files of snapshot builds a process left when it stopped
/// mid-build (killed, or out of room): none is current or installing, and
/// each can be as large as a snapshot. For the open of `dir`, which the
/// data dir's lock keeps every other process out of.
pub fn remove_unfinished_builds(dir: &Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StoreError::io("list", dir)(error)),
    };
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(BUILDING_PREFIX) && name.ends_with(".tmp") {
            let path = entry.path();
            warn!(file = %path.display(), "removing a snapshot build a stopped process left");
            std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// The snapshot an install in progress is installing: its presence marks
/// the install.
pub fn installing_marker(dir: &Path) -> PathBuf {
    dir.join(INSTALLING_FILE)
}

/// Ends an install: the snapshot being installed becomes the current one,
/// in one durable rename. When the current snapshot itself was laid down
/// again, both names link one file and the rename leaves both (rename(2)
/// of a file onto itself does nothing): the marker is removed instead, or
/// the next start would install that snapshot again over what came after.
pub fn finish_installing(dir: &Path) -> Result<(), StoreError> {
    let _turn = CURRENT_WRITES.lock();
    let installing = installing_marker(dir);
    let current = dir.join(CURRENT_FILE);
    std::fs::rename(&installing, &current).map_err(StoreError::io("rename", &installing))?;
    fsutil::remove_if_exists(&installing)?;
    Ok(fsutil::fsync_dir(dir)?)
}

#[cfg(test)]
mod tests {
    use compaction::{Topic, TopicConfig};
    use openraft::{CommittedLeaderId, LogId, StoredMembership};
    use uuid::Uuid;

    use bytes::Bytes;

    use super::*;

    /// A build a stopped process left is removed at open; the current and
    /// installing snapshots and other files stay.
    #[test]
    fn the_files_of_builds_a_stopped_process_left_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "building-4242-0.tmp",
            "building-7-13.tmp",
            CURRENT_FILE,
            INSTALLING_FILE,
            "building-notes.txt",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        remove_unfinished_builds(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["building-notes.txt", CURRENT_FILE, INSTALLING_FILE]);
        remove_unfinished_builds(&dir.path().join("absent")).unwrap();
    }
    use crate::store::apply::IDEMPOTENCY_WINDOW_MS;
    use crate::store::record::{UnitKind, WriteRecord};

    fn write(offset: u64, timestamp_ms: u64, key: &str, idempotent: bool) -> Record {
        WriteRecord {
            offset,
            batch: compaction::BatchPos::SINGLE,
            log_index: offset + 10,
            kind: UnitKind::Write,
            timestamp_ms,
            key: key.into(),
            value: Some(Bytes::from(format!("{offset}"))),
            create_revision: 1,
            version: offset,
            lease: 0,
            idempotency_key: idempotent.then(Uuid::new_v4),
            request_hash: None,
            entry: None,
        }
        .to_record()
    }

    /// The header of a test snapshot at `revision`, the tombstone floor at
    /// `floor`.
    fn header_at(revision: u64, floor: u64) -> SnapshotHeader {
        SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), revision + 10)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("test-{revision}"),
            },
            revision,
            floor,
        )
    }

    #[test]
    fn a_snapshot_keeps_the_latest_record_of_each_key_and_recent_idempotent_writes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), TopicConfig::default()).expect("opens");
        let minute = 60_000;
        let old = 0;
        let now = 3 * IDEMPOTENCY_WINDOW_MS;
        let deleted = WriteRecord {
            value: None,
            ..WriteRecord::from_record(write(6, now, "b", false)).expect("decodes")
        };
        topic
            .append(&[
                write(1, old, "a", true),           // superseded, too old to retry
                write(2, now - minute, "a", true),  // superseded, a retry may come
                write(3, now - minute, "a", false), // superseded
                write(4, now, "a", false),          // the latest of a
                write(5, now, "b", false),          // superseded by a delete
                deleted.to_record(),                // the latest of b: a tombstone
                write(7, now, "c", false),          // past the snapshot
            ])
            .expect("appends");
        // The log index is not the revision: the snapshot is bounded by
        // the revision.
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 16)),
                last_membership: StoredMembership::default(),
                snapshot_id: "test".into(),
            },
            6,
            0,
        );
        let snapshot = SnapshotFile::build(header, topic.read_from(0), None).expect("builds");
        let offsets: Vec<u64> = snapshot
            .records()
            .map(|record| record.expect("decodes").offset)
            .collect();
        assert_eq!(offsets, vec![2, 4, 6]);

        // The next snapshot, built on this one, reads only the records after
        // it and holds what a build from the whole topic holds.
        topic
            .append(&[write(8, now, "b", false), write(9, now, "d", true)])
            .expect("appends");
        let next_header = |revision| header_at(revision, 0);
        let offsets = |snapshot: &SnapshotFile| -> Vec<u64> {
            snapshot
                .records()
                .map(|record| record.expect("decodes").offset)
                .collect()
        };
        let built_on = SnapshotFile::build(next_header(9), topic.read_from(0), Some(&snapshot))
            .expect("builds");
        let whole = SnapshotFile::build(next_header(9), topic.read_from(0), None).expect("builds");
        assert_eq!(offsets(&built_on), vec![2, 4, 7, 8, 9]);
        assert_eq!(offsets(&built_on), offsets(&whole));
        // A key map of one key at a time reads the records once per key
        // and keeps the same ones.
        let one_key_at_a_time = SnapshotFile::build_with_map(
            &std::env::temp_dir(),
            next_header(9),
            topic.read_from(0),
            Some(&snapshot),
            1,
        )
        .expect("builds");
        assert_eq!(offsets(&one_key_at_a_time), offsets(&built_on));
    }

    /// A key deleted after the previous snapshot, whose tombstone the
    /// cleaner has dropped since (the floor past it), is not brought back
    /// from the previous snapshot: with the floor past that snapshot's
    /// revision the build reads the whole topic.
    #[test]
    fn a_key_deleted_after_the_previous_snapshot_and_compacted_away_stays_deleted() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let before = Topic::open(dir.path().join("before"), TopicConfig::default()).expect("opens");
        before
            .append(&[write(1, 0, "k", false), write(2, 0, "j", false)])
            .expect("appends");
        let previous =
            SnapshotFile::build(header_at(2, 0), before.read_from(0), None).expect("builds");
        // The topic as the cleaner left it: k's put (1) superseded by its
        // delete (3), and the delete dropped after its retention, raising
        // the floor to 4.
        let after = Topic::open(dir.path().join("after"), TopicConfig::default()).expect("opens");
        after
            .append(&[write(2, 0, "j", false), write(4, 0, "m", false)])
            .expect("appends");
        let next = SnapshotFile::build(header_at(4, 4), after.read_from(0), Some(&previous))
            .expect("builds");
        let keys: Vec<String> = next
            .records()
            .map(|record| {
                let record = WriteRecord::from_record(record.expect("decodes")).expect("a write");
                record.key
            })
            .collect();
        assert_eq!(keys, ["j", "m"]);
    }

    /// A snapshot built in `dir` of a topic of three records, and the records.
    fn three_records(dir: &Path) -> (Vec<Record>, SnapshotFile) {
        let topic = Topic::open(dir.join("topic"), TopicConfig::default()).expect("opens");
        let records: Vec<Record> = (1..=3)
            .map(|n| write(n, 0, &format!("k{n}"), false))
            .collect();
        topic.append(&records).expect("appends");
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 13)),
                last_membership: StoredMembership::default(),
                snapshot_id: "three".into(),
            },
            3,
            0,
        );
        let built = SnapshotFile::build_in(dir, header, topic.read_from(0), None).expect("builds");
        (records, built)
    }

    #[test]
    fn a_damaged_record_in_a_snapshot_file_is_named_by_file_and_byte() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (records, built) = three_records(dir.path());
        built.store(dir.path()).expect("stores");
        let path = dir.path().join(CURRENT_FILE);
        let mut bytes = std::fs::read(&path).expect("reads");
        let frame_len = records[2].frame_len();
        let last_frame_at = bytes.len() - END_BYTES - frame_len;
        bytes[last_frame_at + frame_len - 1] ^= 0x20;
        std::fs::write(&path, &bytes).expect("writes");

        let snapshot = SnapshotFile::open(&path).expect("the header is intact");
        let error = snapshot.check_records().expect_err("the damage is found");
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&last_frame_at.to_string()), "{message}");
        let read: Vec<_> = snapshot.records().take_while(Result::is_ok).collect();
        assert_eq!(read.len(), 2, "the records before the damage read");
    }

    /// A snapshot cut short anywhere, between two frames included, or with
    /// bytes after its end, is refused on opening, naming the file and a
    /// byte; a marker counting other records fails the check.
    #[test]
    fn a_snapshot_cut_between_frames_or_lengthened_is_refused() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (records, built) = three_records(dir.path());
        assert_eq!(built.check_records().expect("whole"), 3);
        let bytes = std::fs::read(&built.path).expect("reads");
        let frames_bytes: usize = records.iter().map(Record::frame_len).sum();
        let frames_at = bytes.len() - END_BYTES - frames_bytes;
        let mut boundaries = vec![frames_at];
        for record in &records {
            boundaries.push(boundaries.last().expect("one") + record.frame_len());
        }
        let path = dir.path().join("bad.snap");
        let refused = |bytes: &[u8]| -> String {
            std::fs::write(&path, bytes).expect("writes");
            match SnapshotFile::open(&path) {
                Err(StoreError::CorruptSnapshot { name, reason }) => {
                    assert_eq!(name, path.display().to_string());
                    assert!(reason.contains("byte"), "{reason}");
                    reason
                }
                Err(other) => panic!("expected a corrupt snapshot, got {other:?}"),
                Ok(_) => panic!("a snapshot of {} bytes was taken", bytes.len()),
            }
        };
        for cut in boundaries.iter().copied().chain([bytes.len() - 1]) {
            let reason = refused(&bytes[..cut]);
            assert!(reason.contains("cut"), "cut at {cut}: {reason}");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&bytes[frames_at..boundaries[1]]);
        let reason = refused(&longer);
        let marker_at = bytes.len() - END_BYTES;
        let appended = longer.len() - bytes.len();
        assert!(
            reason.contains(&format!(
                "{appended} bytes follow the end marker at byte {marker_at}: something was appended"
            )),
            "{reason}"
        );
        // The last frame dropped and the marker moved up to its place.
        let mut joined = bytes[..boundaries[2]].to_vec();
        joined.extend_from_slice(&bytes[bytes.len() - END_BYTES..]);
        refused(&joined);

        let mut miscounted = bytes[..bytes.len() - END_BYTES].to_vec();
        let marker = EndMarker {
            frames_bytes: frames_bytes as u64,
            records: 4,
        };
        miscounted.extend_from_slice(&marker.encode());
        std::fs::write(&path, &miscounted).expect("writes");
        let snapshot = SnapshotFile::open(&path).expect("the marker agrees with the length");
        let error = snapshot
            .check_records()
            .expect_err("the count is found wrong");
        assert!(error.to_string().contains("end marker counts 4"), "{error}");
    }

    /// A snapshot of an empty topic at log index `index`.
    fn empty_at(index: u64) -> SnapshotFile {
        let dir = tempfile::tempdir().expect("a temp dir");
        let topic = Topic::open(dir.path(), TopicConfig::default()).expect("opens");
        let header = SnapshotHeader::new(
            SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
                last_membership: StoredMembership::default(),
                snapshot_id: format!("at-{index}"),
            },
            0,
            0,
        );
        SnapshotFile::build(header, topic.read_from(0), None).expect("builds")
    }

    /// A build that ends after an install made a newer snapshot current
    /// leaves the newer one in place; a newer build replaces it.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_current_one() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let current_id = |dir: &Path| {
            SnapshotFile::load(dir)
                .expect("loads")
                .expect("a current snapshot")
                .header
                .meta
                .snapshot_id
                .clone()
        };
        empty_at(20).store_installing(dir.path()).expect("stores");
        finish_installing(dir.path()).expect("installs");
        empty_at(10)
            .store(dir.path())
            .expect("an older one is skipped");
        assert_eq!(current_id(dir.path()), "at-20");
        empty_at(30).store(dir.path()).expect("stores");
        assert_eq!(current_id(dir.path()), "at-30");
    }

    /// Opens a snapshot file named `name` in `dir` with `header_json` as its
    /// header and no records, ended by `marker` if given.
    fn with_header(
        dir: &Path,
        name: &str,
        header_json: &str,
        marker: Option<EndMarker>,
    ) -> Result<SnapshotFile, StoreError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header_json.as_bytes());
        let format = serde_json::from_str::<serde_json::Value>(header_json)
            .ok()
            .and_then(|header| header["format"].as_u64());
        if format.is_some_and(|format| format >= u64::from(CHECKED_HEADER_FORMAT)) {
            bytes.extend_from_slice(&header_crc(header_json.as_bytes()).to_le_bytes());
        }
        if let Some(marker) = marker {
            bytes.extend_from_slice(&marker.encode());
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("writes");
        SnapshotFile::open(&path)
    }

    /// A bit changed in the header (here the revision a later build would
    /// go on from) is damage named as such, not another snapshot.
    #[test]
    fn a_changed_bit_in_the_header_fails_its_checksum() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 6)),
            last_membership: StoredMembership::default(),
            snapshot_id: "test".into(),
        };
        let json = serde_json::to_string(&SnapshotHeader::new(meta, 1716, 0)).expect("serializes");
        let dir = tempfile::tempdir().expect("a temp dir");
        let marker = EndMarker {
            frames_bytes: 0,
            records: 0,
        };
        with_header(dir.path(), "flipped", &json, Some(marker)).expect("parses");
        let path = dir.path().join("flipped");
        let mut bytes = std::fs::read(&path).expect("reads");
        let at = HEADER_AT + json.find("1716").expect("the revision") + 3;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).expect("writes");
        match SnapshotFile::open(&path) {
            Err(StoreError::CorruptSnapshot { reason, .. }) => {
                assert!(reason.contains("fails its checksum"), "{reason}");
            }
            Err(other) => panic!("expected a damaged header, got {other:?}"),
            Ok(read) => panic!("read revision {}", read.header.revision),
        }
    }

    #[test]
    fn headers_carry_the_revision_and_other_formats_are_refused() {
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 6)),
            last_membership: StoredMembership::default(),
            snapshot_id: "test".into(),
        };
        let header = SnapshotHeader::new(meta.clone(), 5, 0);
        let json = serde_json::to_string(&header).expect("serializes");
        let dir = tempfile::tempdir().expect("a temp dir");
        let empty = || EndMarker {
            frames_bytes: 0,
            records: 0,
        };
        let read = with_header(dir.path(), "new", &json, Some(empty())).expect("parses");
        assert_eq!((read.header.format, read.header.revision), (4, 5));
        assert_eq!(read.check_records().expect("no records"), 0);
        // Format 3 had no header checksum, and is still read.
        let unchecked =
            serde_json::json!({ "meta": meta, "tombstone_floor": 0, "revision": 5, "format": 3 });
        let read = with_header(
            dir.path(),
            "unchecked",
            &unchecked.to_string(),
            Some(empty()),
        )
        .expect("format 3 parses");
        assert_eq!((read.header.format, read.header.revision), (3, 5));
        // Format 2 wrote no end marker, and is still read.
        let unmarked =
            serde_json::json!({ "meta": meta, "tombstone_floor": 0, "revision": 5, "format": 2 });
        let read = with_header(dir.path(), "unmarked", &unmarked.to_string(), None)
            .expect("format 2 parses");
        assert_eq!((read.header.format, read.header.revision), (2, 5));

        let old = serde_json::json!({ "meta": meta, "tombstone_floor": 0 });
        let later = serde_json::json!({ "meta": meta, "tombstone_floor": 0, "format": 5 });
        for (name, header, says) in [
            (
                "old",
                old,
                "header format 1 was written while topic offsets",
            ),
            ("later", later, "header format 5 is newer"),
            (
                "unended",
                serde_json::to_value(&header).expect("a value"),
                "no end marker",
            ),
        ] {
            match with_header(dir.path(), name, &header.to_string(), None) {
                Err(StoreError::CorruptSnapshot { name: got, reason }) => {
                    assert!(got.ends_with(name), "{got}");
                    assert!(reason.contains(says), "{reason}");
                }
                Err(other) => panic!("expected a refused header, got {other:?}"),
                Ok(_) => panic!("expected a refused header, got a snapshot"),
            }
        }
    }
}
