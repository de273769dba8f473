//! RocketMQ's answers assembled from this node's view of the store: a
//! topic's route, the cluster info, topic lists, a broker group. Never
//! through Raft: every node answers from what it has applied.

use std::collections::{BTreeMap, BTreeSet};

use schemas::remoting::{BrokerData, ClusterInfo, QueueData, TopicRouteData};

use crate::error::StoreError;
use crate::namesrv::keys::{self, BrokerRecord};
use crate::store::queries::PageBounds;
use crate::store::view::KeyEntry;
use crate::store::Store;
use crate::types::Revision;

/// Reads of two prefixes retried to get both at one revision.
const CONSISTENT_READ_ATTEMPTS: usize = 5;

/// The topic flag of a unit topic (RocketMQ's `TopicSysFlag.FLAG_UNIT`).
pub const FLAG_UNIT: i32 = 1;
/// The topic flag of a topic with unit subscriptions (`FLAG_UNIT_SUB`).
pub const FLAG_UNIT_SUB: i32 = 1 << 1;

/// One group's queues of a topic: the topic, the group, the queues.
pub type GroupQueues = (String, String, QueueData);

/// Each topic's queues, one entry per group holding it.
pub type QueuesByTopic = BTreeMap<String, Vec<QueueData>>;

/// Every key under `prefix`, with the revision they were read at.
pub fn scan(
    store: &Store,
    prefix: &str,
) -> Result<(Vec<(String, KeyEntry)>, Revision), StoreError> {
    let page = store.list(prefix, None, PageBounds::entries(usize::MAX))?;
    Ok((page.entries, page.revision))
}

/// The registrations and the queues under `queues_prefix`, read at one
/// revision (retried a few times if a write came between the two reads).
fn brokers_and_queues(
    store: &Store,
    queues_prefix: &str,
) -> Result<(Vec<BrokerRecord>, Vec<GroupQueues>), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (queues, queues_at) = scan(store, queues_prefix)?;
        let (brokers, brokers_at) = scan(store, keys::BROKERS)?;
        if queues_at == brokers_at || attempt == CONSISTENT_READ_ATTEMPTS {
            return Ok((parse_brokers(brokers), parse_queues(queues)));
        }
    }
}

/// The registrations of `entries`; an entry that does not parse is
/// skipped with a log line (it was not written by this server).
pub fn parse_brokers(entries: Vec<(String, KeyEntry)>) -> Vec<BrokerRecord> {
    entries
        .into_iter()
        .filter_map(|(key, entry)| match serde_json::from_slice(&entry.value) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!(%key, %error, "skipped a broker registration that does not parse");
                None
            }
        })
        .collect()
}

/// The (topic, group, queues) of `entries` under [`keys::TOPICS`].
pub fn parse_queues(entries: Vec<(String, KeyEntry)>) -> Vec<GroupQueues> {
    entries
        .into_iter()
        .filter_map(|(key, entry)| {
            let (topic, group) = keys::parse_topic_queues(&key)?;
            match serde_json::from_slice(&entry.value) {
                Ok(queues) => Some((topic, group, queues)),
                Err(error) => {
                    tracing::warn!(%key, %error, "skipped queue data that does not parse");
                    None
                }
            }
        })
        .collect()
}

/// Every registered broker group by name, as RocketMQ shows it.
pub fn broker_datas(records: &[BrokerRecord]) -> BTreeMap<String, BrokerData> {
    let mut groups: BTreeMap<String, BrokerData> = BTreeMap::new();
    for record in records {
        let group = groups
            .entry(record.broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: record.cluster_name.clone(),
                broker_name: record.broker_name.clone(),
                broker_addrs: BTreeMap::new(),
                zone_name: record.zone_name.clone(),
                enable_acting_master: record.enable_acting_master,
            });
        group
            .broker_addrs
            .insert(record.broker_id, record.broker_addr.clone());
        if record.broker_id == 0 {
            // The master's settings speak for the group.
            group.cluster = record.cluster_name.clone();
            group.zone_name = record.zone_name.clone();
            group.enable_acting_master = record.enable_acting_master;
        }
    }
    groups
}

