//! Frames: a command to bytes and back, with both header forms.
//!
//! ```text
//! | length: i32 BE | type << 24 | header length: u32 BE | header | body |
//! ```
//!
//! `length` counts everything after itself (4 + header + body). The second
//! word's high byte is the serialize type (0 JSON, 1 ROCKETMQ) and its low
//! three bytes the header length. Byte offsets in errors count from the
//! frame's first byte, so the header starts at offset 8.

use thiserror::Error;

use crate::remoting::{binary_header, json_header, RemotingCommand, SerializeType};

/// The largest frame a name server reads by default: RocketMQ's
/// `com.rocketmq.remoting.frameMaxLength` default (16 MiB), counted like
/// Netty's frame decoder counts it, length prefix included.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Bytes before the header: the length word and the type/header-length word.
pub const FRAME_PREFIX_BYTES: usize = 8;

/// The smallest `length` a frame can declare: the type/header-length word.
const MIN_DECLARED_LENGTH: i32 = 4;

/// The largest header the 24-bit header-length field can describe.
pub const MAX_HEADER_BYTES: usize = 0x00FF_FFFF;

/// Most extFields entries a header may carry. RocketMQ's headers have a few
/// dozen; the cap keeps a header of tiny entries from costing many times
/// its size in map nodes.
pub const MAX_EXT_FIELDS: usize = 1024;

/// Why bytes are not a frame, or a command cannot be written as one. Each
/// names what was wrong and where (byte offsets count from the frame's
/// start).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length word is below the 4 bytes of the type/header-length word.
    #[error("frame length {length} is below the minimum {minimum}")]
    LengthTooShort {
        /// The declared length.
        length: i32,
        /// The least a frame can declare.
        minimum: i32,
    },
    /// The frame, length prefix included, is longer than the reader allows;
    /// refused from its first 4 bytes.
    #[error("frame of {frame_bytes} bytes is over the limit of {max_frame_bytes} bytes")]
    FrameTooLarge {
        /// The whole frame's size: the declared length plus 4.
        frame_bytes: u64,
        /// The reader's limit.
        max_frame_bytes: usize,
    },
    /// The header length is more than the frame holds after the
    /// type/header-length word.
    #[error("header length {header_bytes} is beyond the frame, which has {available} bytes for header and body")]
    HeaderBeyondFrame {
        /// The declared header length.
        header_bytes: usize,
        /// Bytes the frame holds for header and body.
        available: usize,
    },
    /// The serialize type byte is neither 0 (JSON) nor 1 (ROCKETMQ).
    #[error("unknown serialize type {serialize_type} at byte 4 (0 is JSON, 1 is ROCKETMQ)")]
    UnknownSerializeType {
        /// The byte found.
        serialize_type: u8,
    },
    /// A JSON header that is not JSON, or not a JSON object.
    #[error("the JSON header is not a JSON object: {reason}")]
    InvalidJsonHeader {
        /// What the JSON parser said, with line and column.
        reason: String,
    },
    /// A JSON header field of the wrong type or out of range.
    #[error("the JSON header field {field} {reason}")]
    JsonHeaderField {
        /// The field, e.g. `opaque` or `extFields.brokerId`.
        field: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A binary header that ends inside a field.
    #[error("the binary header ends inside {field} at byte {offset}: {needed} bytes needed, {available} left")]
    BinaryHeaderTruncated {
        /// The field being read.
        field: String,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes the header has left.
        available: usize,
    },
    /// A length inside a binary header that is negative or runs past its
    /// region (the header, or the extFields block).
    #[error("the binary header's {field} at byte {offset} declares length {length}, but {available} bytes are left")]
    BinaryLengthOverrun {
        /// The field whose length is wrong.
        field: String,
        /// Where its length word starts.
        offset: usize,
        /// The declared length.
        length: i64,
        /// Bytes left in its region.
        available: usize,
    },
    /// A string of a binary header that is not UTF-8.
    #[error("the binary header's {field} at byte {offset} is not UTF-8")]
    BinaryHeaderNotUtf8 {
        /// The field: `remark`, `extFields key`, or `extFields.<key>`.
        field: String,
        /// Where the string starts.
        offset: usize,
    },
    /// A binary header with more than [`MAX_EXT_FIELDS`] extFields entries
    /// (a JSON header's is a [`FrameError::JsonHeaderField`] `extFields`).
    #[error(
        "the binary header has more than {limit} extFields entries, the next at byte {offset}"
    )]
    TooManyExtFields {
        /// Where the entry over the limit starts.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// Bytes after a binary header's extFields block that the header length
    /// counts: the header and its fields disagree.
    #[error("the binary header has {trailing} bytes after its extFields, from byte {offset}")]
    BinaryHeaderTrailingBytes {
        /// Where the unread bytes start.
        offset: usize,
        /// How many there are.
        trailing: usize,
    },
    /// A command too large for the frame format (only from
    /// [`RemotingCommand::try_encode`]).
    #[error("cannot encode: {what} is {bytes} bytes, over the format's limit of {limit}")]
    TooLongToEncode {
        /// What is too long: `header`, `frame`, or an extFields key.
        what: String,
        /// Its size.
        bytes: usize,
        /// The format's limit.
        limit: usize,
    },
}

