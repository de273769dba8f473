//! `replay [--from N] [--out FILE]`: the compacted topic as NDJSON.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::Path;

use futures::TryStreamExt;
use kv_client::Client;

use crate::output::Failure;
use crate::progress;

pub async fn run(client: &Client, from: u64, out: Option<&Path>) -> Result<(), Failure> {
    // The values as the server sent them: read into numbers, the export
    // would round those past 64 bits or f64's digits.
    let mut replay = client
        .replay_as::<Box<serde_json::value::RawValue>>(from)
        .await?;
    let end = replay.end_revision();
    // A bar when the records go to a file, or to a terminal (where the
    // bar steps aside for each line); never when they go down a pipe.
    let to_terminal = out.is_none() && io::stdout().is_terminal();
    let bar = progress::bar(
        end,
        out.is_some() || to_terminal,
        "{spinner} replay [{bar:40}] offset {pos}/{len} {per_sec} {msg}",
    );
    let mut writer: Box<dyn Write> = match out {
        Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|error| {
            Failure::error(format!("cannot create {}: {error}", path.display()))
        })?)),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
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
    bar.finish_and_clear();
    if let Some(path) = out {
        let offsets = last_offset.map_or_else(String::new, |last| format!(", up to offset {last}"));
        eprintln!("wrote {records} records to {}{offsets}", path.display());
    }
    Ok(())
}
