//! KV config, topic lists, topic registration and deletion, the name server's
//! own config, and an unknown request code.

use anyhow::anyhow;
use anyhow::bail;
use rocketmq_protocol::protocol::body::kv_table::KVTable;
use rocketmq_protocol::protocol::body::topic::topic_list::TopicList;
use rocketmq_protocol::protocol::header::namesrv::config_header::GetNamesrvConfigRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::kv_config_header::DeleteKVConfigRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::kv_config_header::GetKVConfigRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::kv_config_header::GetKVConfigResponseHeader;
use rocketmq_protocol::protocol::header::namesrv::kv_config_header::GetKVListByNamespaceRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::kv_config_header::PutKVConfigRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::DeleteTopicFromNamesrvRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::GetTopicsByClusterRequestHeader;
use rocketmq_protocol::protocol::header::namesrv::topic_operation_header::RegisterTopicRequestHeader;
use rocketmq_protocol::protocol::route::route_data_view::QueueData;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_protocol::protocol::RemotingCommand;
use rocketmq_protocol::protocol::RemotingDeserializable;
use rocketmq_protocol::protocol::RemotingSerializable;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::RequestCode;

use super::body;
use super::brokers::empty;
use super::expect_code;
use super::Checker;
use crate::route;
use crate::wire::request;

/// The key and value the KV-config checks write.
const KEY: &str = "e2e.key";
const VALUE: &str = "e2e-value-1";

/// PUT, GET, GET_KVLIST_BY_NAMESPACE, DELETE, then GET of the deleted key.
pub async fn kv_config(checker: &mut Checker) {
    let namespace = checker.names.namespace.clone();
    let put = PutKVConfigRequestHeader {
        namespace: namespace.as_str().into(),
        key: KEY.into(),
        value: VALUE.into(),
    };
    let put = request(RequestCode::PutKvConfig, put, SerializeType::JSON);
    checker
        .check(
            RequestCode::PutKvConfig,
            100,
            "put namespace/key=value",
            put,
            |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
        )
        .await;
    let get = || {
        let header = GetKVConfigRequestHeader {
            namespace: namespace.as_str().into(),
            key: KEY.into(),
        };
        request(RequestCode::GetKvConfig, header, SerializeType::JSON)
    };
    checker
        .check(
            RequestCode::GetKvConfig,
            101,
            "value header is the value put",
            get(),
            |answer| {
                expect_code(answer, 0)?;
                let header = answer
                    .decode_command_custom_header::<GetKVConfigResponseHeader>()
                    .map_err(|error| anyhow!("GetKVConfigResponseHeader: {error}"))?;
                match header.value.as_ref().map(|value| value.as_str()) {
                    Some(VALUE) => Ok(format!("value {VALUE}")),
                    other => bail!("value {other:?}, expected {VALUE}"),
                }
            },
        )
        .await;
    let list = GetKVListByNamespaceRequestHeader {
        namespace: namespace.as_str().into(),
    };
    let list = request(RequestCode::GetKvlistByNamespace, list, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetKvlistByNamespace,
            219,
            "KVTable holds key=value",
            list,
            |answer| {
                expect_code(answer, 0)?;
                let table =
                    KVTable::decode(body(answer)?).map_err(|error| anyhow!("KVTable: {error}"))?;
                match table.table.get(KEY).map(|value| value.as_str()) {
                    Some(VALUE) => Ok(format!("{} entries", table.table.len())),
                    other => bail!("table[{KEY}] is {other:?}"),
                }
            },
        )
        .await;
    let delete = DeleteKVConfigRequestHeader {
        namespace: namespace.as_str().into(),
        key: KEY.into(),
    };
    let delete = request(RequestCode::DeleteKvConfig, delete, SerializeType::JSON);
    checker
        .check(
            RequestCode::DeleteKvConfig,
            102,
            "delete the key",
            delete,
            |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
        )
        .await;
    checker
        .check(
            RequestCode::GetKvConfig,
            101,
            "deleted key: QUERY_NOT_FOUND (22)",
            get(),
            |answer| expect_code(answer, 22).map(|()| "code 22".to_string()),
        )
        .await;
}

/// Decodes a TopicList body and says whether `topic` is in it.
fn topic_list(answer: &RemotingCommand, topic: &str) -> anyhow::Result<(usize, bool)> {
    expect_code(answer, 0)?;
    let list = TopicList::decode(body(answer)?).map_err(|error| anyhow!("TopicList: {error}"))?;
    Ok((
        list.topic_list.len(),
        list.topic_list.iter().any(|name| name.as_str() == topic),
    ))
}

