//! Properties of the remoting codec: any command and any registration body
//! round-trips through each of its forms, and no input, however broken,
//! makes a decoder panic.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use schemas::remoting::{
    decode_frame, DataVersion, LanguageCode, RegisterBrokerBody, RemotingCommand, SerializeType,
    TopicConfigSerializeWrapper, DEFAULT_MAX_FRAME_BYTES, TOPIC_QUEUE_MAPPING_INFO_MAP,
};
use schemas::{TopicConfig, TopicFilterType};
use serde_json::{json, Value};

const LANGUAGES: [LanguageCode; 14] = [
    LanguageCode::Java,
    LanguageCode::Cpp,
    LanguageCode::Dotnet,
    LanguageCode::Python,
    LanguageCode::Delphi,
    LanguageCode::Erlang,
    LanguageCode::Ruby,
    LanguageCode::Other,
    LanguageCode::Http,
    LanguageCode::Go,
    LanguageCode::Php,
    LanguageCode::Oms,
    LanguageCode::Rust,
    LanguageCode::NodeJs,
];

/// Any command; `code` and `version` within the 16 bits the binary header
/// carries, as every RocketMQ code and version is.
fn command() -> impl Strategy<Value = RemotingCommand> {
    (
        (
            any::<i16>(),
            proptest::sample::select(&LANGUAGES[..]),
            any::<i16>(),
            any::<i32>(),
            any::<i32>(),
        ),
        option::of(".{0,24}"),
        btree_map(".{0,12}", ".{0,24}", 0..6),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |((code, language, version, opaque, flag), remark, ext_fields, body)| RemotingCommand {
                code: code.into(),
                language,
                version: version.into(),
                opaque,
                flag,
                remark,
                ext_fields,
                serialize_type: SerializeType::Json,
                body,
            },
        )
}

fn decode_one(frame: &[u8]) -> RemotingCommand {
    let (command, used) = decode_frame(frame, DEFAULT_MAX_FRAME_BYTES)
        .unwrap()
        .expect("a whole frame");
    assert_eq!(used, frame.len());
    command
}

fn topic() -> impl Strategy<Value = TopicConfig> {
    (
        "[A-Za-z0-9_%|-]{1,24}",
        (any::<i32>(), any::<i32>(), any::<i32>()),
        prop_oneof![
            Just(TopicFilterType::SingleTag),
            Just(TopicFilterType::MultiTag)
        ],
        (any::<i32>(), any::<bool>()),
        btree_map(".{0,8}", ".{0,12}", 0..3),
        btree_map("x[a-z]{0,6}", any::<i64>().prop_map(Value::from), 0..2),
    )
        .prop_map(
            |(name, (read, write, perm), filter, (sys_flag, order), attributes, extra)| {
                TopicConfig {
                    read_queue_nums: read,
                    write_queue_nums: write,
                    perm,
                    topic_filter_type: filter,
                    topic_sys_flag: sys_flag,
                    order,
                    attributes,
                    extra,
                    ..TopicConfig::new(name)
                }
            },
        )
}

/// Any body: topics keyed by name, and sometimes static-topic mappings.
fn register_body() -> impl Strategy<Value = RegisterBrokerBody> {
    (
        vec(topic(), 0..6),
        (any::<i64>(), any::<i64>(), any::<i64>()),
        vec(("[A-Za-z0-9_]{1,12}", any::<u32>()), 0..3),
        vec("[0-9.:]{1,21}", 0..3),
    )
        .prop_map(
            |(topics, (state_version, timestamp, counter), mappings, filter_servers)| {
                let mut extra = BTreeMap::new();
                if !mappings.is_empty() {
                    let by_topic = mappings
                        .into_iter()
                        .map(|(topic, epoch)| {
                            let info =
                                json!({"topic": topic, "epoch": epoch, "currIdMap": {"0": 1}});
                            (topic, info)
                        })
                        .collect();
                    extra.insert(
                        TOPIC_QUEUE_MAPPING_INFO_MAP.to_string(),
                        Value::Object(by_topic),
                    );
                }
                RegisterBrokerBody {
                    topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                        topic_config_table: topics
                            .into_iter()
                            .map(|topic| (topic.topic_name.clone(), topic))
                            .collect(),
                        data_version: DataVersion {
                            state_version,
                            timestamp,
                            counter,
                        },
                        extra,
                    },
                    filter_server_list: filter_servers,
                }
            },
        )
}

