//! Broker requests: registration (JSON and compressed bodies), data version,
//! heartbeat, routes in both header encodings, cluster info, member group,
//! write permission and unregistration.

use std::collections::HashMap;

use anyhow::anyhow;
use anyhow::bail;
use cheetah_string::CheetahString;
use rocketmq_model::topic::TopicConfig;
use rocketmq_model::utils::crc32_utils;
use rocketmq_protocol::protocol::body::broker_body::broker_member_group::GetBrokerMemberGroupResponseBody;
use rocketmq_protocol::protocol::body::broker_body::cluster_info::ClusterInfo;
use rocketmq_protocol::protocol::body::broker_body::register_broker_body::RegisterBrokerBody;
use rocketmq_protocol::protocol::body::topic_info_wrapper::topic_config_wrapper::TopicConfigAndMappingSerializeWrapper;
use rocketmq_protocol::protocol::body::topic_info_wrapper::topic_config_wrapper::TopicConfigSerializeWrapper;
use rocketmq_protocol::protocol::header::namesrv::broker_request::BrokerHeartbeatRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::broker_request::GetBrokerMemberGroupRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::broker_request::UnRegisterBrokerRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::perm_broker_header::AddWritePermOfBrokerRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::perm_broker_header::AddWritePermOfBrokerResponseHeader;
use rocketmq_protocol::protocol::header::namesrv::perm_broker_header::WipeWritePermOfBrokerRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::perm_broker_header::WipeWritePermOfBrokerResponseHeader;
use rocketmq_protocol::protocol::header::namesrv::query_data_version_header::QueryDataVersionRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::query_data_version_header::QueryDataVersionResponseHeader;
use rocketmq_protocol::protocol::header::namesrv::register_broker_header::RegisterBrokerRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::register_broker_header::RegisterBrokerResponseHeader;
use rocketmq_protocol::protocol::DataVersion;
use rocketmq_protocol::protocol::RemotingCommand;
use rocketmq_protocol::protocol::RemotingDeserializable;
use rocketmq_protocol::protocol::RemotingSerializable;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::RequestCode;
use tokio::time::Instant;

use super::body;
use super::expect_code;
use super::Checker;
use crate::route;
use crate::wire::request;

/// Queues the made-up broker serves its topic with.
const QUEUES: u32 = 4;
/// Read and write permission (RocketMQ's PermName: 4 | 2).
const PERM_READ_WRITE: u32 = 6;
/// RocketMQ's PermName write bit.
const PERM_WRITE: u32 = 2;
/// The data version the master registers with.
const STATE_VERSION: i64 = 7;

/// The master's data version.
fn data_version() -> DataVersion {
    DataVersion::with_values(STATE_VERSION, 1_700_000_000_000, 3)
}

/// A REGISTER_BROKER request for broker id `broker_id` at `addr`, its body
/// compressed or JSON, with the CRC32 of the body in the header.
fn register_request(
    checker: &Checker,
    broker_id: u64,
    addr: &str,
    compressed: bool,
) -> RemotingCommand {
    let names = &checker.names;
    let topic = TopicConfig::with_perm(names.topic.as_str(), QUEUES, QUEUES, PERM_READ_WRITE);
    // A broker also registers a topic named after itself. RocketMQ's name
    // server reads a one-topic table from a broker id it does not know as a
    // single-topic update, and refuses it; two topics make a full registration.
    let own = TopicConfig::with_perm(names.broker.as_str(), 1, 1, PERM_READ_WRITE);
    let wrapper = TopicConfigAndMappingSerializeWrapper {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: HashMap::from([
                (CheetahString::from(names.topic.as_str()), topic),
                (CheetahString::from(names.broker.as_str()), own),
            ]),
            data_version: data_version(),
        },
        ..Default::default()
    };
    let body = RegisterBrokerBody::new(wrapper, Vec::new()).encode(compressed);
    let header = RegisterBrokerRequestHeader::new(
        names.broker.as_str().into(),
        addr.into(),
        names.cluster.as_str().into(),
        "127.0.0.1:20".into(),
        broker_id,
        Some(120_000),
        Some(false),
        compressed,
        crc32_utils::crc32(&body),
    );
    request(RequestCode::RegisterBroker, header, SerializeType::JSON).set_body(body)
}

