//! REGISTER_BROKER, UNREGISTER_BROKER, BROKER_HEARTBEAT and
//! QUERY_DATA_VERSION: a broker's registration and its lease.
//!
//! A registration is written as one transaction guarded by the
//! registration key's `mod_revision` as this node read it: when a broker
//! registers with every node at once, the first write wins and the others
//! find their guard broken and write nothing (they give back the lease
//! they granted). The idempotency key (broker, data version, lease) makes a
//! retried call of the same write count once.

use std::collections::BTreeSet;
use std::sync::Arc;

use schemas::api::{MAX_LEASE_TTL_S, MIN_LEASE_TTL_S};
use schemas::remoting::{
    body_crc32, BodyError, DataVersion, QueueData, RegisterBrokerBody, RemotingCommand,
    TopicConfigSerializeWrapper,
};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info, warn};

use crate::namesrv::keys::{self, BrokerRecord};
use crate::namesrv::writes::{idempotency_key, Guard, Op, WriteError};
use crate::namesrv::{
    json_body, required_name, view, Failure, Handled, NameServer, INFLATED_BUDGET_BYTES,
};

/// The KV namespace of ordered topics' configs, sent back to a registering
/// broker as Apache does.
pub const ORDER_TOPIC_CONFIG: &str = "ORDER_TOPIC_CONFIG";

/// Who a REGISTER_BROKER (or UNREGISTER_BROKER) names.
struct Identity {
    cluster_name: String,
    broker_name: String,
    broker_id: i64,
    broker_addr: String,
}

impl Identity {
    fn of(request: &RemotingCommand) -> Result<Identity, Failure> {
        Ok(Identity {
            cluster_name: required_name(request, "clusterName")?.to_string(),
            broker_name: required_name(request, "brokerName")?.to_string(),
            broker_id: request.required_parsed("brokerId")?,
            broker_addr: required_name(request, "brokerAddr")?.to_string(),
        })
    }

    fn key(&self) -> String {
        keys::broker(&self.broker_name, self.broker_id)
    }
}

/// The stored registration at `key`, with its `mod_revision`, and that
/// revision alone (0 when the key is absent). A value that does not parse
/// (written over HTTP, say) is no registration, as the views skip it, and
/// the next registration writes over it.
fn stored(ns: &NameServer, key: &str) -> Result<(Option<(BrokerRecord, u64)>, u64), Failure> {
    let Some(entry) = ns.state.store.get(key)? else {
        return Ok((None, 0));
    };
    match serde_json::from_slice(&entry.value) {
        Ok(record) => Ok((Some((record, entry.mod_revision)), entry.mod_revision)),
        Err(error) => {
            warn!(%key, %error, "the broker registration stored here does not parse: taken as none");
            Ok((None, entry.mod_revision))
        }
    }
}

/// Times a registration reads the broker's record and writes anew after
/// another registration of it was written between the two.
const REGISTER_ATTEMPTS: u32 = 5;

