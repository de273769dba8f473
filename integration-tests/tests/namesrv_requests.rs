//! One node answering RocketMQ's admin and list requests as Apache's name
//! server does: KV config, write permission, topics, its own config, topic
//! lists and broker member groups.

use std::time::Duration;

use integration_tests::remoting::{
    ask, captured_frame, command, connect, json_of, register_captured, registration, route_request,
    wait_route_code, BROKER_A,
};
use integration_tests::TestServer;
use schemas::remoting::{request_code as code, response_code, RemotingCommand, SerializeType};
use serde_json::{json, Value};

#[tokio::test]
async fn kv_config_entries_are_put_read_listed_and_deleted() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let entry = [
        ("namespace", "ORDER_TOPIC_CONFIG"),
        ("key", "Orders/eu"),
        ("value", "broker-a:4"),
    ];
    assert_eq!(ask(&mut client, code::PUT_KV_CONFIG, &entry).await.code, 0);
    let read = ask(&mut client, code::GET_KV_CONFIG, &entry[..2]).await;
    assert_eq!(
        (read.code, read.field("value")),
        (0, Some("broker-a:4")),
        "{read:?}"
    );
    let listed = ask(&mut client, code::GET_KVLIST_BY_NAMESPACE, &entry[..1]).await;
    assert_eq!(
        json_of(&listed),
        json!({"table": {"Orders/eu": "broker-a:4"}})
    );

    // The namespace comes back to a registering broker, as Apache sends it.
    let registered = client
        .call(registration("broker-a", 0, BROKER_A, 0, false))
        .await;
    assert_eq!(
        json_of(&registered),
        json!({"table": {"Orders/eu": "broker-a:4"}})
    );

    assert_eq!(
        ask(&mut client, code::DELETE_KV_CONFIG, &entry[..2])
            .await
            .code,
        0
    );
    let gone = ask(&mut client, code::GET_KV_CONFIG, &entry[..2]).await;
    assert_eq!(gone.code, response_code::QUERY_NOT_FOUND, "{gone:?}");
    let empty = ask(&mut client, code::GET_KVLIST_BY_NAMESPACE, &entry[..1]).await;
    assert_eq!(empty.code, response_code::QUERY_NOT_FOUND, "{empty:?}");
    let unnamed = ask(&mut client, code::PUT_KV_CONFIG, &[("value", "v")]).await;
    assert_eq!(unnamed.code, response_code::SYSTEM_ERROR);
    // A key the store cannot hold: the remark gives the store's code and
    // reason, not the HTTP request that carries a write inside the node.
    let long_key = "k".repeat(5_000);
    let refused = ask(
        &mut client,
        code::PUT_KV_CONFIG,
        &[("namespace", "ns"), ("key", &long_key), ("value", "v")],
    )
    .await;
    assert_eq!(refused.code, response_code::SYSTEM_ERROR, "{refused:?}");
    let remark = refused.remark.as_deref().unwrap_or_default();
    assert!(
        remark.starts_with("writing the store: invalid_key: ") && !remark.contains("/v1/"),
        "{remark}"
    );

    // A value written over HTTP as a number reads as its text.
    let (status, answer) =
        integration_tests::call(&server, "PUT", "/v1/kv/namesrv/kv/hx/num", Some(json!(123))).await;
    assert!(status == 200 || status == 201, "{status} {answer}");
    let number = ask(
        &mut client,
        code::GET_KV_CONFIG,
        &[("namespace", "hx"), ("key", "num")],
    )
    .await;
    assert_eq!(
        (number.code, number.field("value")),
        (0, Some("123")),
        "{number:?}"
    );
    let listed = ask(
        &mut client,
        code::GET_KVLIST_BY_NAMESPACE,
        &[("namespace", "hx")],
    )
    .await;
    assert_eq!(json_of(&listed), json!({"table": {"num": "123"}}));
}

