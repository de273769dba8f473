//! Fuzzing the RocketMQ readers with damaged copies of valid data: the
//! remoting frame decoder (JSON and binary headers, starting from frames
//! real RocketMQ peers sent), registration bodies in both forms, and the
//! metadata JSON (topic and subscription-group configs and files).
//!
//! Every input must give a value or an error, never a panic, and never an
//! allocation beyond what the input's own size explains: a length word of
//! 2 GiB must not reserve 2 GiB. `FUZZ_CASES` sets the cases per target.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use fuzzkit::proptest::collection::{btree_map, vec};
use fuzzkit::proptest::prelude::*;
use fuzzkit::proptest::sample::Index;
use fuzzkit::{apply, mutations, outcome, outcome_of, within_allocation_limit, LengthField};
use schemas::remoting::{
    decode_frame, request_code, DataVersion, RegisterBrokerBody, RemotingCommand, SerializeType,
    TopicConfigSerializeWrapper, DEFAULT_MAX_FRAME_BYTES, TOPIC_QUEUE_MAPPING_INFO_MAP,
};
use schemas::{
    from_json, SubscriptionGroupConfig, SubscriptionGroupFile, TopicConfig, TopicConfigFile,
    ValidateOptions,
};

#[global_allocator]
static ALLOCATOR: fuzzkit::PeakAlloc = fuzzkit::PeakAlloc;

/// What a decoder may allocate beyond a multiple of the input: error
/// messages, maps, the inflater's window.
const SLACK_BYTES: usize = 256 << 10;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The frames RocketMQ peers sent, as captured in the fixtures.
fn captured_frames() -> &'static Vec<Vec<u8>> {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = fixture_dir().join("rocketmq-frames");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("lists the captured frames")
            .map(|entry| entry.expect("an entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|path| std::fs::read(path).expect("reads a frame"))
            .collect()
    })
}

/// A command with either header form.
fn command() -> impl Strategy<Value = RemotingCommand> {
    (
        (any::<i16>(), any::<i16>(), any::<i32>(), any::<i32>()),
        prop::option::of(".{0,16}"),
        btree_map("[a-zA-Z]{0,10}", ".{0,16}", 0..5),
        vec(any::<u8>(), 0..48),
        any::<bool>(),
    )
        .prop_map(
            |((code, version, opaque, flag), remark, ext_fields, body, binary)| RemotingCommand {
                code: code.into(),
                version: version.into(),
                opaque,
                flag,
                remark,
                ext_fields,
                body,
                serialize_type: if binary {
                    SerializeType::RocketMq
                } else {
                    SerializeType::Json
                },
                ..RemotingCommand::default()
            },
        )
}

/// The length fields of a frame: its length word, its header length, and
/// in a binary header the remark, extFields, key and value lengths.
fn frame_fields(frame: &[u8]) -> Vec<LengthField> {
    let mut fields = vec![LengthField::u32_be(0), LengthField::u24_be(4)];
    if frame.get(4) != Some(&1) {
        return fields;
    }
    let read_i32 = |at: usize| -> Option<usize> {
        let word = frame.get(at..at + 4)?;
        Some(u32::from_be_bytes(word.try_into().ok()?) as usize)
    };
    // code, language, version, opaque, flag
    let remark_at = 8 + 13;
    let Some(remark_len) = read_i32(remark_at) else {
        return fields;
    };
    fields.push(LengthField::u32_be(remark_at));
    let ext_at = remark_at + 4 + remark_len;
    let Some(ext_len) = read_i32(ext_at) else {
        return fields;
    };
    fields.push(LengthField::u32_be(ext_at));
    let mut position = ext_at + 4;
    let ext_end = position + ext_len;
    while position + 2 <= ext_end.min(frame.len()) {
        let key_len = usize::from(u16::from_be_bytes([frame[position], frame[position + 1]]));
        fields.push(LengthField::u16_be(position));
        let value_at = position + 2 + key_len;
        let Some(value_len) = read_i32(value_at) else {
            break;
        };
        fields.push(LengthField::u32_be(value_at));
        position = value_at + 4 + value_len;
    }
    fields
}

/// Decodes `bytes` as a stream of frames, as the name server's listener
/// does, until it needs more bytes or meets an error.
fn decode_stream(bytes: &[u8]) -> Result<(), String> {
    let mut position = 0;
    while position < bytes.len() {
        match decode_frame(&bytes[position..], DEFAULT_MAX_FRAME_BYTES) {
            Ok(Some((_, used))) if used > 0 && used <= bytes.len() - position => position += used,
            Ok(Some((_, used))) => {
                return Err(format!("a frame of {used} bytes at byte {position}"));
            }
            Ok(None) => {
                outcome("frames, then a wait for more bytes");
                return Ok(());
            }
            Err(error) if !error.to_string().is_empty() => {
                outcome(&outcome_of(&error.to_string()));
                return Ok(());
            }
            Err(_) => return Err("an error that says nothing".to_string()),
        }
    }
    outcome("whole frames");
    Ok(())
}

