//! The manifest of closed segments: which segments the topic holds below
//! the active one, with each one's size and last offset as it was closed.
//!
//! Offsets leave legitimate gaps between segments (the cleaner drops
//! records, batches skip offsets), so the files alone cannot tell a
//! segment that was removed, emptied or cut short from one the cleaner
//! merged away. The manifest can: a closed segment changes only through
//! a roll (which adds it) or a cleaner swap or replacement (which the
//! swap marker describes), and each of those rewrites the manifest. At
//! open, every listed segment must be there with its size and last
//! offset, and a segment not listed may only be the active one.
//!
//! A roll writes the manifest after sealing the segment and before
//! creating the next one, so a crash between leaves every closed segment
//! listed and no active segment: open starts a new one. A swap rewrites
//! it while it is applied, so `swap::recover` brings it up to date.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{from_checked_json, to_checked_json, write_atomic};
use crate::swap::SwapPlan;
use crate::Offset;

/// File name of the manifest inside the topic directory.
pub const MANIFEST_FILE: &str = "segments.json";

/// One closed segment as it was when it was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClosedSegment {
    /// Its base offset (its file name).
    pub base: Offset,
    /// Bytes of its log file.
    pub bytes: u64,
    /// Offset of its last record; none when it holds none.
    pub last: Option<Offset>,
}

impl ClosedSegment {
    /// The offset the segment after this one starts at, at the latest.
    pub fn next_base(&self) -> Offset {
        self.last.map_or(self.base, |last| last + 1)
    }
}

/// The closed segments, by base offset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub closed: Vec<ClosedSegment>,
}

impl Manifest {
    /// The path of the manifest of `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }

    /// Reads the manifest of `dir`; `None` for a topic written before
    /// there were manifests (or a new one).
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = Manifest::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).io_context("read", &path),
        };
        let manifest: Manifest =
            from_checked_json(&bytes).map_err(|reason| Error::InvalidFile {
                what: "segment manifest",
                path: path.clone(),
                reason,
            })?;
        let ordered = manifest
            .closed
            .windows(2)
            .all(|pair| pair[0].next_base() <= pair[1].base && pair[0].base < pair[1].base);
        if !ordered {
            return Err(Error::InvalidFile {
                what: "segment manifest",
                path,
                reason: "its segments are not in offset order".to_string(),
            });
        }
        Ok(Some(manifest))
    }

    /// Writes the manifest of `dir` atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        Ok(write_atomic(&Manifest::path(dir), &to_checked_json(self))?)
    }

    /// The listed segment starting at `base`.
    pub fn get(&self, base: Offset) -> Option<&ClosedSegment> {
        self.closed.iter().find(|segment| segment.base == base)
    }

    /// The manifest with `segment` closed.
    pub fn with(&self, segment: ClosedSegment) -> Manifest {
        let mut closed = self.closed.clone();
        closed.retain(|listed| listed.base != segment.base);
        closed.push(segment);
        closed.sort_by_key(|listed| listed.base);
        Manifest { closed }
    }

    /// The manifest after `plan`: its removed segments gone, its closed
    /// ones listed. Applying it twice gives the same manifest.
    pub fn after(&self, plan: &SwapPlan) -> Manifest {
        let mut closed: Vec<ClosedSegment> = self
            .closed
            .iter()
            .filter(|listed| !plan.remove.contains(&listed.base))
            .copied()
            .collect();
        for installed in &plan.closed {
            closed.retain(|listed| listed.base != installed.base);
            closed.push(*installed);
        }
        closed.sort_by_key(|listed| listed.base);
        Manifest { closed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    fn closed(base: Offset, last: Offset) -> ClosedSegment {
        ClosedSegment {
            base,
            bytes: 100,
            last: Some(last),
        }
    }

    #[test]
    fn a_swap_applied_twice_gives_the_same_manifest() {
        let manifest = Manifest {
            closed: vec![closed(0, 9), closed(10, 19), closed(20, 29)],
        };
        let plan = SwapPlan {
            remove: vec![0, 10],
            install: vec![0],
            closed: vec![ClosedSegment {
                base: 0,
                bytes: 40,
                last: Some(18),
            }],
            checkpoint: Checkpoint::default(),
        };
        let once = manifest.after(&plan);
        assert_eq!(
            once.closed,
            vec![
                ClosedSegment {
                    base: 0,
                    bytes: 40,
                    last: Some(18)
                },
                closed(20, 29)
            ]
        );
        assert_eq!(once.after(&plan), once);
    }

    #[test]
    fn a_manifest_out_of_order_or_unreadable_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = Manifest::path(dir.path());
        std::fs::write(
            &path,
            br#"{"closed":[{"base":10,"bytes":5,"last":12},{"base":11,"bytes":5,"last":13}]}"#,
        )
        .unwrap();
        let error = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains(MANIFEST_FILE) && error.contains("order"),
            "{error}"
        );
        std::fs::write(&path, b"{\"closed\":[{\"ba").unwrap();
        let error = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(MANIFEST_FILE), "{error}");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), None);
    }
}
