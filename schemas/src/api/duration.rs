//! Durations as the API and kvctl write them: `30s`, `500ms`, `5m`, `1h`,
//! or a plain number of seconds (a long-poll's `wait`, kvctl's timeouts).

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with one of the units.
    #[error("{0:?} is not a duration like 30s, 500ms or 5m")]
    Malformed(String),
    /// More milliseconds than a `u64` holds.
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Parses `30s`, `500ms`, `5m`, `1h` or a plain number of seconds.
///
/// ```
/// use std::time::Duration;
/// use schemas::api::parse_duration;
/// assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(raw: &str) -> Result<Duration, DurationError> {
    let (digits, unit_ms) = if let Some(digits) = raw.strip_suffix("ms") {
        (digits, 1)
    } else if let Some(digits) = raw.strip_suffix('s') {
        (digits, 1_000)
    } else if let Some(digits) = raw.strip_suffix('m') {
        (digits, 60_000)
    } else if let Some(digits) = raw.strip_suffix('h') {
        (digits, 3_600_000)
    } else {
        (raw, 1_000)
    };
    let amount: u64 = digits
        .parse()
        .map_err(|_| DurationError::Malformed(raw.to_string()))?;
    amount
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLong(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, DurationError};
    use std::time::Duration;

    #[test]
    fn each_unit_and_each_refusal() {
        let cases: &[(&str, Result<Duration, DurationError>)] = &[
            ("30s", Ok(Duration::from_secs(30))),
            ("250ms", Ok(Duration::from_millis(250))),
            ("2m", Ok(Duration::from_secs(120))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("7", Ok(Duration::from_secs(7))),
            ("0s", Ok(Duration::ZERO)),
            ("soon", Err(DurationError::Malformed("soon".into()))),
            ("-1s", Err(DurationError::Malformed("-1s".into()))),
            ("", Err(DurationError::Malformed(String::new()))),
            (
                "18446744073709551615h",
                Err(DurationError::TooLong("18446744073709551615h".into())),
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(&parse_duration(raw), expected, "{raw:?}");
        }
    }
}