/// An answer over the 16 MiB a client reads (many large values in one
/// namespace) is SYSTEM_ERROR with the request's opaque, as docs/namesrv.md
/// says, not a frame the client's decoder refuses; the connection goes on.
/// A client's field cannot write a line of its own into the node's log:
/// a name server's port takes no credentials, and its names are logged
/// escaped, newlines and escape bytes included.
#[tokio::test]
async fn fields_sent_to_the_name_server_cannot_forge_log_lines() {
    const FORGED: &str = "FORGED ERROR kv_server::api::auth: admin action";
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let namespace = format!("ns\n{FORGED}");
    let key = format!("k\r\n{FORGED}\u{1b}[2J");
    let entry = [
        ("namespace", namespace.as_str()),
        ("key", key.as_str()),
        ("value", "v"),
    ];
    assert_eq!(ask(&mut client, code::PUT_KV_CONFIG, &entry).await.code, 0);
    let delete = ask(&mut client, code::DELETE_KV_CONFIG, &entry[..2]).await;
    assert_eq!(delete.code, 0, "{delete:?}");
    let log = server.log_tail(100_000);
    assert!(
        log.contains("KV config put") && log.contains("KV config deleted"),
        "{log}"
    );
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "a forged line: {line:?}");
        assert!(!line.contains('\u{1b}'), "an escape byte: {line:?}");
    }
}

#[tokio::test]
async fn an_answer_over_the_frame_limit_is_a_system_error() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let value = "v".repeat(1_000_000);
    for n in 0..18 {
        let key = format!("m{n:02}");
        let entry = [
            ("namespace", "big"),
            ("key", key.as_str()),
            ("value", value.as_str()),
        ];
        let put = ask(&mut client, code::PUT_KV_CONFIG, &entry).await;
        assert_eq!(put.code, 0, "{key}: {:?}", put.remark);
    }
    let listed = ask(
        &mut client,
        code::GET_KVLIST_BY_NAMESPACE,
        &[("namespace", "big")],
    )
    .await;
    assert_eq!(
        listed.code,
        response_code::SYSTEM_ERROR,
        "{:?}",
        listed.remark
    );
    let remark = listed.remark.unwrap_or_default();
    assert!(remark.contains("does not fit a remoting frame"), "{remark}");
    let one = ask(
        &mut client,
        code::GET_KV_CONFIG,
        &[("namespace", "big"), ("key", "m00")],
    )
    .await;
    assert_eq!(one.code, 0, "the connection goes on: {:?}", one.remark);
}

#[tokio::test]
async fn write_permission_is_wiped_and_given_back() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    register_captured(&mut client).await;
    let perm = |answer: &RemotingCommand| json_of(answer)["queueDatas"][0]["perm"].clone();

    let wiped = ask(
        &mut client,
        code::WIPE_WRITE_PERM_OF_BROKER,
        &[("brokerName", "broker-a")],
    )
    .await;
    assert_eq!(
        (wiped.code, wiped.field("wipeTopicCount")),
        (0, Some("13")),
        "{wiped:?}"
    );
    assert_eq!(
        perm(&client.call(route_request("TBW102")).await),
        json!(7 & !2)
    );

    let added = ask(
        &mut client,
        code::ADD_WRITE_PERM_OF_BROKER,
        &[("brokerName", "broker-a")],
    )
    .await;
    assert_eq!(
        (added.code, added.field("addTopicCount")),
        (0, Some("13")),
        "{added:?}"
    );
    assert_eq!(perm(&client.call(route_request("TBW102")).await), json!(6));

    // The changed queues still end with the broker's lease.
    client
        .send_raw(&captured_frame("019-request-code104.bin"))
        .await;
    client.answer_to(3).await;
    wait_route_code(
        &mut client,
        "TBW102",
        response_code::TOPIC_NOT_EXIST,
        Duration::from_secs(5),
    )
    .await;
}

