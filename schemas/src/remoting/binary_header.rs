//! The compact binary header (serialize type 1, RocketMQ's
//! `RocketMQSerializable`), all integers big-endian:
//!
//! ```text
//! code: i16 | language: u8 | version: i16 | opaque: i32 | flag: i32
//! remark length: i32 | remark (UTF-8; length 0 = none)
//! extFields length: i32 | per entry: key length: u16 | key | value length: i32 | value
//! ```
//!
//! Java reads a zero-length key or value as null; this reader keeps it as
//! an empty string, so every map this writer writes reads back unchanged.

use std::collections::BTreeMap;

use crate::remoting::{FrameError, LanguageCode, RemotingCommand, MAX_EXT_FIELDS};

/// The fixed part: code, language, version, opaque, flag.
const FIXED_BYTES: usize = 2 + 1 + 2 + 4 + 4;

/// The header of `command` in the binary form. `code` and `version` are
/// written as 16 bits, as RocketMQ writes them.
pub(crate) fn encode(command: &RemotingCommand) -> Result<Vec<u8>, FrameError> {
    let remark = command.remark.as_deref().unwrap_or_default().as_bytes();
    let mut ext = Vec::new();
    for (key, value) in &command.ext_fields {
        let key_bytes = u16::try_from(key.len()).map_err(|_| FrameError::TooLongToEncode {
            what: format!(
                "extFields key {:?}…",
                key.chars().take(32).collect::<String>()
            ),
            bytes: key.len(),
            limit: usize::from(u16::MAX),
        })?;
        ext.extend_from_slice(&key_bytes.to_be_bytes());
        ext.extend_from_slice(key.as_bytes());
        ext.extend_from_slice(&length_word("extFields value", value.len())?);
        ext.extend_from_slice(value.as_bytes());
    }
    let mut header = Vec::with_capacity(FIXED_BYTES + 8 + remark.len() + ext.len());
    // Truncation to 16 bits is the format's: RocketMQ's codes and versions fit.
    header.extend_from_slice(&(command.code as i16).to_be_bytes());
    header.push(command.language.code());
    header.extend_from_slice(&(command.version as i16).to_be_bytes());
    header.extend_from_slice(&command.opaque.to_be_bytes());
    header.extend_from_slice(&command.flag.to_be_bytes());
    header.extend_from_slice(&length_word("remark", remark.len())?);
    header.extend_from_slice(remark);
    header.extend_from_slice(&length_word("extFields", ext.len())?);
    header.extend_from_slice(&ext);
    Ok(header)
}

fn length_word(what: &str, bytes: usize) -> Result<[u8; 4], FrameError> {
    i32::try_from(bytes)
        .map(i32::to_be_bytes)
        .map_err(|_| FrameError::TooLongToEncode {
            what: what.to_string(),
            bytes,
            limit: i32::MAX as usize,
        })
}

/// A command (without body) from a binary header that starts at byte
/// `frame_offset` of its frame.
pub(crate) fn decode(header: &[u8], frame_offset: usize) -> Result<RemotingCommand, FrameError> {
    let mut reader = Reader {
        bytes: header,
        position: 0,
        frame_offset,
    };
    let code = i32::from(i16::from_be_bytes(reader.array("code")?));
    let language = LanguageCode::from_code(u8::from_be_bytes(reader.array("language")?));
    let version = i32::from(i16::from_be_bytes(reader.array("version")?));
    let opaque = i32::from_be_bytes(reader.array("opaque")?);
    let flag = i32::from_be_bytes(reader.array("flag")?);
    let remark_bytes = reader.length_prefixed_i32("remark")?;
    let remark = match remark_bytes {
        (_, []) => None,
        (offset, bytes) => Some(utf8("remark", offset, bytes)?),
    };
    let (ext_offset, ext) = reader.length_prefixed_i32("extFields")?;
    let ext_fields = decode_ext_fields(ext, ext_offset)?;
    if reader.position < header.len() {
        return Err(FrameError::BinaryHeaderTrailingBytes {
            offset: reader.frame_offset + reader.position,
            trailing: header.len() - reader.position,
        });
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        ..RemotingCommand::default()
    })
}

fn decode_ext_fields(
    block: &[u8],
    frame_offset: usize,
) -> Result<BTreeMap<String, String>, FrameError> {
    let mut reader = Reader {
        bytes: block,
        position: 0,
        frame_offset,
    };
    let mut fields = BTreeMap::new();
    let mut entries = 0;
    while reader.position < block.len() {
        let key_length_at = reader.frame_offset + reader.position;
        entries += 1;
        if entries > MAX_EXT_FIELDS {
            return Err(FrameError::TooManyExtFields {
                offset: key_length_at,
                limit: MAX_EXT_FIELDS,
            });
        }
        let key_length = usize::from(u16::from_be_bytes(reader.array("extFields key length")?));
        let key_bytes = reader.take("extFields key", key_length_at, key_length as i64)?;
        let key = utf8("extFields key", key_length_at + 2, key_bytes)?;
        let (value_offset, value_bytes) =
            reader.length_prefixed_i32(&format!("extFields.{key}"))?;
        let value = utf8(&format!("extFields.{key}"), value_offset, value_bytes)?;
        fields.insert(key, value);
    }
    Ok(fields)
}

fn utf8(field: &str, offset: usize, bytes: &[u8]) -> Result<String, FrameError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| FrameError::BinaryHeaderNotUtf8 {
        field: field.to_string(),
        offset,
    })
}

