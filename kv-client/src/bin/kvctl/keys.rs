//! Raw keys: `get`, `put`, `cas`, `del`, `ls`, `watch`.

use std::io::Read;
use std::time::Duration;

use futures::StreamExt;
use kv_client::{Client, Consistency, Watch, WatchEvent, WriteOptions, WriteResult};
use serde_json::value::RawValue;

use crate::output::{compact, Failure, Printer};

/// Widest value shown in a list's table.
const LIST_VALUE_CHARS: usize = 80;

/// The value of `put` and `cas`: JSON, or text with `--string`; `-` reads
/// stdin. The JSON is checked and sent as written: read into a number, a
/// value past what `f64` or 64-bit integers hold would be rounded.
pub fn parse_value(raw: &str, as_string: bool) -> Result<Box<RawValue>, Failure> {
    let text = if raw == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| Failure::error(format!("reading the value from stdin: {error}")))?;
        text
    } else {
        raw.to_string()
    };
    if as_string {
        return serde_json::value::to_raw_value(&text)
            .map_err(|error| Failure::error(format!("the value as a JSON string: {error}")));
    }
    serde_json::from_str(&text).map_err(|error| {
        Failure::usage(format!(
            "the value is not JSON ({error}); quote text as '\"text\"' or pass --string"
        ))
    })
}

pub async fn get(
    client: &Client,
    printer: &Printer,
    key: &str,
    stale: bool,
) -> Result<(), Failure> {
    let consistency = if stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    // The value as the server sent it: a number past f64 or 64 bits is
    // shown as it is, not rounded or refused.
    let Some(entry) = client.get_as::<Box<RawValue>>(key, consistency).await? else {
        return Err(Failure::error(format!("key {key:?} does not exist")));
    };
    if printer.is_json() {
        return printer.json(&entry);
    }
    let mut fields = vec![
        ("key", entry.key.clone()),
        ("value", entry.value.get().to_string()),
        ("version", entry.version.to_string()),
        ("mod_revision", entry.mod_revision.to_string()),
        ("create_revision", entry.create_revision.to_string()),
    ];
    if let Some(lease) = entry.lease {
        fields.push(("lease", lease.to_string()));
    }
    printer.fields(fields)
}

pub async fn put(
    client: &Client,
    printer: &Printer,
    key: &str,
    value: &RawValue,
    options: WriteOptions,
) -> Result<(), Failure> {
    let written = client.put_with(key, value, options).await?;
    show_write(
        printer,
        &written,
        if written.created {
            "created"
        } else {
            "updated"
        },
    )
}

pub async fn delete(
    client: &Client,
    printer: &Printer,
    key: &str,
    if_revision: Option<u64>,
) -> Result<(), Failure> {
    let written = match if_revision {
        Some(revision) => client.delete_if(key, revision).await?,
        None => client
            .delete(key)
            .await?
            .ok_or_else(|| Failure::error(format!("key {key:?} does not exist")))?,
    };
    show_write(printer, &written, "deleted")
}

fn show_write(printer: &Printer, written: &WriteResult, what: &str) -> Result<(), Failure> {
    if printer.is_json() {
        return printer.json(written);
    }
    printer.line(format!(
        "{what} {:?} at revision {} (version {})",
        written.key, written.revision, written.version
    ))
}

pub async fn list(
    client: &Client,
    printer: &Printer,
    prefix: &str,
    keys_only: bool,
    limit: Option<u64>,
) -> Result<(), Failure> {
    let mut entries = client.list_as::<Box<RawValue>>(prefix);
    let mut found = Vec::new();
    while limit.is_none_or(|limit| (found.len() as u64) < limit) {
        let Some(entry) = entries.next().await else {
            break;
        };
        found.push(entry?);
    }
    if printer.is_json() {
        if keys_only {
            let keys: Vec<&str> = found.iter().map(|entry| entry.key.as_str()).collect();
            return printer.json(&keys);
        }
        return printer.json(&found);
    }
    if keys_only {
        for entry in &found {
            printer.line(&entry.key)?;
        }
        return Ok(());
    }
    printer.table(
        &["KEY", "VERSION", "MOD_REVISION", "VALUE"],
        found.iter().map(|entry| {
            vec![
                entry.key.clone(),
                entry.version.to_string(),
                entry.mod_revision.to_string(),
                compact(entry.value.get(), LIST_VALUE_CHARS),
            ]
        }),
    )
}

/// Prints events until `count` events, `duration`, or the watch ends.
pub async fn watch(
    client: &Client,
    printer: &Printer,
    watch: Watch,
    count: Option<usize>,
    duration: Option<Duration>,
) -> Result<(), Failure> {
    // Values as the server sent them: one a `Value` cannot hold (a number
    // past f64's range) is shown, not the end of the watch.
    let mut events = client.watch_as::<Box<RawValue>>(watch).await?;
    let mut printed = 0;
    let deadline = duration.map(|duration| tokio::time::Instant::now() + duration);
    let mut last_error = None;
    loop {
        if count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, events.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(()),
            },
            None => events.next().await,
        };
        match next {
            Some(Ok(event)) => {
                show_event(printer, &event)?;
                printed += 1;
            }
            Some(Err(error)) => {
                eprintln!("warning: {error}");
                last_error = Some(error);
            }
            None => {
                return Err(match last_error {
                    Some(error) => Failure::error(format!("the watch ended: {error}")),
                    None => Failure::error("the watch ended"),
                })
            }
        }
    }
}

/// A watch event as `-o json` prints it, its value as the server sent it.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum EventLine<'a> {
    Put {
        key: &'a str,
        value: &'a RawValue,
        revision: u64,
        create_revision: u64,
        version: u64,
    },
    Delete {
        key: &'a str,
        revision: u64,
    },
    Resync {
        revision: u64,
        entries: &'a [kv_client::KeyValue<Box<RawValue>>],
    },
}

fn show_event(printer: &Printer, event: &WatchEvent<Box<RawValue>>) -> Result<(), Failure> {
    if printer.is_json() {
        let line = match event {
            WatchEvent::Put(entry) => EventLine::Put {
                key: &entry.key,
                value: &entry.value,
                revision: entry.mod_revision,
                create_revision: entry.create_revision,
                version: entry.version,
            },
            WatchEvent::Delete { key, revision } => EventLine::Delete {
                key,
                revision: *revision,
            },
            WatchEvent::Resync { revision, entries } => EventLine::Resync {
                revision: *revision,
                entries,
            },
        };
        return printer.json_line(&line);
    }
    match event {
        WatchEvent::Put(entry) => printer.line(format!(
            "PUT {} {} {}",
            entry.mod_revision, entry.key, entry.value
        )),
        WatchEvent::Delete { key, revision } => printer.line(format!("DELETE {revision} {key}")),
        WatchEvent::Resync { revision, entries } => {
            printer.line(format!(
                "RESYNC {revision} ({} keys; the watch fell behind the compacted history)",
                entries.len()
            ))?;
            for entry in entries {
                printer.line(format!(
                    "PUT {} {} {}",
                    entry.mod_revision, entry.key, entry.value
                ))?;
            }
            Ok(())
        }
    }
}
