//! One node as a RocketMQ name server: real frames over TCP, answered as
//! Apache's name server answers them, with the state in the store.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use integration_tests::remoting::{
    broker_request, captured_command, captured_frame, command, json_of, registration,
    route_request, RemotingClient,
};
use integration_tests::TestServer;
use schemas::remoting::{request_code as code, response_code, RemotingCommand, SerializeType};
use serde_json::{json, Value};

/// Pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(50);

/// The broker of the captured frames.
const BROKER_A: &str = "127.0.0.1:20911";

async fn connect(server: &TestServer) -> RemotingClient {
    RemotingClient::connect(server.namesrv_addr()).await
}

/// The answer to a request of `code` with `fields` and no body.
async fn ask(client: &mut RemotingClient, code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    client.request(code, fields, Vec::new()).await
}

/// The body of a captured answer, as JSON.
fn captured_body(name: &str) -> Value {
    json_of(&captured_command(name))
}

/// Registers broker-a as the captured frame does (opaque 0).
async fn register_captured(client: &mut RemotingClient) -> RemotingCommand {
    client
        .send_raw(&captured_frame("001-request-code103.bin"))
        .await;
    client.answer_to(0).await
}

/// The store's revision and the `namesrv/` keys with their mod revisions.
async fn namesrv_keys(server: &TestServer) -> (u64, Vec<(String, u64)>) {
    let response = server
        .client()
        .get(server.url("/v1/kv?prefix=namesrv/&consistency=stale&limit=1000"))
        .send()
        .await
        .expect("the server answers");
    let revision = response.headers()["x-kv-revision"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    let list: Value = response.json().await.expect("JSON");
    let keys = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["key"].as_str().expect("key").to_string(),
                entry["mod_revision"].as_u64().expect("mod_revision"),
            )
        })
        .collect();
    (revision, keys)
}

/// Polls the route of `topic` until its answer has `wanted` as code.
async fn wait_route_code(client: &mut RemotingClient, topic: &str, wanted: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = client.call(route_request(topic)).await;
        if answer.code == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the route of {topic} still answers {} after {limit:?}, not {wanted}",
            answer.code
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_captured_registration_is_answered_and_served_as_the_real_name_server_served_it() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;

    let answer = register_captured(&mut client).await;
    assert_eq!((answer.code, answer.opaque), (0, 0), "{answer:?}");
    assert!(answer.is_response());
    assert_eq!(answer.field("masterAddr"), Some(""));
    assert_eq!(answer.field("haServerAddr"), Some(""));

    // The captured lookups, sent raw, each with opaque 1.
    client
        .send_raw(&captured_frame("005-request-code105.bin"))
        .await;
    let route = client.answer_to(1).await;
    assert_eq!(route.code, 0, "{route:?}");
    assert_eq!(json_of(&route), captured_body("006-response-code0.bin"));

    client
        .send_raw(&captured_frame("008-request-code106.bin"))
        .await;
    let info = client.answer_to(1).await;
    assert_eq!(json_of(&info), captured_body("007-response-code0.bin"));

    client
        .send_raw(&captured_frame("009-request-code206.bin"))
        .await;
    let topics = client.answer_to(1).await;
    let listed = |body: Value| -> BTreeSet<String> {
        serde_json::from_value(body["topicList"].clone()).expect("a list of names")
    };
    assert_eq!(
        listed(json_of(&topics)),
        listed(captured_body("010-response-code0.bin"))
    );

    client
        .send_raw(&captured_frame("011-request-code105.bin"))
        .await;
    let missing = client.answer_to(1).await;
    assert_eq!(missing.code, response_code::TOPIC_NOT_EXIST, "{missing:?}");

    // The captured UNREGISTER of broker-a removes its routes.
    client
        .send_raw(&captured_frame("019-request-code104.bin"))
        .await;
    let unregistered = client.answer_to(3).await;
    assert_eq!(unregistered.code, 0, "{unregistered:?}");
    wait_route_code(
        &mut client,
        "TBW102",
        response_code::TOPIC_NOT_EXIST,
        Duration::from_secs(5),
    )
    .await;
    let info = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(json_of(&info)["brokerAddrTable"], json!({}));
}

