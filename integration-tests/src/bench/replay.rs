//! The `replay` and `rebuild` workloads: how fast the compacted topic is
//! read back, through the API (`/v1/topic/records?from=0`, NDJSON) and
//! offline (`kv-server rebuild`, which replays the topic into a new view).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bench::closed_loop::{fill, is_filled};
use crate::bench::target::{connection_client, Requests, TargetKind};
use crate::bench::BenchError;

/// The log line `kv-server` writes when a view rebuild is done.
const REBUILT_LINE: &str = "rebuilt the view from the topic";

/// What loading the records took, when they had to be loaded.
pub struct Loaded {
    /// Records written.
    pub records: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// What one replay read.
pub struct Replayed {
    /// NDJSON lines (records) received.
    pub records: u64,
    /// Bytes received.
    pub bytes: u64,
    /// From sending the request to the end of the stream.
    pub elapsed: Duration,
}

/// Makes sure the topic holds at least `records` records (keys
/// `replay/r0000000…`, `value_bytes` each), writing them with `connections`
/// writers unless an earlier run did. Returns what was loaded, if anything.
pub async fn ensure_records(
    endpoint: &str,
    records: usize,
    value_bytes: usize,
    connections: usize,
    request_timeout: Duration,
) -> Result<Option<Loaded>, BenchError> {
    let requests = Arc::new(Requests::new(
        TargetKind::Kv,
        vec![endpoint.to_string()],
        "replay/r",
        value_bytes,
    ));
    if records == 0 || is_filled(&requests, records, request_timeout).await? {
        return Ok(None);
    }
    let elapsed = fill(requests, connections, records, request_timeout).await?;
    Ok(Some(Loaded {
        records: records as u64,
        elapsed,
    }))
}

/// Reads the whole topic from offset 0 as NDJSON and counts the records.
pub async fn replay(endpoint: &str, read_timeout: Duration) -> Result<Replayed, BenchError> {
    let client = connection_client(read_timeout)?;
    let started = Instant::now();
    let mut response = client
        .get(format!("{endpoint}/v1/topic/records?from=0"))
        .send()
        .await
        .map_err(|error| BenchError::Setup(format!("replay request: {error}")))?;
    if !response.status().is_success() {
        return Err(BenchError::Setup(format!(
            "replay answered {}",
            response.status()
        )));
    }
    let mut records = 0u64;
    let mut bytes = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| BenchError::Setup(format!("replay stream: {error}")))?
    {
        bytes += chunk.len() as u64;
        records += chunk.iter().filter(|&&byte| byte == b'\n').count() as u64;
    }
    Ok(Replayed {
        records,
        bytes,
        elapsed: started.elapsed(),
    })
}

/// What an offline rebuild reported.
pub struct Rebuilt {
    /// Records replayed into the new view (from the server's log line).
    pub records: u64,
    /// The rebuild itself, as the server timed it.
    pub rebuild: Duration,
    /// The whole command, opening and closing the stores included.
    pub command: Duration,
}

/// Runs `server_bin rebuild --data-dir data_dir` (the server must be
/// stopped) and reads the count and time from its log line.
pub fn rebuild(server_bin: &Path, data_dir: &Path) -> Result<Rebuilt, BenchError> {
    let started = Instant::now();
    let output = Command::new(server_bin)
        .arg("rebuild")
        .arg("--data-dir")
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .output()
        .map_err(|error| {
            BenchError::Setup(format!("cannot run {}: {error}", server_bin.display()))
        })?;
    let command = started.elapsed();
    let log = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(BenchError::Setup(format!(
            "{} rebuild exited with {}:\n{log}",
            server_bin.display(),
            output.status
        )));
    }
    let line = log
        .lines()
        .find(|line| line.contains(REBUILT_LINE))
        .ok_or_else(|| BenchError::Setup(format!("no {REBUILT_LINE:?} line in:\n{log}")))?;
    let records = log_field(line, "replayed")?;
    let elapsed_ms = log_field(line, "elapsed_ms")?;
    Ok(Rebuilt {
        records,
        rebuild: Duration::from_millis(elapsed_ms),
        command,
    })
}

/// The number in `name=123` of a tracing log line.
fn log_field(line: &str, name: &str) -> Result<u64, BenchError> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| BenchError::Setup(format!("no {name}= in the log line {line:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_a_tracing_line() {
        let line = "2025-01-01T00:00:00Z  INFO kv_server::store: rebuilt the view from the topic replayed=1000000 elapsed_ms=1830";
        assert_eq!(log_field(line, "replayed").unwrap(), 1_000_000);
        assert_eq!(log_field(line, "elapsed_ms").unwrap(), 1830);
        assert!(log_field(line, "missing").is_err());
    }
}
