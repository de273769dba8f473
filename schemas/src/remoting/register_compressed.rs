//! The compressed registration body (RocketMQ's
//! `RegisterBrokerBody.encode(true)`): a deflate stream of, with big-endian
//! i32 lengths and counts,
//!
//! ```text
//! length | DataVersion JSON
//! topic count | per topic: length | TopicConfig.encode() text
//! length | filter server list JSON
//! mapping count | per mapping: length | TopicQueueMappingInfo JSON   (5.0+)
//! ```
//!
//! A topic's text is read and written by `topic_text`. Brokers before 5.0
//! end the stream after the filter server list. Java writes a zlib stream; rocketmq-rust writes raw
//! deflate; both are read, and zlib is written.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::{DeflateDecoder, ZlibDecoder};
use flate2::write::ZlibEncoder;
use flate2::Compression;
use serde_json::Value;

use crate::remoting::register::{
    parse_json, MAX_INFLATED_REGISTER_BYTES, MAX_REGISTERED_TOPICS, TOPIC_QUEUE_MAPPING_INFO_MAP,
};
use crate::remoting::topic_text;
use crate::remoting::{BodyError, DataVersion, RegisterBrokerBody};

/// The body in the compressed form.
pub(crate) fn encode(body: &RegisterBrokerBody) -> Vec<u8> {
    let wrapper = &body.topic_config_serialize_wrapper;
    let mut plain = Vec::new();
    put_entry(&mut plain, &to_json(&wrapper.data_version));
    put_i32(&mut plain, wrapper.topic_config_table.len());
    for topic in wrapper.topic_config_table.values() {
        put_entry(&mut plain, topic_text::encode(topic).as_bytes());
    }
    put_entry(&mut plain, &to_json(&body.filter_server_list));
    let no_mappings = serde_json::Map::new();
    let mappings = match wrapper.extra.get(TOPIC_QUEUE_MAPPING_INFO_MAP) {
        Some(Value::Object(mappings)) => mappings,
        _ => &no_mappings,
    };
    put_i32(&mut plain, mappings.len());
    for mapping in mappings.values() {
        put_entry(&mut plain, &to_json(mapping));
    }
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
    encoder
        .write_all(&plain)
        .expect("deflating into a Vec cannot fail");
    encoder.finish().expect("deflating into a Vec cannot fail")
}

/// A part as compact JSON.
fn to_json<T: serde::Serialize>(part: &T) -> Vec<u8> {
    serde_json::to_vec(part).expect("registration parts always serialize to JSON")
}