#[tokio::test]
async fn both_header_forms_are_answered_in_kind() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    register_captured(&mut client).await;
    for form in [SerializeType::Json, SerializeType::RocketMq] {
        let answer = client
            .call(command(
                code::GET_ROUTEINFO_BY_TOPIC,
                &[("topic", "TBW102")],
                Vec::new(),
                form,
            ))
            .await;
        assert_eq!(answer.code, 0, "{form:?}: {answer:?}");
        assert_eq!(answer.serialize_type, form);
        assert_eq!(json_of(&answer), captured_body("006-response-code0.bin"));
    }
}

#[tokio::test]
async fn a_compressed_registration_is_stored_like_a_json_one() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let answer = client
        .call(registration("broker-z", 0, "127.0.0.1:30911", 1, true))
        .await;
    assert_eq!(answer.code, 0, "{answer:?}");
    let route = client.call(route_request("TBW102")).await;
    let route = json_of(&route);
    assert_eq!(route["brokerDatas"][0]["brokerName"], "broker-z");
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        "127.0.0.1:30911"
    );
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 8);
}

#[tokio::test]
async fn a_registration_with_a_bad_body_crc_is_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let mut request = registration("broker-a", 0, BROKER_A, 0, false);
    request
        .ext_fields
        .insert("bodyCrc32".into(), "12345".into());
    let answer = client.call(request).await;
    assert_eq!(answer.code, response_code::SYSTEM_ERROR, "{answer:?}");
    assert_eq!(answer.remark.as_deref(), Some("crc32 not match"));
    let (_, keys) = namesrv_keys(&server).await;
    assert!(keys.is_empty(), "{keys:?}");
    let missing = client.call(route_request("TBW102")).await;
    assert_eq!(missing.code, response_code::TOPIC_NOT_EXIST);
}