/// As in Apache, a registration writes a topic's queues only at the
/// broker's first registration, under a new data version, or for a topic
/// that lacks them: a write permission wiped on the name server stays
/// wiped while the broker re-registers unchanged, even with a record that
/// changed otherwise (its HA address).
#[tokio::test]
async fn a_wiped_write_permission_stays_until_the_brokers_data_version_changes() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let addr = "127.0.0.1:10991";
    client
        .call_ok(registration("broker-w", 0, addr, 1, false))
        .await;
    let perm = |answer: &RemotingCommand| json_of(answer)["queueDatas"][0]["perm"].clone();
    assert_eq!(perm(&client.call(route_request("TBW102")).await), json!(7));
    let wiped = ask(
        &mut client,
        code::WIPE_WRITE_PERM_OF_BROKER,
        &[("brokerName", "broker-w")],
    )
    .await;
    assert_eq!(wiped.code, 0, "{wiped:?}");

    let mut moved_ha = registration("broker-w", 0, addr, 1, false);
    moved_ha
        .ext_fields
        .insert("haServerAddr".into(), "192.0.2.3:10912".into());
    client.call_ok(moved_ha).await;
    let slave = client
        .call_ok(registration("broker-w", 1, "127.0.0.1:10992", 1, false))
        .await;
    assert_eq!(
        slave.field("haServerAddr"),
        Some("192.0.2.3:10912"),
        "the master's new HA address is stored: {slave:?}"
    );
    assert_eq!(
        perm(&client.call(route_request("TBW102")).await),
        json!(7 & !2),
        "a registration of the same data version gave the write permission back"
    );

    client
        .call_ok(registration("broker-w", 0, addr, 2, false))
        .await;
    assert_eq!(perm(&client.call(route_request("TBW102")).await), json!(7));
}

#[tokio::test]
async fn a_topic_is_registered_and_deleted_on_the_name_server() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    register_captured(&mut client).await;
    let queues = json!({"queueDatas": [
        {"brokerName": "broker-a", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6, "topicSysFlag": 0},
        {"brokerName": "broker-unknown", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6, "topicSysFlag": 0}
    ], "brokerDatas": []});
    let body = serde_json::to_vec(&queues).expect("JSON");
    let registered = client
        .request(
            code::REGISTER_TOPIC_IN_NAMESRV,
            &[("topic", "Orders/eu")],
            body,
        )
        .await;
    // A group that is not registered: nothing is, as Apache registers
    // nothing of a new topic then.
    assert_eq!(registered.code, 0, "{registered:?}");
    let missing = client.call(route_request("Orders/eu")).await;
    assert_eq!(missing.code, response_code::TOPIC_NOT_EXIST, "{missing:?}");
    let known = json!({"queueDatas": [queues["queueDatas"][0].clone()], "brokerDatas": []});
    let registered = client
        .request(
            code::REGISTER_TOPIC_IN_NAMESRV,
            &[("topic", "Orders/eu")],
            serde_json::to_vec(&known).expect("JSON"),
        )
        .await;
    assert_eq!(registered.code, 0, "{registered:?}");
    let route = json_of(&client.call(route_request("Orders/eu")).await);
    assert_eq!(
        route["queueDatas"].as_array().map(Vec::len),
        Some(1),
        "{route}"
    );
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 4);

    // A group named twice: the last one stands, as in Apache's table.
    let twice = json!({"queueDatas": [
        {"brokerName": "broker-a", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6, "topicSysFlag": 0},
        {"brokerName": "broker-a", "readQueueNums": 8, "writeQueueNums": 8, "perm": 6, "topicSysFlag": 0}
    ], "brokerDatas": []});
    let body = serde_json::to_vec(&twice).expect("JSON");
    let registered = client
        .request(code::REGISTER_TOPIC_IN_NAMESRV, &[("topic", "Twice")], body)
        .await;
    assert_eq!(registered.code, 0, "{registered:?}");
    let route = json_of(&client.call(route_request("Twice")).await);
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 8, "{route}");

    let by_cluster = ask(
        &mut client,
        code::GET_TOPICS_BY_CLUSTER,
        &[("cluster", "DefaultCluster")],
    )
    .await;
    assert!(json_of(&by_cluster)["topicList"]
        .as_array()
        .expect("a list")
        .contains(&json!("Orders/eu")));

    let deleted = ask(
        &mut client,
        code::DELETE_TOPIC_IN_NAMESRV,
        &[("topic", "Orders/eu")],
    )
    .await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let gone = client.call(route_request("Orders/eu")).await;
    assert_eq!(gone.code, response_code::TOPIC_NOT_EXIST);
    assert_eq!(
        client.call(route_request("TBW102")).await.code,
        0,
        "other topics stay"
    );

    // A name too long to be a store key was never stored: nothing to
    // delete, SUCCESS as Apache answers, with or without a cluster.
    let long = "L".repeat(2_000);
    for fields in [
        vec![("topic", long.as_str())],
        vec![("topic", long.as_str()), ("clusterName", "DefaultCluster")],
    ] {
        let deleted = ask(&mut client, code::DELETE_TOPIC_IN_NAMESRV, &fields).await;
        assert_eq!(deleted.code, 0, "{deleted:?}");
    }
}