#[test]
fn fuzz_remoting_frames() {
    let template = prop_oneof![
        1 => any::<Index>().prop_map(|which| {
            let frames = captured_frames();
            frames[which.index(frames.len())].clone()
        }),
        2 => command().prop_map(|command| command.encode()),
    ];
    let strategy = (vec(template, 1..3), mutations());
    fuzzkit::fuzz("remoting frames", strategy, |(frames, mutations)| {
        let mut valid = Vec::new();
        let mut fields = Vec::new();
        for frame in frames {
            let start = valid.len();
            fields.extend(frame_fields(frame).into_iter().map(|field| LengthField {
                at: start + field.at,
                ..field
            }));
            valid.extend_from_slice(frame);
        }
        let bytes = apply(&valid, &fields, mutations);
        within_allocation_limit(2 * bytes.len() + SLACK_BYTES, || decode_stream(&bytes))?
    });
}

fn deflate(plain: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(plain).expect("deflates into a Vec");
    encoder.finish().expect("deflates into a Vec")
}

fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    ZlibDecoder::new(compressed)
        .read_to_end(&mut plain)
        .expect("a valid body inflates");
    plain
}

/// A registration of a few topics with static-topic mappings.
fn built_registration() -> RegisterBrokerBody {
    let topics = ["orders", "payments", "%RETRY%group-a", "audit"]
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let topic = TopicConfig {
                read_queue_nums: 4 + i as i32,
                write_queue_nums: 4,
                attributes: BTreeMap::from([("+message.type".into(), "NORMAL".into())]),
                ..TopicConfig::new(name)
            };
            (name.to_string(), topic)
        })
        .collect();
    let mappings = serde_json::json!({
        "orders": {"topic": "orders", "bname": "broker-a", "epoch": 3, "totalQueues": 4, "currIdMap": {"0": 0}}
    });
    RegisterBrokerBody {
        topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
            topic_config_table: topics,
            data_version: DataVersion {
                state_version: 1,
                timestamp: 1_718_351_234_567,
                counter: 23,
            },
            extra: BTreeMap::from([(TOPIC_QUEUE_MAPPING_INFO_MAP.to_string(), mappings)]),
        },
        filter_server_list: vec!["127.0.0.1:4000".into()],
    }
}

/// Registration bodies in their JSON form, and in their compressed form,
/// inflated.
type Registrations = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Registration bodies: the ones captured from brokers and one built here,
/// each in its JSON form and its compressed form (inflated, so a mutation
/// lands in the counts and lengths, not in the deflate stream).
fn registrations() -> &'static Registrations {
    static BODIES: OnceLock<Registrations> = OnceLock::new();
    BODIES.get_or_init(|| {
        let built = built_registration();
        let mut json = vec![built.encode(false)];
        let mut compressed = vec![inflate(&built.encode(true))];
        for frame in captured_frames() {
            let Ok(Some((command, _))) = decode_frame(frame, DEFAULT_MAX_FRAME_BYTES) else {
                continue;
            };
            if command.code != request_code::REGISTER_BROKER || command.body.is_empty() {
                continue;
            }
            // Brokers send the JSON form unless told to compress; the
            // compressed form of the same registration is made here.
            if let Ok(body) = RegisterBrokerBody::decode(&command.body, false) {
                compressed.push(inflate(&body.encode(true)));
            }
            json.push(command.body.clone());
        }
        (json, compressed)
    })
}

/// The counts and lengths of an inflated compressed registration.
fn compressed_fields(plain: &[u8]) -> Vec<LengthField> {
    let word_at = |at: usize| {
        let word = plain.get(at..at + 4)?;
        Some(i32::from_be_bytes(word.try_into().expect("4 bytes")).max(0) as usize)
    };
    let mut fields = Vec::new();
    let mut position = 0;
    // dataVersion | topic count, topics | filter servers | mapping count,
    // mappings: each entry a length and its bytes.
    for counted in [false, true, false, true] {
        let Some(value) = word_at(position) else {
            break;
        };
        fields.push(LengthField::u32_be(position));
        position += 4;
        if !counted {
            position += value;
            continue;
        }
        for _ in 0..value {
            let Some(len) = word_at(position) else {
                return fields;
            };
            fields.push(LengthField::u32_be(position));
            position += 4 + len;
        }
    }
    fields
}