/// What the compressed form carries of `body`: per topic no
/// `topicSysFlag`, `order` or unknown fields (RocketMQ's
/// `TopicConfig.encode` leaves them out).
fn carried_by_compressed_form(mut body: RegisterBrokerBody) -> RegisterBrokerBody {
    for topic in body
        .topic_config_serialize_wrapper
        .topic_config_table
        .values_mut()
    {
        topic.topic_sys_flag = 0;
        topic.order = false;
        topic.extra.clear();
    }
    body
}

fn inflate(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    ZlibDecoder::new(bytes).read_to_end(&mut plain).unwrap();
    plain
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(plain).unwrap();
    encoder.finish().unwrap()
}

proptest! {
    #[test]
    fn any_command_round_trips_through_the_json_header(command in command()) {
        prop_assert_eq!(decode_one(&command.encode()), command);
    }

    /// The binary header writes no remark and an empty one alike.
    #[test]
    fn any_command_round_trips_through_the_binary_header(command in command()) {
        let command = RemotingCommand { serialize_type: SerializeType::RocketMq, ..command };
        let expected = RemotingCommand {
            remark: command.remark.clone().filter(|remark| !remark.is_empty()),
            ..command.clone()
        };
        prop_assert_eq!(decode_one(&command.encode()), expected);
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more_bytes(command in command(), binary in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let serialize_type = if binary { SerializeType::RocketMq } else { SerializeType::Json };
        let frame = RemotingCommand { serialize_type, ..command }.encode();
        let cut = cut.index(frame.len());
        prop_assert_eq!(decode_frame(&frame[..cut], DEFAULT_MAX_FRAME_BYTES), Ok(None));
    }

    #[test]
    fn any_bytes_decode_to_a_frame_an_error_or_a_wait(bytes in vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let _ = decode_frame(&bytes, max);
        let _ = decode_frame(&bytes, DEFAULT_MAX_FRAME_BYTES);
    }

    /// Corrupting any byte of a valid frame, header lengths included,
    /// gives a result, never a panic.
    #[test]
    fn a_corrupted_frame_never_panics(command in command(), binary in any::<bool>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let serialize_type = if binary { SerializeType::RocketMq } else { SerializeType::Json };
        let mut frame = RemotingCommand { serialize_type, ..command }.encode();
        let at = at.index(frame.len());
        frame[at] = byte;
        if let Ok(Some((_, used))) = decode_frame(&frame, DEFAULT_MAX_FRAME_BYTES) {
            prop_assert!(used <= frame.len());
        }
    }

    #[test]
    fn any_registration_round_trips_through_json(body in register_body()) {
        prop_assert_eq!(RegisterBrokerBody::decode(&body.encode(false), false), Ok(body));
    }

    #[test]
    fn any_registration_round_trips_through_the_compressed_form(body in register_body()) {
        let decoded = RegisterBrokerBody::decode(&body.encode(true), true);
        prop_assert_eq!(decoded, Ok(carried_by_compressed_form(body)));
    }

    #[test]
    fn any_bytes_as_a_registration_give_a_body_or_an_error(bytes in vec(any::<u8>(), 0..512)) {
        let _ = RegisterBrokerBody::decode(&bytes, false);
        let _ = RegisterBrokerBody::decode(&bytes, true);
        let _ = RegisterBrokerBody::decode(&deflate(&bytes), true);
    }

    /// Corrupting any byte of the inflated stream (counts and lengths
    /// included) gives a result, never a panic.
    #[test]
    fn a_corrupted_compressed_registration_never_panics(body in register_body(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut plain = inflate(&body.encode(true));
        let at = at.index(plain.len());
        plain[at] = byte;
        let _ = RegisterBrokerBody::decode(&deflate(&plain), true);
    }
}