/// REGISTER_BROKER (master, JSON body; slave, compressed body),
/// QUERY_DATA_VERSION and BROKER_HEARTBEAT.
pub async fn register(checker: &mut Checker) {
    let verify_register = |answer: &RemotingCommand| -> anyhow::Result<String> {
        expect_code(answer, 0)?;
        let header = answer
            .decode_command_custom_header::<RegisterBrokerResponseHeader>()
            .map_err(|error| anyhow!("RegisterBrokerResponseHeader: {error}"))?;
        Ok(format!(
            "haServerAddr {:?}, masterAddr {:?}",
            header.ha_server_addr, header.master_addr
        ))
    };
    let master = register_request(checker, 0, &checker.names.master_addr.clone(), false);
    checker
        .check(
            RequestCode::RegisterBroker,
            103,
            "master, JSON body, bodyCrc32",
            master,
            verify_register,
        )
        .await;
    let slave = register_request(checker, 1, &checker.names.slave_addr.clone(), true);
    checker.on_second = true;
    checker
        .check(
            RequestCode::RegisterBroker,
            103,
            "slave, compressed body, bodyCrc32, own connection",
            slave,
            verify_register,
        )
        .await;
    checker.on_second = false;

    for (version, expect_changed, what) in [
        (data_version(), false, "same data version: changed=false"),
        (
            DataVersion::with_values(STATE_VERSION + 1, 1_700_000_000_001, 4),
            true,
            "newer data version: changed=true",
        ),
    ] {
        let names = &checker.names;
        let header = QueryDataVersionRequestHeader {
            broker_name: names.broker.as_str().into(),
            broker_addr: names.master_addr.as_str().into(),
            cluster_name: names.cluster.as_str().into(),
            broker_id: 0,
        };
        let body = version.encode().unwrap_or_default();
        let query =
            request(RequestCode::QueryDataVersion, header, SerializeType::JSON).set_body(body);
        checker
            .check(RequestCode::QueryDataVersion, 322, what, query, |answer| {
                expect_code(answer, 0)?;
                let header = answer
                    .decode_command_custom_header::<QueryDataVersionResponseHeader>()
                    .map_err(|error| anyhow!("QueryDataVersionResponseHeader: {error}"))?;
                if header.changed() != expect_changed {
                    bail!("changed={}, expected {expect_changed}", header.changed());
                }
                Ok(format!("changed={}", header.changed()))
            })
            .await;
    }

    let names = &checker.names;
    let header = BrokerHeartbeatRequestHeader {
        cluster_name: names.cluster.as_str().into(),
        broker_addr: names.master_addr.as_str().into(),
        broker_name: names.broker.as_str().into(),
        broker_id: Some(0),
        ..Default::default()
    };
    let heartbeat = request(RequestCode::BrokerHeartbeat, header, SerializeType::JSON);
    checker
        .check(
            RequestCode::BrokerHeartbeat,
            904,
            "heartbeat of a registered broker",
            heartbeat,
            |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
        )
        .await;
}

/// Checks that a route answer names the broker with its queues, `perm` and
/// master address.
fn verify_route(
    answer: &RemotingCommand,
    broker: &str,
    master: &str,
    perm: u32,
) -> anyhow::Result<String> {
    expect_code(answer, 0)?;
    let route = route::decode_route(answer)?;
    let queue = route
        .queue_datas
        .iter()
        .find(|queue| queue.broker_name().as_str() == broker)
        .ok_or_else(|| anyhow!("no queueData for {broker}"))?;
    if queue.read_queue_nums() != QUEUES
        || queue.write_queue_nums() != QUEUES
        || queue.perm() != perm
    {
        bail!(
            "queueData {}/{} perm {}, expected {QUEUES}/{QUEUES} perm {perm}",
            queue.read_queue_nums(),
            queue.write_queue_nums(),
            queue.perm()
        );
    }
    let broker_data = route
        .broker_datas
        .iter()
        .find(|data| data.broker_name().as_str() == broker)
        .ok_or_else(|| anyhow!("no brokerData for {broker}"))?;
    match broker_data.broker_addrs().get(&0) {
        Some(addr) if addr.as_str() == master => {}
        other => bail!("brokerAddrs[0] is {other:?}, expected {master}"),
    }
    Ok(format!(
        "{QUEUES} queues perm {perm}, master {master}, {} addrs",
        broker_data.broker_addrs().len()
    ))
}