/// Reads a region (the header, or its extFields block) front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Where `bytes` starts in the frame, for error offsets.
    frame_offset: usize,
}

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], FrameError> {
        let rest = &self.bytes[self.position..];
        let Some(array) = rest.first_chunk::<N>() else {
            return Err(FrameError::BinaryHeaderTruncated {
                field: field.to_string(),
                offset: self.frame_offset + self.position,
                needed: N,
                available: rest.len(),
            });
        };
        self.position += N;
        Ok(*array)
    }

    /// `length` bytes for `field`, whose length word started at frame byte
    /// `length_at`; a negative length or one past the region is refused.
    fn take(&mut self, field: &str, length_at: usize, length: i64) -> Result<&'a [u8], FrameError> {
        let available = self.bytes.len() - self.position;
        let Some(length) = usize::try_from(length).ok().filter(|n| *n <= available) else {
            return Err(FrameError::BinaryLengthOverrun {
                field: field.to_string(),
                offset: length_at,
                length,
                available,
            });
        };
        let bytes = &self.bytes[self.position..self.position + length];
        self.position += length;
        Ok(bytes)
    }

    /// An i32 length and that many bytes, with the frame offset where the
    /// bytes start.
    fn length_prefixed_i32(&mut self, field: &str) -> Result<(usize, &'a [u8]), FrameError> {
        let length_at = self.frame_offset + self.position;
        let length = i32::from_be_bytes(self.array(&format!("{field} length"))?);
        let bytes = self.take(field, length_at, i64::from(length))?;
        Ok((length_at + 4, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(ext_fields: &[(&str, &str)], remark: Option<&str>) -> Vec<u8> {
        let command = RemotingCommand {
            code: 103,
            version: 474,
            opaque: 5,
            remark: remark.map(str::to_string),
            ext_fields: ext_fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..RemotingCommand::default()
        };
        encode(&command).unwrap()
    }

    #[test]
    fn the_layout_is_rocketmqs() {
        let header = header_with(&[("a", "bc")], Some("r"));
        let expected: Vec<u8> = [
            &[0, 103][..],       // code
            &[0],                // language JAVA
            &[1, 218],           // version 474
            &[0, 0, 0, 5],       // opaque
            &[0, 0, 0, 0],       // flag
            &[0, 0, 0, 1, b'r'], // remark
            &[0, 0, 0, 9],       // extFields length
            &[0, 1, b'a'],       // key
            &[0, 0, 0, 2, b'b', b'c'],
        ]
        .concat();
        assert_eq!(header, expected);
    }

    #[test]
    fn a_header_cut_inside_a_field_names_the_field_and_offset() {
        let header = header_with(&[], None);
        assert_eq!(
            decode(&header[..6], 8),
            Err(FrameError::BinaryHeaderTruncated {
                field: "opaque".to_string(),
                offset: 13,
                needed: 4,
                available: 1,
            })
        );
    }

    #[test]
    fn lengths_that_overrun_their_region_are_refused() {
        let mut header = header_with(&[], Some("r"));
        header[13..17].copy_from_slice(&100i32.to_be_bytes());
        assert!(matches!(
            decode(&header, 8),
            Err(FrameError::BinaryLengthOverrun { ref field, offset: 21, length: 100, .. }) if field == "remark"
        ));
        let mut header = header_with(&[("a", "bc")], None);
        header[13..17].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            decode(&header, 8),
            Err(FrameError::BinaryLengthOverrun { length: -1, .. })
        ));
        // The value's length runs past the extFields block, though not past
        // the header: the block bounds it.
        let mut header = header_with(&[("a", "bc")], None);
        header.extend_from_slice(b"xx");
        let value_length_at = header.len() - 8;
        header[value_length_at..value_length_at + 4].copy_from_slice(&4i32.to_be_bytes());
        assert!(matches!(
            decode(&header, 8),
            Err(FrameError::BinaryLengthOverrun { ref field, .. }) if field == "extFields.a"
        ));
    }

    #[test]
    fn a_header_with_too_many_ext_fields_is_refused() {
        let keys: Vec<String> = (0..=MAX_EXT_FIELDS).map(|n| n.to_string()).collect();
        let fields: Vec<(&str, &str)> = keys.iter().map(|key| (key.as_str(), "")).collect();
        let header = header_with(&fields, None);
        assert!(matches!(
            decode(&header, 8),
            Err(FrameError::TooManyExtFields {
                limit: MAX_EXT_FIELDS,
                ..
            })
        ));
        let header = header_with(&fields[..MAX_EXT_FIELDS], None);
        assert_eq!(decode(&header, 8).unwrap().ext_fields.len(), MAX_EXT_FIELDS);
    }

    #[test]
    fn bytes_after_the_ext_fields_are_refused() {
        let mut header = header_with(&[("a", "b")], None);
        header.push(0);
        assert_eq!(
            decode(&header, 8),
            Err(FrameError::BinaryHeaderTrailingBytes {
                offset: 8 + header.len() - 1,
                trailing: 1,
            })
        );
    }

    #[test]
    fn a_string_that_is_not_utf8_is_named() {
        let mut header = header_with(&[], Some("r"));
        header[17] = 0xff;
        assert_eq!(
            decode(&header, 8),
            Err(FrameError::BinaryHeaderNotUtf8 {
                field: "remark".to_string(),
                offset: 25,
            })
        );
    }
}
