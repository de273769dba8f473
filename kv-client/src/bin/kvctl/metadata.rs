//! `topic …` and `group …`: RocketMQ topics and consumer groups.

use std::path::Path;

use futures::TryStreamExt;
use kv_client::{Client, Condition, MetadataOptions, Versioned, WriteResult};
use schemas::{SubscriptionGroupConfig, TopicConfig};
use serde::de::DeserializeOwned;

use crate::cli::{CreateFlags, GroupCommand, GroupFields, TopicCommand, TopicFields};
use crate::output::{Failure, Printer};

pub async fn topic(
    client: &Client,
    printer: &Printer,
    command: TopicCommand,
) -> Result<(), Failure> {
    match command {
        TopicCommand::Create {
            name,
            fields,
            common,
        } => {
            let (base, condition) = match (&name, common.update && common.from_file.is_none()) {
                (Some(name), true) => stored_base(client.get_topic(name).await?),
                _ => (None, condition(&common)),
            };
            let config = topic_config(name, base, &fields, &common)?;
            let options = options(&common, condition);
            let written = client
                .put_topic_with(&config, options)
                .await
                .map_err(|error| exists_hint(error, "topic", &config.topic_name, common.update))?;
            show_write(printer, "topic", &config.topic_name, &written)
        }
        TopicCommand::Get { name } => {
            let Some(topic) = client.get_topic(&name).await? else {
                return Err(Failure::error(format!("topic {name:?} does not exist")));
            };
            if printer.is_json() {
                return printer.json(&topic.value);
            }
            let topic_config = &topic.value;
            printer.fields(vec![
                ("topicName", topic_config.topic_name.clone()),
                ("readQueueNums", topic_config.read_queue_nums.to_string()),
                ("writeQueueNums", topic_config.write_queue_nums.to_string()),
                ("perm", perm_text(topic_config.perm)),
                (
                    "topicFilterType",
                    json_text(&topic_config.topic_filter_type),
                ),
                ("order", topic_config.order.to_string()),
                ("message.type", topic_config.message_type().to_string()),
                ("attributes", json_text(&topic_config.attributes)),
                ("mod_revision", topic.mod_revision.to_string()),
            ])
        }
        TopicCommand::List => {
            let topics: Vec<TopicConfig> = client.list_topics().try_collect().await?;
            if printer.is_json() {
                return printer.json(&topics);
            }
            printer.table(
                &["NAME", "READ", "WRITE", "PERM", "ORDER", "MESSAGE_TYPE"],
                topics.iter().map(|topic| {
                    vec![
                        topic.topic_name.clone(),
                        topic.read_queue_nums.to_string(),
                        topic.write_queue_nums.to_string(),
                        perm_text(topic.perm),
                        topic.order.to_string(),
                        topic.message_type().to_string(),
                    ]
                }),
            )
        }
        TopicCommand::Delete { name, system } => {
            let Some(written) = client.delete_topic_with(&name, system).await? else {
                return Err(Failure::error(format!("topic {name:?} does not exist")));
            };
            show_deleted(printer, "topic", &name, &written)
        }
    }
}

