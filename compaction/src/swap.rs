//! The cleaner's crash-safe swap of segment files.
//!
//! The cleaner writes its output as `*.cleaned` files and fsyncs them. Then
//! one atomic rename of the swap marker commits the pass: the marker lists the
//! segments to remove, those to install (with the closed ones' sizes) and the
//! new checkpoint. Applying it renames the cleaned files into place, removes
//! the replaced segments, updates the segment manifest, stores the checkpoint
//! and finally removes the marker. Every step is idempotent, so `recover` at
//! open simply applies a marker it finds again. A crash before the commit
//! leaves the old set (the `*.cleaned` files are discarded at open); a crash
//! after it leaves the new set once `recover` has run.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{
    from_checked_json, fsync_dir, remove_if_exists, to_checked_json, write_atomic,
};
use crate::manifest::{ClosedSegment, Manifest};
use crate::segment::{index_file_name, log_file_name, CLEANED_SUFFIX};
use crate::Offset;

/// File name of the swap marker inside the topic directory.
pub const SWAP_MARKER_FILE: &str = "cleaner-swap.json";

/// A committed cleaner pass, to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SwapPlan {
    /// Base offsets of the segments the pass replaces.
    pub remove: Vec<Offset>,
    /// Base offsets of the cleaned segments that take their place.
    pub install: Vec<Offset>,
    /// The installed segments that are closed, as the manifest lists them
    /// (a replacement also installs the empty active segment).
    #[serde(default)]
    pub closed: Vec<ClosedSegment>,
    /// The checkpoint after the pass.
    pub checkpoint: Checkpoint,
}

/// Commits `plan` (the cleaned files are written and synced) and applies
/// it, `manifest` (the topic's) included.
pub(crate) fn commit(dir: &Path, plan: &SwapPlan, manifest: &Mutex<Manifest>) -> Result<()> {
    write_atomic(&dir.join(SWAP_MARKER_FILE), &to_checked_json(plan))?;
    apply(dir, plan, |plan| {
        let mut manifest = crate::topic::lock(manifest);
        let next = manifest.after(plan);
        next.store(dir)?;
        *manifest = next;
        Ok(())
    })
}

/// Finishes a pass that was committed but not fully applied before a crash.
pub(crate) fn recover(dir: &Path) -> Result<()> {
    let path = dir.join(SWAP_MARKER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error).io_context("read", &path),
    };
    let plan: SwapPlan = from_checked_json(&bytes).map_err(|reason| Error::InvalidFile {
        what: "cleaner swap marker",
        path: path.clone(),
        reason,
    })?;
    info!(
        marker = %path.display(),
        remove = ?plan.remove,
        install = ?plan.install,
        "finishing an interrupted cleaner swap"
    );
    // A topic written before manifests has none to bring up to date: open
    // lists its segments once this is done.
    apply(dir, &plan, |plan| match Manifest::load(dir)? {
        Some(manifest) => manifest.after(plan).store(dir),
        None => Ok(()),
    })
}

/// Renames and removes the plan's files, then has `update_manifest` list
/// its segments, then stores its checkpoint and removes the marker.
fn apply(
    dir: &Path,
    plan: &SwapPlan,
    update_manifest: impl FnOnce(&SwapPlan) -> Result<()>,
) -> Result<()> {
    for &base in &plan.install {
        for name in [log_file_name(base), index_file_name(base)] {
            let cleaned = dir.join(format!("{name}{CLEANED_SUFFIX}"));
            if cleaned.exists() {
                let target = dir.join(&name);
                std::fs::rename(&cleaned, &target).io_context("rename", &target)?;
            }
        }
    }
    for base in plan
        .remove
        .iter()
        .filter(|base| !plan.install.contains(base))
    {
        remove_if_exists(&dir.join(log_file_name(*base)))?;
        remove_if_exists(&dir.join(index_file_name(*base)))?;
    }
    fsync_dir(dir)?;
    update_manifest(plan)?;
    plan.checkpoint.store(dir)?;
    remove_if_exists(&dir.join(SWAP_MARKER_FILE))?;
    Ok(fsync_dir(dir)?)
}