fn put_i32(out: &mut Vec<u8>, value: usize) {
    // Counts and lengths here are bounded by what a broker can hold in
    // memory, far below 2^31; saturating keeps a corrupt value detectable.
    let value = i32::try_from(value).unwrap_or(i32::MAX);
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_entry(out: &mut Vec<u8>, bytes: &[u8]) {
    put_i32(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads the inflated stream of a compressed body.
pub(crate) fn decode_inflated(plain: &[u8]) -> Result<RegisterBrokerBody, BodyError> {
    let mut reader = Reader {
        bytes: plain,
        position: 0,
    };
    let (offset, bytes) = reader.entry("dataVersion")?;
    let data_version: DataVersion = json_part("dataVersion", offset, bytes)?;

    let topic_count = reader.count("topic count", MAX_REGISTERED_TOPICS)?;
    let mut topic_config_table = BTreeMap::new();
    for index in 0..topic_count {
        let field = format!("topic[{index}]");
        let (offset, bytes) = reader.entry(&field)?;
        let topic = std::str::from_utf8(bytes)
            .map_err(|error| error.to_string())
            .and_then(topic_text::decode)
            .map_err(|reason| BodyError::Field {
                field: field.clone(),
                offset,
                reason,
            })?;
        topic_config_table.insert(topic.topic_name.clone(), topic);
    }

    let (offset, bytes) = reader.entry("filterServerList")?;
    let filter_server_list: Option<Vec<String>> = if bytes.is_empty() {
        None
    } else {
        json_part("filterServerList", offset, bytes)?
    };

    let mut extra = BTreeMap::new();
    if reader.remaining() > 0 {
        let mappings = decode_mappings(&mut reader)?;
        if !mappings.is_empty() {
            extra.insert(
                TOPIC_QUEUE_MAPPING_INFO_MAP.to_string(),
                Value::Object(mappings),
            );
        }
    }
    if reader.remaining() > 0 {
        return Err(BodyError::TrailingBytes {
            offset: reader.position,
            trailing: reader.remaining(),
        });
    }

    let mut decoded = RegisterBrokerBody {
        filter_server_list: filter_server_list.unwrap_or_default(),
        ..RegisterBrokerBody::default()
    };
    let wrapper = &mut decoded.topic_config_serialize_wrapper;
    wrapper.data_version = data_version;
    wrapper.topic_config_table = topic_config_table;
    wrapper.extra = extra;
    Ok(decoded)
}

/// The static-topic mappings section, by topic.
fn decode_mappings(reader: &mut Reader<'_>) -> Result<serde_json::Map<String, Value>, BodyError> {
    let count = reader.count("topicQueueMappingInfo count", MAX_REGISTERED_TOPICS)?;
    let mut mappings = serde_json::Map::new();
    for index in 0..count {
        let field = format!("topicQueueMappingInfo[{index}]");
        let (offset, bytes) = reader.entry(&field)?;
        let mapping: Value = json_part(&field, offset, bytes)?;
        let Some(topic) = mapping
            .get("topic")
            .and_then(Value::as_str)
            .filter(|topic| !topic.is_empty())
        else {
            return Err(BodyError::Field {
                field,
                offset,
                reason: "names no topic".to_string(),
            });
        };
        mappings.insert(topic.to_string(), mapping);
    }
    Ok(mappings)
}

fn json_part<T: serde::de::DeserializeOwned>(
    field: &str,
    offset: usize,
    bytes: &[u8],
) -> Result<T, BodyError> {
    parse_json(bytes).map_err(|error| BodyError::Field {
        field: field.to_string(),
        offset,
        reason: format!("is not the JSON expected: {error}"),
    })
}

/// The inflated stream, at most [`MAX_INFLATED_REGISTER_BYTES`]: zlib as
/// Java writes it, else raw deflate as rocketmq-rust writes it.
pub(crate) fn inflate(body: &[u8]) -> Result<Vec<u8>, BodyError> {
    match inflate_bounded(ZlibDecoder::new(body)) {
        Err(BodyError::Inflate { reason }) => {
            inflate_bounded(DeflateDecoder::new(body)).map_err(|raw_error| match raw_error {
                BodyError::Inflate { .. } => BodyError::Inflate { reason },
                too_large => too_large,
            })
        }
        result => result,
    }
}

fn inflate_bounded(mut decoder: impl Read) -> Result<Vec<u8>, BodyError> {
    let mut plain = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = decoder
            .read(&mut chunk)
            .map_err(|error| BodyError::Inflate {
                reason: error.to_string(),
            })?;
        if read == 0 {
            return Ok(plain);
        }
        if plain.len() + read > MAX_INFLATED_REGISTER_BYTES {
            return Err(BodyError::InflatedTooLarge {
                limit: MAX_INFLATED_REGISTER_BYTES,
            });
        }
        plain.extend_from_slice(&chunk[..read]);
    }
}

/// Reads the inflated stream front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn i32(&mut self, field: &str) -> Result<i32, BodyError> {
        let rest = &self.bytes[self.position..];
        let Some(word) = rest.first_chunk::<4>() else {
            return Err(BodyError::Truncated {
                field: field.to_string(),
                offset: self.position,
                needed: 4,
                available: rest.len(),
            });
        };
        self.position += 4;
        Ok(i32::from_be_bytes(*word))
    }

    fn count(&mut self, field: &str, limit: usize) -> Result<usize, BodyError> {
        let offset = self.position;
        let count = self.i32(field)?;
        usize::try_from(count)
            .ok()
            .filter(|count| *count <= limit)
            .ok_or(BodyError::BadCount {
                field: field.to_string(),
                offset,
                count: i64::from(count),
                limit,
            })
    }

    /// An i32 length and that many bytes, with the offset where they start.
    fn entry(&mut self, field: &str) -> Result<(usize, &'a [u8]), BodyError> {
        let length_at = self.position;
        let length = self.i32(field)?;
        let available = self.remaining();
        let Some(length) = usize::try_from(length).ok().filter(|n| *n <= available) else {
            return Err(BodyError::Truncated {
                field: field.to_string(),
                offset: length_at + 4,
                needed: usize::try_from(length).unwrap_or(0),
                available,
            });
        };
        let start = self.position;
        self.position += length;
        Ok((start, &self.bytes[start..start + length]))
    }
}

#[cfg(test)]
mod tests {
    use flate2::write::DeflateEncoder;

    use super::*;

    fn decode(body: &[u8]) -> Result<RegisterBrokerBody, BodyError> {
        decode_inflated(&inflate(body)?)
    }
    use crate::TopicConfig;

    fn topic(name: &str) -> TopicConfig {
        TopicConfig {
            read_queue_nums: 8,
            write_queue_nums: 4,
            perm: 6,
            attributes: BTreeMap::from([("+message.type".to_string(), "FIFO".to_string())]),
            ..TopicConfig::new(name)
        }
    }

