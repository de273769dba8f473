//! What a broker registers: its topic configs and their data version, in
//! JSON or in the compressed form (see `register_compressed`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::remoting::{fastjson, register_compressed, DataVersion};
use crate::TopicConfig;

/// Most topics one registration may carry; a broker with more is refused,
/// so that a hostile body cannot make the server hold without bound.
pub const MAX_REGISTERED_TOPICS: usize = 100_000;

/// Most bytes a compressed registration may inflate to.
pub const MAX_INFLATED_REGISTER_BYTES: usize = 64 * 1024 * 1024;

/// The key in [`TopicConfigSerializeWrapper::extra`] that holds the
/// static-topic queue mappings by topic, in both body forms.
pub const TOPIC_QUEUE_MAPPING_INFO_MAP: &str = "topicQueueMappingInfoMap";

/// A broker's topic configs with their version (RocketMQ's
/// `TopicConfigAndMappingSerializeWrapper`). Fields this crate does not
/// use (static-topic mappings) are kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    /// Each topic's config by name.
    #[serde(default)]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    /// The version of that table.
    #[serde(default)]
    pub data_version: DataVersion,
    /// Fields kept as JSON.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The body of REGISTER_BROKER.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    /// The broker's topics.
    #[serde(default)]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
    /// Addresses of the broker's filter servers.
    #[serde(default)]
    pub filter_server_list: Vec<String>,
}

/// Why a registration body could not be read. Offsets count bytes of the
/// inflated stream of a compressed body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// A JSON body (or a JSON part of a compressed one) that does not read.
    #[error("the registration body's JSON at {path} does not read: {reason}")]
    Json {
        /// Where in the JSON, e.g. `topicConfigSerializeWrapper.topicConfigTable.T.perm`.
        path: String,
        /// What the parser said, with line and column.
        reason: String,
    },
    /// A compressed body that is neither a zlib nor a raw deflate stream.
    #[error("the compressed registration body does not inflate: {reason}")]
    Inflate {
        /// What the inflater said.
        reason: String,
    },
    /// A compressed body that inflates past [`MAX_INFLATED_REGISTER_BYTES`].
    #[error("the compressed registration body inflates past the limit of {limit} bytes")]
    InflatedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The inflated stream ends inside a field.
    #[error("the compressed registration ends inside {field} at byte {offset}: {needed} bytes needed, {available} left")]
    Truncated {
        /// The field being read, e.g. `topic[3]`.
        field: String,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A count that is negative or over its limit.
    #[error("the registration's {field} at byte {offset} is {count}, outside 0..={limit}")]
    BadCount {
        /// What is counted, e.g. `topic count`.
        field: String,
        /// Where the count is (0 for a JSON body).
        offset: usize,
        /// The count found.
        count: i64,
        /// The most allowed.
        limit: usize,
    },
    /// A part of a compressed body whose content does not read.
    #[error("the compressed registration's {field} at byte {offset} {reason}")]
    Field {
        /// The part, e.g. `topic[3]` or `dataVersion`.
        field: String,
        /// Where its bytes start.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes after the last section of a compressed body.
    #[error("the compressed registration has {trailing} bytes after its last section, from byte {offset}")]
    TrailingBytes {
        /// Where they start.
        offset: usize,
        /// How many.
        trailing: usize,
    },
}

impl RegisterBrokerBody {
    /// Reads a REGISTER_BROKER body: JSON, or RocketMQ's deflated form when
    /// the header says `compressed=true`.
    pub fn decode(body: &[u8], compressed: bool) -> Result<Self, BodyError> {
        if compressed {
            Self::decode_inflated(&Self::inflate(body)?)
        } else {
            Self::checked(parse_json::<Self>(body)?)
        }
    }

    /// The inflated stream of a compressed body (at most
    /// [`MAX_INFLATED_REGISTER_BYTES`]), to read with
    /// [`RegisterBrokerBody::decode_inflated`]: its size tells what reading
    /// it will cost before it is read.
    pub fn inflate(body: &[u8]) -> Result<Vec<u8>, BodyError> {
        register_compressed::inflate(body)
    }

    /// Reads a compressed body's inflated stream.
    pub fn decode_inflated(plain: &[u8]) -> Result<Self, BodyError> {
        Self::checked(register_compressed::decode_inflated(plain)?)
    }

    /// `decoded`, if it holds at most [`MAX_REGISTERED_TOPICS`] topics.
    fn checked(decoded: Self) -> Result<Self, BodyError> {
        let topics = decoded
            .topic_config_serialize_wrapper
            .topic_config_table
            .len();
        if topics > MAX_REGISTERED_TOPICS {
            return Err(BodyError::BadCount {
                field: "topic count".to_string(),
                offset: 0,
                count: topics as i64,
                limit: MAX_REGISTERED_TOPICS,
            });
        }
        Ok(decoded)
    }

    /// The body in JSON, or in the deflated form brokers send with
    /// `compressedRegister`. The compressed form carries, per topic, only
    /// name, queue numbers, perm, filter type and attributes (RocketMQ's
    /// `TopicConfig.encode`), and of `extra` only the queue mappings.
    pub fn encode(&self, compressed: bool) -> Vec<u8> {
        if compressed {
            register_compressed::encode(self)
        } else {
            serde_json::to_vec(self).expect("a registration body always serializes to JSON")
        }
    }
}

/// Parses JSON as a Java peer may write it: strict JSON first, then with
/// fastjson's bare integer keys quoted. The error is the strict parse's.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, BodyError> {
    let strict = parse_strict_json(text);
    match strict {
        Err(error) => match fastjson::quote_integer_keys(text) {
            Some(quoted) => parse_strict_json(&quoted).map_err(|_| error),
            None => Err(error),
        },
        parsed => parsed,
    }
}

