//! Which directory holds the view in use.
//!
//! The view lives in `data/view` until a snapshot install, then in
//! `data/view-<n>`: an install builds the next view in a directory of its
//! own, beside the one in use, and switches to it by rewriting the pointer
//! file `data/view.current` atomically (write, fsync, rename, fsync dir).
//! The pointer always names one whole view; with no pointer it is
//! `data/view`. Any other view directory is left over from an install (a
//! crash cut it short, or the old view was still being read) and is
//! removed at open.

use std::path::{Path, PathBuf};

use compaction::fsutil;

use crate::error::StoreError;

/// The view directories under one data dir.
#[derive(Clone, Debug)]
pub struct ViewDirs {
    /// The first view's directory, `data/view`; the others are named
    /// after it.
    base: PathBuf,
}

impl ViewDirs {
    /// The view directories of which `base` (`data/view`) is the first.
    pub fn new(base: &Path) -> ViewDirs {
        ViewDirs {
            base: base.to_path_buf(),
        }
    }

    /// The base directory's name.
    fn base_name(&self) -> String {
        self.base
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The directory holding the view directories and the pointer.
    fn parent(&self) -> &Path {
        match self.base.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        }
    }

    /// The pointer file, `data/view.current`.
    fn pointer(&self) -> PathBuf {
        self.parent().join(format!("{}.current", self.base_name()))
    }

    /// The generation a directory name stands for: 0 for the base, `n`
    /// for `<base>-<n>`; `None` for a name that is no view directory.
    fn generation_of(&self, name: &str) -> Option<u64> {
        let base = self.base_name();
        if name == base {
            return Some(0);
        }
        let number = name.strip_prefix(&base)?.strip_prefix('-')?;
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        number.parse().ok()
    }

    /// The directory of generation `generation`.
    fn dir_of(&self, generation: u64) -> PathBuf {
        match generation {
            0 => self.base.clone(),
            n => self.parent().join(format!("{}-{n}", self.base_name())),
        }
    }

