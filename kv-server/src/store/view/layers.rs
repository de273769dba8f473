//! The view's write-behind layers, and the scan that merges them with sled.
//!
//! Committed batches go to an in-memory layer of unwritten changes (the
//! *active* layer). A checkpoint *seals* it (new commits start a fresh one)
//! and writes the sealed layer to sled in one batch; only once sled has it
//! is the sealed layer dropped. Reads look at the active layer, then the
//! sealed one, then sled, so a change is never out of sight.
//!
//! A read that takes more than one value (a scan, or several keys) copies
//! the layers it needs once, then reads sled. Changes committed after the
//! copy are out of its sight until a checkpoint writes them to sled: if one
//! does while the read runs, the read could see the keys it reaches after
//! the write as newer than the keys it saw before — a state that never
//! existed. [`SledWrites`] tells such a read to start again.

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::ops::Bound;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::StoreError;

/// Changes committed but not yet written to sled, by raw key: `None` for a
/// removed key.
pub(super) type Unwritten = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// How much of the view's changes no checkpoint has sealed yet: what
/// bounds the view's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unsealed {
    /// Changed keys.
    pub changes: usize,
    /// Bytes of their raw keys and values.
    pub bytes: usize,
}

/// Bytes a change holds in a layer.
fn change_bytes(raw: &[u8], value: &Option<Vec<u8>>) -> usize {
    raw.len() + value.as_ref().map_or(0, Vec::len)
}

/// The changes not yet in sled.
#[derive(Debug, Default)]
pub(super) struct Layers {
    /// Where commits go.
    active: Unwritten,
    /// Bytes of the active layer's keys and values.
    active_bytes: usize,
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
        for (raw, value) in changes {
            self.active_bytes += change_bytes(&raw, &value);
            if let Some(replaced) = self.active.get(&raw) {
                self.active_bytes -= change_bytes(&raw, replaced);
            }
            self.active.insert(raw, value);
        }
        self.active.len()
    }

    /// How much of the changes the active layer holds.
    pub(super) fn unsealed(&self) -> Unsealed {
        Unsealed {
            changes: self.active.len(),
            bytes: self.active_bytes,
        }
    }

    /// Seals the active layer, starting a fresh one.
    pub(super) fn seal(&mut self) {
        let active = std::mem::take(&mut self.active);
        self.active_bytes = 0;
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

/// How many times a read starts again because sled was written under it,
/// before it holds the writes off instead.
const OPTIMISTIC_READS: usize = 3;

/// Keeps reads that combine several sled reads on one state: a read that a
/// write to sled overlapped starts again, and one that lost too often holds
/// the writes off while it runs once more.
///
/// The common read takes no lock: it compares a counter before and after.
/// A write (a checkpoint's flush, the view cleared) takes the gate, which
/// only reads that already lost take; such a read is bounded (a list page),
/// so it delays a checkpoint by little, and cannot be starved by them.
#[derive(Debug, Default)]
pub(super) struct SledWrites {
    /// Bumped before and after every write to sled: a read that sees the
    /// same value on both sides overlapped no write.
    epoch: AtomicU64,
    /// Held shared by a read that lost [`OPTIMISTIC_READS`] times,
    /// exclusively by a write.
    gate: RwLock<()>,
}

impl SledWrites {
    /// Runs `write`, which changes sled (and may drop the layers it wrote),
    /// as a write every read running meanwhile notices.
    pub(super) fn writing<T>(&self, write: impl FnOnce() -> T) -> T {
        let _gate = self.gate.write();
        // SeqCst read-modify-writes: sled's writes below cannot be seen
        // before the first bump, nor the second bump before them.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let result = write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        result
    }

    /// The result of `read` as of one state of the view: `read` runs again
    /// while a write to sled overlaps it, and at last with writes held off.
    /// `read` must copy what it needs of the layers after it is called, not
    /// before, and must not write.
    pub(super) fn consistent<T>(
        &self,
        mut read: impl FnMut() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for _ in 0..OPTIMISTIC_READS {
            let before = self.epoch.load(Ordering::SeqCst);
            let value = read()?;
            // Orders every sled read above before the load below.
            fence(Ordering::SeqCst);
            if self.epoch.load(Ordering::SeqCst) == before {
                return Ok(value);
            }
        }
        let _gate = self.gate.read();
        read()
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

    /// The active layer counts the bytes of its keys and values, a
    /// replaced value no more, and a seal starts the count again.
    #[test]
    fn the_active_layer_counts_its_bytes_until_it_is_sealed() {
        let mut layers = Layers::default();
        let batch = |changes: &[(&str, Option<&str>)]| -> Unwritten {
            changes
                .iter()
                .map(|(key, value)| change(key, *value))
                .collect()
        };
        layers.commit(batch(&[("a", Some("1234")), ("bb", Some("12"))]));
        assert_eq!(
            layers.unsealed(),
            Unsealed {
                changes: 2,
                bytes: 9
            }
        );
        layers.commit(batch(&[("a", Some("123456789")), ("bb", None)]));
        assert_eq!(
            layers.unsealed(),
            Unsealed {
                changes: 2,
                bytes: 12
            }
        );
        layers.seal();
        assert_eq!(layers.unsealed(), Unsealed::default());
        layers.commit(batch(&[("c", Some("1"))]));
        assert_eq!(
            layers.unsealed(),
            Unsealed {
                changes: 1,
                bytes: 2
            }
        );
    }

    /// A read that a write overlaps runs again; one that lost every
    /// optimistic try runs once more with writes held off, so it ends.
    #[test]
    fn a_read_overlapped_by_writes_runs_again_then_holds_writes_off() {
        let writes = SledWrites::default();
        assert_eq!(writes.consistent(|| Ok(1)).unwrap(), 1, "no write: one run");

        let mut runs = 0;
        let value = writes
            .consistent(|| {
                runs += 1;
                if runs == 1 {
                    writes.writing(|| ());
                }
                Ok(runs)
            })
            .unwrap();
        assert_eq!(value, 2, "one overlapping write: a second run");

        let mut runs = 0;
        let value = writes
            .consistent(|| {
                runs += 1;
                if runs <= OPTIMISTIC_READS {
                    writes.writing(|| ());
                } else {
                    assert!(writes.gate.try_write().is_none(), "writes are held off");
                }
                Ok(runs)
            })
            .unwrap();
        assert_eq!(value, OPTIMISTIC_READS + 1, "a write on every try");
        assert!(writes.gate.try_write().is_some(), "the gate is released");
    }
}
