//! `cluster status|add|remove` and `alarm list|disarm`.

use kv_client::Client;
use schemas::api::Alarm;

use crate::cli::{AlarmCommand, ClusterCommand};
use crate::output::{Failure, Printer};

pub async fn run(
    client: &Client,
    printer: &Printer,
    command: ClusterCommand,
) -> Result<(), Failure> {
    match command {
        ClusterCommand::Status => status(client, printer).await,
        ClusterCommand::Add { id, url, peer_url } => {
            client.add_member(id, &url, &peer_url).await?;
            if printer.is_json() {
                return printer
                    .json(&serde_json::json!({"added": id, "addr": url, "peer_addr": peer_url}));
            }
            printer.line(format!("added node {id} at {url} (peer port {peer_url})"))
        }
        ClusterCommand::Remove { id } => {
            client.remove_member(id).await?;
            if printer.is_json() {
                return printer.json(&serde_json::json!({"removed": id}));
            }
            printer.line(format!("removed node {id}"))
        }
    }
}

async fn status(client: &Client, printer: &Printer) -> Result<(), Failure> {
    let status = client.cluster_status().await?;
    if printer.is_json() {
        return printer.json(&status);
    }
    let leader = status
        .leader
        .map_or_else(|| "none".to_string(), |leader| leader.to_string());
    printer.fields(vec![
        ("node", format!("{} ({})", status.node_id, status.state)),
        ("version", status.version.clone()),
        ("leader", leader),
        ("quorum", quorum_summary(&status)),
        ("term", status.term.to_string()),
        ("applied_index", status.applied_index.to_string()),
        ("committed_index", status.committed_index.to_string()),
        ("last_log_index", status.last_log_index.to_string()),
        ("snapshot_index", status.snapshot_index.to_string()),
        ("alarms", alarm_summary(&status.alarms)),
        (
            "disk",
            status
                .space
                .as_ref()
                .map_or_else(|| "-".to_string(), disk_summary),
        ),
    ])?;
    printer.line("")?;
    printer.table(
        &[
            "ID",
            "ADDRESS",
            "PEER_ADDRESS",
            "VOTER",
            "LEADER",
            "MATCHED_INDEX",
            "LAG",
        ],
        status.members.iter().map(|member| {
            vec![
                member.id.to_string(),
                member.addr.clone(),
                member.peer_addr.clone(),
                member.voter.to_string(),
                (status.leader == Some(member.id)).to_string(),
                member
                    .matched_index
                    .map_or_else(|| "-".to_string(), |index| index.to_string()),
                member
                    .lag
                    .map_or_else(|| "-".to_string(), |lag| lag.to_string()),
            ]
        }),
    )
}

/// What the answering node knows of its leader's quorum: on a leader, how
/// long ago a majority acknowledged it, and a warning once that passes
/// any election timeout (it still calls itself leader, cut off).
fn quorum_summary(status: &kv_client::ClusterStatus) -> String {
    const CUT_OFF_MS: u64 = 5_000;
    match status.quorum_ack_ms {
        Some(ms) if ms >= CUT_OFF_MS => format!(
            "NOT acknowledged by a majority for {:.1} s: this leader is cut off and takes no write",
            ms as f64 / 1000.0
        ),
        Some(ms) => format!("acknowledged {ms} ms ago"),
        None if status.leader == Some(status.node_id) => {
            "not acknowledged by a majority yet".to_string()
        }
        None => "- (ask the leader)".to_string(),
    }
}

/// `alarm list|disarm`.
pub async fn alarm(
    client: &Client,
    printer: &Printer,
    command: AlarmCommand,
) -> Result<(), Failure> {
    let (alarms, verb) = match command {
        AlarmCommand::List => (client.alarms().await?, "raised"),
        AlarmCommand::Disarm => (client.disarm_alarms().await?, "disarmed"),
    };
    if printer.is_json() {
        return printer.json(&alarms);
    }
    if alarms.alarms.is_empty() {
        return printer.line(format!("no alarm {verb}"));
    }
    printer.table(
        &["MEMBER", "ALARM", "RAISED_MS", "REASON"],
        alarms.alarms.iter().map(|alarm| {
            vec![
                alarm.member.to_string(),
                alarm.alarm.to_string(),
                alarm.raised_ms.to_string(),
                alarm.reason.clone(),
            ]
        }),
    )
}

/// `none`, or each alarm as `NOSPACE (node 2)`.
/// The answering node's disk in one line: what it holds against its
/// quota, what is free against its floor, and a limit it crosses.
fn disk_summary(space: &schemas::api::NodeSpace) -> String {
    let figure =
        |bytes: Option<u64>| bytes.map_or_else(|| "?".to_string(), |bytes| format!("{bytes} B"));
    let mut summary = match space.quota_bytes {
        0 => format!("{} used (no quota)", figure(space.used_bytes)),
        quota => format!("{} used of a {quota} B quota", figure(space.used_bytes)),
    };
    summary.push_str(&match space.min_free_bytes {
        0 => format!(", {} free", figure(space.free_bytes)),
        floor => format!(", {} free (floor {floor} B)", figure(space.free_bytes)),
    });
    for crossed in [&space.over_limit, &space.disk_full].into_iter().flatten() {
        summary.push_str(&format!("; {crossed}"));
    }
    summary
}

fn alarm_summary(alarms: &[Alarm]) -> String {
    if alarms.is_empty() {
        return "none".to_string();
    }
    alarms
        .iter()
        .map(|alarm| format!("{} (node {})", alarm.alarm, alarm.member))
        .collect::<Vec<_>>()
        .join(", ")
}