/// REGISTER_BROKER.
pub async fn register(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let identity = Identity::of(request)?;
    let crc: i64 = request.optional_parsed("bodyCrc32")?.unwrap_or(0);
    if crc != 0 && i64::from(body_crc32(&request.body)) != crc {
        return Err(Failure::system("crc32 not match"));
    }
    let compressed = request.flag("compressed");
    let unreadable = |error: schemas::remoting::BodyError| {
        Failure::system(format!(
            "the registration body of broker {} ({}) does not decode: {error}",
            identity.broker_name, identity.broker_addr
        ))
    };
    // Held until the registration is written: see INFLATED_BUDGET_BYTES.
    let (mut body, _inflated_weight) = if request.body.is_empty() {
        (RegisterBrokerBody::default(), None)
    } else {
        decode_body(ns, request, compressed, &identity.broker_addr)
            .await?
            .map_err(unreadable)?
    };
    let wanted = BrokerRecord {
        cluster_name: identity.cluster_name.clone(),
        broker_name: identity.broker_name.clone(),
        broker_id: identity.broker_id,
        broker_addr: identity.broker_addr.clone(),
        ha_server_addr: request
            .field("haServerAddr")
            .unwrap_or_default()
            .to_string(),
        // Apache reads `MixAll.ZONE_NAME`, which brokers' RPC hook sets.
        zone_name: request.field("__ZONE_NAME").map(str::to_string),
        enable_acting_master: request.flag("enableActingMaster"),
        data_version: body.topic_config_serialize_wrapper.data_version,
        lease: 0,
    };
    let single_topic = body.topic_config_serialize_wrapper.topic_config_table.len() == 1;
    leave_out_unkeyable(&mut body.topic_config_serialize_wrapper, &identity);
    let key = identity.key();
    for attempt in 1..=REGISTER_ATTEMPTS {
        let (current, observed) = stored(ns, &key)?;
        let (stored_group_lease, group_observed) =
            view::group_lease(&ns.state.store, &identity.broker_name)?;
        if let Some((live, _)) = &current {
            // Apache ignores a registration of a live broker id from another
            // address whose state version is older: a master that came back
            // after its group elected another, say.
            let (old, new) = (
                live.data_version.state_version,
                wanted.data_version.state_version,
            );
            if live.broker_addr != identity.broker_addr && old > new {
                warn!(group = ?identity.broker_name, id = identity.broker_id, live = ?live.broker_addr, live_state_version = old, broker = ?identity.broker_addr, state_version = new, "registration older than the live one at another address: ignored");
                // Apache tells such a broker no master.
                return answer_with_order_topics(ns, request, &identity);
            }
        } else if single_topic {
            // Apache's rule: a single topic's registration (a broker's
            // update of one topic) of a broker it does not know is refused;
            // the broker registers whole again.
            return Err(Failure::system("register broker failed"));
        }
        // One address holds one id in a group: a slave that became master
        // (or the reverse) at the same address leaves its old id, as in
        // Apache. The group's queues stay with the group's lease.
        let moved: Vec<String> =
            records_at(ns, Some(&identity.broker_name), &identity.broker_addr)?
                .into_iter()
                .filter(|record| record.broker_id != identity.broker_id)
                .map(|record| keys::broker(&record.broker_name, record.broker_id))
                .collect();
        let missing = if identity.broker_id == 0 {
            missing_queues(
                ns,
                &identity.broker_name,
                &body.topic_config_serialize_wrapper,
                stored_group_lease,
            )?
        } else {
            BTreeSet::new()
        };
        let unchanged = moved.is_empty()
            && current.as_ref().is_some_and(|(record, _)| {
                BrokerRecord {
                    lease: 0,
                    ..record.clone()
                } == wanted
            })
            && missing.is_empty();
        // Apache writes a topic's queues at a broker's first registration at
        // its address, when its data version changed, or when the topic lacks
        // them; not otherwise, so a write permission wiped on the name server
        // stays wiped while the broker's topics stay as they were.
        let same_version = current.as_ref().is_some_and(|(record, _)| {
            record.broker_addr == wanted.broker_addr && record.data_version == wanted.data_version
        });
        let mut group_lease = stored_group_lease;
        if let Some(id) = group_lease {
            if !ns.writer.keep_alive(id).await? {
                group_lease = None;
            }
        }
        let unchanged = unchanged && group_lease.is_some();
        let mut lease = current.as_ref().map(|(record, _)| record.lease);
        if let Some(id) = lease {
            if ns.writer.keep_alive(id).await? {
                if unchanged {
                    debug!(broker = ?identity.broker_addr, lease = id, "registration unchanged: lease renewed");
                    return answer_registration(ns, request, &identity);
                }
            } else {
                lease = None;
            }
        }
        let ttl_s = lease_ttl_s(ns, request)?;
        let registration = Registration {
            topics: &body.topic_config_serialize_wrapper,
            queues: if same_version && group_lease.is_some() {
                Queues::Missing(missing)
            } else {
                Queues::All
            },
            observed,
            group_observed,
            moved: &moved,
        };
        let leases = Leases {
            member: lease,
            group: group_lease,
        };
        if write_registration(ns, wanted.clone(), &registration, leases, ttl_s).await? {
            return answer_registration(ns, request, &identity);
        }
        // Another registration of this broker was written between the read
        // and the write: the same one through another node, or a different
        // one (a topic's update beside the periodic registration). Read it
        // and decide again, as Apache's registrations, one after another
        // under its lock, would.
        debug!(broker = ?identity.broker_addr, attempt, "another registration of this broker was written first: reading it again");
    }
    Err(Failure::system(format!(
        "registering broker {} of group {}: other registrations of it were written first {REGISTER_ATTEMPTS} times; register again",
        identity.broker_addr, identity.broker_name
    )))
}

