//! Frames captured between rocketmq-rust's broker and name server (and a
//! minimal JSON client) decode as `index.json` describes them, re-encode to
//! equivalent frames, and their bodies read into this crate's types.

use std::path::PathBuf;

use schemas::remoting::{
    body_crc32, decode_frame, ClusterInfo, RegisterBrokerBody, RemotingCommand, SerializeType,
    TopicList, TopicRouteData, DEFAULT_MAX_FRAME_BYTES,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// One entry of `fixtures/rocketmq-frames/index.json`.
#[derive(Debug, Deserialize)]
struct FixtureEntry {
    file: String,
    bytes: usize,
    serialize_type: u8,
    header_bytes: usize,
    body_bytes: usize,
    code: i32,
    opaque: i32,
    flag: i32,
    written_by: String,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rocketmq-frames")
}

fn index() -> Vec<FixtureEntry> {
    let text = std::fs::read_to_string(fixture_dir().join("index.json")).unwrap();
    serde_json::from_str(&text).expect("index.json lists the fixtures")
}

fn frame_bytes(file: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(file)).unwrap()
}

fn decode_whole(bytes: &[u8]) -> RemotingCommand {
    let (command, used) = decode_frame(bytes, DEFAULT_MAX_FRAME_BYTES)
        .unwrap_or_else(|error| panic!("a fixture frame does not decode: {error}"))
        .expect("a fixture holds a whole frame");
    assert_eq!(used, bytes.len(), "a fixture holds exactly one frame");
    command
}

fn fixture(file: &str) -> RemotingCommand {
    decode_whole(&frame_bytes(file))
}

/// The header bytes of a frame: after the two prefix words, before the body.
fn header_bytes_of(frame: &[u8]) -> usize {
    (u32::from_be_bytes(frame[4..8].try_into().unwrap()) & 0x00FF_FFFF) as usize
}

#[test]
fn every_fixture_decodes_with_the_code_opaque_flag_and_sizes_the_index_gives() {
    let entries = index();
    assert_eq!(entries.len(), 20);
    for entry in entries {
        let bytes = frame_bytes(&entry.file);
        assert_eq!(bytes.len(), entry.bytes, "{}", entry.file);
        let command = decode_whole(&bytes);
        assert_eq!(command.code, entry.code, "{}", entry.file);
        assert_eq!(command.opaque, entry.opaque, "{}", entry.file);
        assert_eq!(command.flag, entry.flag, "{}", entry.file);
        let expected_type = match entry.serialize_type {
            0 => SerializeType::Json,
            _ => SerializeType::RocketMq,
        };
        assert_eq!(command.serialize_type, expected_type, "{}", entry.file);
        assert_eq!(
            header_bytes_of(&bytes),
            entry.header_bytes,
            "{}",
            entry.file
        );
        assert_eq!(command.body.len(), entry.body_bytes, "{}", entry.file);
    }
}

#[test]
fn every_fixture_re_encodes_to_a_frame_that_decodes_the_same() {
    for entry in index() {
        let command = fixture(&entry.file);
        let again = decode_whole(&command.encode());
        assert_eq!(again, command, "{}", entry.file);
        let binary = RemotingCommand {
            serialize_type: SerializeType::RocketMq,
            ..command.clone()
        };
        let from_binary = decode_whole(&binary.encode());
        assert_eq!(from_binary, binary, "{} in the binary header", entry.file);
    }
}

/// rocketmq-rust writes the JSON header exactly as this crate does: same
/// field order, extFields sorted, `null` for none. The minimal client's
/// frames (`"code": 105` with spaces, `"extFields": {}`) are equivalent
/// but not the same bytes, so only rocketmq-rust's are compared.
#[test]
fn frames_written_by_rocketmq_rust_re_encode_to_the_same_bytes() {
    let mut compared = 0;
    for entry in index() {
        if !entry.written_by.starts_with("rocketmq-") {
            continue;
        }
        let bytes = frame_bytes(&entry.file);
        assert_eq!(
            fixture(&entry.file).encode(),
            bytes,
            "{} re-encodes differently",
            entry.file
        );
        compared += 1;
    }
    assert_eq!(compared, 15);
}