#[tokio::test]
async fn the_name_server_config_is_read_updated_and_its_black_list_refused() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let updated = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"enableAllTopicList=false\n".to_vec(),
        )
        .await;
    assert_eq!(updated.code, 0, "{updated:?}");
    let config = ask(&mut client, code::GET_NAMESRV_CONFIG, &[]).await;
    let text = String::from_utf8(config.body.clone()).expect("text");
    assert!(
        text.lines().any(|line| line == "enableAllTopicList=false"),
        "{text}"
    );
    let refused = ask(&mut client, code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, &[]).await;
    assert_eq!(
        (refused.code, refused.remark.as_deref()),
        (1, Some("disable"))
    );

    let black = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"kvConfigPath=/tmp/x\n".to_vec(),
        )
        .await;
    assert_eq!(black.code, response_code::NO_PERMISSION, "{black:?}");
    // The name as java.util.Properties reads it: escapes decoded.
    let escaped = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"kv\\u0043onfigPath=/tmp/x\n".to_vec(),
        )
        .await;
    assert_eq!(escaped.code, response_code::NO_PERMISSION, "{escaped:?}");
    let malformed = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"productEnvName=\\u00zz\n".to_vec(),
        )
        .await;
    assert_eq!(malformed.code, response_code::SYSTEM_ERROR, "{malformed:?}");

    // Booleans read as Java reads them; lines ended by a lone CR, split at
    // white space and continued after a backslash as java.util.Properties
    // reads them; a property Apache's name server does
    // not have, and a node's own port, left out; another of Apache's kept.
    let updated = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"enableTopicList=FALSE\renableAllTopicList TRUE\nfoo=bar\ngarbage line\nlistenPort=1\n\
              scanNotActive\\\n    BrokerInterval=7000\n"
                .to_vec(),
        )
        .await;
    assert_eq!(updated.code, 0, "{updated:?}");
    let refused = ask(
        &mut client,
        code::GET_TOPICS_BY_CLUSTER,
        &[("cluster", "c")],
    )
    .await;
    assert_eq!(
        (refused.code, refused.remark.as_deref()),
        (1, Some("disable"))
    );
    let listed = ask(&mut client, code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, &[]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let config = ask(&mut client, code::GET_NAMESRV_CONFIG, &[]).await;
    let text = String::from_utf8(config.body.clone()).expect("text");
    let port = server.namesrv_addr().port();
    for line in [
        "enableTopicList=FALSE".to_string(),
        "enableAllTopicList=TRUE".to_string(),
        format!("listenPort={port}"),
        "scanNotActiveBrokerInterval=7000".to_string(),
    ] {
        assert!(text.lines().any(|shown| shown == line), "{line}: {text}");
    }
    assert!(!text.contains("foo") && !text.contains("garbage"), "{text}");
}

#[tokio::test]
async fn member_group_and_system_topics_come_from_the_registrations() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    register_captured(&mut client).await;
    let slave = client
        .call(registration("broker-a", 1, "127.0.0.1:20912", 0, false))
        .await;
    assert_eq!(slave.field("masterAddr"), Some(BROKER_A), "{slave:?}");
    assert_eq!(slave.field("haServerAddr"), Some("192.0.2.2:10912"));

    let group = ask(
        &mut client,
        code::GET_BROKER_MEMBER_GROUP,
        &[
            ("clusterName", "DefaultCluster"),
            ("brokerName", "broker-a"),
        ],
    )
    .await;
    assert_eq!(
        json_of(&group),
        json!({"brokerMemberGroup": {"cluster": "DefaultCluster", "brokerName": "broker-a",
            "brokerAddrs": {"0": BROKER_A, "1": "127.0.0.1:20912"}}})
    );
    let system = ask(&mut client, code::GET_SYSTEM_TOPIC_LIST_FROM_NS, &[]).await;
    assert_eq!(
        json_of(&system)["topicList"],
        json!(["DefaultCluster", "broker-a"])
    );
}

