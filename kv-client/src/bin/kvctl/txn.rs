//! `txn`: a transaction read as JSON from a file or stdin.

use std::io::Read;
use std::path::Path;

use kv_client::{Client, TxnOpResult, TxnResponse};
use serde_json::value::RawValue;

use crate::output::{compact, Failure, Printer};

/// Widest value shown in the table of a get's keys.
const VALUE_CHARS: usize = 80;

/// Reads the transaction from `source` (`-`: stdin), sends it, prints the answer.
pub async fn run(client: &Client, printer: &Printer, source: &str) -> Result<(), Failure> {
    let text = read_source(source)?;
    let request = schemas::api::parse_txn(text.as_bytes()).map_err(|error| {
        let field = if error.field.is_empty() {
            String::new()
        } else {
            format!(" (field {})", error.field)
        };
        Failure::usage(format!(
            "{} is not a transaction: {}: {}{field}",
            source_name(source),
            error.code,
            error.message
        ))
    })?;
    // Values as the server sent them: the transaction has been applied by
    // the time its answer is read, so no value may make it look failed.
    let answer = client
        .commit_txn_as::<Box<RawValue>>(&request, None)
        .await?;
    if printer.is_json() {
        return printer.json(&answer);
    }
    show(printer, &answer)
}

fn source_name(source: &str) -> String {
    if source == "-" {
        "stdin".to_string()
    } else {
        source.to_string()
    }
}

fn read_source(source: &str) -> Result<String, Failure> {
    if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                Failure::error(format!("reading the transaction from stdin: {error}"))
            })?;
        return Ok(text);
    }
    std::fs::read_to_string(Path::new(source))
        .map_err(|error| Failure::error(format!("reading {source}: {error}")))
}

/// Which branch ran, then one line per op (and a get's keys as a table).
fn show(printer: &Printer, answer: &TxnResponse<Box<RawValue>>) -> Result<(), Failure> {
    let branch = if answer.succeeded {
        "succeeded: the success ops ran"
    } else {
        "a compare failed: the failure ops ran"
    };
    let retried = if answer.deduplicated {
        " (a retry of a transaction already applied; its results are not kept)"
    } else {
        ""
    };
    printer.line(format!("{branch} at revision {}{retried}", answer.revision))?;
    for (index, result) in answer.results.iter().enumerate() {
        match result {
            TxnOpResult::Put { revision } => {
                printer.line(format!("[{index}] put at revision {revision}"))?
            }
            TxnOpResult::Delete { deleted } => {
                printer.line(format!("[{index}] delete: {deleted} deleted"))?
            }
            TxnOpResult::Get { kvs, more } => {
                let more = if *more { ", more not shown" } else { "" };
                printer.line(format!("[{index}] get: {} keys{more}", kvs.len()))?;
                if !kvs.is_empty() {
                    printer.table(
                        &["KEY", "VERSION", "MOD_REVISION", "VALUE"],
                        kvs.iter().map(|entry| {
                            vec![
                                entry.key.clone(),
                                entry.version.to_string(),
                                entry.mod_revision.to_string(),
                                compact(entry.value.get(), VALUE_CHARS),
                            ]
                        }),
                    )?;
                }
            }
        }
    }
    Ok(())
}