/// GET_ROUTEINFO_BY_TOPIC in both header encodings, GET_BROKER_CLUSTER_INFO
/// and GET_BROKER_MEMBER_GROUP.
pub async fn routes(checker: &mut Checker) {
    let (broker, master, slave, cluster) = (
        checker.names.broker.clone(),
        checker.names.master_addr.clone(),
        checker.names.slave_addr.clone(),
        checker.names.cluster.clone(),
    );
    for (serialize, what) in [
        (
            SerializeType::JSON,
            "JSON header: route of the registered topic",
        ),
        (
            SerializeType::ROCKETMQ,
            "ROCKETMQ header: same route, same encoding",
        ),
    ] {
        let lookup = route::route_request(&checker.names.topic, serialize);
        checker
            .check(
                RequestCode::GetRouteinfoByTopic,
                105,
                what,
                lookup,
                |answer| {
                    if answer.serialize_type() != serialize {
                        bail!(
                            "answered in {:?} to a {serialize:?} request",
                            answer.serialize_type()
                        );
                    }
                    verify_route(answer, &broker, &master, PERM_READ_WRITE)
                },
            )
            .await;
    }
    let missing = route::route_request(
        &format!("{}_MISSING", checker.names.topic),
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "unknown topic: TOPIC_NOT_EXIST (17)",
            missing,
            |answer| expect_code(answer, 17).map(|()| "code 17".to_string()),
        )
        .await;

    let info = request(
        RequestCode::GetBrokerClusterInfo,
        empty(),
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetBrokerClusterInfo,
            106,
            "ClusterInfo names cluster and broker",
            info,
            |answer| {
                expect_code(answer, 0)?;
                let info = ClusterInfo::decode(body(answer)?)
                    .map_err(|error| anyhow!("ClusterInfo: {error}"))?;
                let in_cluster = info
                    .cluster_addr_table
                    .as_ref()
                    .and_then(|table| table.get(cluster.as_str()))
                    .is_some_and(|brokers| brokers.contains(broker.as_str()));
                if !in_cluster {
                    bail!("clusterAddrTable has no {cluster} -> {broker}");
                }
                let addrs = info
                    .broker_addr_table
                    .as_ref()
                    .and_then(|table| table.get(broker.as_str()))
                    .map(|data| data.broker_addrs().len())
                    .ok_or_else(|| anyhow!("brokerAddrTable has no {broker}"))?;
                Ok(format!("{cluster} -> {broker}, {addrs} addrs"))
            },
        )
        .await;

    let header = GetBrokerMemberGroupRequestHeader {
        cluster_name: cluster.as_str().into(),
        broker_name: broker.as_str().into(),
    };
    let group = request(
        RequestCode::GetBrokerMemberGroup,
        header,
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetBrokerMemberGroup,
            901,
            "master (id 0) and slave (id 1)",
            group,
            |answer| {
                expect_code(answer, 0)?;
                let group = GetBrokerMemberGroupResponseBody::decode(body(answer)?)
                    .map_err(|error| anyhow!("GetBrokerMemberGroupResponseBody: {error}"))?
                    .broker_member_group
                    .ok_or_else(|| anyhow!("no brokerMemberGroup"))?;
                let addrs = &group.broker_addrs;
                if addrs.get(&0).map(|a| a.as_str()) != Some(master.as_str())
                    || addrs.get(&1).map(|a| a.as_str()) != Some(slave.as_str())
                {
                    bail!("brokerAddrs {addrs:?}, expected 0={master} 1={slave}");
                }
                Ok(format!("{} members", addrs.len()))
            },
        )
        .await;
}