#[test]
fn fuzz_registrations() {
    let (json, compressed) = registrations();
    assert!(json.len() >= 2, "the captured registrations");
    for plain in compressed {
        let body = RegisterBrokerBody::decode(&deflate(plain), true);
        assert!(body.is_ok(), "{body:?}");
    }
    let strategy = (any::<bool>(), any::<Index>(), mutations());
    fuzzkit::fuzz(
        "registration bodies",
        strategy,
        |(is_compressed, which, mutations)| {
            let (templates, compressed) = if *is_compressed {
                (compressed, true)
            } else {
                (json, false)
            };
            let valid = &templates[which.index(templates.len())];
            let fields = if compressed {
                compressed_fields(valid)
            } else {
                Vec::new()
            };
            let plain = apply(valid, &fields, mutations);
            let body = if compressed {
                deflate(&plain)
            } else {
                plain.clone()
            };
            let limit = 4 * plain.len() + SLACK_BYTES;
            let decoded =
                within_allocation_limit(limit, || RegisterBrokerBody::decode(&body, compressed))?;
            match &decoded {
                Ok(_) => outcome("decoded"),
                Err(_) if mutations.is_empty() => {
                    return Err(format!("a valid body is refused: {decoded:?}"));
                }
                Err(error) => outcome(&outcome_of(&error.to_string())),
            }
            Ok(())
        },
    );
}

/// JSON-aware damage: a number replaced by an edge value or another type.
fn swap_numbers(json: &[u8], swaps: &[(Index, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(json).into_owned();
    for (which, replacement) in swaps {
        let numbers: Vec<(usize, usize)> = number_spans(&text);
        if numbers.is_empty() {
            break;
        }
        let (start, end) = numbers[which.index(numbers.len())];
        text.replace_range(start..end, replacement);
    }
    text.into_bytes()
}

/// Where the numbers of a JSON text are.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            spans.push((start, i));
        } else {
            i += 1;
        }
    }
    spans
}

const EDGE_VALUES: [&str; 12] = [
    "0",
    "-1",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "99999999999999999999999999",
    "1e400",
    "0.5",
    "null",
    "\"8\"",
    "[]",
    "{}",
];

/// The metadata documents: the broker files and single configs.
fn metadata_documents() -> &'static Vec<Vec<u8>> {
    static DOCUMENTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let topics = std::fs::read(fixture_dir().join("topics.json")).expect("reads topics.json");
        let groups = std::fs::read(fixture_dir().join("subscriptionGroup.json"))
            .expect("reads subscriptionGroup.json");
        let topic = serde_json::to_vec(&TopicConfig::new("orders")).expect("serializes");
        let group =
            serde_json::to_vec(&SubscriptionGroupConfig::new("group-a")).expect("serializes");
        vec![topics, groups, topic, group]
    })
}

/// Reads `json` as every metadata type, validating what parses; which
/// types it parsed as and whether each was valid.
fn read_metadata(json: &[u8]) -> String {
    let options = ValidateOptions::default();
    let checked = |validated: Option<bool>| match validated {
        None => "refused",
        Some(false) => "parsed, invalid",
        Some(true) => "valid",
    };
    let topic_file = from_json::<TopicConfigFile>(json).ok();
    let group_file = from_json::<SubscriptionGroupFile>(json).ok();
    let topic = from_json::<TopicConfig>(json).ok();
    let group = from_json::<SubscriptionGroupConfig>(json).ok();
    let outcomes = [
        (
            "topic file",
            checked(topic_file.map(|f| f.validate(options).is_ok())),
        ),
        (
            "group file",
            checked(group_file.map(|f| f.validate(options).is_ok())),
        ),
        ("topic", checked(topic.map(|t| t.validate(options).is_ok()))),
        ("group", checked(group.map(|g| g.validate(options).is_ok()))),
    ];
    let reached: Vec<String> = outcomes
        .iter()
        .filter(|(_, result)| *result != "refused")
        .map(|(what, result)| format!("{what} {result}"))
        .collect();
    if reached.is_empty() {
        "refused by every type".to_string()
    } else {
        reached.join(", ")
    }
}

#[test]
fn fuzz_metadata_json() {
    let documents = metadata_documents();
    let swaps = vec(
        (any::<Index>(), prop::sample::select(&EDGE_VALUES[..])),
        0..3,
    );
    let strategy = (any::<Index>(), swaps, mutations());
    fuzzkit::fuzz("metadata JSON", strategy, |(which, swaps, mutations)| {
        let valid = &documents[which.index(documents.len())];
        let swapped = swap_numbers(valid, swaps);
        let bytes = apply(&swapped, &[], mutations);
        let reached =
            within_allocation_limit(4 * bytes.len() + SLACK_BYTES, || read_metadata(&bytes))?;
        outcome(&reached);
        Ok(())
    });
}
