//! The view's write-behind layers, and the scan that merges them with sled.
//!
//! Committed batches go to an in-memory layer of unwritten changes (the
//! *active* layer). A checkpoint *seals* it (new commits start a fresh one)
//! and writes the sealed layer to sled in one batch; only once sled has it
//! is the sealed layer dropped. Reads look at the active layer, then the
//! sealed one, then sled, so a change is never out of sight.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::Arc;

use crate::error::StoreError;

/// Changes committed but not yet written to sled, by raw key: `None` for a
/// removed key.
pub(super) type Unwritten = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The changes not yet in sled.
#[derive(Debug, Default)]
pub(super) struct Layers {
    /// Where commits go.
    active: Unwritten,
    /// Sealed by a checkpoint, being written to sled. Shared so that the
    /// writer reads it without holding the lock readers need.
    sealed: Arc<Unwritten>,
}

impl Layers {
    /// The newest unwritten change of `raw`: `Some(None)` if it was removed,
    /// `None` if neither layer has it (then sled knows).
    pub(super) fn get(&self, raw: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.active.get(raw).or_else(|| self.sealed.get(raw))
    }

    /// The unwritten changes from `start` (included) while keys start with
    /// `prefix`, newest winning: a copy a scan can hold without the lock.
    pub(super) fn overlay(&self, start: &[u8], prefix: &[u8]) -> Unwritten {
        let mut overlay = Unwritten::new();
        // The sealed layer first: the active one is newer.
        for layer in [&*self.sealed, &self.active] {
            let range = layer
                .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
                .take_while(|(raw, _)| raw.starts_with(prefix));
            for (raw, value) in range {
                overlay.insert(raw.clone(), value.clone());
            }
        }
        overlay
    }

    /// Adds a committed batch to the active layer; returns how many changes
    /// it holds.
    pub(super) fn commit(&mut self, changes: Unwritten) -> usize {
        self.active.extend(changes);
        self.active.len()
    }

    /// Seals the active layer, starting a fresh one.
    pub(super) fn seal(&mut self) {
        let active = std::mem::take(&mut self.active);
        if self.sealed.is_empty() {
            self.sealed = Arc::new(active);
        } else {
            // The last write failed: seal the newer changes over it.
            Arc::make_mut(&mut self.sealed).extend(active);
        }
    }

    /// The sealed layer, for the writer.
    pub(super) fn sealed(&self) -> Arc<Unwritten> {
        Arc::clone(&self.sealed)
    }

    /// Drops the sealed layer once sled holds it.
    pub(super) fn written(&mut self) {
        self.sealed = Arc::default();
    }
}

/// sled's scan merged with unwritten changes, which win on equal keys; a
/// change that removes a key hides sled's value.
pub(super) struct MergedScan<S, O>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    O: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    stored: Peekable<S>,
    overlay: Peekable<O>,
}

impl<S, O> MergedScan<S, O>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    O: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    /// Merges `stored` and `overlay`, both in key order.
    pub(super) fn new(stored: S, overlay: O) -> Self {
        MergedScan {
            stored: stored.peekable(),
            overlay: overlay.peekable(),
        }
    }
}

impl<S, O> Iterator for MergedScan<S, O>
where
    S: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    O: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>,
{
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let from_overlay = match (self.stored.peek(), self.overlay.peek()) {
                (None, None) => return None,
                // sled's error is yielded below.
                (Some(Err(_)), _) => false,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((stored, _))), Some((unwritten, _))) => {
                    if stored.as_ref() == unwritten.as_slice() {
                        // The unwritten change replaces the stored value.
                        self.stored.next();
                        true
                    } else {
                        unwritten.as_slice() < stored.as_ref()
                    }
                }
            };
            if from_overlay {
                let (raw, value) = self.overlay.next()?;
                match value {
                    Some(value) => return Some(Ok((raw, value))),
                    None => continue,
                }
            }
            let stored = self.stored.next()?;
            return Some(
                stored
                    .map(|(raw, value)| (raw.to_vec(), value.to_vec()))
                    .map_err(StoreError::from),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(key: &str, value: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (key.into(), value.map(Into::into))
    }

    /// Each case: what sled holds, the unwritten changes, what the merged
    /// scan yields.
    #[test]
    fn the_merged_scan_prefers_unwritten_changes_and_hides_removed_keys() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [(&'static str, Option<&'static str>)],
            &'static [(&'static str, &'static str)],
        );
        let cases: &[Case] = &[
            (&[], &[], &[]),
            (&[("a", "1"), ("c", "3")], &[], &[("a", "1"), ("c", "3")]),
            (&[], &[("b", Some("2"))], &[("b", "2")]),
            (
                &[("a", "1"), ("c", "3")],
                &[("b", Some("2")), ("d", Some("4"))],
                &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
            ),
            (&[("a", "old")], &[("a", Some("new"))], &[("a", "new")]),
            (&[("a", "1"), ("b", "2")], &[("a", None)], &[("b", "2")]),
            (&[("b", "2")], &[("a", None), ("c", None)], &[("b", "2")]),
        ];
        for (case, (stored, unwritten, expected)) in cases.iter().enumerate() {
            let stored = stored
                .iter()
                .map(|(key, value)| Ok((sled::IVec::from(*key), sled::IVec::from(*value))));
            let overlay: Unwritten = unwritten
                .iter()
                .map(|(key, value)| change(key, *value))
                .collect();
            let merged: Vec<(Vec<u8>, Vec<u8>)> = MergedScan::new(stored, overlay.into_iter())
                .collect::<Result<_, _>>()
                .unwrap();
            let expected: Vec<(Vec<u8>, Vec<u8>)> = expected
                .iter()
                .map(|(key, value)| (key.as_bytes().to_vec(), value.as_bytes().to_vec()))
                .collect();
            assert_eq!(merged, expected, "case {case}");
        }
    }
}
