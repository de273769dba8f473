//! Reading a config from a request body, with errors that name the field.
//!
//! `serde_json` alone reports a wrong type by line and column only; the HTTP
//! API promises the field, so deserialization goes through
//! `serde_path_to_error`, which tracks the path as it descends.

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::{join_field, ValidationError};

/// Reads a `T` (a [`crate::TopicConfig`], a [`crate::SubscriptionGroupConfig`],
/// a broker file…) from JSON. A missing required field, a wrong type or an
/// out-of-range number is reported with its JSON path; malformed JSON as
/// [`ValidationError::NotJson`]; a body of the wrong shape altogether (an
/// array for an object) as `WrongType` with an empty field. Rules beyond the
/// types need `validate`.
pub fn from_json<T: DeserializeOwned>(json: &[u8]) -> Result<T, ValidationError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // "." is the root; a missing field is reported at its parent.
        let parent = if path == "." { "" } else { path.as_str() };
        let message = inner.to_string();
        // serde_json reports some shapes it did not expect as syntax (an
        // enum given `{}`): whether the text is JSON decides.
        if !inner.is_data() && serde_json::from_slice::<IgnoredAny>(json).is_err() {
            return ValidationError::NotJson { message };
        }
        if let Some(name) = quoted_field(&message, "missing field `") {
            ValidationError::Missing {
                field: join_field(parent, name),
            }
        } else if let Some(name) = quoted_field(&message, "duplicate field `") {
            ValidationError::Duplicate {
                field: join_field(parent, name),
            }
        } else {
            ValidationError::WrongType {
                field: parent.to_string(),
                message,
            }
        }
    })?;
    // Data after the value makes the body malformed, however good the value.
    deserializer
        .end()
        .map_err(|error| ValidationError::NotJson {
            message: error.to_string(),
        })?;
    Ok(value)
}

/// The field in serde's "missing field `name`" or "duplicate field
/// `name`" message, if it starts with `prefix`.
fn quoted_field<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    message.strip_prefix(prefix)?.split('`').next()
}