fn parse_strict_json<T: serde::de::DeserializeOwned>(text: &[u8]) -> Result<T, BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let parsed =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| BodyError::Json {
            path: error.path().to_string(),
            reason: error.inner().to_string(),
        })?;
    deserializer.end().map_err(|error| BodyError::Json {
        path: ".".to_string(),
        reason: error.to_string(),
    })?;
    Ok(parsed)
}

/// The `bodyCrc32` a broker puts in its registration header: CRC-32 of
/// the body with the top bit cleared (RocketMQ's `UtilAll.crc32`).
pub fn body_crc32(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_crc32_clears_the_top_bit_of_the_crc() {
        // CRC-32 of "123456789" is 0xCBF43926.
        assert_eq!(body_crc32(b"123456789"), 0xCBF4_3926 & 0x7FFF_FFFF);
        assert_eq!(body_crc32(b""), 0);
    }

    #[test]
    fn a_json_body_names_the_field_that_does_not_read() {
        let body = br#"{"topicConfigSerializeWrapper":{"topicConfigTable":{"T":{"topicName":"T","perm":"rw"}}}}"#;
        let error = RegisterBrokerBody::decode(body, false).unwrap_err();
        assert!(
            matches!(&error, BodyError::Json { path, .. } if path.ends_with("topicConfigTable.T.perm")),
            "{error}"
        );
    }

    #[test]
    fn fastjson_integer_keys_in_mappings_are_read() {
        let body = br#"{"topicConfigSerializeWrapper":{"topicQueueMappingInfoMap":{"T":{"topic":"T","currIdMap":{0:1}}}},"filterServerList":[]}"#;
        let decoded = RegisterBrokerBody::decode(body, false).unwrap();
        let mappings = &decoded.topic_config_serialize_wrapper.extra[TOPIC_QUEUE_MAPPING_INFO_MAP];
        assert_eq!(mappings["T"]["currIdMap"]["0"], 1);
    }
}
