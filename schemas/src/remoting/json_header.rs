//! The JSON header (serialize type 0), as Java's fastjson and rocketmq-rust
//! write it.
//!
//! Reading is lenient where peers differ: `serializeTypeCurrentRPC`,
//! `remark` and `extFields` may be absent or null, unknown keys are
//! ignored, integers may come as numeric strings, and extFields values that
//! are numbers or booleans become strings, and a key given twice takes its
//! last value, as fastjson reads it. Absent integer fields read as 0
//! and an absent language as JAVA, as Java's decoder leaves them. Writing
//! follows rocketmq-rust's compact form byte for byte: its field order,
//! extFields sorted by key, `null` for no remark or no extFields.

use std::collections::BTreeMap;

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::error::Category;

use crate::remoting::{FrameError, LanguageCode, RemotingCommand, MAX_EXT_FIELDS};

/// The header's fields as written, in rocketmq-rust's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonHeaderOut<'a> {
    code: i32,
    language: &'static str,
    version: i32,
    opaque: i32,
    flag: i32,
    remark: Option<&'a str>,
    ext_fields: Option<&'a BTreeMap<String, String>>,
    #[serde(rename = "serializeTypeCurrentRPC")]
    serialize_type_current_rpc: &'static str,
}

/// The header of `command` as compact JSON.
pub(crate) fn encode(command: &RemotingCommand) -> Vec<u8> {
    let header = JsonHeaderOut {
        code: command.code,
        language: command.language.name(),
        version: command.version,
        opaque: command.opaque,
        flag: command.flag,
        remark: command.remark.as_deref(),
        ext_fields: (!command.ext_fields.is_empty()).then_some(&command.ext_fields),
        serialize_type_current_rpc: "JSON",
    };
    serde_json::to_vec(&header).expect("a struct of strings and integers always serializes")
}

/// A command (without body) from a JSON header.
///
/// Read straight into the command's fields: unknown keys are skipped
/// without being kept, so a header costs little more than its own bytes.
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let mut deserializer = serde_json::Deserializer::from_slice(header);
    let parsed: Result<JsonHeaderIn, _> = serde_path_to_error::deserialize(&mut deserializer);
    let fields = parsed.map_err(|error| {
        let at_root = error.path().iter().next().is_none();
        let reason = error.inner().to_string();
        match error.inner().classify() {
            Category::Data if !at_root => FrameError::JsonHeaderField {
                field: error.path().to_string(),
                reason,
            },
            _ => FrameError::InvalidJsonHeader { reason },
        }
    })?;
    deserializer
        .end()
        .map_err(|error| FrameError::InvalidJsonHeader {
            reason: error.to_string(),
        })?;
    let JsonHeaderIn(fields) = fields;
    Ok(RemotingCommand {
        code: fields.code.0,
        language: fields.language.0,
        version: fields.version.0,
        opaque: fields.opaque.0,
        flag: fields.flag.0,
        remark: fields.remark.0,
        ext_fields: fields.ext_fields.0,
        ..RemotingCommand::default()
    })
}

/// A JSON object of header fields; any other JSON value is refused.
struct JsonHeaderIn(JsonHeaderFields);