/// Leaves out of a registration the topics whose queues the store cannot
/// key (an empty name, or one that makes the key longer than a key may
/// be), each named in a warning, so that the rest is stored: Apache stores
/// every topic a broker sends, and one odd name used to fail the whole
/// registration, the broker's other new topics with it.
fn leave_out_unkeyable(topics: &mut TopicConfigSerializeWrapper, identity: &Identity) {
    topics.topic_config_table.retain(|topic, _| {
        let key = keys::topic_queues(topic, &identity.broker_name);
        match schemas::validate_key(&key) {
            Ok(()) => true,
            Err(error) => {
                warn!(broker = ?identity.broker_addr, group = ?identity.broker_name, topic = ?topic, %error, "a registered topic's name cannot be stored: left out of the registration");
                false
            }
        }
    });
}

/// Reads a registration's body, compressed or not, in its turn (see
/// [`NameServer::decoding`]) and on the blocking pool; a compressed one
/// waits for its inflated size in [`INFLATED_BUDGET_BYTES`] and gives the
/// permit it holds back with it.
async fn decode_body(
    ns: &NameServer,
    request: &RemotingCommand,
    compressed: bool,
    broker: &str,
) -> Result<Result<(RegisterBrokerBody, Option<OwnedSemaphorePermit>), BodyError>, Failure> {
    let _turn = Arc::clone(&ns.decoding)
        .acquire_owned()
        .await
        .expect("the turns are never closed");
    let bytes = request.body.clone();
    if !compressed {
        let body = off_the_workers(move || RegisterBrokerBody::decode(&bytes, false)).await?;
        return Ok(body.map(|body| (body, None)));
    }
    let plain = match off_the_workers(move || RegisterBrokerBody::inflate(&bytes)).await? {
        Ok(plain) => plain,
        Err(error) => return Ok(Err(error)),
    };
    let weight = inflated_weight(plain.len());
    if ns.inflated_budget.available_permits() < weight as usize {
        debug!(
            ?broker,
            inflated_bytes = plain.len(),
            "a large registration waits for others to be written"
        );
    }
    let held = Arc::clone(&ns.inflated_budget)
        .acquire_many_owned(weight)
        .await
        .expect("the budget is never closed");
    let body = off_the_workers(move || RegisterBrokerBody::decode_inflated(&plain)).await?;
    Ok(body.map(|body| (body, Some(held))))
}

/// Runs `work` on the blocking pool.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| Failure::system(format!("reading the registration body failed: {error}")))
}

/// The topics of a master's registration that lack their group's queues,
/// or whose queues live by another lease than the group's `group_lease`
/// (written before groups had leases, by the master's). Apache adds a
/// topic whose queues lack the group at any registration, whatever its
/// data version, so a topic deleted on the name server alone comes back
/// at the broker's next registration; here too.
fn missing_queues(
    ns: &NameServer,
    group: &str,
    topics: &TopicConfigSerializeWrapper,
    group_lease: Option<u64>,
) -> Result<BTreeSet<String>, Failure> {
    let mut missing = BTreeSet::new();
    for topic in topics.topic_config_table.keys() {
        let entry = ns.state.store.get(&keys::topic_queues(topic, group))?;
        if entry.is_none_or(|entry| Some(entry.lease) != group_lease) {
            debug!(
                ?topic,
                ?group,
                "a registered topic lacks its group's queues: written again"
            );
            missing.insert(topic.clone());
        }
    }
    Ok(missing)
}

/// The KiB permits of [`INFLATED_BUDGET_BYTES`] an inflated body of
/// `bytes` takes: at least one, at most all of them.
fn inflated_weight(bytes: usize) -> u32 {
    let all = INFLATED_BUDGET_BYTES >> 10;
    bytes.div_ceil(1024).clamp(1, all) as u32
}

/// The TTL of a new lease for a registering broker: its own
/// `heartbeatTimeoutMillis` when it sends one (brokers with
/// `enableSlaveActingMaster` do, as Apache honors it), else
/// `--namesrv-broker-ttl-s`; within the range a lease takes.
fn lease_ttl_s(ns: &NameServer, request: &RemotingCommand) -> Result<u64, Failure> {
    let asked_ms: Option<u64> = request.optional_parsed("heartbeatTimeoutMillis")?;
    Ok(match asked_ms {
        Some(ms) if ms > 0 => ms.div_ceil(1000).clamp(MIN_LEASE_TTL_S, MAX_LEASE_TTL_S),
        _ => ns.broker_ttl_s(),
    })
}