#[test]
fn the_minimal_clients_request_reads_its_topic_field() {
    let request = fixture("005-request-code105.bin");
    assert_eq!(request.field("topic"), Some("TBW102"));
    assert_eq!(request.version, 453);
    let not_found = fixture("012-response-code17.bin");
    assert_eq!(
        not_found.remark.as_deref(),
        Some("Topic route was not found")
    );
    let invalid = fixture("014-response-code29.bin");
    assert_eq!(invalid.remark.as_deref(), Some("Request header is invalid"));
}

/// `value` with every array of strings sorted: RocketMQ's string
/// collections in these bodies (`topicList`, `clusterAddrTable`'s values)
/// are sets, written in hash order.
fn with_string_sets_sorted(value: Value) -> Value {
    match value {
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let mut items = items;
            items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            Value::Array(items)
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(with_string_sets_sorted).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key, with_string_sets_sorted(value)))
                .collect(),
        ),
        other => other,
    }
}

fn json_equal_after_round_trip<T: DeserializeOwned + serde::Serialize>(file: &str) -> T {
    let body = fixture(file).body;
    let value: T = serde_json::from_slice(&body)
        .unwrap_or_else(|error| panic!("{file}'s body does not read: {error}"));
    let written = serde_json::to_value(&value).unwrap();
    let original: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        with_string_sets_sorted(written),
        with_string_sets_sorted(original),
        "{file}'s body re-serializes differently"
    );
    value
}

#[test]
fn the_route_answer_reads_into_topic_route_data_and_writes_back_json_equal() {
    let route: TopicRouteData = json_equal_after_round_trip("006-response-code0.bin");
    assert_eq!(route.queue_datas.len(), 1);
    let queues = &route.queue_datas[0];
    assert_eq!(queues.broker_name, "broker-a");
    assert_eq!(
        (queues.read_queue_nums, queues.write_queue_nums, queues.perm),
        (8, 8, 7)
    );
    assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:20911");
}

#[test]
fn the_cluster_answer_reads_into_cluster_info_and_writes_back_json_equal() {
    let cluster: ClusterInfo = json_equal_after_round_trip("007-response-code0.bin");
    assert!(cluster.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    assert_eq!(
        cluster.broker_addr_table["broker-a"].cluster,
        "DefaultCluster"
    );
}

#[test]
fn the_topic_list_answer_reads_into_topic_list_and_writes_back_json_equal() {
    let list: TopicList = json_equal_after_round_trip("010-response-code0.bin");
    assert_eq!(list.topic_list.len(), 13);
    assert!(list.topic_list.contains("TBW102"));
    assert_eq!(list.broker_addr, None);
}

#[test]
fn registrations_carry_the_brokers_topics_and_a_matching_body_crc() {
    for file in [
        "001-request-code103.bin",
        "003-request-code103.bin",
        "017-request-code103.bin",
    ] {
        let request = fixture(file);
        let crc: u32 = request.required_parsed("bodyCrc32").unwrap();
        assert_eq!(body_crc32(&request.body), crc, "{file}");
        assert_eq!(request.field("compressed"), Some("false"));
        let body = RegisterBrokerBody::decode(&request.body, false)
            .unwrap_or_else(|error| panic!("{file}'s registration does not read: {error}"));
        let topics = &body.topic_config_serialize_wrapper.topic_config_table;
        assert_eq!(topics.len(), 13, "{file}");
        let tbw102 = &topics["TBW102"];
        assert_eq!(
            (tbw102.read_queue_nums, tbw102.write_queue_nums, tbw102.perm),
            (8, 8, 7)
        );
        assert_eq!(topics["BenchmarkTest"].read_queue_nums, 1024);
        assert_eq!(topics["rmq_sys_SYNC_BROKER_MEMBER__broker-a"].perm, 1);
        assert!(body.filter_server_list.is_empty());
        let original: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            original,
            "{file}'s registration writes back JSON-equal, mapping fields included"
        );

        // Both body forms carry the topics back.
        let json_again = RegisterBrokerBody::decode(&body.encode(false), false).unwrap();
        assert_eq!(json_again, body, "{file} through JSON");
        let compressed = RegisterBrokerBody::decode(&body.encode(true), true).unwrap();
        assert_eq!(
            compressed.topic_config_serialize_wrapper.topic_config_table, *topics,
            "{file} through the compressed form"
        );
    }
}
