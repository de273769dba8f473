//! A small tmpfs under a node's data directory, for the full-disk tests:
//! mounted by the test (root is needed, as `mount` wants), filled by a
//! file of the test's own as another process would fill a disk, grown with
//! `mount -o remount,size=…`, and unmounted when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestServer;

/// The name of the file that fills the file system.
const FILLER: &str = "filler";

/// A tmpfs mounted by the test.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Stops `server`, moves its data directory onto a new tmpfs of `bytes`
    /// mounted in its place, and starts it again on it.
    pub async fn under(server: &mut TestServer, bytes: u64) -> Tmpfs {
        server.stop().await;
        let data = server.data_dir();
        let moved = data.with_extension("moved");
        std::fs::rename(&data, &moved).expect("the data directory can be moved aside");
        std::fs::create_dir(&data).expect("an empty data directory can be made");
        let tmpfs = Tmpfs::mount(&data, bytes);
        run(Command::new("cp").arg("-a").arg(moved.join(".")).arg(&data));
        std::fs::remove_dir_all(&moved).expect("the old data directory can be removed");
        server.restart().await;
        tmpfs
    }

    /// Mounts a tmpfs of `bytes` on the existing directory `path`.
    pub fn mount(path: &Path, bytes: u64) -> Tmpfs {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(path));
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Grows (or shrinks) the file system to `bytes`, as an operator would.
    pub fn resize(&self, bytes: u64) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.path));
    }

    /// Writes a file until the file system is full, as another process
    /// would; gives how many bytes it took.
    pub fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path.join(FILLER)).expect("the filler is made");
        let chunk = vec![0x5a; 64 * 1024];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => return written,
                Ok(n) => written += n as u64,
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => return written,
                Err(error) => panic!("filling {} failed: {error}", self.path.display()),
            }
        }
    }

    /// Leaves `bytes` free by writing a filler, as another process would.
    pub fn leave_free(&self, bytes: u64) {
        let free = self.free_bytes();
        let fill = free.saturating_sub(bytes);
        std::fs::write(self.path.join(FILLER), vec![0x5a; fill as usize])
            .expect("the filler is written");
    }

    /// Removes the filler.
    pub fn empty(&self) {
        std::fs::remove_file(self.path.join(FILLER)).expect("the filler is removed");
    }

    /// Bytes free on the file system.
    pub fn free_bytes(&self) -> u64 {
        let output = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.path)
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("df gave no figure for {}", self.path.display()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the node's files may still be open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Runs `command`, failing the test with its output if it fails.
fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}); the full-disk tests mount a tmpfs and need root: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