#[tokio::test]
async fn unit_topic_lists_follow_the_queues_flags() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    register_captured(&mut client).await;
    for (topic, flag) in [("unit", 1), ("unit-sub", 3), ("sub-only", 2)] {
        let body = serde_json::to_vec(&json!({"queueDatas": [{"brokerName": "broker-a",
            "readQueueNums": 1, "writeQueueNums": 1, "perm": 6, "topicSysFlag": flag}]}))
        .expect("JSON");
        let answer = client
            .request(code::REGISTER_TOPIC_IN_NAMESRV, &[("topic", topic)], body)
            .await;
        assert_eq!(answer.code, 0, "{answer:?}");
    }
    let listed = |answer: RemotingCommand| json_of(&answer)["topicList"].clone();
    assert_eq!(
        listed(ask(&mut client, code::GET_UNIT_TOPIC_LIST, &[]).await),
        json!(["unit", "unit-sub"])
    );
    assert_eq!(
        listed(ask(&mut client, code::GET_HAS_UNIT_SUB_TOPIC_LIST, &[]).await),
        json!(["sub-only", "unit-sub"])
    );
    assert_eq!(
        listed(ask(&mut client, code::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST, &[]).await),
        json!(["sub-only"])
    );
}

/// Where Apache's name server reads a request more loosely than the
/// header's types say, or looks up by fewer fields, this one does the
/// same: booleans as `Boolean.parseBoolean`, the zone from `__ZONE_NAME`,
/// a member group by its name, an unregister by address; and it answers
/// Apache's remark for a missing route and its black list.
#[tokio::test]
async fn requests_are_read_and_answered_as_apaches_name_server_does() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let mut master = registration("broker-z", 0, "127.0.0.1:20931", 0, false);
    master
        .ext_fields
        .insert("compressed".into(), "False".into());
    master
        .ext_fields
        .insert("enableActingMaster".into(), "TRUE".into());
    master
        .ext_fields
        .insert("__ZONE_NAME".into(), "zone1".into());
    client.call_ok(master).await;
    let info = json_of(&ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await);
    let group = &info["brokerAddrTable"]["broker-z"];
    assert_eq!(
        (
            group["zoneName"].clone(),
            group["enableActingMaster"].clone()
        ),
        (json!("zone1"), json!(true)),
        "{info}"
    );

    let members = ask(
        &mut client,
        code::GET_BROKER_MEMBER_GROUP,
        &[("clusterName", "OtherCluster"), ("brokerName", "broker-z")],
    )
    .await;
    assert_eq!(
        json_of(&members)["brokerMemberGroup"]["brokerAddrs"],
        json!({"0": "127.0.0.1:20931"})
    );

    // An unregister naming another id at the same address removes it.
    let unregister = command(
        code::UNREGISTER_BROKER,
        &[
            ("brokerAddr", "127.0.0.1:20931"),
            ("brokerId", "7"),
            ("brokerName", "broker-z"),
            ("clusterName", "DefaultCluster"),
        ],
        Vec::new(),
        SerializeType::Json,
    );
    client.call_ok(unregister).await;
    let info = json_of(&ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await);
    assert_eq!(info["brokerAddrTable"]["broker-z"], Value::Null, "{info}");

    let missing = ask(
        &mut client,
        code::GET_ROUTEINFO_BY_TOPIC,
        &[("topic", "nowhere")],
    )
    .await;
    assert_eq!(
        missing.remark.as_deref(),
        Some(
            "No topic route info in name server for the topic: nowhere\nSee \
             https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."
        )
    );

    let black = client
        .request(
            code::UPDATE_NAMESRV_CONFIG,
            &[],
            b"rocketmqHome=/tmp/x\n".to_vec(),
        )
        .await;
    assert_eq!(black.code, response_code::NO_PERMISSION, "{black:?}");
}

/// A topic deleted on the name server alone (its broker still holds it)
/// comes back at the broker's next registration, though its data version
/// did not change, as Apache adds a registered topic whose queues lack the
/// broker's group.
#[tokio::test]
async fn a_topic_deleted_on_the_name_server_alone_comes_back_at_the_next_registration() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let registration = || registration("broker-a", 0, BROKER_A, 0, false);
    assert_eq!(client.call(registration()).await.code, 0);
    assert_eq!(client.call(route_request("TBW102")).await.code, 0);

    let deleted = ask(
        &mut client,
        code::DELETE_TOPIC_IN_NAMESRV,
        &[("topic", "TBW102")],
    )
    .await;
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let gone = client.call(route_request("TBW102")).await;
    assert_eq!(gone.code, response_code::TOPIC_NOT_EXIST, "{gone:?}");

    assert_eq!(client.call(registration()).await.code, 0);
    let back = client.call(route_request("TBW102")).await;
    assert_eq!(
        back.code, 0,
        "the registration brought TBW102 back: {back:?}"
    );
    assert_eq!(json_of(&back)["queueDatas"][0]["brokerName"], "broker-a");
}

