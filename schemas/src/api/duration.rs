//! Durations as the API and kvctl write them, as Go and Consul do: `30s`,
//! `500ms`, `5m`, `1h`, `1.5s`, `1m30s`, or a plain number of seconds (a
//! long-poll's `wait`, kvctl's timeouts). The smallest step is a
//! millisecond: finer fractions are cut off.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number with one of the units.
    #[error("{0:?} is not a duration like 30s, 500ms, 1.5s or 1m30s")]
    Malformed(String),
    /// More milliseconds than a `u64` holds.
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Parses `30s`, `500ms`, `5m`, `1h`, a decimal (`1.5s`), a sequence of
/// them (`1m30s`), or a plain number of seconds.
///
/// ```
/// use std::time::Duration;
/// use schemas::api::parse_duration;
/// assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(raw: &str) -> Result<Duration, DurationError> {
    let malformed = || DurationError::Malformed(raw.to_string());
    let too_long = || DurationError::TooLong(raw.to_string());
    if !raw.is_empty() && raw.bytes().all(|byte| byte.is_ascii_digit()) {
        // Only digits: a failed parse is a number past u64.
        let seconds: u64 = raw.parse().map_err(|_| too_long())?;
        return seconds
            .checked_mul(1_000)
            .map(Duration::from_millis)
            .ok_or_else(too_long);
    }
    if raw.is_empty() {
        return Err(malformed());
    }
    let mut total_ms: u128 = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(malformed)?;
        let (number, tail) = rest.split_at(number_len);
        let (unit_ms, unit_len): (u128, usize) = if tail.starts_with("ms") {
            (1, 2)
        } else if tail.starts_with('s') {
            (1_000, 1)
        } else if tail.starts_with('m') {
            (60_000, 1)
        } else if tail.starts_with('h') {
            (3_600_000, 1)
        } else {
            return Err(malformed());
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(malformed());
        }
        // Past 20 digits either part is too long for a u64 of
        // milliseconds, or a fraction finer than any unit's millisecond.
        if whole.len() > 20 {
            return Err(too_long());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| malformed())?
        };
        let fraction = &fraction[..fraction.len().min(20)];
        let fraction_ms = if fraction.is_empty() {
            0
        } else {
            let digits: u128 = fraction.parse().map_err(|_| malformed())?;
            digits * unit_ms / 10u128.pow(fraction.len() as u32)
        };
        total_ms = total_ms
            .checked_add(whole * unit_ms + fraction_ms)
            .ok_or_else(too_long)?;
        rest = &tail[unit_len..];
    }
    u64::try_from(total_ms)
        .map(Duration::from_millis)
        .map_err(|_| too_long())
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
            ("1m30s", Ok(Duration::from_secs(90))),
            ("1h2m3s4ms", Ok(Duration::from_millis(3_723_004))),
            ("1.5s", Ok(Duration::from_millis(1_500))),
            (".25s", Ok(Duration::from_millis(250))),
            ("0.0015s", Ok(Duration::from_millis(1))),
            ("2.5m", Ok(Duration::from_secs(150))),
            ("1.s", Ok(Duration::from_secs(1))),
            ("1.2.3s", Err(DurationError::Malformed("1.2.3s".into()))),
            (".s", Err(DurationError::Malformed(".s".into()))),
            ("1s5", Err(DurationError::Malformed("1s5".into()))),
            ("5 s", Err(DurationError::Malformed("5 s".into()))),
            ("1d", Err(DurationError::Malformed("1d".into()))),
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
