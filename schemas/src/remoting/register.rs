//! What a broker registers: its topic configs and their data version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::remoting::DataVersion;
use crate::TopicConfig;

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
    /// Fields kept verbatim.
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

/// Why a registration body could not be read. INTERFACE ONLY: the variants
/// are being written on branch `codec`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// Placeholder until the codec lands.
    #[error("the registration body codec is not built yet")]
    NotBuilt,
}

impl RegisterBrokerBody {
    /// Reads a REGISTER_BROKER body: JSON, or RocketMQ's deflated form when
    /// the header says `compressed=true`.
    pub fn decode(body: &[u8], compressed: bool) -> Result<Self, BodyError> {
        let _ = (body, compressed);
        Err(BodyError::NotBuilt)
    }

    /// The body in JSON, or in the deflated form brokers send with
    /// `compressedRegister`.
    pub fn encode(&self, compressed: bool) -> Vec<u8> {
        let _ = compressed;
        unimplemented!("the registration body codec is not built yet")
    }
}

/// The `bodyCrc32` a broker puts in its registration header: CRC-32 of
/// the body with the top bit cleared (RocketMQ's `UtilAll.crc32`).
pub fn body_crc32(body: &[u8]) -> u32 {
    let _ = body;
    unimplemented!("the registration body codec is not built yet")
}
