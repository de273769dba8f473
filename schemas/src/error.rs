//! The crate's one error type: a value that breaks a rule, with the JSON
//! field that holds it.

use thiserror::Error;

/// A value that breaks one of the crate's rules.
///
/// Every variant names the offending field as a JSON path (`topicName`,
/// `attributes.message.type`, `subscriptionDataSet[2].topic`,
/// `topicConfigTable.T.perm`); the HTTP layer reports it as the error's
/// `field` and the `Display` text as its `message`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// The body is not well-formed JSON; no field can be named.
    #[error("the body is not valid JSON: {message}")]
    NotJson {
        /// The parser's description, with line and column.
        message: String,
    },

    /// A required field is missing from the JSON.
    #[error("{field} is required")]
    Missing {
        /// JSON path of the field.
        field: String,
    },

    /// A field holds JSON of the wrong type or an unrepresentable number.
    #[error("{} has the wrong type or value: {message}", named(field))]
    WrongType {
        /// JSON path of the field.
        field: String,
        /// The parser's description, with line and column.
        message: String,
    },

    /// A required name or key is empty or whitespace only.
    #[error("{field} must not be blank")]
    Blank {
        /// JSON path of the field.
        field: String,
    },

    /// A name holds a character outside `^[%|a-zA-Z0-9_-]+$`.
    #[error("{field} {value:?} contains the illegal character {illegal:?}; allowed are only ^[%|a-zA-Z0-9_-]+$")]
    IllegalCharacter {
        /// JSON path of the field.
        field: String,
        /// The whole rejected value.
        value: String,
        /// The first character that is not allowed.
        illegal: char,
    },

    /// A name or key is longer than its limit.
    #[error("{field} is {len} {unit} long, longer than the limit of {max}")]
    TooLong {
        /// JSON path of the field.
        field: String,
        /// Length of the rejected value.
        len: usize,
        /// The limit it broke.
        max: usize,
        /// What `len` and `max` count: "characters" or "bytes".
        unit: &'static str,
    },

    /// A number lies outside its allowed range.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// JSON path of the field.
        field: String,
        /// The rejected number.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },

    /// A value is not one of a fixed set (an enum-like attribute).
    #[error("{field} must be one of {allowed}, got {value:?}")]
    NotOneOf {
        /// JSON path of the field.
        field: String,
        /// The rejected value.
        value: String,
        /// The allowed values, comma separated.
        allowed: String,
    },

    /// A value does not have the shape its field requires.
    #[error("{field} {value:?} is invalid: {reason}")]
    Malformed {
        /// JSON path of the field.
        field: String,
        /// The rejected value (shortened when very long).
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A reserved RocketMQ system topic or group, used without permission.
    #[error("{field} {name:?} is a reserved system {kind}; it is accepted only when system names are allowed explicitly")]
    SystemName {
        /// JSON path of the field.
        field: String,
        /// The reserved name.
        name: String,
        /// "topic" or "group".
        kind: &'static str,
    },

    /// The name in a request body differs from the name in its URL path.
    #[error("{field} {body:?} must match the name {path:?} in the path")]
    PathMismatch {
        /// JSON path of the field in the body.
        field: String,
        /// The name taken from the URL path.
        path: String,
        /// The name found in the body.
        body: String,
    },

    /// An update changes a value that is fixed once the entry exists.
    #[error("{field} is fixed at creation and cannot change from {before:?} to {after:?}")]
    Unchangeable {
        /// JSON path of the field.
        field: String,
        /// The stored value (`None`: absent).
        before: Option<String>,
        /// The requested value (`None`: absent).
        after: Option<String>,
    },

    /// An entry appears twice where entries must be distinct.
    #[error("{field} duplicates an earlier entry")]
    Duplicate {
        /// JSON path of the repeated entry.
        field: String,
    },
}

impl ValidationError {
    /// The JSON path of the offending field, e.g. `readQueueNums`; empty for
    /// [`ValidationError::NotJson`], which concerns the whole body.
    pub fn field(&self) -> &str {
        match self {
            Self::NotJson { .. } => "",
            Self::Missing { field }
            | Self::WrongType { field, .. }
            | Self::Blank { field }
            | Self::IllegalCharacter { field, .. }
            | Self::TooLong { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::NotOneOf { field, .. }
            | Self::Malformed { field, .. }
            | Self::SystemName { field, .. }
            | Self::PathMismatch { field, .. }
            | Self::Unchangeable { field, .. }
            | Self::Duplicate { field } => field,
        }
    }

    /// The same error with its field placed under `parent`
    /// (`perm` within `topicConfigTable.T` becomes `topicConfigTable.T.perm`).
    pub fn within(mut self, parent: &str) -> Self {
        let field = match &mut self {
            Self::NotJson { .. } => return self,
            Self::Missing { field }
            | Self::WrongType { field, .. }
            | Self::Blank { field }
            | Self::IllegalCharacter { field, .. }
            | Self::TooLong { field, .. }
            | Self::OutOfRange { field, .. }
            | Self::NotOneOf { field, .. }
            | Self::Malformed { field, .. }
            | Self::SystemName { field, .. }
            | Self::PathMismatch { field, .. }
            | Self::Unchangeable { field, .. }
            | Self::Duplicate { field } => field,
        };
        *field = join_field(parent, field);
        self
    }
}

/// Joins a parent path and a child field: `a` + `b` → `a.b`, `a` + `[0].b` → `a[0].b`.
/// `field` as a message names it: the body itself when it is empty.
fn named(field: &str) -> &str {
    if field.is_empty() {
        "the body"
    } else {
        field
    }
}

pub(crate) fn join_field(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else if child.starts_with('[') {
        format!("{parent}{child}")
    } else {
        format!("{parent}.{child}")
    }
}

/// Checks that `value` lies in `min..=max`, naming `field` when it does not.
pub(crate) fn check_range(
    field: &str,
    value: i64,
    min: i64,
    max: i64,
) -> Result<(), ValidationError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ValidationError::OutOfRange {
            field: field.to_string(),
            value,
            min,
            max,
        })
    }
}

/// The rejected value for an error message: long values are cut so a hostile
/// 1 MiB name does not become a 1 MiB error body.
pub(crate) fn shown(value: &str) -> String {
    const SHOWN_CHARS: usize = 200;
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_join_into_json_paths() {
        assert_eq!(join_field("", "perm"), "perm");
        assert_eq!(
            join_field("topicConfigTable.T", "perm"),
            "topicConfigTable.T.perm"
        );
        assert_eq!(
            join_field("subscriptionDataSet", "[0].topic"),
            "subscriptionDataSet[0].topic"
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(shown("short"), "short");
        let cut = shown(&"é".repeat(500));
        assert_eq!(cut.chars().count(), 201);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn within_leaves_a_body_level_error_alone() {
        let error = ValidationError::NotJson {
            message: "EOF".into(),
        };
        assert_eq!(error.clone().within("parent"), error);
    }
}