/// How writing a registration ended.
enum Written {
    /// This node's write is the registration.
    Done,
    /// Another registration of the broker was written first (the same one
    /// through another node, or another): nothing was written.
    LostRace,
}

/// What a registration writes beside the broker's record.
struct Registration<'a> {
    /// The broker's topics (a master's become its group's queues).
    topics: &'a TopicConfigSerializeWrapper,
    /// Which of a master's topics have their queues written.
    queues: Queues,
    /// The record's `mod_revision` as this node read it (0: none).
    observed: u64,
    /// The group key's `mod_revision` as this node read it (0: none).
    group_observed: u64,
    /// The keys of the group's other ids at the broker's address, removed.
    moved: &'a [String],
}

/// Which of a master's topics a registration writes the queues of.
enum Queues {
    /// Every topic's: a first registration, a new data version, or a new
    /// group lease (the queues live by it).
    All,
    /// Only those of topics that lack them (the data version and the lease
    /// are those in the store).
    Missing(BTreeSet<String>),
}

/// The leases a registration writes under, as read and renewed; `None`
/// for one to grant.
#[derive(Clone, Copy, Debug)]
struct Leases {
    /// The broker's own.
    member: Option<u64>,
    /// Its group's, which the group's queues live by.
    group: Option<u64>,
}

/// Writes a registration (and a master's queues) under the `leases` given,
/// granting those that are not. False if another registration of the
/// broker or its group was written since they were read, or a lease
/// ended meanwhile: nothing was written then, and the leases granted are
/// given back.
async fn write_registration(
    ns: &NameServer,
    mut record: BrokerRecord,
    registration: &Registration<'_>,
    leases: Leases,
    ttl_s: u64,
) -> Result<bool, Failure> {
    let topics = registration.topics;
    let mut granted = Vec::new();
    let chosen = match lease_or_grant(ns, leases.member, ttl_s, &mut granted).await {
        Ok(member) => lease_or_grant(ns, leases.group, ttl_s, &mut granted)
            .await
            .map(|group| (member, group)),
        Err(error) => Err(error),
    };
    let (member, group) = match chosen {
        Ok(chosen) => chosen,
        Err(error) => {
            give_back(ns, &granted).await;
            return Err(error.into());
        }
    };
    record.lease = member;
    // Under a new group lease every queue is written: the old lease's went
    // with it, or will.
    let new_group = leases.group.is_none();
    let queues = if new_group {
        &Queues::All
    } else {
        &registration.queues
    };
    let written = write_whole(ns, &record, registration, queues, group, new_group).await;
    match written {
        Ok(Written::Done) => {
            info!(broker = ?record.broker_addr, group = ?record.broker_name, lease = member, group_lease = group, topics = topics.topic_config_table.len(), "registered");
            Ok(true)
        }
        Ok(Written::LostRace) | Err(WriteError::LeaseNotFound { .. }) => {
            // Read again and decide again: another registration came first,
            // or a lease read ended before the write.
            give_back(ns, &granted).await;
            Ok(false)
        }
        Err(error) => {
            // A lease granted for a registration that failed would
            // otherwise live its whole TTL, counting against
            // --max-leases. Should the write still commit (a timeout),
            // the revoke takes it back with its keys: the broker was
            // answered an error, and registers again.
            give_back(ns, &granted).await;
            Err(Failure::system(format!(
                "registering broker {} of group {}: {}",
                record.broker_addr,
                record.broker_name,
                error.remark()
            )))
        }
    }
}

/// `lease`, or a new one of `ttl_s` seconds, noted in `granted`.
async fn lease_or_grant(
    ns: &NameServer,
    lease: Option<u64>,
    ttl_s: u64,
    granted: &mut Vec<u64>,
) -> Result<u64, WriteError> {
    match lease {
        Some(id) => Ok(id),
        None => {
            let id = ns.writer.grant(ttl_s).await?;
            granted.push(id);
            Ok(id)
        }
    }
}

/// Revokes the leases a registration granted and did not use.
async fn give_back(ns: &NameServer, granted: &[u64]) {
    for id in granted {
        if let Err(revoke) = ns.writer.revoke(*id).await {
            warn!(lease = id, %revoke, "could not revoke the lease of a registration not written");
        }
    }
}

