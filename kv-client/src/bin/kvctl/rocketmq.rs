//! `import-rocketmq` and `export-rocketmq`: a broker's own `topics.json`
//! and `subscriptionGroup.json`.
//!
//! Import reads each file's table entry by entry, so one bad entry is
//! reported and the rest still go in. Each good entry is compared with
//! what the store holds (as parsed JSON, after both went through the
//! `schemas` types, so defaults and field order do not count):
//!
//! * missing: written create-only (`If-None-Match: *`): **created**;
//! * equal: not written: **unchanged**;
//! * different: written with compare-and-set on the revision just read:
//!   **updated**. A config that changed between the read and the write is
//!   not overwritten: the entry is **rejected** and a second run picks it up.
//!
//! A second run of the same files therefore writes nothing. Export writes
//! the same two files back, with a `dataVersion` whose counter is the
//! store's revision.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use kv_client::{Client, Condition, MetadataOptions};
use schemas::api::MetadataKind;
use schemas::{
    DataVersion, SubscriptionGroupConfig, SubscriptionGroupFile, TopicConfig, TopicConfigFile,
    ValidateOptions,
};
use serde::Serialize;
use serde_json::Value;

use crate::output::{Failure, Printer};
use crate::progress;

/// The name of a broker's topic file.
const TOPICS_FILE: &str = "topics.json";
/// The name of a broker's subscription group file.
const GROUPS_FILE: &str = "subscriptionGroup.json";

/// What became of one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    Rejected,
}

