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
        if let Some((live, _)) = &current {
            // Apache ignores a registration of a live broker id from another
            // address whose state version is older: a master that came back
            // after its group elected another, say.
            let (old, new) = (
                live.data_version.state_version,
                wanted.data_version.state_version,
            );
            if live.broker_addr != identity.broker_addr && old > new {
                warn!(group = %identity.broker_name, id = identity.broker_id, live = %live.broker_addr, live_state_version = old, broker = %identity.broker_addr, state_version = new, "registration older than the live one at another address: ignored");
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
        // Apache. A master's queues stay with its lease until it ends.
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
        let mut lease = current.as_ref().map(|(record, _)| record.lease);
        if let Some(id) = lease {
            if ns.writer.keep_alive(id).await? {
                if unchanged {
                    debug!(broker = %identity.broker_addr, lease = id, "registration unchanged: lease renewed");
                    return answer_registration(ns, request, &identity);
                }
            } else {
                lease = None;
            }
        }
        let ttl_s = lease_ttl_s(ns, request)?;
        let registration = Registration {
            topics: &body.topic_config_serialize_wrapper,
            queues: if same_version && lease.is_some() {
                Queues::Missing(missing)
            } else {
                Queues::All
            },
            observed,
            moved: &moved,
        };
        if write_registration(ns, wanted.clone(), &registration, lease, ttl_s).await? {
            return answer_registration(ns, request, &identity);
        }
        // Another registration of this broker was written between the read
        // and the write: the same one through another node, or a different
        // one (a topic's update beside the periodic registration). Read it
        // and decide again, as Apache's registrations, one after another
        // under its lock, would.
        debug!(broker = %identity.broker_addr, attempt, "another registration of this broker was written first: reading it again");
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
                warn!(broker = %identity.broker_addr, group = %identity.broker_name, topic = %topic.escape_debug(), %error, "a registered topic's name cannot be stored: left out of the registration");
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
        debug!(%broker, inflated_bytes = plain.len(), "a large registration waits for others to be written");
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

/// The topics of a master's registration that lack their group's queues.
/// Apache adds a topic whose queues lack the group at any registration,
/// whatever its data version, so a topic deleted on the name server alone
/// comes back at the broker's next registration; here too.
fn missing_queues(
    ns: &NameServer,
    group: &str,
    topics: &TopicConfigSerializeWrapper,
) -> Result<BTreeSet<String>, Failure> {
    let mut missing = BTreeSet::new();
    for topic in topics.topic_config_table.keys() {
        if ns
            .state
            .store
            .get(&keys::topic_queues(topic, group))?
            .is_none()
        {
            debug!(%topic, %group, "a registered topic lost its queues: written again");
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
    /// The keys of the group's other ids at the broker's address, removed.
    moved: &'a [String],
}

/// Which of a master's topics a registration writes the queues of.
enum Queues {
    /// Every topic's: a first registration, a new data version, or a new
    /// lease (the queues live by the lease).
    All,
    /// Only those of topics that lack them (the data version and the lease
    /// are those in the store).
    Missing(BTreeSet<String>),
}

/// Writes a registration (and a master's queues) under `lease`, or a new
/// lease if none is given or it vanishes meanwhile. False if another
/// registration of the broker was written since `registration.observed`:
/// nothing was written then.
async fn write_registration(
    ns: &NameServer,
    mut record: BrokerRecord,
    registration: &Registration<'_>,
    lease: Option<u64>,
    ttl_s: u64,
) -> Result<bool, Failure> {
    let topics = registration.topics;
    let (mut id, mut granted) = match lease {
        Some(id) => (id, false),
        None => (ns.writer.grant(ttl_s).await?, true),
    };
    let mut retried = false;
    loop {
        record.lease = id;
        // Under a new lease every queue is written: the old lease's went
        // with it, or will.
        let queues = if granted {
            &Queues::All
        } else {
            &registration.queues
        };
        match write_whole(ns, &record, registration, queues).await {
            Ok(Written::Done) => {
                info!(broker = %record.broker_addr, group = %record.broker_name, lease = id, topics = topics.topic_config_table.len(), "registered");
                return Ok(true);
            }
            Ok(Written::LostRace) => {
                if granted {
                    ns.writer.revoke(id).await?;
                }
                return Ok(false);
            }
            Err(WriteError::LeaseNotFound { .. }) if !retried => {
                // The lease ended between the read and the write.
                retried = true;
                id = ns.writer.grant(ttl_s).await?;
                granted = true;
            }
            Err(error) => {
                // A lease granted for a registration that failed would
                // otherwise live its whole TTL, counting against
                // --max-leases. Should the write still commit (a timeout),
                // the revoke takes it back with its lease: the broker was
                // answered an error, and registers again.
                if granted {
                    if let Err(revoke) = ns.writer.revoke(id).await {
                        warn!(lease = id, %revoke, "could not revoke the lease of a failed registration");
                    }
                }
                return Err(Failure::system(format!(
                    "registering broker {} of group {}: {error}",
                    record.broker_addr, record.broker_name
                )));
            }
        }
    }
}

/// Writes `record` and, for a master, a QueueData per topic `queues`
/// names, in one transaction: readers see the whole registration or none
/// of it.
async fn write_whole(
    ns: &NameServer,
    record: &BrokerRecord,
    registration: &Registration<'_>,
    queues: &Queues,
) -> Result<Written, WriteError> {
    let key = keys::broker(&record.broker_name, record.broker_id);
    let mut queue_ops = Vec::new();
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
            queue_ops.push(Op::Put {
                key: keys::topic_queues(topic, &record.broker_name),
                value: json!(queues),
                lease: Some(record.lease),
            });
        }
    }
    // The same registration sent to several nodes is written once; any
    // change of the record (its version, lease, cluster, HA address, zone)
    // or of the record it replaces makes it another write.
    let written = serde_json::to_string(record).expect("a record is plain data");
    let observed = registration.observed.to_string();
    let identity = [
        record.broker_addr.as_str(),
        key.as_str(),
        written.as_str(),
        observed.as_str(),
    ];
    let put_record = |record: &BrokerRecord| Op::Put {
        key: key.clone(),
        value: json!(record),
        lease: Some(record.lease),
    };
    let first_guard = [Guard::ModRevision(key.clone(), registration.observed)];
    let mut ops = queue_ops;
    ops.push(put_record(record));
    ops.extend(registration.moved.iter().cloned().map(Op::Delete));
    let answer = ns
        .writer
        .txn(&first_guard, &ops, idempotency_key(&identity))
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
/// address), which removes it and, for a master, its group's queues in
/// one change.
pub async fn unregister(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let identity = Identity::of(request)?;
    for record in records_at(ns, Some(&identity.broker_name), &identity.broker_addr)? {
        ns.writer.revoke(record.lease).await?;
        info!(broker = %record.broker_addr, group = %record.broker_name, id = record.broker_id, "unregistered");
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

/// Renews the leases of `records`.
async fn keep_alive(ns: &NameServer, records: &[BrokerRecord]) -> Result<(), Failure> {
    for record in records {
        ns.writer.keep_alive(record.lease).await?;
    }
    Ok(())
}

/// BROKER_HEARTBEAT: renews the broker's lease.
pub async fn heartbeat(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let broker_addr = required_name(request, "brokerAddr")?;
    required_name(request, "clusterName")?;
    let records = records_at(ns, request.field("brokerName"), broker_addr)?;
    keep_alive(ns, &records).await?;
    Ok(request.answer(0, None))
}

/// QUERY_DATA_VERSION: whether the broker's data version differs from the
/// stored one (`changed`), the stored one as the body; renews the lease.
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