/// A broker registering again with the same data version but another
/// cluster and HA address (restarted with a new HA port, say) is stored as
/// it registered: not taken for the registration before it.
#[tokio::test]
async fn a_registration_that_changes_only_the_brokers_addresses_is_stored() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    assert_eq!(
        client
            .call(registration("broker-a", 0, BROKER_A, 0, false))
            .await
            .code,
        0
    );
    let mut moved = registration("broker-a", 0, BROKER_A, 0, false);
    moved
        .ext_fields
        .insert("clusterName".into(), "OtherCluster".into());
    moved
        .ext_fields
        .insert("haServerAddr".into(), "192.0.2.2:20912".into());
    assert_eq!(client.call(moved).await.code, 0);

    let info = json_of(&ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await);
    assert_eq!(
        info["brokerAddrTable"]["broker-a"]["cluster"], "OtherCluster",
        "{info}"
    );
    // A slave of the group is told its master's HA address.
    let slave = client
        .call(registration("broker-a", 1, "192.0.2.9:10911", 0, false))
        .await;
    assert_eq!(
        (slave.code, slave.field("haServerAddr")),
        (0, Some("192.0.2.2:20912")),
        "{slave:?}"
    );
}

/// The name server's idempotency keys are predictable (named after what
/// they write). A client that sends one is refused as reusing it (422),
/// never handed the name server's result: a 500, or a transaction
/// answered `deduplicated` that was never applied.
#[tokio::test]
async fn a_client_sending_a_name_server_idempotency_key_is_refused_as_a_reuse() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let entry = [("namespace", "ns1"), ("key", "k1"), ("value", "v1")];
    assert_eq!(ask(&mut client, code::PUT_KV_CONFIG, &entry).await.code, 0);
    let (status, stored) =
        integration_tests::call(&server, "GET", "/v1/kv/namesrv/kv/ns1/k1", None).await;
    assert_eq!(status, 200, "{stored}");
    let written_at = stored["mod_revision"].as_u64().expect("a revision");

    // The key is made with the revision the name server read before its
    // write: one of the few before the one it wrote at.
    let namespace = uuid::Uuid::from_u128(0x6e61_6d65_7372_7600_8000_0000_0000_0016);
    let http = server.client();
    let mut refused = Vec::new();
    for read_at in written_at.saturating_sub(4)..written_at {
        let key = uuid::Uuid::new_v5(
            &namespace,
            format!("kv-put\u{1f}ns1\u{1f}k1\u{1f}v1\u{1f}{read_at}").as_bytes(),
        );
        let (put_key, txn_key) = (format!("victim/{read_at}"), format!("victim/txn{read_at}"));
        for (method, path, body, written) in [
            ("PUT", format!("/v1/kv/{put_key}"), json!("x"), &put_key),
            (
                "POST",
                "/v1/txn".to_string(),
                json!({"success": [{"put": {"key": txn_key, "value": 1}}]}),
                &txn_key,
            ),
        ] {
            let response = http
                .request(method.parse().expect("a method"), server.url(&path))
                .header("Idempotency-Key", key.to_string())
                .json(&body)
                .send()
                .await
                .expect("the node answers");
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200 | 201 => assert_ne!(answer["deduplicated"], true, "{method} {path}: {answer}"),
                422 => {
                    assert_eq!(
                        answer["error"]["code"], "idempotency_key_reused",
                        "{answer}"
                    );
                    refused.push(written.clone());
                }
                other => panic!("{method} {path} with a name server's key: {other} {answer}"),
            }
        }
    }
    assert_eq!(
        refused.len(),
        2,
        "the name server's key was refused on both routes"
    );
    for key in refused {
        let (status, _) =
            integration_tests::call(&server, "GET", &format!("/v1/kv/{key}"), None).await;
        assert_eq!(status, 404, "the refused write of {key} wrote nothing");
    }
}
