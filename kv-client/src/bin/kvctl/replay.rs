//! `replay [--from N] [--out FILE]`: the compacted topic as NDJSON.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

use futures::TryStreamExt;
use indicatif::ProgressBar;
use kv_client::{Client, Replay};
use serde_json::value::RawValue;

use crate::output::Failure;
use crate::progress;
use crate::snapshot::{partial_path, put_in_place};

pub async fn run(client: &Client, from: u64, out: Option<&Path>) -> Result<(), Failure> {
    // A symlink's target is the file written (and replaced once whole).
    let target = out.map(|path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    if let Some(target) = target.as_deref().filter(|target| target.is_dir()) {
        return Err(Failure::error(format!(
            "{} is a directory: name the file to write",
            target.display()
        )));
    }
    // The values as the server sent them: read into numbers, the export
    // would round those past 64 bits or f64's digits.
    let mut replay = client.replay_as::<Box<RawValue>>(from).await?;
    let end = replay.end_revision();
    // A bar when the records go to a file, or to a terminal (where the
    // bar steps aside for each line); never when they go down a pipe.
    let to_terminal = out.is_none() && io::stdout().is_terminal();
    let bar = progress::bar(
        end,
        out.is_some() || to_terminal,
        "{spinner} replay [{bar:40}] offset {pos}/{len} {per_sec} {msg}",
    );
    let (Some(out), Some(path)) = (out, target.as_deref()) else {
        let mut writer = BufWriter::new(io::stdout().lock());
        let written = write_records(&mut replay, &mut writer, &bar, to_terminal).await;
        bar.finish_and_clear();
        return written.map(drop);
    };
    // What is not a regular file (a device such as /dev/null, a pipe) is
    // written as it is: renaming over it would replace it.
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        let file = File::options()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|error| Failure::error(format!("cannot open {}: {error}", path.display())))?;
        let mut writer = BufWriter::new(file);
        let written = write_records(&mut replay, &mut writer, &bar, false).await;
        bar.finish_and_clear();
        return written.map(drop);
    }
    // Written beside the file and renamed over it once whole and synced,
    // as `snapshot save` does: FILE is never a partial replay, and a
    // replay that fails leaves an earlier FILE as it was.
    let partial = partial_path(path);
    let cannot = |what: &str, error: io::Error| {
        Failure::error(format!("cannot {what} {}: {error}", partial.display()))
    };
    let file = File::create(&partial).map_err(|error| cannot("create", error))?;
    let mut writer = BufWriter::new(file);
    let written = write_records(&mut replay, &mut writer, &bar, false)
        .await
        .and_then(|written| {
            let file = writer
                .into_inner()
                .map_err(|error| cannot("write", error.into_error()))?;
            file.sync_all().map_err(|error| cannot("sync", error))?;
            Ok(written)
        });
    bar.finish_and_clear();
    let (records, last_offset) = put_in_place(written, &partial, path)?;
    let offsets = last_offset.map_or_else(String::new, |last| format!(", up to offset {last}"));
    eprintln!("wrote {records} records to {}{offsets}", out.display());
    Ok(())
}

/// Writes every record of `replay` to `writer`, a line each; the records
/// written and the last offset.
async fn write_records(
    replay: &mut Replay<Box<RawValue>>,
    writer: &mut impl Write,
    bar: &ProgressBar,
    to_terminal: bool,
) -> Result<(u64, Option<u64>), Failure> {
    let mut records = 0u64;
    let mut last_offset = None;
    while let Some(record) = replay.try_next().await? {
        let line = serde_json::to_string(&record)
            .map_err(|error| Failure::error(format!("cannot write a record: {error}")))?;
        if to_terminal {
            bar.suspend(|| writeln!(writer, "{line}").and_then(|()| writer.flush()))?;
        } else {
            writeln!(writer, "{line}")?;
        }
        records += 1;
        last_offset = Some(record.offset);
        if record.offset > bar.length().unwrap_or(0) {
            bar.set_length(record.offset);
        }
        bar.set_position(record.offset);
    }
    writer.flush()?;
    Ok((records, last_offset))
}
