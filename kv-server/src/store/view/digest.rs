//! The view's digest: what tells a damaged sled database from a sound one.
//!
//! sled checks each record it reads, but it takes a damaged record met
//! while it recovers for the end of what was written, and goes on without
//! it: a key can come back older than it was written, or not at all, with
//! no error. The view therefore keeps a digest of everything it holds,
//! the wrapping sum of one hash per record, under [`DIGEST_KEY`]. Each
//! write-out moves it by what it replaces, in the same atomic batch as the
//! records, and opening a view sums every record again and compares: a
//! record lost, older than written or changed makes the sums differ, and
//! the view is rebuilt from the topic. The scan also reads every page, so
//! a record sled finds damaged is met at start, not by a client's read.
//!
//! The format and rebuilding markers are left out: they are written on
//! their own, outside any write-out, and are checked otherwise.

use rapidhash::v3::rapidhash_v3;

use super::layout::{DIGEST_KEY, FORMAT_KEY, REBUILDING_KEY};

/// The wrapping sum of the hashes of a set of records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Digest(u64);

impl Digest {
    /// Reads a stored digest: `None` if it is not eight bytes.
    pub(super) fn decode(bytes: &[u8]) -> Option<Digest> {
        bytes
            .try_into()
            .ok()
            .map(|bytes| Digest(u64::from_be_bytes(bytes)))
    }

    /// The digest as it is stored.
    pub(super) fn encode(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Moves the digest from `raw` holding `old` to it holding `new`
    /// (`None`: no record).
    pub(super) fn replace(&mut self, raw: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        if !counted(raw) {
            return;
        }
        if let Some(old) = old {
            self.0 = self.0.wrapping_sub(record_hash(raw, old));
        }
        if let Some(new) = new {
            self.0 = self.0.wrapping_add(record_hash(raw, new));
        }
    }

    /// Adds what another share of the records moved it by.
    pub(super) fn merge(&mut self, other: Digest) {
        self.0 = self.0.wrapping_add(other.0);
    }

    /// The digest of every record of `db`, read from its files, and how
    /// many records it read. (Loading sled's pages is what takes the time,
    /// and sled loads them one at a time: two threads reading from both
    /// ends took as long.)
    pub(super) fn of_every_record(db: &sled::Db) -> Result<(Digest, usize), sled::Error> {
        let mut digest = Digest::default();
        let mut records = 0;
        for record in db.iter() {
            let (raw, value) = record?;
            digest.replace(&raw, None, Some(&value));
            records += 1;
        }
        Ok((digest, records))
    }

    /// The digest `db` stored; that of no record if none is stored.
    pub(super) fn stored(db: &sled::Db) -> Result<Option<Digest>, sled::Error> {
        Ok(match db.get(DIGEST_KEY)? {
            Some(bytes) => Digest::decode(&bytes),
            None => Some(Digest::default()),
        })
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Whether the record under `raw` counts in the digest.
fn counted(raw: &[u8]) -> bool {
    raw != DIGEST_KEY && raw != FORMAT_KEY && raw != REBUILDING_KEY
}

/// The hash of one record: of its key's hash and its value's, so that no
/// two different records are read alike whatever their lengths.
fn record_hash(raw: &[u8], value: &[u8]) -> u64 {
    let mut both = [0u8; 16];
    both[..8].copy_from_slice(&rapidhash_v3(raw).to_le_bytes());
    both[8..].copy_from_slice(&rapidhash_v3(value).to_le_bytes());
    rapidhash_v3(&both)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moving the digest record by record gives the digest of the records
    /// that are left, whatever the order.
    #[test]
    fn a_digest_moved_by_each_change_is_that_of_the_records_left() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_sled(dir.path()).unwrap();
        let mut digest = Digest::default();
        for n in 0..100u32 {
            let raw = format!("k{n}").into_bytes();
            let old = db.insert(&raw, n.to_be_bytes().as_slice()).unwrap();
            digest.replace(&raw, old.as_deref(), Some(&n.to_be_bytes()));
        }
        for n in (0..100u32).step_by(3) {
            let raw = format!("k{n}").into_bytes();
            let old = db.remove(&raw).unwrap();
            digest.replace(&raw, old.as_deref(), None);
        }
        for n in (0..100u32).step_by(7) {
            let raw = format!("k{n}").into_bytes();
            let old = db.insert(&raw, b"again".as_slice()).unwrap();
            digest.replace(&raw, old.as_deref(), Some(b"again"));
        }
        db.insert(FORMAT_KEY, b"x".as_slice()).unwrap();
        assert_eq!(Digest::of_every_record(&db).unwrap().0, digest);

        // An older value and a lost record each show.
        let older = db.insert(b"k1", 1u32.to_le_bytes().as_slice()).unwrap();
        assert_ne!(Digest::of_every_record(&db).unwrap().0, digest);
        db.insert(b"k1", older.unwrap()).unwrap();
        db.remove(b"k2").unwrap();
        assert_ne!(Digest::of_every_record(&db).unwrap().0, digest);
    }

    /// A record's key and value are not read as one string: moving bytes
    /// from one to the other changes the hash.
    #[test]
    fn moving_bytes_between_key_and_value_changes_the_hash() {
        assert_ne!(record_hash(b"ab", b"c"), record_hash(b"a", b"bc"));
        assert_ne!(record_hash(b"a", b"b"), record_hash(b"b", b"a"));
    }
}
