//! Writing the view out while it is rebuilt from the topic: the keys go to
//! sled on every core at once.
//!
//! A checkpoint writes a sealed layer as one atomic sled batch, so that sled
//! always holds the state after a whole prefix of the log. A rebuild needs
//! no such batch: the rebuilding marker is in sled until it ends, and a crash
//! before then starts the rebuild over. Without the batch, the writes can be
//! spread over threads, which is what makes a rebuild of a large topic fast.

use super::digest::Digest;
use super::layers::Unwritten;

/// Writes `changes` to `db` with one thread per core, each taking an equal
/// share of the keys. Not atomic: a crash leaves any subset written.
/// Gives what the writes moved the view's digest by.
pub(super) fn write_in_parallel(db: &sled::Db, changes: &Unwritten) -> Result<Digest, sled::Error> {
    let changes: Vec<_> = changes.iter().collect();
    if changes.is_empty() {
        return Ok(Digest::default());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = changes.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let writers: Vec<_> = changes
            .chunks(share)
            .map(|changes| scope.spawn(move || write_each(db, changes)))
            .collect();
        let mut moved = Digest::default();
        for writer in writers {
            // A writer only calls sled, which reports failures as errors; a
            // panic there is a bug worth stopping the node for.
            let share = writer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            moved.merge(share);
        }
        Ok(moved)
    })
}

/// Writes `changes` one key at a time; gives what they moved the digest by.
fn write_each(
    db: &sled::Db,
    changes: &[(&Vec<u8>, &Option<Vec<u8>>)],
) -> Result<Digest, sled::Error> {
    let mut moved = Digest::default();
    for (raw, value) in changes {
        let old = match value {
            Some(value) => db.insert(raw.as_slice(), value.as_slice())?,
            None => db.remove(raw.as_slice())?,
        };
        moved.replace(raw, old.as_deref(), value.as_deref());
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_is_written_whatever_the_number_of_threads() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_sled(dir.path()).unwrap();
        db.insert(b"gone", b"x".as_slice()).unwrap();
        let mut changes: Unwritten = (0..1000u32)
            .map(|n| (n.to_be_bytes().to_vec(), Some(n.to_le_bytes().to_vec())))
            .collect();
        changes.insert(b"gone".to_vec(), None);
        let moved = write_in_parallel(&db, &changes).unwrap();
        assert_eq!(db.len(), 1000);
        // The digest before, moved by the writes, is that of what is left.
        let mut digest = Digest::default();
        digest.replace(b"gone", None, Some(b"x"));
        digest.merge(moved);
        assert_eq!(Digest::of_every_record(&db).unwrap().0, digest);
        for n in 0..1000u32 {
            let value = db.get(n.to_be_bytes()).unwrap().expect("written");
            assert_eq!(value.as_ref(), n.to_le_bytes());
        }
        assert_eq!(db.get(b"gone").unwrap(), None);
    }
}