    fn body_with_topics(count: usize) -> RegisterBrokerBody {
        let mut body = RegisterBrokerBody::default();
        for index in 0..count {
            let name = format!("topic-{index}");
            body.topic_config_serialize_wrapper
                .topic_config_table
                .insert(name.clone(), topic(&name));
        }
        body
    }

    #[test]
    fn a_raw_deflate_stream_as_rocketmq_rust_writes_reads_like_zlib() {
        let body = body_with_topics(3);
        let zlib = encode(&body);
        let mut plain = Vec::new();
        ZlibDecoder::new(&zlib[..]).read_to_end(&mut plain).unwrap();
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::best());
        raw.write_all(&plain).unwrap();
        let raw = raw.finish().unwrap();
        assert_eq!(decode(&raw).unwrap(), body);
        assert_eq!(decode(&zlib).unwrap(), body);
    }

    fn deflated(plain: &[u8]) -> Vec<u8> {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(plain).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn a_pre_5_0_stream_without_mappings_reads() {
        let mut plain = Vec::new();
        put_entry(
            &mut plain,
            br#"{"counter":3,"stateVersion":0,"timestamp":1}"#,
        );
        put_i32(&mut plain, 1);
        put_entry(&mut plain, b"TBW102 8 8 7 SINGLE_TAG {}");
        put_entry(&mut plain, b"[]");
        let decoded = decode(&deflated(&plain)).unwrap();
        let wrapper = decoded.topic_config_serialize_wrapper;
        assert_eq!(wrapper.data_version.counter, 3);
        assert_eq!(wrapper.topic_config_table["TBW102"].read_queue_nums, 8);
        assert!(wrapper.extra.is_empty());
    }

    /// A stream with no topics and the given mapping entries.
    fn stream_with_mappings(mappings: &[&[u8]]) -> Vec<u8> {
        let mut plain = Vec::new();
        put_entry(&mut plain, b"{}");
        put_i32(&mut plain, 0);
        put_entry(&mut plain, b"[]");
        put_i32(&mut plain, mappings.len());
        for mapping in mappings {
            put_entry(&mut plain, mapping);
        }
        plain
    }

    #[test]
    fn java_mappings_with_fastjson_integer_keys_are_kept_by_topic() {
        let java_mapping = br#"{"topic":"T","currIdMap":{0:1},"epoch":7}"#;
        let decoded = decode(&deflated(&stream_with_mappings(&[java_mapping]))).unwrap();
        let mappings = &decoded.topic_config_serialize_wrapper.extra[TOPIC_QUEUE_MAPPING_INFO_MAP];
        assert_eq!(mappings["T"]["currIdMap"]["0"], 1);
        assert_eq!(mappings["T"]["epoch"], 7);

        let plain = stream_with_mappings(&[java_mapping, br#"{"bname":"broker-a"}"#]);
        // 20 bytes of data version, topic count, filter list and mapping
        // count; then the first mapping's length and text; then the second
        // mapping's length.
        let second_at = 20 + 4 + java_mapping.len() + 4;
        assert_eq!(
            decode(&deflated(&plain)),
            Err(BodyError::Field {
                field: "topicQueueMappingInfo[1]".to_string(),
                offset: second_at,
                reason: "names no topic".to_string(),
            })
        );
    }

    #[test]
    fn hostile_counts_and_lengths_are_refused_naming_where() {
        let mut plain = Vec::new();
        put_entry(&mut plain, b"{}");
        plain.extend_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(
            decode(&deflated(&plain)),
            Err(BodyError::BadCount {
                field: "topic count".to_string(),
                offset: 6,
                count: i64::from(i32::MAX),
                limit: MAX_REGISTERED_TOPICS,
            })
        );
        let mut plain = Vec::new();
        put_entry(&mut plain, b"{}");
        put_i32(&mut plain, 2);
        put_entry(&mut plain, b"a 1 1 6 SINGLE_TAG {}");
        plain.extend_from_slice(&1_000_000i32.to_be_bytes());
        assert!(matches!(
            decode(&deflated(&plain)),
            Err(BodyError::Truncated { ref field, needed: 1_000_000, .. }) if field == "topic[1]"
        ));
    }

    #[test]
    fn a_body_inflating_past_the_limit_is_refused() {
        let zeros = vec![0u8; MAX_INFLATED_REGISTER_BYTES + 1];
        assert_eq!(
            decode(&deflated(&zeros)),
            Err(BodyError::InflatedTooLarge {
                limit: MAX_INFLATED_REGISTER_BYTES
            })
        );
    }

    #[test]
    fn bytes_that_do_not_inflate_are_refused() {
        // 0xff opens neither a zlib header nor a valid deflate block.
        assert!(matches!(
            decode(&[0xff; 16]),
            Err(BodyError::Inflate { .. })
        ));
    }
}