pub async fn group(
    client: &Client,
    printer: &Printer,
    command: GroupCommand,
) -> Result<(), Failure> {
    match command {
        GroupCommand::Create {
            name,
            fields,
            common,
        } => {
            let (base, condition) = match (&name, common.update && common.from_file.is_none()) {
                (Some(name), true) => stored_base(client.get_subscription(name).await?),
                _ => (None, condition(&common)),
            };
            let config = group_config(name, base, &fields, &common)?;
            let options = options(&common, condition);
            let written = client
                .put_subscription_with(&config, options)
                .await
                .map_err(|error| exists_hint(error, "group", &config.group_name, common.update))?;
            show_write(printer, "group", &config.group_name, &written)
        }
        GroupCommand::Get { name } => {
            let Some(group) = client.get_subscription(&name).await? else {
                return Err(Failure::error(format!("group {name:?} does not exist")));
            };
            if printer.is_json() {
                return printer.json(&group.value);
            }
            let config = &group.value;
            let subscriptions: Vec<String> = config
                .subscription_data_set
                .iter()
                .map(|subscription| format!("{}:{}", subscription.topic, subscription.expression))
                .collect();
            printer.fields(vec![
                ("groupName", config.group_name.clone()),
                ("consumeEnable", config.consume_enable.to_string()),
                (
                    "consumeMessageOrderly",
                    config.consume_message_orderly.to_string(),
                ),
                (
                    "consumeBroadcastEnable",
                    config.consume_broadcast_enable.to_string(),
                ),
                ("retryMaxTimes", config.retry_max_times.to_string()),
                ("retryQueueNums", config.retry_queue_nums.to_string()),
                (
                    "consumeTimeoutMinute",
                    config.consume_timeout_minute.to_string(),
                ),
                ("groupRetryPolicy", json_text(&config.group_retry_policy)),
                ("subscriptions", subscriptions.join(", ")),
                ("attributes", json_text(&config.attributes)),
                ("mod_revision", group.mod_revision.to_string()),
            ])
        }
        GroupCommand::List => {
            let groups: Vec<SubscriptionGroupConfig> =
                client.list_subscriptions().try_collect().await?;
            if printer.is_json() {
                return printer.json(&groups);
            }
            printer.table(
                &[
                    "NAME",
                    "CONSUME",
                    "ORDERLY",
                    "BROADCAST",
                    "RETRY_MAX",
                    "RETRY_QUEUES",
                ],
                groups.iter().map(|group| {
                    vec![
                        group.group_name.clone(),
                        group.consume_enable.to_string(),
                        group.consume_message_orderly.to_string(),
                        group.consume_broadcast_enable.to_string(),
                        group.retry_max_times.to_string(),
                        group.retry_queue_nums.to_string(),
                    ]
                }),
            )
        }
        GroupCommand::Delete { name, system } => {
            let Some(written) = client.delete_subscription_with(&name, system).await? else {
                return Err(Failure::error(format!("group {name:?} does not exist")));
            };
            show_deleted(printer, "group", &name, &written)
        }
    }
}

/// Create-only unless `--update` (then: replace whatever is stored).
fn condition(common: &CreateFlags) -> Condition {
    if common.update {
        Condition::Always
    } else {
        Condition::Absent
    }
}

/// `--update` without a file changes the stored config: the flags apply
/// to it, and it is written back only if nobody changed it meanwhile.
fn stored_base<T>(stored: Option<Versioned<T>>) -> (Option<T>, Condition) {
    match stored {
        Some(stored) => (
            Some(stored.value),
            Condition::ModRevision(stored.mod_revision),
        ),
        None => (None, Condition::Absent),
    }
}

fn options(common: &CreateFlags, condition: Condition) -> MetadataOptions {
    MetadataOptions::new()
        .condition(condition)
        .allow_system(common.system)
}

/// The config from `--from-file` (or a fresh one), with the flags applied.
fn topic_config(
    name: Option<String>,
    base: Option<TopicConfig>,
    fields: &TopicFields,
    common: &CreateFlags,
) -> Result<TopicConfig, Failure> {
    let mut config = match (&common.from_file, &name) {
        (Some(path), _) => read_config::<TopicConfig>(path)?,
        (None, Some(name)) => base.unwrap_or_else(|| TopicConfig::new(name.clone())),
        (None, None) => return Err(Failure::usage("a topic name or --from-file is needed")),
    };
    if let Some(name) = name {
        if name != config.topic_name {
            return Err(Failure::usage(format!(
                "the name {name:?} differs from the file's topicName {:?}",
                config.topic_name
            )));
        }
    }
    if let Some(queues) = fields.queues {
        config.read_queue_nums = queues;
        config.write_queue_nums = queues;
    }
    if let Some(queues) = fields.read_queues {
        config.read_queue_nums = queues;
    }
    if let Some(queues) = fields.write_queues {
        config.write_queue_nums = queues;
    }
    if let Some(perm) = fields.perm {
        config.perm = perm;
    }
    if fields.order {
        config.order = true;
    }
    if let Some(message_type) = &fields.message_type {
        config
            .attributes
            .insert("message.type".to_string(), message_type.clone());
    }
    config.attributes.extend(common.attributes.iter().cloned());
    Ok(config)
}