/// Writes `record` and, for a master, a QueueData per topic `queues`
/// names under the group's lease `group` (and the group's key when
/// `new_group`), in one transaction: readers see the whole registration or
/// none of it.
async fn write_whole(
    ns: &NameServer,
    record: &BrokerRecord,
    registration: &Registration<'_>,
    queues: &Queues,
    group: u64,
    new_group: bool,
) -> Result<Written, WriteError> {
    let key = keys::broker(&record.broker_name, record.broker_id);
    let group_key = keys::group(&record.broker_name);
    let mut ops = Vec::new();
    if record.broker_id == 0 {
        for (topic, config) in &registration.topics.topic_config_table {
            if let Queues::Missing(missing) = queues {
                if !missing.contains(topic) {
                    continue;
                }
            }
            let queues = QueueData {
                broker_name: record.broker_name.clone(),
                read_queue_nums: config.read_queue_nums,
                write_queue_nums: config.write_queue_nums,
                perm: config.perm,
                topic_sys_flag: config.topic_sys_flag,
            };
            ops.push(Op::Put {
                key: keys::topic_queues(topic, &record.broker_name),
                value: json!(queues),
                lease: Some(group),
            });
        }
    }
    // The same registration sent to several nodes is written once; any
    // change of the record (its version, lease, cluster, HA address, zone),
    // of the group's lease or of the record it replaces makes it another
    // write.
    let written = serde_json::to_string(record).expect("a record is plain data");
    let observed = registration.observed.to_string();
    let group_lease = group.to_string();
    let identity = [
        record.broker_addr.as_str(),
        key.as_str(),
        written.as_str(),
        observed.as_str(),
        group_lease.as_str(),
    ];
    let mut guards = vec![Guard::ModRevision(key.clone(), registration.observed)];
    if new_group {
        // Two members registering at once both find the group without a
        // lease: the first one's stands, the other reads it and goes on.
        guards.push(Guard::ModRevision(
            group_key.clone(),
            registration.group_observed,
        ));
        ops.push(Op::Put {
            key: group_key,
            value: json!(keys::GroupRecord { lease: group }),
            lease: Some(group),
        });
    }
    ops.push(Op::Put {
        key: key.clone(),
        value: json!(record),
        lease: Some(record.lease),
    });
    ops.extend(registration.moved.iter().cloned().map(Op::Delete));
    let answer = ns
        .writer
        .txn(&guards, &ops, idempotency_key(&identity))
        .await?;
    Ok(if answer.succeeded {
        Written::Done
    } else {
        Written::LostRace
    })
}

/// Apache's answer to a registration: the group master's addresses for a
/// slave, and the ordered topics' configs. For a slave without a
/// registered master the two fields are left out, as Apache leaves them
/// null: a Java slave takes an empty address as its master's and fails to
/// connect to it, where null keeps the master it had.
fn answer_registration(ns: &NameServer, request: &RemotingCommand, identity: &Identity) -> Handled {
    let mut answer = answer_with_order_topics(ns, request, identity)?;
    if identity.broker_id != 0 {
        if let (Some((master, _)), _) = stored(ns, &keys::broker(&identity.broker_name, 0))? {
            answer
                .ext_fields
                .insert("masterAddr".into(), master.broker_addr);
            answer
                .ext_fields
                .insert("haServerAddr".into(), master.ha_server_addr);
        }
    }
    Ok(answer)
}

/// A registration's answer with the ordered topics' configs, which Apache
/// gives every registration it answers. A master is told both addresses
/// empty, as rocketmq-rust's name server tells it: a Java master reads
/// neither, and rocketmq-rust refuses an answer whose header has no
/// fields at all (Apache's, both null, is an empty object, which this
/// codec does not write).
fn answer_with_order_topics(
    ns: &NameServer,
    request: &RemotingCommand,
    identity: &Identity,
) -> Handled {
    let mut answer = request.answer(0, None);
    if identity.broker_id == 0 {
        for field in ["masterAddr", "haServerAddr"] {
            answer.ext_fields.insert(field.into(), String::new());
        }
    }
    let order = view::kv_table(&ns.state.store, ORDER_TOPIC_CONFIG)?;
    if !order.is_empty() {
        answer.body = json_body(&schemas::remoting::KvTable { table: order });
    }
    Ok(answer)
}