/// WIPE_WRITE_PERM_OF_BROKER then ADD_WRITE_PERM_OF_BROKER, each followed by
/// a route read that shows the permission.
pub async fn write_permission(checker: &mut Checker) {
    let (broker, master) = (
        checker.names.broker.clone(),
        checker.names.master_addr.clone(),
    );
    let wipe = request(
        RequestCode::WipeWritePermOfBroker,
        WipeWritePermOfBrokerRequestHeader {
            broker_name: broker.as_str().into(),
        },
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::WipeWritePermOfBroker,
            205,
            "wipeTopicCount >= 1",
            wipe,
            |answer| {
                expect_code(answer, 0)?;
                let header = answer
                    .decode_command_custom_header::<WipeWritePermOfBrokerResponseHeader>()
                    .map_err(|error| anyhow!("WipeWritePermOfBrokerResponseHeader: {error}"))?;
                if header.wipe_topic_count < 1 {
                    bail!("wipeTopicCount {}", header.wipe_topic_count);
                }
                Ok(format!("wipeTopicCount {}", header.wipe_topic_count))
            },
        )
        .await;
    let lookup = route::route_request(&checker.names.topic, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "after wipe: perm without write",
            lookup,
            |answer| verify_route(answer, &broker, &master, PERM_READ_WRITE & !PERM_WRITE),
        )
        .await;

    let add = request(
        RequestCode::AddWritePermOfBroker,
        AddWritePermOfBrokerRequestHeader {
            broker_name: broker.as_str().into(),
        },
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::AddWritePermOfBroker,
            327,
            "addTopicCount >= 1",
            add,
            |answer| {
                expect_code(answer, 0)?;
                let header = answer
                    .decode_command_custom_header::<AddWritePermOfBrokerResponseHeader>()
                    .map_err(|error| anyhow!("AddWritePermOfBrokerResponseHeader: {error}"))?;
                if header.add_topic_count < 1 {
                    bail!("addTopicCount {}", header.add_topic_count);
                }
                Ok(format!("addTopicCount {}", header.add_topic_count))
            },
        )
        .await;
    let lookup = route::route_request(&checker.names.topic, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "after add: perm read and write",
            lookup,
            |answer| verify_route(answer, &broker, &master, PERM_READ_WRITE),
        )
        .await;
}

/// UNREGISTER_BROKER for slave and master; then the topic's route must go
/// (polled for up to 5 s: a server may apply unregistrations in batches).
pub async fn unregister(checker: &mut Checker) {
    for (broker_id, addr, what) in [
        (1, checker.names.slave_addr.clone(), "slave"),
        (0, checker.names.master_addr.clone(), "master"),
    ] {
        let names = &checker.names;
        let header = UnRegisterBrokerRequestHeader {
            broker_name: names.broker.as_str().into(),
            broker_addr: addr.as_str().into(),
            cluster_name: names.cluster.as_str().into(),
            broker_id,
        };
        let unregister = request(RequestCode::UnregisterBroker, header, SerializeType::JSON);
        checker
            .check(
                RequestCode::UnregisterBroker,
                104,
                what,
                unregister,
                |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
            )
            .await;
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    let mut last;
    loop {
        let lookup = route::route_request(&checker.names.topic, SerializeType::JSON);
        last = checker
            .call(lookup)
            .await
            .map(|answer| (answer.code(), route::summarize(&answer)));
        if matches!(last, Ok((17, _))) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lookup = route::route_request(&checker.names.topic, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "after unregister: TOPIC_NOT_EXIST (17)",
            lookup,
            |answer| expect_code(answer, 17).map(|()| "code 17".to_string()),
        )
        .await;
    if let Ok((code, Ok(summary))) = last {
        if code != 17 {
            eprintln!("rocketmq-e2e: route 5 s after unregister: {summary}");
        }
    }
}

/// The header of requests that carry none.
pub fn empty() -> rocketmq_protocol::protocol::header::empty_header::EmptyHeader {
    rocketmq_protocol::protocol::header::empty_header::EmptyHeader {}
}