impl<'de> Deserialize<'de> for JsonHeaderIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = JsonHeaderIn;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JsonHeaderIn, A::Error> {
                JsonHeaderFields::deserialize(MapAccessDeserializer::new(map)).map(JsonHeaderIn)
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// The fields a header may hold; absent or null ones read as Java leaves
/// them (0, JAVA, none). A key given twice takes its last value, as
/// fastjson reads it.
#[derive(Default)]
struct JsonHeaderFields {
    code: Int,
    language: Language,
    version: Int,
    opaque: Int,
    flag: Int,
    remark: Scalar,
    ext_fields: ExtFields,
}

/// A header's keys: those read, and any other (skipped).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum HeaderKey {
    Code,
    Language,
    Version,
    Opaque,
    Flag,
    Remark,
    ExtFields,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for JsonHeaderFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = JsonHeaderFields;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonHeaderFields, A::Error> {
                let mut fields = JsonHeaderFields::default();
                while let Some(key) = map.next_key::<HeaderKey>()? {
                    match key {
                        HeaderKey::Code => fields.code = map.next_value()?,
                        HeaderKey::Language => fields.language = map.next_value()?,
                        HeaderKey::Version => fields.version = map.next_value()?,
                        HeaderKey::Opaque => fields.opaque = map.next_value()?,
                        HeaderKey::Flag => fields.flag = map.next_value()?,
                        HeaderKey::Remark => fields.remark = map.next_value()?,
                        HeaderKey::ExtFields => fields.ext_fields = map.next_value()?,
                        HeaderKey::Other => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A 32-bit integer, also from a numeric string; null is 0.
#[derive(Default)]
struct Int(i32);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = Int;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a 32-bit integer")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Int, E> {
                i32::try_from(value)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Int, E> {
                i32::try_from(value)
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Int, E> {
                value
                    .trim()
                    .parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(Unexpected::Str(value), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Int, E> {
                Ok(Int(0))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// A language by name or by number; unknown ones are `Other`, null is JAVA.
#[derive(Default)]
struct Language(LanguageCode);

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LanguageVisitor;
        impl Visitor<'_> for LanguageVisitor {
            type Value = Language;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a language name or number")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Language, E> {
                Ok(Language(LanguageCode::from_name(value)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Language, E> {
                u8::try_from(value)
                    .map(|code| Language(LanguageCode::from_code(code)))
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(value), &self))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Language, E> {
                Ok(Language::default())
            }
        }
        deserializer.deserialize_any(LanguageVisitor)
    }
}

/// A string, or a number or boolean as text; null is none.
#[derive(Default)]
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(value)))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// The extFields object, at most [`MAX_EXT_FIELDS`] entries; null values
/// are left out, null or absent is empty.
#[derive(Default)]
struct ExtFields(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for ExtFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtFieldsVisitor;
        impl<'de> Visitor<'de> for ExtFieldsVisitor {
            type Value = ExtFields;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object of strings, numbers or booleans")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ExtFields, A::Error> {
                let mut fields = BTreeMap::new();
                let mut entries = 0usize;
                while let Some((key, Scalar(value))) = map.next_entry::<String, Scalar>()? {
                    entries += 1;
                    if entries > MAX_EXT_FIELDS {
                        return Err(de::Error::custom(format!(
                            "has more than {MAX_EXT_FIELDS} entries"
                        )));
                    }
                    // The last value of a key given twice stands, null too.
                    match value {
                        Some(value) => fields.insert(key, value),
                        None => fields.remove(&key),
                    };
                }
                Ok(ExtFields(fields))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ExtFields, E> {
                Ok(ExtFields::default())
            }
        }
        deserializer.deserialize_any(ExtFieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_java_style_header_without_optional_fields_decodes() {
        let header = br#"{"code":105,"extFields":{"topic":"TBW102"},"flag":0,"language":"JAVA","opaque":9,"version":453}"#;
        let command = decode(header).unwrap();
        assert_eq!(command.code, 105);
        assert_eq!(command.opaque, 9);
        assert_eq!(command.remark, None);
        assert_eq!(command.field("topic"), Some("TBW102"));
    }

    #[test]
    fn numbers_and_booleans_in_ext_fields_become_strings_and_unknown_keys_are_ignored() {
        let header = br#"{"code":"103","language":12,"extFields":{"brokerId":0,"compressed":false,"gone":null},"suspended":false}"#;
        let command = decode(header).unwrap();
        assert_eq!(command.code, 103);
        assert_eq!(command.language, LanguageCode::Rust);
        assert_eq!(command.field("brokerId"), Some("0"));
        assert_eq!(command.field("compressed"), Some("false"));
        assert_eq!(command.field("gone"), None);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let error = decode(br#"{"code":103,"extFields":{"topic":["a"]}}"#).unwrap_err();
        assert!(
            matches!(&error, FrameError::JsonHeaderField { field, .. } if field == "extFields.topic"),
            "{error}"
        );
        let error = decode(br#"{"opaque":4294967296}"#).unwrap_err();
        assert!(
            matches!(&error, FrameError::JsonHeaderField { field, .. } if field == "opaque"),
            "{error}"
        );
    }

    #[test]
    fn a_key_given_twice_takes_its_last_value_as_fastjson_reads_it() {
        let header = br#"{"code":105,"opaque":1,"code":103,"extFields":{"topic":"a","topic":"b","gone":"x","gone":null},"extFields":{"topic":"c"}}"#;
        let command = decode(header).unwrap();
        assert_eq!((command.code, command.opaque), (103, 1));
        assert_eq!(command.field("topic"), Some("c"));
        assert_eq!(command.ext_fields.len(), 1, "{:?}", command.ext_fields);
        let header = br#"{"code":1,"extFields":{"topic":"a","topic":"b","gone":"x","gone":null}}"#;
        let command = decode(header).unwrap();
        assert_eq!(command.field("topic"), Some("b"));
        assert_eq!(command.field("gone"), None);
    }

    #[test]
    fn a_header_with_too_many_ext_fields_is_refused() {
        let entries: Vec<String> = (0..=MAX_EXT_FIELDS).map(|n| format!("\"{n}\":1")).collect();
        let header = format!(r#"{{"code":1,"extFields":{{{}}}}}"#, entries.join(","));
        let error = decode(header.as_bytes()).unwrap_err();
        assert!(
            matches!(&error, FrameError::JsonHeaderField { field, .. } if field == "extFields"),
            "{error}"
        );
    }

    #[test]
    fn a_header_that_is_not_a_json_object_is_refused() {
        for header in [&b"{\"code\":1"[..], b"[1]", b"", b"\xff"] {
            assert!(matches!(
                decode(header),
                Err(FrameError::InvalidJsonHeader { .. })
            ));
        }
    }
}