fn group_config(
    name: Option<String>,
    base: Option<SubscriptionGroupConfig>,
    fields: &GroupFields,
    common: &CreateFlags,
) -> Result<SubscriptionGroupConfig, Failure> {
    let mut config = match (&common.from_file, &name) {
        (Some(path), _) => read_config::<SubscriptionGroupConfig>(path)?,
        (None, Some(name)) => base.unwrap_or_else(|| SubscriptionGroupConfig::new(name.clone())),
        (None, None) => return Err(Failure::usage("a group name or --from-file is needed")),
    };
    if let Some(name) = name {
        if name != config.group_name {
            return Err(Failure::usage(format!(
                "the name {name:?} differs from the file's groupName {:?}",
                config.group_name
            )));
        }
    }
    if let Some(times) = fields.retry_max_times {
        config.retry_max_times = times;
    }
    if let Some(queues) = fields.retry_queues {
        config.retry_queue_nums = queues;
    }
    if let Some(minutes) = fields.consume_timeout {
        config.consume_timeout_minute = minutes;
    }
    if fields.orderly {
        config.consume_message_orderly = true;
    }
    if fields.disabled {
        config.consume_enable = false;
    }
    if fields.no_broadcast {
        config.consume_broadcast_enable = false;
    }
    config.attributes.extend(common.attributes.iter().cloned());
    Ok(config)
}

/// A config from a JSON file; errors name the file and the field.
fn read_config<T: DeserializeOwned>(path: &Path) -> Result<T, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|error| Failure::error(format!("cannot read {}: {error}", path.display())))?;
    schemas::from_json(&bytes)
        .map_err(|error| Failure::error(format!("{}: {error}", path.display())))
}

/// A create-only write that found the config existing says what to do.
fn exists_hint(error: kv_client::Error, kind: &str, name: &str, update: bool) -> Failure {
    if error.is_precondition_failed() && update {
        Failure::error(format!(
            "{kind} {name:?} changed while it was updated; run the command again"
        ))
    } else if error.is_precondition_failed() {
        Failure::error(format!(
            "{kind} {name:?} exists already; pass --update to change it"
        ))
    } else {
        Failure::from(error)
    }
}

fn show_write(
    printer: &Printer,
    kind: &str,
    name: &str,
    written: &WriteResult,
) -> Result<(), Failure> {
    if printer.is_json() {
        return printer.json(written);
    }
    let what = if written.created {
        "created"
    } else {
        "updated"
    };
    printer.line(format!(
        "{what} {kind} {name:?} at revision {}",
        written.revision
    ))
}

fn show_deleted(
    printer: &Printer,
    kind: &str,
    name: &str,
    written: &WriteResult,
) -> Result<(), Failure> {
    if printer.is_json() {
        return printer.json(written);
    }
    printer.line(format!(
        "deleted {kind} {name:?} at revision {}",
        written.revision
    ))
}

/// Permission bits as RocketMQ's admin tool shows them, with the number.
fn perm_text(perm: i32) -> String {
    let bit = |mask: i32, letter: char| if perm & mask != 0 { letter } else { '-' };
    format!(
        "{}{}{} ({perm})",
        bit(schemas::perm::READ, 'r'),
        bit(schemas::perm::WRITE, 'w'),
        bit(schemas::perm::INHERIT, 'i')
    )
}

/// A value as JSON on one line; a string without its quotes.
fn json_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(value) => value.to_string(),
        Err(_) => String::new(),
    }
}