/// UNREGISTER_BROKER: revokes the lease of the group's registration at
/// the broker's address (whatever id it holds, as Apache removes by
/// address), which removes it; and, when no other member of the group is
/// left, the group's lease, which removes the group's queues in one change,
/// as Apache drops a group's queues with its last member.
pub async fn unregister(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let identity = Identity::of(request)?;
    let members = view::group(&ns.state.store, &identity.broker_name)?;
    let (leaving, staying): (Vec<BrokerRecord>, Vec<BrokerRecord>) = members
        .into_iter()
        .map(|(_, _, record)| record)
        .partition(|record| record.broker_addr == identity.broker_addr);
    for record in &leaving {
        ns.writer.revoke(record.lease).await?;
        info!(broker = ?record.broker_addr, group = ?record.broker_name, id = record.broker_id, "unregistered");
    }
    if staying.is_empty() {
        if let (Some(group), _) = view::group_lease(&ns.state.store, &identity.broker_name)? {
            ns.writer.revoke(group).await?;
            info!(group = ?identity.broker_name, "the group's last member left: its queues go");
        }
    }
    Ok(request.answer(0, None))
}

/// The registrations whose address is `broker_addr` (in group
/// `broker_name` when given).
fn records_at(
    ns: &NameServer,
    broker_name: Option<&str>,
    broker_addr: &str,
) -> Result<Vec<BrokerRecord>, Failure> {
    let prefix = match broker_name {
        Some(name) => keys::broker_group(name),
        None => keys::BROKERS.to_string(),
    };
    let (entries, _) = view::scan(&ns.state.store, &prefix)?;
    Ok(view::parse_brokers(entries)
        .into_iter()
        .filter(|record| record.broker_addr == broker_addr)
        .collect())
}

/// Renews the leases of `records` and of their groups.
async fn keep_alive(ns: &NameServer, records: &[BrokerRecord]) -> Result<(), Failure> {
    let groups: BTreeSet<&str> = records
        .iter()
        .map(|record| record.broker_name.as_str())
        .collect();
    for record in records {
        ns.writer.keep_alive(record.lease).await?;
    }
    for group in groups {
        // A group without a lease (or whose lease ended) gets one at its
        // members' next registration.
        if let (Some(lease), _) = view::group_lease(&ns.state.store, group)? {
            ns.writer.keep_alive(lease).await?;
        }
    }
    Ok(())
}

/// BROKER_HEARTBEAT: renews the broker's lease and its group's.
pub async fn heartbeat(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let broker_addr = required_name(request, "brokerAddr")?;
    required_name(request, "clusterName")?;
    let records = records_at(ns, request.field("brokerName"), broker_addr)?;
    keep_alive(ns, &records).await?;
    Ok(request.answer(0, None))
}

/// QUERY_DATA_VERSION: whether the broker's data version differs from the
/// stored one (`changed`), the stored one as the body; renews the leases.
pub async fn query_data_version(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let broker_addr = required_name(request, "brokerAddr")?;
    let broker_name = required_name(request, "brokerName")?;
    required_name(request, "clusterName")?;
    request.required_parsed::<i64>("brokerId")?;
    let asked: DataVersion = serde_json::from_slice(&request.body).map_err(|error| {
        Failure::system(format!(
            "the body of QUERY_DATA_VERSION is not a DataVersion: {error}"
        ))
    })?;
    let records = records_at(ns, Some(broker_name), broker_addr)?;
    let stored_version = records.first().map(|record| record.data_version);
    keep_alive(ns, &records).await?;
    let mut answer = request.answer(0, None);
    let changed = stored_version != Some(asked);
    answer
        .ext_fields
        .insert("changed".into(), changed.to_string());
    if let Some(version) = stored_version {
        answer.body = json_body(&version);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inflated_body_weighs_its_kib_within_the_budget() {
        let all = (INFLATED_BUDGET_BYTES >> 10) as u32;
        let cases = [
            (0, 1),
            (1, 1),
            (1024, 1),
            (1025, 2),
            (INFLATED_BUDGET_BYTES, all),
            (64 << 20, all),
        ];
        for (bytes, weight) in cases {
            assert_eq!(inflated_weight(bytes), weight, "{bytes} bytes");
        }
    }
}
