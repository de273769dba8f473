//! RocketMQ's remoting protocol, as a name server speaks it.
//!
//! A frame is a 4-byte big-endian length, then 4 bytes holding the
//! serialize type (high byte) and the header length (low three bytes),
//! then the header and the body. The header is JSON or RocketMQ's compact
//! binary form; an answer uses the form its request used.
//!
//! * [`RemotingCommand`]: one request or response, header fields and body.
//! * [`decode_frame`], [`RemotingCommand::encode`]: a frame to a command and
//!   back, with either header form; a [`FrameError`] names what was wrong
//!   and at which byte, and an oversized frame is refused from its length
//!   word alone.
//! * [`request_code`], [`response_code`]: the codes a name server knows.
//! * [`TopicRouteData`], [`ClusterInfo`], [`TopicList`], [`KvTable`]: the
//!   bodies of its answers, in RocketMQ's JSON.
//! * [`RegisterBrokerBody`]: what a broker registers, in JSON or in the
//!   compressed form brokers send with `compressedRegister`, bounded by
//!   [`MAX_INFLATED_REGISTER_BYTES`] and [`MAX_REGISTERED_TOPICS`];
//!   [`body_crc32`] checks its header's `bodyCrc32`.
//!
//! This module knows nothing of sockets: it turns bytes into commands and
//! back.

mod binary_header;
pub mod code;
mod command;
mod fastjson;
mod frame;
mod header;
mod json_header;
mod register;
mod register_compressed;
mod route;
mod topic_text;

pub use code::{request_code, response_code};
pub use command::{
    LanguageCode, RemotingCommand, SerializeType, FLAG_ONEWAY, FLAG_RESPONSE, VERSION,
};
pub use frame::{
    decode_frame, FrameError, DEFAULT_MAX_FRAME_BYTES, FRAME_PREFIX_BYTES, MAX_EXT_FIELDS,
    MAX_HEADER_BYTES,
};
pub use header::HeaderError;
pub use register::{
    body_crc32, BodyError, RegisterBrokerBody, TopicConfigSerializeWrapper,
    MAX_INFLATED_REGISTER_BYTES, MAX_REGISTERED_TOPICS, TOPIC_QUEUE_MAPPING_INFO_MAP,
};
pub use route::{
    BrokerData, ClusterInfo, DataVersion, KvTable, QueueData, TopicList, TopicRouteData,
};