#[derive(Debug, Serialize)]
struct EntryReport {
    kind: &'static str,
    name: String,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct Totals {
    created: usize,
    updated: usize,
    unchanged: usize,
    rejected: usize,
}

/// An entry of a file's table: its name and the config, or why it is refused.
type Entry<T> = (String, Result<T, String>);

pub async fn import(
    client: &Client,
    printer: &Printer,
    topics_path: &Path,
    groups_path: &Path,
) -> Result<(), Failure> {
    // Both files are read and checked before anything is written.
    let topics = read_table::<TopicConfig>(topics_path)?;
    let groups = read_table::<SubscriptionGroupConfig>(groups_path)?;
    warn_about_forbidden_table(groups_path)?;
    let total = (topics.len() + groups.len()) as u64;
    let bar = progress::bar(total, true, "{spinner} import [{bar:40}] {pos}/{len} {msg}");
    let mut reports = Vec::with_capacity(topics.len() + groups.len());
    let mut fatal = None;
    for (name, entry) in topics {
        bar.set_message(format!("topic {name}"));
        match import_entry(client, name, entry).await {
            Ok(report) => reports.push(report),
            Err(error) => {
                fatal = Some(error);
                break;
            }
        }
        bar.inc(1);
    }
    if fatal.is_none() {
        for (name, entry) in groups {
            bar.set_message(format!("group {name}"));
            match import_entry(client, name, entry).await {
                Ok(report) => reports.push(report),
                Err(error) => {
                    fatal = Some(error);
                    break;
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let totals = show_import(printer, &reports)?;
    if let Some(error) = fatal {
        return Err(Failure::error(format!(
            "import stopped after {} of {total} entries: {error}",
            reports.len()
        )));
    }
    if totals.rejected > 0 {
        return Err(Failure::error(format!(
            "{} of {total} entries were rejected",
            totals.rejected
        )));
    }
    Ok(())
}

/// Reads a broker file's table: every entry parsed and validated on its
/// own; only an unreadable file or one without the table fails here.
fn read_table<T: MetadataKind>(path: &Path) -> Result<Vec<Entry<T>>, Failure> {
    let text = std::fs::read(path)
        .map_err(|error| Failure::error(format!("cannot read {}: {error}", path.display())))?;
    let file: Value = serde_json::from_slice(&text)
        .map_err(|error| Failure::error(format!("{} is not JSON: {error}", path.display())))?;
    let Some(table) = file.get(T::BROKER_TABLE).and_then(Value::as_object) else {
        return Err(Failure::error(format!(
            "{} has no {} object: is it a broker's {} file?",
            path.display(),
            T::BROKER_TABLE,
            if T::KIND == "topic" {
                TOPICS_FILE
            } else {
                GROUPS_FILE
            }
        )));
    };
    Ok(table
        .iter()
        .map(|(name, entry)| (name.clone(), check_entry::<T>(name, entry)))
        .collect())
}

/// Parses and validates one entry; the reason names the field from the
/// file's root (`topicConfigTable.T.perm`).
fn check_entry<T: MetadataKind>(name: &str, entry: &Value) -> Result<T, String> {
    let parent = format!("{}.{name}", T::BROKER_TABLE);
    let bytes = serde_json::to_vec(entry).map_err(|error| error.to_string())?;
    let config: T = schemas::from_json(&bytes)
        .map_err(|error| without_position(&error.within(&parent).to_string()))?;
    config
        .validate(ValidateOptions::ALLOW_SYSTEM)
        .map_err(|error| error.within(&parent).to_string())?;
    if config.name() != name {
        return Err(format!(
            "{parent}.{} {:?} differs from its table key {name:?}",
            T::NAME_FIELD,
            config.name()
        ));
    }
    Ok(config)
}

/// The parser's "at line 1 column 63" points into the entry as it was
/// re-encoded, not into the file: leave it out.
fn without_position(reason: &str) -> String {
    match reason.rfind(" at line ") {
        Some(at) if reason[at..].contains(" column ") => reason[..at].to_string(),
        _ => reason.to_string(),
    }
}

/// Imports one entry. Errors the server reports about the entry make it
/// rejected; an unreachable cluster stops the import (`Err`).
async fn import_entry<T: MetadataKind>(
    client: &Client,
    name: String,
    entry: Result<T, String>,
) -> Result<EntryReport, kv_client::Error> {
    let report = |outcome, reason| EntryReport {
        kind: T::KIND,
        name: name.clone(),
        outcome,
        reason,
    };
    let config = match entry {
        Ok(config) => config,
        Err(reason) => return Ok(report(Outcome::Rejected, Some(reason))),
    };
    let desired = serde_json::to_value(&config).expect("a parsed config serializes");
    let current = client.get_config::<T>(&name).await?;
    let (condition, outcome) = match &current {
        None => (Condition::Absent, Outcome::Created),
        Some(stored) if same_config(&stored.value, &desired) => {
            return Ok(report(Outcome::Unchanged, None))
        }
        Some(stored) => (
            Condition::ModRevision(stored.mod_revision),
            Outcome::Updated,
        ),
    };
    let options = MetadataOptions::new()
        .condition(condition)
        .allow_system(true);
    match client.put_config(&config, options).await {
        Ok(_) => Ok(report(outcome, None)),
        Err(error) if error.is_retryable() => Err(error),
        Err(error) if error.is_precondition_failed() => {
            // Written by someone else since it was read (or this very write's
            // answer was lost and its retry found it done): compare again.
            match client.get_config::<T>(&name).await? {
                Some(stored) if same_config(&stored.value, &desired) => {
                    Ok(report(Outcome::Unchanged, None))
                }
                _ => Ok(report(
                    Outcome::Rejected,
                    Some(format!(
                        "the stored {} changed while it was imported; run the import again",
                        T::KIND
                    )),
                )),
            }
        }
        Err(error) => Ok(report(
            Outcome::Rejected,
            Some(
                error
                    .server_message()
                    .map_or_else(|| error.to_string(), str::to_string),
            ),
        )),
    }
}

/// Whether a stored config equals the desired one as parsed JSON.
fn same_config<T: Serialize>(stored: &T, desired: &Value) -> bool {
    serde_json::to_value(stored).is_ok_and(|stored| &stored == desired)
}

/// The store has no place for a broker's `forbiddenTable`: say so.
fn warn_about_forbidden_table(path: &Path) -> Result<(), Failure> {
    let text = std::fs::read(path)
        .map_err(|error| Failure::error(format!("cannot read {}: {error}", path.display())))?;
    let forbidden = serde_json::from_slice::<Value>(&text)
        .ok()
        .and_then(|file| file.get("forbiddenTable").cloned())
        .and_then(|table| table.as_object().map(|table| table.len()))
        .unwrap_or(0);
    if forbidden > 0 {
        eprintln!(
            "warning: {}: the forbiddenTable ({forbidden} groups) is not imported; the store keeps no per-topic bans",
            path.display()
        );
    }
    Ok(())
}

fn show_import(printer: &Printer, reports: &[EntryReport]) -> Result<Totals, Failure> {
    let mut totals = Totals::default();
    for report in reports {
        match report.outcome {
            Outcome::Created => totals.created += 1,
            Outcome::Updated => totals.updated += 1,
            Outcome::Unchanged => totals.unchanged += 1,
            Outcome::Rejected => totals.rejected += 1,
        }
    }
    if printer.is_json() {
        printer.json(&serde_json::json!({ "totals": totals, "entries": reports }))?;
        return Ok(totals);
    }
    let changed: Vec<&EntryReport> = reports
        .iter()
        .filter(|report| report.outcome != Outcome::Unchanged)
        .collect();
    if !changed.is_empty() {
        printer.table(
            &["KIND", "NAME", "RESULT", "REASON"],
            changed.iter().map(|report| {
                vec![
                    report.kind.to_string(),
                    report.name.clone(),
                    serde_json::to_value(&report.outcome)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    report.reason.clone().unwrap_or_default(),
                ]
            }),
        )?;
        printer.line("")?;
    }
    printer.line(format!(
        "created {}, updated {}, unchanged {}, rejected {}",
        totals.created, totals.updated, totals.unchanged, totals.rejected
    ))?;
    Ok(totals)
}

pub async fn export(client: &Client, printer: &Printer, dir: &Path) -> Result<(), Failure> {
    let revision = client.list_page("", None, 1).await?.revision;
    let topics: Vec<TopicConfig> = client.list_topics().try_collect().await?;
    let groups: Vec<SubscriptionGroupConfig> = client.list_subscriptions().try_collect().await?;
    let data_version = DataVersion {
        state_version: Some(0),
        timestamp: now_ms(),
        counter: i64::try_from(revision).unwrap_or(i64::MAX),
        extra: BTreeMap::new(),
    };
    let topic_count = topics.len();
    let group_count = groups.len();
    let topics_file = TopicConfigFile {
        topic_config_table: topics
            .into_iter()
            .map(|topic| (topic.topic_name.clone(), topic))
            .collect(),
        data_version: data_version.clone(),
        extra: BTreeMap::new(),
    };
    let groups_file = SubscriptionGroupFile {
        subscription_group_table: groups
            .into_iter()
            .map(|group| (group.group_name.clone(), group))
            .collect(),
        forbidden_table: None,
        data_version,
        extra: BTreeMap::new(),
    };
    std::fs::create_dir_all(dir)
        .map_err(|error| Failure::error(format!("cannot create {}: {error}", dir.display())))?;
    let topics_path = dir.join(TOPICS_FILE);
    let groups_path = dir.join(GROUPS_FILE);
    write_atomically(&topics_path, &topics_file)?;
    write_atomically(&groups_path, &groups_file)?;
    if printer.is_json() {
        return printer.json(&serde_json::json!({
            "revision": revision,
            "topics": topic_count,
            "groups": group_count,
            "files": [topics_path, groups_path],
        }));
    }
    printer.line(format!(
        "wrote {topic_count} topics to {} and {group_count} groups to {} (revision {revision})",
        topics_path.display(),
        groups_path.display()
    ))
}

/// Writes JSON to a temporary file beside `path`, fsyncs it, renames it
/// over `path` and fsyncs the directory: a broker never reads half a file,
/// and a crash leaves the old file or the new one.
///
/// The same steps as the server's `compaction::fsutil::write_atomic`,
/// written out here because the client does not depend on the server's
/// crates. `File::create` gives the file the mode the user's umask allows,
/// as brokers expect; a `tempfile` temporary would be private (0600).
fn write_atomically<T: Serialize>(path: &Path, value: &T) -> Result<(), Failure> {
    use std::io::Write;
    let failed =
        |error: std::io::Error| Failure::error(format!("cannot write {}: {error}", path.display()));
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| Failure::error(format!("cannot encode {}: {error}", path.display())))?;
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temporary, path).map_err(failed)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(failed)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
