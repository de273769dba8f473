//! Reading by prefix through a batch being prepared: what a transaction's
//! prefix delete and prefix get see, and the keys a lease's end deletes,
//! with the changes of the commands applied before in the same batch (and
//! a transaction's own earlier operations) on top of the view.

use std::iter::Peekable;

use super::layout::{attached_key, attachment_prefix, entry_key, user_key, KeyEntry};
use super::ViewBatch;
use crate::error::StoreError;
use crate::store::internal::is_internal_key;

impl ViewBatch<'_> {
    /// The entries under `prefix` as of this batch, in key order, at most
    /// `limit` of them and only while `fits` takes each one's value bytes,
    /// and whether more follow. Internal keys are never among them.
    pub fn scan_prefix(
        &self,
        prefix: &str,
        limit: usize,
        mut fits: impl FnMut(usize) -> bool,
    ) -> Result<(Vec<(String, KeyEntry)>, bool), StoreError> {
        let raw_prefix = entry_key(prefix);
        let mut out = Vec::new();
        for item in self.raw_scan_prefix(&raw_prefix) {
            let (raw, bytes) = item?;
            let key = user_key(&raw);
            if is_internal_key(&key) {
                continue;
            }
            if out.len() == limit {
                return Ok((out, true));
            }
            let entry = KeyEntry::decode(&raw, &bytes)?;
            if !fits(entry.value.len()) {
                return Ok((out, true));
            }
            out.push((key, entry));
        }
        Ok((out, false))
    }

    /// The keys under `prefix` as of this batch, in key order, without
    /// their values: what a prefix delete removes. Internal keys are never
    /// among them.
    pub fn keys_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let raw_prefix = entry_key(prefix);
        let mut keys = Vec::new();
        for item in self.raw_scan_prefix(&raw_prefix) {
            let key = user_key(&item?.0);
            if !is_internal_key(&key) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// The keys put with lease `id` since it was granted, in key order, as
    /// of this batch; some may have moved to another lease since (see the
    /// layout).
    pub fn attachments(&self, id: u64) -> Result<Vec<String>, StoreError> {
        let prefix = attachment_prefix(id);
        self.raw_scan_prefix(&prefix)
            .map(|item| item.map(|(raw, _)| attached_key(&raw, &prefix)))
            .collect()
    }

    /// Raw keys and values under `raw_prefix`, the batch's changes over the
    /// view's.
    fn raw_scan_prefix<'b>(
        &'b self,
        raw_prefix: &'b [u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'b {
        let stored = self.view.raw_scan(raw_prefix.to_vec(), raw_prefix);
        let pending = self
            .pending
            .range(raw_prefix.to_vec()..)
            .take_while(move |(raw, _)| raw.starts_with(raw_prefix));
        PendingOnTop {
            stored: stored.peekable(),
            pending: pending.peekable(),
        }
    }
}

/// The view's scan with the batch's own changes on top: a pending change
/// replaces the view's value of its key, a pending removal hides it.
struct PendingOnTop<'p, S, P>
where
    S: Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
    P: Iterator<Item = (&'p Vec<u8>, &'p Option<Vec<u8>>)>,
{
    stored: Peekable<S>,
    pending: Peekable<P>,
}

impl<'p, S, P> Iterator for PendingOnTop<'p, S, P>
where
    S: Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
    P: Iterator<Item = (&'p Vec<u8>, &'p Option<Vec<u8>>)>,
{
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let from_pending = match (self.stored.peek(), self.pending.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => false,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((stored, _))), Some((pending, _))) => {
                    if stored == *pending {
                        self.stored.next();
                        true
                    } else {
                        pending.as_slice() < stored.as_slice()
                    }
                }
            };
            if from_pending {
                let (raw, value) = self.pending.next()?;
                match value {
                    Some(value) => return Some(Ok((raw.clone(), value.clone()))),
                    None => continue,
                }
            }
            return self.stored.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::view::{KeyEntry, View};

    fn entry(value: &str) -> KeyEntry {
        KeyEntry {
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn a_prefix_scan_through_a_batch_sees_its_changes_over_the_view() {
        let dir = tempfile::tempdir().unwrap();
        let view = View::open(dir.path()).unwrap();
        let mut written = view.batch();
        for key in ["p/a", "p/b", "p/c", "q/a", "\u{0}internal"] {
            written.put(key, &entry("1"));
        }
        view.commit(written);
        view.write_out().unwrap();
        let mut batch = view.batch();
        batch.remove("p/b");
        batch.put("p/c", &entry("2"));
        batch.put("p/d", &entry("3"));
        let (found, more) = batch.scan_prefix("p/", 10, |_| true).unwrap();
        let found: Vec<(String, Vec<u8>)> = found
            .into_iter()
            .map(|(key, entry)| (key, entry.value))
            .collect();
        assert_eq!(
            found,
            vec![
                ("p/a".to_string(), b"1".to_vec()),
                ("p/c".to_string(), b"2".to_vec()),
                ("p/d".to_string(), b"3".to_vec()),
            ]
        );
        assert!(!more);
        let (found, more) = batch.scan_prefix("p/", 2, |_| true).unwrap();
        assert_eq!((found.len(), more), (2, true));
        let mut budget = 1;
        let (found, more) = batch
            .scan_prefix("p/", 10, |bytes| std::mem::replace(&mut budget, 0) >= bytes)
            .unwrap();
        assert_eq!(
            (found.len(), more),
            (1, true),
            "stopped where the values pass the bound"
        );
        assert_eq!(batch.keys_under("p/").unwrap(), ["p/a", "p/c", "p/d"]);
        let (everything, _) = batch.scan_prefix("", 100, |_| true).unwrap();
        assert!(
            everything.iter().all(|(key, _)| !key.starts_with('\u{0}')),
            "internal keys are never scanned"
        );
        assert_eq!(everything.len(), 4);
    }
}
