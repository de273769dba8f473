//! Reading a request's named header fields (RocketMQ's custom headers),
//! which all travel as strings.

use std::str::FromStr;

use thiserror::Error;

use crate::remoting::RemotingCommand;

/// A header field that is missing or does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// A field the request needs is absent.
    #[error("the request header has no field {field}")]
    Missing {
        /// The field's name.
        field: String,
    },
    /// A field holds text that is not what it must be.
    #[error("the request header field {field} is {value:?}, not {expected}")]
    Invalid {
        /// The field's name.
        field: String,
        /// What it held.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl RemotingCommand {
    /// The field `name`, which must be present.
    pub fn required(&self, name: &str) -> Result<&str, HeaderError> {
        self.field(name).ok_or_else(|| HeaderError::Missing {
            field: name.to_string(),
        })
    }

    /// The field `name` parsed as a `T` (a number, or `true`/`false`),
    /// which must be present.
    pub fn required_parsed<T: FromStr>(&self, name: &str) -> Result<T, HeaderError> {
        parse(name, self.required(name)?)
    }

    /// The field `name` parsed as a `T`, if present.
    pub fn optional_parsed<T: FromStr>(&self, name: &str) -> Result<Option<T>, HeaderError> {
        self.field(name).map(|value| parse(name, value)).transpose()
    }

    /// The boolean field `name` as Java reads a custom header's boolean
    /// (`Boolean.parseBoolean`): true when it is `true` in any case, false
    /// when it is anything else or absent. It never fails.
    pub fn flag(&self, name: &str) -> bool {
        self.field(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }
}

/// Characters of a refused value an error shows: it is echoed in the
/// answer's remark, which must stay far below the frame's header limit.
const SHOWN_CHARS: usize = 64;

fn parse<T: FromStr>(name: &str, value: &str) -> Result<T, HeaderError> {
    value.trim().parse().map_err(|_| HeaderError::Invalid {
        field: name.to_string(),
        value: shown(value),
        expected: std::any::type_name::<T>(),
    })
}

/// `value`, cut to [`SHOWN_CHARS`] characters with `…` when longer.
fn shown(value: &str) -> String {
    match value.char_indices().nth(SHOWN_CHARS) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn fields_are_read_as_strings_and_parsed_on_demand_naming_the_field_that_failed() {
        let command = RemotingCommand::request(
            105,
            BTreeMap::from([
                ("brokerId".to_string(), "0".to_string()),
                ("compressed".to_string(), "yes".to_string()),
            ]),
        );
        assert_eq!(command.required_parsed::<i64>("brokerId"), Ok(0));
        assert_eq!(command.optional_parsed::<i64>("absent"), Ok(None));
        assert_eq!(
            command.required("topic"),
            Err(HeaderError::Missing {
                field: "topic".to_string()
            })
        );
        let invalid = command.required_parsed::<bool>("compressed").unwrap_err();
        assert!(invalid.to_string().contains("compressed"), "{invalid}");
    }

    #[test]
    fn flags_read_as_javas_boolean_parse_does() {
        let fields = [
            ("a", "true"),
            ("b", "TRUE"),
            ("c", "False"),
            ("d", "yes"),
            ("e", ""),
        ];
        let command = RemotingCommand::request(
            103,
            fields
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        );
        let read: Vec<bool> = ["a", "b", "c", "d", "e", "absent"]
            .iter()
            .map(|name| command.flag(name))
            .collect();
        assert_eq!(read, [true, true, false, false, false, false]);
    }

    #[test]
    fn a_long_refused_value_is_shown_cut() {
        let long = "\u{1}".repeat(4_000_000);
        let command =
            RemotingCommand::request(103, BTreeMap::from([("brokerId".to_string(), long)]));
        let message = command
            .required_parsed::<i64>("brokerId")
            .unwrap_err()
            .to_string();
        assert!(message.len() < 1_000, "{} bytes", message.len());
        assert!(
            message.contains("…") && message.contains("brokerId"),
            "{message}"
        );
    }
}