    /// The generation in use, as the pointer says.
    fn current_generation(&self) -> Result<u64, StoreError> {
        let pointer = self.pointer();
        match std::fs::read_to_string(&pointer) {
            Ok(name) => {
                self.generation_of(name.trim())
                    .ok_or_else(|| StoreError::CorruptViewPointer {
                        path: pointer,
                        found: name.trim().to_string(),
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(StoreError::io("read", &pointer)(error)),
        }
    }

    /// The directory of the view in use.
    pub fn current(&self) -> Result<PathBuf, StoreError> {
        Ok(self.dir_of(self.current_generation()?))
    }

    /// A directory for the next view, emptied of anything an earlier,
    /// interrupted install or rebuild left there (a rebuild's view may have
    /// views of its own beside it, `<next>-<n>` and `<next>.current`).
    pub fn next(&self) -> Result<PathBuf, StoreError> {
        let next = self.dir_of(self.current_generation()? + 1);
        ViewDirs::new(&next).remove_all()?;
        Ok(next)
    }

    /// Removes every view directory of this base, the base included, and
    /// the pointer.
    pub fn remove_all(&self) -> Result<(), StoreError> {
        for (_, dir) in self.all()? {
            remove_dir_if_exists(&dir)?;
        }
        remove_dir_if_exists(&self.base)?;
        fsutil::remove_if_exists(&self.pointer())?;
        Ok(())
    }

    /// Makes `dir` (a directory [`ViewDirs::next`] gave) the view in use,
    /// durably and in one step.
    pub fn switch_to(&self, dir: &Path) -> Result<(), StoreError> {
        let name = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        fsutil::fsync_dir(dir)?;
        fsutil::write_atomic(&self.pointer(), name.as_bytes())?;
        Ok(())
    }

    /// Makes the view in use live in the base directory again, with no
    /// pointer: for a view built under a base of its own (`kv-server
    /// rebuild` builds `data/view-<n>`), which an install during the build
    /// moved to `<base>-1`. Nothing when the base is in use. The view must
    /// be closed.
    pub fn collapse_into_base(&self) -> Result<(), StoreError> {
        let current = self.current()?;
        if current != self.base {
            remove_dir_if_exists(&self.base)?;
            std::fs::rename(&current, &self.base).map_err(StoreError::io("rename", &current))?;
            fsutil::remove_if_exists(&self.pointer())?;
            self.remove_stale()?;
            fsutil::fsync_dir(self.parent())?;
        }
        Ok(())
    }

    /// Removes every view directory but the one in use.
    pub fn remove_stale(&self) -> Result<(), StoreError> {
        let current = self.current_generation()?;
        for (generation, dir) in self.all()? {
            if generation != current {
                remove_dir_if_exists(&dir)?;
            }
        }
        Ok(())
    }

    /// Every view directory there is, with its generation.
    fn all(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let parent = self.parent();
        let entries = match std::fs::read_dir(parent) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(StoreError::io("read directory", parent)(error)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StoreError::io("read directory", parent))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(generation) = self.generation_of(&name) {
                if entry.path().is_dir() {
                    found.push((generation, entry.path()));
                }
            }
        }
        Ok(found)
    }
}

/// Removes `dir` and everything in it, if it is there.
fn remove_dir_if_exists(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io("remove", dir)(error))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pointer_names_the_view_in_use_and_the_others_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ViewDirs::new(&root.path().join("view"));
        assert_eq!(dirs.current().unwrap(), root.path().join("view"));
        std::fs::create_dir_all(root.path().join("view")).unwrap();

        let next = dirs.next().unwrap();
        assert_eq!(next, root.path().join("view-1"));
        std::fs::create_dir_all(&next).unwrap();
        dirs.switch_to(&next).unwrap();
        assert_eq!(dirs.current().unwrap(), next);

        // A later install cut short, and names that are no view's.
        std::fs::create_dir_all(root.path().join("view-2")).unwrap();
        std::fs::create_dir_all(root.path().join("view-x")).unwrap();
        std::fs::create_dir_all(root.path().join("viewer")).unwrap();
        dirs.remove_stale().unwrap();
        let mut left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["view-1", "view-x", "view.current", "viewer"]);
    }

    #[test]
    fn a_view_moved_by_an_install_is_collapsed_into_its_base() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("view-3");
        let dirs = ViewDirs::new(&base);
        dirs.collapse_into_base().unwrap();
        std::fs::create_dir_all(&base).unwrap();
        let next = dirs.next().unwrap();
        std::fs::create_dir_all(&next).unwrap();
        std::fs::write(next.join("db"), b"the view").unwrap();
        dirs.switch_to(&next).unwrap();

        dirs.collapse_into_base().unwrap();
        assert_eq!(dirs.current().unwrap(), base);
        assert_eq!(std::fs::read(base.join("db")).unwrap(), b"the view");
        let left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["view-3"]);
    }

    #[test]
    fn the_next_view_is_cleared_of_what_a_rebuild_left_beside_it() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ViewDirs::new(&root.path().join("view"));
        std::fs::create_dir_all(root.path().join("view")).unwrap();
        // A rebuild into view-1 that failed after an install moved its
        // view to view-1-1.
        for dir in ["view-1", "view-1-1"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
            std::fs::write(root.path().join(dir).join("db"), b"half").unwrap();
        }
        std::fs::write(root.path().join("view-1.current"), "view-1-1").unwrap();

        let next = dirs.next().unwrap();
        assert_eq!(next, root.path().join("view-1"));
        assert_eq!(ViewDirs::new(&next).current().unwrap(), next);
        let left: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["view"]);
    }

    #[test]
    fn a_pointer_naming_no_view_directory_is_refused_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let dirs = ViewDirs::new(&root.path().join("view"));
        std::fs::write(root.path().join("view.current"), "elsewhere").unwrap();
        match dirs.current() {
            Err(StoreError::CorruptViewPointer { found, .. }) => assert_eq!(found, "elsewhere"),
            other => panic!("expected CorruptViewPointer, got {other:?}"),
        }
    }
}