/// Decodes the first frame of `buf`: `Ok(None)` if `buf` does not hold a
/// whole frame yet, else the command and the bytes it used. A length over
/// `max_frame_bytes` is refused before its bytes arrive.
pub fn decode_frame(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(RemotingCommand, usize)>, FrameError> {
    let Some(length_word) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let length = i32::from_be_bytes(*length_word);
    if length < MIN_DECLARED_LENGTH {
        return Err(FrameError::LengthTooShort {
            length,
            minimum: MIN_DECLARED_LENGTH,
        });
    }
    // `length` is positive here, so the sum cannot overflow a u64.
    let frame_bytes = u64::from(length.unsigned_abs()) + 4;
    if frame_bytes > max_frame_bytes as u64 {
        return Err(FrameError::FrameTooLarge {
            frame_bytes,
            max_frame_bytes,
        });
    }
    // At most `max_frame_bytes`, so it fits a usize.
    let frame_bytes = frame_bytes as usize;
    let Some(frame) = buf.get(..frame_bytes) else {
        return Ok(None);
    };
    let type_word = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let serialize_type = match (type_word >> 24) as u8 {
        0 => SerializeType::Json,
        1 => SerializeType::RocketMq,
        other => {
            return Err(FrameError::UnknownSerializeType {
                serialize_type: other,
            })
        }
    };
    let header_bytes = (type_word & 0x00FF_FFFF) as usize;
    let available = frame_bytes - FRAME_PREFIX_BYTES;
    if header_bytes > available {
        return Err(FrameError::HeaderBeyondFrame {
            header_bytes,
            available,
        });
    }
    let (header, body) = frame[FRAME_PREFIX_BYTES..].split_at(header_bytes);
    let mut command = match serialize_type {
        SerializeType::Json => json_header::decode(header)?,
        SerializeType::RocketMq => binary_header::decode(header, FRAME_PREFIX_BYTES)?,
    };
    command.serialize_type = serialize_type;
    command.body = body.to_vec();
    Ok(Some((command, frame_bytes)))
}

impl RemotingCommand {
    /// The whole frame, length prefix included, with the header in
    /// `self.serialize_type`'s form.
    ///
    /// In the binary form `code` and `version` travel as 16 bits, as
    /// RocketMQ writes them, and an empty `remark` reads back as none.
    ///
    /// # Panics
    ///
    /// If [`RemotingCommand::try_encode`] fails: a header over 16 MiB, an
    /// extFields key over 64 KiB, or a frame over 2 GiB, none of which a
    /// name server's answer comes near.
    pub fn encode(&self) -> Vec<u8> {
        self.try_encode()
            .unwrap_or_else(|error| panic!("an answer too large for a remoting frame: {error}"))
    }

    /// The whole frame, or why the command is too large for the format.
    pub fn try_encode(&self) -> Result<Vec<u8>, FrameError> {
        let header = match self.serialize_type {
            SerializeType::Json => json_header::encode(self),
            SerializeType::RocketMq => binary_header::encode(self)?,
        };
        if header.len() > MAX_HEADER_BYTES {
            return Err(FrameError::TooLongToEncode {
                what: "header".to_string(),
                bytes: header.len(),
                limit: MAX_HEADER_BYTES,
            });
        }
        let frame_bytes = FRAME_PREFIX_BYTES + header.len() + self.body.len();
        let length = i32::try_from(frame_bytes - 4).map_err(|_| FrameError::TooLongToEncode {
            what: "frame".to_string(),
            bytes: frame_bytes,
            limit: i32::MAX as usize + 4,
        })?;
        let type_code: u32 = match self.serialize_type {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        };
        let mut frame = Vec::with_capacity(frame_bytes);
        frame.extend_from_slice(&length.to_be_bytes());
        // The header length fits 24 bits: checked above.
        frame.extend_from_slice(&((type_code << 24) | header.len() as u32).to_be_bytes());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&self.body);
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn sample(serialize_type: SerializeType) -> RemotingCommand {
        RemotingCommand {
            opaque: 7,
            remark: Some("why".to_string()),
            serialize_type,
            body: b"{}".to_vec(),
            ..RemotingCommand::request(
                105,
                BTreeMap::from([("topic".to_string(), "TBW102".to_string())]),
            )
        }
    }

    fn with_length(frame: &[u8], length: i32) -> Vec<u8> {
        let mut frame = frame.to_vec();
        frame[..4].copy_from_slice(&length.to_be_bytes());
        frame
    }

    #[test]
    fn a_frame_round_trips_and_reports_the_bytes_it_used() {
        for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
            let command = sample(serialize_type);
            let mut bytes = command.encode();
            let frame_bytes = bytes.len();
            bytes.extend_from_slice(b"next frame");
            let (decoded, used) = decode_frame(&bytes, DEFAULT_MAX_FRAME_BYTES)
                .unwrap()
                .unwrap();
            assert_eq!(used, frame_bytes);
            assert_eq!(decoded, command);
        }
    }

    #[test]
    fn a_partial_frame_asks_for_more_bytes() {
        let frame = sample(SerializeType::Json).encode();
        for cut in [0, 3, 4, 8, frame.len() - 1] {
            assert_eq!(
                decode_frame(&frame[..cut], DEFAULT_MAX_FRAME_BYTES),
                Ok(None)
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_word_alone() {
        let length: i32 = 1024 * 1024;
        assert_eq!(
            decode_frame(&length.to_be_bytes(), 1024),
            Err(FrameError::FrameTooLarge {
                frame_bytes: 1024 * 1024 + 4,
                max_frame_bytes: 1024,
            })
        );
    }

    #[test]
    fn a_length_below_the_type_word_is_refused() {
        for length in [-1i32, 0, 3] {
            assert_eq!(
                decode_frame(&length.to_be_bytes(), DEFAULT_MAX_FRAME_BYTES),
                Err(FrameError::LengthTooShort { length, minimum: 4 })
            );
        }
    }

    #[test]
    fn a_header_length_beyond_the_frame_is_refused() {
        let mut frame = 4i32.to_be_bytes().to_vec();
        frame.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            decode_frame(&frame, DEFAULT_MAX_FRAME_BYTES),
            Err(FrameError::HeaderBeyondFrame {
                header_bytes: 5,
                available: 0,
            })
        );
        let shortened = sample(SerializeType::Json).encode();
        let cut = with_length(&shortened, 20);
        assert!(matches!(
            decode_frame(&cut, DEFAULT_MAX_FRAME_BYTES),
            Err(FrameError::HeaderBeyondFrame { available: 16, .. })
        ));
    }

    #[test]
    fn an_unknown_serialize_type_is_refused() {
        let mut frame = sample(SerializeType::Json).encode();
        frame[4] = 2;
        assert_eq!(
            decode_frame(&frame, DEFAULT_MAX_FRAME_BYTES),
            Err(FrameError::UnknownSerializeType { serialize_type: 2 })
        );
    }
}
