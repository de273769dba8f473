//! The JSON header (serialize type 0), as Java's fastjson and rocketmq-rust
//! write it.
//!
//! Reading is lenient where peers differ: `serializeTypeCurrentRPC`,
//! `remark` and `extFields` may be absent or null, unknown keys are
//! ignored, integers may come as numeric strings, and extFields values that
//! are numbers or booleans become strings. Absent integer fields read as 0
//! and an absent language as JAVA, as Java's decoder leaves them. Writing
//! follows rocketmq-rust's compact form byte for byte: its field order,
//! extFields sorted by key, `null` for no remark or no extFields.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::remoting::{FrameError, LanguageCode, RemotingCommand};

/// How much of an offending value an error quotes.
const QUOTED_VALUE_CHARS: usize = 64;

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
pub(crate) fn decode(header: &[u8]) -> Result<RemotingCommand, FrameError> {
    let value: Value =
        serde_json::from_slice(header).map_err(|error| FrameError::InvalidJsonHeader {
            reason: error.to_string(),
        })?;
    let Value::Object(fields) = value else {
        return Err(FrameError::InvalidJsonHeader {
            reason: format!("found {}", describe(&value)),
        });
    };
    Ok(RemotingCommand {
        code: integer(&fields, "code")?,
        language: language(&fields)?,
        version: integer(&fields, "version")?,
        opaque: integer(&fields, "opaque")?,
        flag: integer(&fields, "flag")?,
        remark: present(&fields, "remark")
            .map(|value| scalar_text("remark", value))
            .transpose()?,
        ext_fields: ext_fields(&fields)?,
        ..RemotingCommand::default()
    })
}

/// The field `name`, unless absent or null.
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|value| !value.is_null())
}

fn integer(fields: &Map<String, Value>, name: &str) -> Result<i32, FrameError> {
    let Some(value) = present(fields, name) else {
        return Ok(0);
    };
    let parsed = match value {
        Value::Number(number) => number.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| field_error(name, "a 32-bit integer", value))
}

fn language(fields: &Map<String, Value>) -> Result<LanguageCode, FrameError> {
    match present(fields, "language") {
        None => Ok(LanguageCode::Java),
        Some(Value::String(name)) => Ok(LanguageCode::from_name(name)),
        Some(value @ Value::Number(number)) => number
            .as_u64()
            .and_then(|code| u8::try_from(code).ok())
            .map(LanguageCode::from_code)
            .ok_or_else(|| field_error("language", "a language name or code", value)),
        Some(other) => Err(field_error("language", "a language name or code", other)),
    }
}

fn ext_fields(fields: &Map<String, Value>) -> Result<BTreeMap<String, String>, FrameError> {
    match present(fields, "extFields") {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(entries)) => entries
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| {
                let text = scalar_text(&format!("extFields.{key}"), value)?;
                Ok((key.clone(), text))
            })
            .collect(),
        Some(other) => Err(field_error("extFields", "an object", other)),
    }
}

/// A string, or a number or boolean written as Java's `toString` would.
fn scalar_text(field: &str, value: &Value) -> Result<String, FrameError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(field_error(field, "a string, number or boolean", value)),
    }
}

fn field_error(field: &str, expected: &str, found: &Value) -> FrameError {
    FrameError::JsonHeaderField {
        field: field.to_string(),
        reason: format!("must be {expected}, found {}", describe(found)),
    }
}

/// A value's kind and the start of its text, for an error message.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    let text = value.to_string();
    let quoted: String = text.chars().take(QUOTED_VALUE_CHARS).collect();
    let ellipsis = if quoted.len() < text.len() { "…" } else { "" };
    format!("{kind} {quoted}{ellipsis}")
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
    fn a_header_that_is_not_a_json_object_is_refused() {
        for header in [&b"{\"code\":1"[..], b"[1]", b"", b"\xff"] {
            assert!(matches!(
                decode(header),
                Err(FrameError::InvalidJsonHeader { .. })
            ));
        }
    }
}