/// The route of `topic`, or `None` when no live group holds it. Reads the
/// topic's queues and the registrations of the groups they name only, all
/// at one revision (retried a few times if a write came between the reads).
pub fn route(store: &Store, topic: &str) -> Result<Option<TopicRouteData>, StoreError> {
    let mut attempt = 0;
    let (queue_datas, records) = loop {
        attempt += 1;
        let (entries, queues_at) = scan(store, &keys::topic(topic))?;
        let queue_datas: Vec<QueueData> = parse_queues(entries)
            .into_iter()
            .filter(|(named, _, _)| named == topic)
            .map(|(_, _, queues)| queues)
            .collect();
        let mut records = Vec::new();
        let mut same_revision = true;
        for queues in &queue_datas {
            let (entries, group_at) = scan(store, &keys::broker_group(&queues.broker_name))?;
            same_revision &= group_at == queues_at;
            records.extend(parse_brokers(entries));
        }
        if same_revision || attempt == CONSISTENT_READ_ATTEMPTS {
            break (queue_datas, records);
        }
    };
    let groups = broker_datas(&records);
    // A group's queues outlive its last member until the group's lease
    // ends: a group with no member left is not in the route.
    let queue_datas: Vec<QueueData> = queue_datas
        .into_iter()
        .filter(|queues| groups.contains_key(&queues.broker_name))
        .collect();
    let broker_datas: Vec<BrokerData> = queue_datas
        .iter()
        .filter_map(|queues| groups.get(&queues.broker_name).cloned())
        .collect();
    if queue_datas.is_empty() || broker_datas.is_empty() {
        return Ok(None);
    }
    Ok(Some(TopicRouteData {
        queue_datas,
        broker_datas,
        ..TopicRouteData::default()
    }))
}

/// Every broker group and which cluster holds which.
pub fn cluster_info(store: &Store) -> Result<ClusterInfo, StoreError> {
    let (entries, _) = scan(store, keys::BROKERS)?;
    Ok(cluster_info_of(&parse_brokers(entries)))
}

/// [`cluster_info`] of given registrations.
pub fn cluster_info_of(records: &[BrokerRecord]) -> ClusterInfo {
    let broker_addr_table = broker_datas(records);
    let mut cluster_addr_table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for group in broker_addr_table.values() {
        cluster_addr_table
            .entry(group.cluster.clone())
            .or_default()
            .insert(group.broker_name.clone());
    }
    ClusterInfo {
        broker_addr_table,
        cluster_addr_table,
    }
}

/// Every topic with its queues per group (of the groups with a member
/// registered, as in [`route`]), with the registrations read at the same
/// revision.
pub fn topics(store: &Store) -> Result<(Vec<BrokerRecord>, QueuesByTopic), StoreError> {
    let (records, queues) = brokers_and_queues(store, keys::TOPICS)?;
    let live: BTreeSet<&str> = records
        .iter()
        .map(|record| record.broker_name.as_str())
        .collect();
    let mut topics = QueuesByTopic::new();
    for (topic, group, queues) in queues {
        if live.contains(group.as_str()) {
            topics.entry(topic).or_default().push(queues);
        }
    }
    Ok((records, topics))
}

/// The registrations of group `broker_name`.
pub fn group(
    store: &Store,
    broker_name: &str,
) -> Result<Vec<(String, KeyEntry, BrokerRecord)>, StoreError> {
    let (entries, _) = scan(store, &keys::broker_group(broker_name))?;
    Ok(entries
        .into_iter()
        .filter_map(|(key, entry)| {
            let record = serde_json::from_slice(&entry.value).ok()?;
            Some((key, entry, record))
        })
        .collect())
}

/// The lease of group `broker_name` as stored, and the group key's
/// `mod_revision` (0 when the key is absent). A value that does not parse
/// is no lease: the next registration writes over it.
pub fn group_lease(store: &Store, broker_name: &str) -> Result<(Option<u64>, u64), StoreError> {
    let key = keys::group(broker_name);
    let Some(entry) = store.get(&key)? else {
        return Ok((None, 0));
    };
    match serde_json::from_slice::<keys::GroupRecord>(&entry.value) {
        Ok(group) => Ok((Some(group.lease), entry.mod_revision)),
        Err(error) => {
            tracing::warn!(%key, %error, "the broker group stored here does not parse: taken as none");
            Ok((None, entry.mod_revision))
        }
    }
}

/// The entries of KV config namespace `namespace`.
pub fn kv_table(store: &Store, namespace: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let prefix = keys::kv_namespace(namespace);
    let (entries, _) = scan(store, &prefix)?;
    Ok(string_table(&prefix, entries))
}

/// The values under `prefix` as text (see [`value_text`]), by their
/// decoded names.
pub fn string_table(prefix: &str, entries: Vec<(String, KeyEntry)>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|(key, entry)| {
            let name = keys::kv_entry_name(prefix, &key)?;
            Some((name, value_text(&entry.value)))
        })
        .collect()
}

/// A stored value as the name server's text: a JSON string is its text;
/// any other value (written over HTTP: a number, say) its JSON.
pub fn value_text(value: &[u8]) -> String {
    serde_json::from_slice::<String>(value)
        .unwrap_or_else(|_| String::from_utf8_lossy(value).into_owned())
}
