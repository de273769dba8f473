//! Backups, as etcd's `snapshot save` and `snapshot restore`.
//!
//! A backup is a snapshot file as the nodes send each other: the compacted
//! topic as of one revision, in the topic's own record frames (each with
//! its CRC), behind a header saying the revision and the raft log id it
//! stands for. `GET /v1/snapshot` has the node make one and streams it.
//!
//! [`restore`] lays down one member of a new cluster from it: the
//! snapshot, with the new cluster's membership in place of the old one, is
//! installed as a follower installs one from its leader, and the raft log
//! starts right after it. Every member is restored from the same file with
//! the same `--peers`, so all start from the same log id and membership,
//! and elect a leader as a cluster that had just purged its log would. The
//! new cluster's id is derived from the backup and the members, so the
//! members agree on it, and it differs from the old cluster's: a restored
//! node and an old one refuse each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{Membership, Vote};
use uuid::Uuid;

use crate::error::StoreError;
use crate::server::ServerError;
use crate::store::log_store::LogStore;
use crate::store::snapshot::{SnapshotFile, SnapshotHeader};
use crate::store::snapshot_receive::received_path;
use crate::store::{DataDirs, Store};
use crate::types::{LogId, Node, NodeId, Revision, StoredMembership};

/// What a restore laid down.
#[derive(Debug)]
pub struct Restored {
    /// The backup's revision: the new cluster's first.
    pub revision: Revision,
    /// The records of the backup.
    pub records: u64,
    /// The raft log id the new cluster starts after.
    pub last_log_id: Option<LogId>,
    /// The new cluster's id.
    pub cluster_id: Uuid,
}

/// Checks the backup at `path` whole: its header, then every record's
/// frame, naming the file and the byte of the first damage. Gives the
/// opened snapshot and its record count.
pub fn check(path: &Path) -> Result<(SnapshotFile, u64), StoreError> {
    let snapshot = SnapshotFile::open(path)?;
    let records = snapshot.check_records()?;
    Ok((snapshot, records))
}

/// The file that marks a restore in progress in its data dir: a node
/// refuses to start there, and a restore run again clears the dir.
pub const RESTORING_FILE: &str = "restore-in-progress";

/// Refuses the data dir `data_dir` while it holds a restore cut short.
pub fn refuse_cut_restore(data_dir: &Path) -> Result<(), ServerError> {
    let marker = data_dir.join(RESTORING_FILE);
    if marker.exists() {
        return Err(ServerError::Config(format!(
            "--data-dir {}: a restore into it was cut short ({} is there); run the restore again",
            data_dir.display(),
            marker.display()
        )));
    }
    Ok(())
}

/// Lays down member `node_id` of the new cluster `peers` (id → peer URL)
/// in `data_dir` from the backup at `from`. Nothing is written unless the
/// whole backup checks out, and `data_dir` must not exist or be empty (a
/// symlink to an empty dir, or a mount point, is laid down in place; a
/// mount point's `lost+found` stays).
pub async fn restore(
    from: &Path,
    data_dir: &Path,
    node_id: NodeId,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Restored, ServerError> {
    // A pipe or a device reads as empty once its length is asked, and the
    // backup is read twice (checked whole, then laid down).
    if std::fs::metadata(from).is_ok_and(|meta| !meta.is_file()) {
        return Err(ServerError::Config(format!(
            "--from {}: not a regular file; a restore reads the backup twice (to check it, \
             then to lay it down), so save it to a file first",
            from.display()
        )));
    }
    let (backup, records) = check(from)?;
    // Locked first: a restore running into the same dir holds it, and
    // what it lays down is not cleared away.
    let lock_file = data_dir.join(crate::store::dir_lock::LOCK_FILE);
    let lock_was_there = lock_file.exists();
    let lock = crate::store::dir_lock::DataDirLock::take(data_dir)?;
    let marker = data_dir.join(RESTORING_FILE);
    if marker.exists() {
        // What an earlier restore, cut short, left: no node ever ran on it.
        clear_all_but_the_lock(data_dir)?;
    }
    let occupied = std::fs::read_dir(data_dir)
        .map_err(StoreError::io("list", data_dir))?
        .filter_map(Result::ok)
        .any(|entry| !left_in_place(&entry));
    if occupied {
        // A refused dir is left as it was found: without a lock file
        // this restore made (removed while still held, so that no other
        // process locks it in between).
        if !lock_was_there {
            let _ = std::fs::remove_file(&lock_file);
        }
        drop(lock);
        return Err(ServerError::Config(format!(
            "--data-dir {} is not empty: a restore lays down a new member",
            data_dir.display()
        )));
    }
    // Laid down under the marker, which goes once the member is whole: a
    // restore that fails leaves the dir empty, one cut short leaves a
    // member no node starts on.
    std::fs::write(&marker, b"").map_err(StoreError::io("create", &marker))?;
    compaction::fsutil::fsync_dir(data_dir).map_err(StoreError::from)?;
    let restored = lay_down(&backup, records, data_dir, node_id, peers).await;
    if restored.is_err() {
        let _ = clear_all_but_the_lock(data_dir);
        return restored;
    }
    std::fs::remove_file(&marker).map_err(StoreError::io("remove", &marker))?;
    compaction::fsutil::fsync_dir(data_dir).map_err(StoreError::from)?;
    restored
}

/// Removes everything in `dir` but its lock file.
fn clear_all_but_the_lock(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        if left_in_place(&entry) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(StoreError::io("remove", &path))?;
    }
    Ok(())
}