/// The six topic-list requests.
pub async fn topic_lists(checker: &mut Checker) {
    let (topic, cluster, broker) = (
        checker.names.topic.clone(),
        checker.names.cluster.clone(),
        checker.names.broker.clone(),
    );
    let all = request(
        RequestCode::GetAllTopicListFromNameserver,
        empty(),
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetAllTopicListFromNameserver,
            206,
            "TopicList holds the topic",
            all,
            |answer| match topic_list(answer, &topic)? {
                (count, true) => Ok(format!("{count} topics")),
                (count, false) => bail!("{topic} not among {count} topics"),
            },
        )
        .await;
    let by_cluster = GetTopicsByClusterRequestHeader {
        cluster: cluster.as_str().into(),
    };
    let by_cluster = request(
        RequestCode::GetTopicsByCluster,
        by_cluster,
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetTopicsByCluster,
            224,
            "TopicList of the cluster holds the topic",
            by_cluster,
            |answer| match topic_list(answer, &topic)? {
                (count, true) => Ok(format!("{count} topics")),
                (count, false) => bail!("{topic} not among {count} topics"),
            },
        )
        .await;
    let system = request(
        RequestCode::GetSystemTopicListFromNs,
        empty(),
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::GetSystemTopicListFromNs,
            304,
            "TopicList: cluster and broker names",
            system,
            |answer| {
                let (count, has_cluster) = topic_list(answer, &cluster)?;
                let (_, has_broker) = topic_list(answer, &broker)?;
                if !has_cluster || !has_broker {
                    bail!(
                        "cluster listed: {has_cluster}, broker listed: {has_broker} (of {count})"
                    );
                }
                Ok(format!("{count} names"))
            },
        )
        .await;
    for (code, number, what) in [
        (
            RequestCode::GetUnitTopicList,
            311,
            "TopicList without the non-unit topic",
        ),
        (
            RequestCode::GetHasUnitSubTopicList,
            312,
            "TopicList without the non-unit topic",
        ),
        (
            RequestCode::GetHasUnitSubUnunitTopicList,
            313,
            "TopicList without the non-unit topic",
        ),
    ] {
        let list = request(code, empty(), SerializeType::JSON);
        checker
            .check(code, number, what, list, |answer| {
                match topic_list(answer, &topic)? {
                    (count, false) => Ok(format!("{count} topics")),
                    (_, true) => bail!("{topic} listed although no queue of it has the unit flag"),
                }
            })
            .await;
    }
}

/// REGISTER_TOPIC_IN_NAMESRV for a second topic on the made-up broker, its
/// route, DELETE_TOPIC_IN_NAMESRV, and its route gone.
pub async fn topic_changes(checker: &mut Checker) {
    let (extra, broker) = (
        checker.names.extra_topic.clone(),
        checker.names.broker.clone(),
    );
    let route_data = TopicRouteData {
        queue_datas: vec![QueueData::new(broker.as_str().into(), 2, 2, 6, 0)],
        ..Default::default()
    };
    let register = request(
        RequestCode::RegisterTopicInNamesrv,
        RegisterTopicRequestHeader::new(extra.as_str()),
        SerializeType::JSON,
    )
    .set_body(route_data.encode().unwrap_or_default());
    checker
        .check(
            RequestCode::RegisterTopicInNamesrv,
            217,
            "register a topic on a live broker",
            register,
            |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
        )
        .await;
    let lookup = route::route_request(&extra, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "the registered topic has a route",
            lookup,
            |answer| {
                let summary = route::summarize(answer)?;
                if !summary.contains(&format!("{broker}:2")) {
                    bail!("route {summary}, expected {broker} with 2 write queues");
                }
                Ok(summary)
            },
        )
        .await;
    let delete = DeleteTopicFromNamesrvRequestHeader::new(
        extra.as_str(),
        Some(checker.names.cluster.as_str()),
    );
    let delete = request(
        RequestCode::DeleteTopicInNamesrv,
        delete,
        SerializeType::JSON,
    );
    checker
        .check(
            RequestCode::DeleteTopicInNamesrv,
            216,
            "delete it in the cluster",
            delete,
            |answer| expect_code(answer, 0).map(|()| "code 0".to_string()),
        )
        .await;
    let lookup = route::route_request(&extra, SerializeType::JSON);
    checker
        .check(
            RequestCode::GetRouteinfoByTopic,
            105,
            "deleted topic: TOPIC_NOT_EXIST (17)",
            lookup,
            |answer| expect_code(answer, 17).map(|()| "code 17".to_string()),
        )
        .await;
}

/// GET_NAMESRV_CONFIG (a properties text) and UPDATE_NAMESRV_CONFIG of a key
/// every name server has, to the value it already holds.
pub async fn namesrv_config(checker: &mut Checker) {
    let get = || {
        request(
            RequestCode::GetNamesrvConfig,
            GetNamesrvConfigRequestHeader::default(),
            SerializeType::JSON,
        )
    };
    let answer = checker
        .check(
            RequestCode::GetNamesrvConfig,
            319,
            "body is key=value lines",
            get(),
            |answer| {
                expect_code(answer, 0)?;
                let text = String::from_utf8_lossy(body(answer)?).into_owned();
                let lines = text.lines().filter(|line| line.contains('=')).count();
                if lines == 0 {
                    bail!("no key=value line in {text:?}");
                }
                Ok(format!("{lines} properties"))
            },
        )
        .await;
    // Set orderMessageEnable to the value the server reports (false if absent).
    let current = answer
        .and_then(|answer| {
            answer
                .body()
                .map(|body| String::from_utf8_lossy(body).into_owned())
        })
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("orderMessageEnable=")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "false".to_string());
    let update = request(
        RequestCode::UpdateNamesrvConfig,
        empty(),
        SerializeType::JSON,
    )
    .set_body(format!("orderMessageEnable={current}\n").into_bytes());
    checker
        .check(
            RequestCode::UpdateNamesrvConfig,
            318,
            "orderMessageEnable set to its value",
            update,
            |answer| expect_code(answer, 0).map(|()| format!("orderMessageEnable={current}")),
        )
        .await;
}

/// A code no name server knows: REQUEST_CODE_NOT_SUPPORTED (3).
pub async fn unknown_code(checker: &mut Checker) {
    let unknown = RemotingCommand::create_request_command_with_defaults(
        9_999,
        empty(),
        rocketmq_model::version::CURRENT_VERSION as i32,
        SerializeType::JSON,
    );
    checker
        .check_number(
            9_999,
            "unknown code: REQUEST_CODE_NOT_SUPPORTED (3)",
            unknown,
            |answer| expect_code(answer, 3).map(|()| "code 3".to_string()),
        )
        .await;
}