#[tokio::test]
async fn bad_frames_close_their_connection_and_the_server_keeps_serving_others() {
    let server = TestServer::start().await;

    // A length far over the 16 MiB limit: refused from its first bytes.
    let mut oversized = connect(&server).await;
    oversized.send_raw(&0x7fff_fff0_u32.to_be_bytes()).await;
    assert!(oversized.is_closed_by_server().await, "an oversized frame");

    // A whole frame whose JSON header is not JSON.
    let mut garbage = connect(&server).await;
    let header = b"{not a header";
    let mut frame = ((4 + header.len()) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    garbage.send_raw(&frame).await;
    assert!(garbage.is_closed_by_server().await, "a garbage header");

    // A length below the type/header-length word.
    let mut short = connect(&server).await;
    short.send_raw(&2u32.to_be_bytes()).await;
    assert!(short.is_closed_by_server().await, "a too-short length");

    // Half a frame, then the client goes: the server drops it.
    let whole = captured_frame("005-request-code105.bin");
    let mut truncated = connect(&server).await;
    truncated.send_raw(&whole[..whole.len() / 2]).await;
    drop(truncated);

    // Others are served, and an unknown code is answered 3, naming it.
    let mut client = connect(&server).await;
    let unknown = ask(&mut client, 9999, &[]).await;
    assert_eq!(
        unknown.code,
        response_code::REQUEST_CODE_NOT_SUPPORTED,
        "{unknown:?}"
    );
    assert!(
        unknown.remark.as_deref().unwrap_or("").contains("9999"),
        "{unknown:?}"
    );
    let missing = client.call(route_request("TBW102")).await;
    assert_eq!(missing.code, response_code::TOPIC_NOT_EXIST);
    assert!(server.log_contains("bad frame"), "a bad frame is logged");
}

#[tokio::test]
async fn a_missing_header_field_is_a_system_error_naming_the_field() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let answer = ask(&mut client, code::GET_ROUTEINFO_BY_TOPIC, &[]).await;
    assert_eq!(answer.code, response_code::SYSTEM_ERROR, "{answer:?}");
    assert!(
        answer.remark.as_deref().unwrap_or("").contains("topic"),
        "{answer:?}"
    );
    let answer = ask(&mut client, code::UNREGISTER_BROKER, &[("brokerName", "b")]).await;
    assert_eq!(answer.code, response_code::SYSTEM_ERROR, "{answer:?}");
    assert!(
        answer
            .remark
            .as_deref()
            .unwrap_or("")
            .contains("clusterName"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_reregistration_with_an_unchanged_data_version_makes_no_raft_write() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    assert_eq!(
        client
            .call(registration("broker-a", 0, BROKER_A, 5, false))
            .await
            .code,
        0
    );
    let (revision, keys) = namesrv_keys(&server).await;
    assert_eq!(keys.len(), 14, "the registration and 13 topics: {keys:?}");

    for _ in 0..3 {
        assert_eq!(
            client
                .call(registration("broker-a", 0, BROKER_A, 5, false))
                .await
                .code,
            0
        );
    }
    let (unchanged, _) = namesrv_keys(&server).await;
    assert_eq!(unchanged, revision, "an unchanged registration wrote");

    assert_eq!(
        client
            .call(registration("broker-a", 0, BROKER_A, 6, false))
            .await
            .code,
        0
    );
    let (changed, keys) = namesrv_keys(&server).await;
    assert!(changed > revision, "a changed data version was not written");
    let revisions: BTreeSet<u64> = keys.iter().map(|(_, revision)| *revision).collect();
    assert_eq!(revisions.len(), 1, "one write changed every key: {keys:?}");
}

#[tokio::test]
async fn heartbeats_keep_a_broker_and_without_them_its_routes_leave_within_the_ttl() {
    // The shortest TTL a lease takes.
    let ttl = Duration::from_secs(5);
    let server = TestServer::start_with(&["--namesrv-broker-ttl-s", "5"]).await;
    let mut client = connect(&server).await;
    assert_eq!(
        client
            .call(registration("broker-a", 0, BROKER_A, 0, false))
            .await
            .code,
        0
    );

    // Heartbeats for well beyond the TTL keep it.
    let kept_until = Instant::now() + ttl + Duration::from_secs(2);
    while Instant::now() < kept_until {
        let beat = broker_request(code::BROKER_HEARTBEAT, "broker-a", 0, BROKER_A);
        assert_eq!(client.call(beat).await.code, 0);
        let route = client.call(route_request("TBW102")).await;
        assert_eq!(route.code, 0, "the route left while heartbeats came");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Without them it leaves within the TTL and a bounded slack.
    let last_heartbeat = Instant::now();
    let slack = Duration::from_secs(3);
    wait_route_code(
        &mut client,
        "TBW102",
        response_code::TOPIC_NOT_EXIST,
        ttl + slack,
    )
    .await;
    assert!(
        last_heartbeat.elapsed() >= ttl - Duration::from_millis(500),
        "left before its TTL"
    );
    let info = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(json_of(&info)["brokerAddrTable"], json!({}));
}

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
    assert_eq!(registered.code, 0, "{registered:?}");
    let route = json_of(&client.call(route_request("Orders/eu")).await);
    assert_eq!(
        route["queueDatas"].as_array().map(Vec::len),
        Some(1),
        "{route}"
    );
    assert_eq!(route["queueDatas"][0]["readQueueNums"], 4);

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
async fn the_http_views_equal_the_remoting_answers_and_a_long_poll_wakes_on_a_registration() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let before = server
        .client()
        .get(server.url("/v1/brokers"))
        .send()
        .await
        .expect("answers");
    let index: u64 = before.headers()["x-kv-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let waiting = {
        let http = server.client().clone();
        let url = server.url(&format!("/v1/brokers?index={index}&wait=20s"));
        tokio::spawn(async move {
            http.get(url)
                .send()
                .await
                .expect("answers")
                .json::<Value>()
                .await
        })
    };
    server.wait_for_waiters(1, Duration::from_secs(10)).await;
    register_captured(&mut client).await;
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long-poll woke on the registration")
        .expect("the task ran")
        .expect("JSON");
    let info = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(woken, json_of(&info));

    let (status, route) = integration_tests::call(&server, "GET", "/v1/routes/TBW102", None).await;
    assert_eq!(status, 200);
    assert_eq!(route, json_of(&client.call(route_request("TBW102")).await));
    let (status, missing) =
        integration_tests::call(&server, "GET", "/v1/routes/nowhere", None).await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nowhere"),
        "{missing}"
    );
}

#[tokio::test]
async fn query_data_version_says_whether_the_broker_changed_and_a_oneway_request_gets_no_answer() {
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    assert_eq!(
        client
            .call(registration("broker-a", 0, BROKER_A, 7, false))
            .await
            .code,
        0
    );
    let fields = [
        ("brokerAddr", BROKER_A),
        ("brokerName", "broker-a"),
        ("clusterName", "DefaultCluster"),
        ("brokerId", "0"),
    ];
    let version = |counter: i64| {
        serde_json::to_vec(&json!({"stateVersion": 0, "timestamp": 0, "counter": counter}))
            .expect("JSON")
    };
    let same = client
        .request(code::QUERY_DATA_VERSION, &fields, version(7))
        .await;
    assert_eq!(
        (same.code, same.field("changed")),
        (0, Some("false")),
        "{same:?}"
    );
    assert_eq!(json_of(&same)["counter"], 7);
    let other = client
        .request(code::QUERY_DATA_VERSION, &fields, version(8))
        .await;
    assert_eq!(other.field("changed"), Some("true"), "{other:?}");

    // A oneway heartbeat is served without an answer: the next frame on
    // the connection answers the request after it.
    let mut beat = broker_request(code::BROKER_HEARTBEAT, "broker-a", 0, BROKER_A);
    beat.flag = schemas::remoting::FLAG_ONEWAY;
    beat.opaque = 77;
    client.send_raw(&beat.encode()).await;
    let mut lookup = route_request("TBW102");
    lookup.opaque = 78;
    client.send_raw(&lookup.encode()).await;
    let next = client.read_frame().await.expect("an answer");
    assert_eq!((next.opaque, next.code), (78, 0), "{next:?}");
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

#[tokio::test]
async fn a_registration_of_more_topics_than_one_transaction_holds_is_served_whole() {
    use schemas::remoting::{body_crc32, RegisterBrokerBody};
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let mut request = registration("broker-a", 0, BROKER_A, 1, false);
    let mut body = RegisterBrokerBody::decode(&request.body, false).expect("decodes");
    let table = &mut body.topic_config_serialize_wrapper.topic_config_table;
    let template = table["TBW102"].clone();
    for index in 0..300 {
        let name = format!("many-{index:03}");
        let mut config = template.clone();
        config.topic_name = name.clone();
        table.insert(name, config);
    }
    request.body = body.encode(false);
    request
        .ext_fields
        .insert("bodyCrc32".into(), body_crc32(&request.body).to_string());
    assert_eq!(client.call(request.clone()).await.code, 0);
    for topic in ["many-000", "many-299", "TBW102"] {
        assert_eq!(client.call(route_request(topic)).await.code, 0, "{topic}");
    }
    let (revision, keys) = namesrv_keys(&server).await;
    assert_eq!(keys.len(), 1 + 13 + 300, "the registration and every topic");

    assert_eq!(client.call(request).await.code, 0);
    let (unchanged, _) = namesrv_keys(&server).await;
    assert_eq!(unchanged, revision, "an unchanged large registration wrote");
}