/// What an empty data dir may hold, left where it is: the lock, and the
/// `lost+found` directory of a file system the dir is the mount point of
/// (ext4 makes one on every new volume).
fn left_in_place(entry: &std::fs::DirEntry) -> bool {
    let name = entry.file_name();
    name == crate::store::dir_lock::LOCK_FILE
        || (name == "lost+found" && entry.file_type().is_ok_and(|kind| kind.is_dir()))
}

/// [`restore`] into `data_dir` (locked by the caller), which the caller
/// makes the member's.
async fn lay_down(
    backup: &SnapshotFile,
    records: u64,
    data_dir: &Path,
    node_id: NodeId,
    peers: &BTreeMap<NodeId, String>,
) -> Result<Restored, ServerError> {
    let meta = &backup.header.meta;
    let last_log_id = meta.last_log_id;
    let cluster_id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("openmessaging-kv restore {} {peers:?}", meta.snapshot_id).as_bytes(),
    );

    crate::store::data_format::check_or_mark(data_dir)?;
    crate::peer::ClusterId::open(data_dir)?.set(cluster_id)?;
    let dirs = DataDirs::new(data_dir);
    let log = LogStore::open(&dirs.raft, Some(node_id))?;
    let store = Store::open(&dirs, crate::config::topic_defaults(), &log)?;

    // The new members, each known by its peer URL until it publishes its
    // client URL (as a cluster formed by `--peers` starts).
    let voters: BTreeSet<NodeId> = peers.keys().copied().collect();
    let nodes: BTreeMap<NodeId, Node> = peers
        .iter()
        .map(|(id, peer_addr)| {
            let node = Node {
                addr: String::new(),
                peer_addr: peer_addr.clone(),
            };
            (*id, node)
        })
        .collect();
    let mut header = SnapshotHeader::new(
        meta.clone(),
        backup.header.revision,
        backup.header.tombstone_floor,
    );
    header.meta.last_membership =
        StoredMembership::new(last_log_id, Membership::new(vec![voters], nodes));
    header.meta.snapshot_id = format!("restored-{}", meta.snapshot_id);
    let path = received_path(&store.snapshot_dir, &header.meta.snapshot_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
    }
    // The old cluster's NOSPACE alarm was about its disks, not these.
    let snapshot = backup.copy_with_header(&path, &header, |record| {
        record.key.as_ref() != crate::store::alarms::NOSPACE_KEY.as_bytes()
    })?;
    store.install(&snapshot)?;
    store.checkpoint()?;

    // The log starts after the snapshot, with the vote of the term that
    // wrote its last entry: the first election is of the next term.
    let mut log_writer = log.clone();
    if let Some(last) = last_log_id {
        log_writer
            .save_vote(&Vote::new(last.leader_id.term, last.leader_id.node_id))
            .await
            .map_err(|source| ServerError::RaftLog {
                step: "save the vote",
                source: Box::new(source),
            })?;
        log_writer
            .purge(last)
            .await
            .map_err(|source| ServerError::RaftLog {
                step: "start the log after the snapshot",
                source: Box::new(source),
            })?;
    }
    log.close().await?;
    Ok(Restored {
        revision: header.revision,
        records,
        last_log_id,
        cluster_id,
    })
}
