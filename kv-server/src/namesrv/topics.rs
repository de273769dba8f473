//! The topic lists, REGISTER_TOPIC_IN_NAMESRV, DELETE_TOPIC_IN_NAMESRV,
//! and a broker group's write permission.

use std::collections::BTreeSet;

use schemas::remoting::{request_code, QueueData, RemotingCommand, TopicList, TopicRouteData};
use serde_json::json;
use tracing::{info, warn};

use crate::namesrv::keys;
use crate::namesrv::view::{self, FLAG_UNIT, FLAG_UNIT_SUB};
use crate::namesrv::writes::{idempotency_key, Op};
use crate::namesrv::{config, json_body, required_name, Failure, Handled, NameServer};

/// RocketMQ's `PermName.PERM_READ`.
const PERM_READ: i32 = 1 << 2;
/// RocketMQ's `PermName.PERM_WRITE`.
const PERM_WRITE: i32 = 1 << 1;

/// A topic-list answer.
fn list_answer(
    request: &RemotingCommand,
    topic_list: BTreeSet<String>,
    broker_addr: Option<String>,
) -> Handled {
    let mut answer = request.answer(0, None);
    answer.body = json_body(&TopicList {
        topic_list,
        broker_addr,
    });
    Ok(answer)
}

/// Refuses a list request when the property `name` turned it off, as
/// Apache does.
fn enabled(ns: &NameServer, name: &str) -> Result<(), Failure> {
    if config::flag(ns, name, true)? {
        Ok(())
    } else {
        Err(Failure::system("disable"))
    }
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
pub fn all_topics(ns: &NameServer, request: &RemotingCommand) -> Handled {
    enabled(ns, "enableAllTopicList")?;
    let (_, topics) = view::topics(&ns.state.store)?;
    list_answer(request, topics.into_keys().collect(), None)
}

/// GET_TOPICS_BY_CLUSTER: the topics with queues on a group of `cluster`.
pub fn topics_of_cluster(ns: &NameServer, request: &RemotingCommand) -> Handled {
    enabled(ns, "enableTopicList")?;
    let cluster = required_name(request, "cluster")?;
    let (records, topics) = view::topics(&ns.state.store)?;
    let groups: BTreeSet<String> = records
        .into_iter()
        .filter(|record| record.cluster_name == cluster)
        .map(|record| record.broker_name)
        .collect();
    let listed = topics
        .into_iter()
        .filter(|(_, queues)| queues.iter().any(|q| groups.contains(&q.broker_name)))
        .map(|(topic, _)| topic)
        .collect();
    list_answer(request, listed, None)
}

/// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster's and group's name, and a
/// broker to ask for more.
pub fn system_topics(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let info = view::cluster_info(&ns.state.store)?;
    let mut names = BTreeSet::new();
    let mut broker_addr = None;
    for (cluster, groups) in info.cluster_addr_table {
        names.insert(cluster);
        names.extend(groups);
    }
    for group in info.broker_addr_table.values() {
        if broker_addr.is_none() {
            broker_addr = group.broker_addrs.values().next().cloned();
        }
    }
    list_answer(request, names, broker_addr)
}

/// GET_UNIT_TOPIC_LIST, GET_HAS_UNIT_SUB_TOPIC_LIST and
/// GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST: topics by their unit flags (of
/// their first group's queues, as Apache reads them).
pub fn unit_topics(ns: &NameServer, request: &RemotingCommand) -> Handled {
    enabled(ns, "enableTopicList")?;
    let wanted = |flag: i32| match request.code {
        request_code::GET_UNIT_TOPIC_LIST => flag & FLAG_UNIT != 0,
        request_code::GET_HAS_UNIT_SUB_TOPIC_LIST => flag & FLAG_UNIT_SUB != 0,
        _ => flag & FLAG_UNIT_SUB != 0 && flag & FLAG_UNIT == 0,
    };
    let (_, topics) = view::topics(&ns.state.store)?;
    let listed = topics
        .into_iter()
        .filter(|(_, queues)| queues.first().is_some_and(|q| wanted(q.topic_sys_flag)))
        .map(|(topic, _)| topic)
        .collect();
    list_answer(request, listed, None)
}

/// REGISTER_TOPIC_IN_NAMESRV: the body's queues, each attached to its
/// group's lease (for a group registered before groups had leases, its
/// master's, or a member's when it has no master). A body
/// naming a group that is not registered registers nothing, as Apache
/// registers nothing of a new topic then (of a known topic it keeps the
/// groups it read before that one: here the change is whole or none).
pub async fn register_topic(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let topic = required_name(request, "topic")?;
    let route: TopicRouteData = if request.body.is_empty() {
        TopicRouteData::default()
    } else {
        serde_json::from_slice(&request.body).map_err(|error| {
            Failure::system(format!(
                "the body of REGISTER_TOPIC_IN_NAMESRV is not a TopicRouteData: {error}"
            ))
        })?
    };
    // One group named twice: the last one stands, as in Apache's table.
    let mut by_group = std::collections::BTreeMap::new();
    for queues in &route.queue_datas {
        by_group.insert(queues.broker_name.as_str(), queues);
    }
    let mut ops = Vec::new();
    for queues in by_group.into_values() {
        let members = view::group(&ns.state.store, &queues.broker_name)?;
        let group_lease = if members.is_empty() {
            None
        } else {
            view::group_lease(&ns.state.store, &queues.broker_name)?.0
        };
        let lease = group_lease.or_else(|| {
            members
                .iter()
                .min_by_key(|(_, _, record)| record.broker_id)
                .map(|(_, _, record)| record.lease)
        });
        let Some(lease) = lease else {
            warn!(?topic, group = ?queues.broker_name, "topic registration names a group that is not registered: nothing registered");
            return Ok(request.answer(0, None));
        };
        ops.push(Op::Put {
            key: keys::topic_queues(topic, &queues.broker_name),
            value: json!(queues),
            lease: Some(lease),
        });
    }
    // The revision read keeps a later registration of the same body (after
    // a delete) from being taken for a retry of this one.
    let revision = ns.state.store.revision().to_string();
    let body = String::from_utf8_lossy(&request.body);
    write_all(ns, &ops, &["register-topic", topic, &body, &revision]).await?;
    info!(?topic, groups = ops.len(), "topic registered");
    Ok(request.answer(0, None))
}

/// DELETE_TOPIC_IN_NAMESRV: every group's queues of the topic, or only
/// those of `clusterName`'s groups, in one change.
pub async fn delete_topic(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let topic = required_name(request, "topic")?;
    let cluster = request.field("clusterName").filter(|name| !name.is_empty());
    let ops = match cluster {
        None => vec![Op::DeletePrefix(keys::topic(topic))],
        Some(cluster) => {
            let (records, _) = view::topics(&ns.state.store)?;
            let groups: BTreeSet<String> = records
                .into_iter()
                .filter(|record| record.cluster_name == cluster)
                .map(|record| record.broker_name)
                .collect();
            groups
                .iter()
                .map(|group| Op::Delete(keys::topic_queues(topic, group)))
                .collect()
        }
    };
    // Queues whose keys the store cannot hold were never stored (see
    // `brokers::leave_out_unkeyable`): there is nothing of them to delete,
    // and Apache answers a delete of what it does not hold with SUCCESS.
    let ops: Vec<Op> = ops.into_iter().filter(keyable).collect();
    if ops.is_empty() {
        info!(
            ?topic,
            "a topic whose name cannot be a key was never stored: nothing to delete"
        );
        return Ok(request.answer(0, None));
    }
    let revision = ns.state.store.revision().to_string();
    write_all(
        ns,
        &ops,
        &["delete-topic", topic, cluster.unwrap_or(""), &revision],
    )
    .await?;
    info!(?topic, cluster = ?cluster.unwrap_or("*"), "topic deleted");
    Ok(request.answer(0, None))
}

/// WIPE_WRITE_PERM_OF_BROKER: takes the write permission from every queue
/// of the group; answers how many topics it changed.
pub async fn wipe_write_perm(ns: &NameServer, request: &RemotingCommand) -> Handled {
    change_perm(ns, request, "wipeTopicCount", |perm| perm & !PERM_WRITE).await
}

/// ADD_WRITE_PERM_OF_BROKER: gives read and write back to every queue of
/// the group; answers how many topics it changed.
pub async fn add_write_perm(ns: &NameServer, request: &RemotingCommand) -> Handled {
    change_perm(ns, request, "addTopicCount", |_| PERM_READ | PERM_WRITE).await
}

async fn change_perm(
    ns: &NameServer,
    request: &RemotingCommand,
    count_field: &str,
    perm_of: impl Fn(i32) -> i32,
) -> Handled {
    let broker_name = required_name(request, "brokerName")?;
    let (entries, revision) = view::scan(&ns.state.store, keys::TOPICS)?;
    let mut ops = Vec::new();
    for (key, entry) in entries {
        let Some((_, group)) = keys::parse_topic_queues(&key) else {
            continue;
        };
        if group != broker_name {
            continue;
        }
        let Ok(mut queues) = serde_json::from_slice::<QueueData>(&entry.value) else {
            continue;
        };
        queues.perm = perm_of(queues.perm);
        ops.push(Op::Put {
            key,
            value: json!(queues),
            lease: (entry.lease != 0).then_some(entry.lease),
        });
    }
    let revision = revision.to_string();
    write_all(ns, &ops, &[count_field, broker_name, &revision]).await?;
    info!(group = ?broker_name, topics = ops.len(), change = count_field, "write permission changed");
    let mut answer = request.answer(0, None);
    answer
        .ext_fields
        .insert(count_field.to_string(), ops.len().to_string());
    Ok(answer)
}

/// Whether a delete can name anything stored: its key is one the store
/// takes, or keys under its prefix can be.
fn keyable(op: &Op) -> bool {
    match op {
        Op::Delete(key) => schemas::validate_key(key).is_ok(),
        Op::DeletePrefix(prefix) => prefix.len() < schemas::MAX_KEY_BYTES,
        Op::Put { .. } => true,
    }
}

/// Writes `ops` in one transaction. `what` names the change for its
/// idempotency key.
async fn write_all(ns: &NameServer, ops: &[Op], what: &[&str]) -> Result<(), Failure> {
    ns.writer.txn(&[], ops, idempotency_key(what)).await?;
    Ok(())
}
