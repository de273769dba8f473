//! `snapshot save FILE`: a backup, as etcd's `snapshot save`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use kv_client::{Client, Consistency};

use crate::output::{Failure, Printer};
use crate::progress;

pub async fn save(
    client: &Client,
    printer: &Printer,
    path: &Path,
    stale: bool,
) -> Result<(), Failure> {
    // A backup is renamed into place once whole: it goes to a file, never
    // down a pipe where half of one would pass for it.
    if path.as_os_str() == "-" {
        return Err(Failure::usage(
            "snapshot save writes a file (renamed into place once whole and synced): name one, not -",
        ));
    }
    // Refused before the download, which would end in a failed rename.
    if path.is_dir() {
        return Err(Failure::error(format!(
            "{} is a directory: name the backup file to write",
            path.display()
        )));
    }
    let consistency = if stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    let mut backup = client.snapshot_with(consistency).await?;
    let bar = progress::bar(
        backup.len.unwrap_or(0),
        std::io::stderr().is_terminal(),
        "{spinner} snapshot [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
    );
    // Written beside the file and renamed over it once whole and synced:
    // FILE is never a partial backup.
    let partial = partial_path(path);
    let cannot = |what: &str, error: std::io::Error| {
        Failure::error(format!("cannot {what} {}: {error}", partial.display()))
    };
    let mut file = std::fs::File::create(&partial).map_err(|error| cannot("create", error))?;
    let mut bytes = 0u64;
    let received = async {
        while let Some(chunk) = backup.chunk().await? {
            file.write_all(&chunk)
                .map_err(|error| cannot("write", error))?;
            bytes += chunk.len() as u64;
            bar.set_position(bytes);
        }
        file.sync_all().map_err(|error| cannot("sync", error))?;
        Ok::<(), Failure>(())
    }
    .await;
    bar.finish_and_clear();
    put_in_place(received, &partial, path)?;
    let revision = backup.revision.unwrap_or(0);
    if printer.is_json() {
        return printer.json(&serde_json::json!({
            "file": path.display().to_string(),
            "bytes": bytes,
            "revision": revision,
            "endpoint": backup.endpoint(),
        }));
    }
    printer.line(format!(
        "saved {} ({bytes} bytes) at revision {revision} from {}",
        path.display(),
        backup.endpoint()
    ))
}

/// Renames `partial` (written whole and synced) to `path` once `written`
/// succeeded; removes it otherwise, or if the rename fails, leaving an
/// earlier `path` as it was.
pub fn put_in_place<T>(
    written: Result<T, Failure>,
    partial: &Path,
    path: &Path,
) -> Result<T, Failure> {
    let renamed = written.and_then(|written| {
        std::fs::rename(partial, path).map_err(|error| {
            Failure::error(format!(
                "cannot rename {} to {}: {error}",
                partial.display(),
                path.display()
            ))
        })?;
        Ok(written)
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(partial);
    }
    renamed
}

/// `FILE.part`, beside `path`.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}
