//! `/v1/leases`: leases, as in etcd. A lease is granted with a TTL; keys
//! written with `?lease=ID` are attached to it; while clients send
//! keep-alives the lease lives, and when they stop for a TTL the leader
//! deletes the lease and every attached key in one write.
//!
//! A lease's id is the revision of its grant: a JSON number, positive and
//! far below 2^53, so every JSON client reads it exactly.
//!
//! ```
//! use schemas::api::{GrantLease, Lease};
//!
//! let grant: GrantLease = serde_json::from_str(r#"{"ttl_s": 30}"#).unwrap();
//! grant.validate().unwrap();
//! let granted: Lease = serde_json::from_str(r#"{"id": 42, "ttl_s": 30}"#).unwrap();
//! assert_eq!(format!("/v1/kv/brokers/b1?lease={}", granted.id), "/v1/kv/brokers/b1?lease=42");
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{ErrorCode, FieldError, Revision};

/// A lease's id: the revision of the write that granted it, never 0.
pub type LeaseId = u64;

/// The shortest TTL a lease may have, in seconds: shorter would make a
/// lease expire during an ordinary leader election.
pub const MIN_LEASE_TTL_S: u64 = 5;

/// The longest TTL a lease may have, in seconds (24 hours).
pub const MAX_LEASE_TTL_S: u64 = 86_400;

/// The body of `POST /v1/leases`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantLease {
    /// How long the lease lives without a keep-alive, in seconds: from 5
    /// to 86,400 (24 h).
    #[serde(deserialize_with = "whole_seconds")]
    pub ttl_s: u64,
}

/// A TTL in whole seconds. JSON reads an integer past `u64` as a float:
/// such a number, a negative one or a fraction is refused naming the range
/// rather than the type JSON read it as.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    struct Seconds;
    impl serde::de::Visitor<'_> for Seconds {
        type Value = u64;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                formatter,
                "ttl_s as a whole number of seconds from {MIN_LEASE_TTL_S} to {MAX_LEASE_TTL_S}"
            )
        }

        fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<u64, E> {
            Ok(seconds)
        }

        fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<u64, E> {
            u64::try_from(seconds).map_err(|_| E::custom(not_whole_seconds(&seconds)))
        }

        fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<u64, E> {
            // As written with a fraction or an exponent: `1e3` is 1000.0,
            // which plain display would show as a whole 1000.
            Err(E::custom(not_whole_seconds(&format_args!(
                "{seconds:?}, a number with a fraction or an exponent"
            ))))
        }
    }
    deserializer.deserialize_u64(Seconds)
}

/// The refusal of a `ttl_s` that is not a whole number of seconds.
fn not_whole_seconds(got: &dyn std::fmt::Display) -> String {
    format!(
        "ttl_s must be a whole number of seconds from {MIN_LEASE_TTL_S} to {MAX_LEASE_TTL_S}, \
         got {got}"
    )
}

impl GrantLease {
    /// Checks the TTL's range; the error is `invalid_ttl` naming `ttl_s`.
    ///
    /// ```
    /// use schemas::api::{ErrorCode, GrantLease};
    ///
    /// let refused = GrantLease { ttl_s: 1 }.validate().unwrap_err();
    /// assert_eq!((refused.code, refused.field.as_str()), (ErrorCode::InvalidTtl, "ttl_s"));
    /// ```
    pub fn validate(&self) -> Result<(), FieldError> {
        if (MIN_LEASE_TTL_S..=MAX_LEASE_TTL_S).contains(&self.ttl_s) {
            return Ok(());
        }
        Err(FieldError::new(
            ErrorCode::InvalidTtl,
            "ttl_s",
            format!(
                "ttl_s must be between {MIN_LEASE_TTL_S} and {MAX_LEASE_TTL_S} seconds, got {}",
                self.ttl_s
            ),
        ))
    }
}

/// A lease just granted: the answer of `POST /v1/leases`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// The lease's id, for `?lease=` and `/v1/leases/{id}`.
    pub id: LeaseId,
    /// Its TTL, in seconds.
    pub ttl_s: u64,
}

/// The answer of `POST /v1/leases/{id}/keepalive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseKeepAlive {
    /// The lease's id.
    pub id: LeaseId,
    /// The time it has left, in seconds: after a keep-alive, its whole TTL.
    pub ttl_s: u64,
}

/// The answer of `GET /v1/leases/{id}`: a lease and its keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseInfo {
    /// The lease's id.
    pub id: LeaseId,
    /// The TTL it was granted with, in seconds.
    pub ttl_s: u64,
    /// The time it has left without a keep-alive, in whole seconds rounded
    /// up: at least 1 while it lives.
    pub remaining_ttl_s: u64,
    /// The keys attached to it, in key order.
    pub keys: Vec<String>,
}

/// A lease as `GET /v1/leases` lists it (without its keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseSummary {
    /// The lease's id.
    pub id: LeaseId,
    /// The TTL it was granted with, in seconds.
    pub ttl_s: u64,
    /// The time it has left without a keep-alive, in whole seconds rounded up.
    pub remaining_ttl_s: u64,
}

/// The answer of `GET /v1/leases`: every lease of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseList {
    /// The leases, by id.
    pub leases: Vec<LeaseSummary>,
}

/// The answer of `DELETE /v1/leases/{id}`: the lease and its keys are gone,
/// in one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaseRevoked {
    /// The lease's id.
    pub id: LeaseId,
    /// The revision of the write that ended it and deleted its keys.
    pub revision: Revision,
    /// How many keys that write deleted.
    pub deleted: u64,
}

/// Reads a lease id from the path (`/v1/leases/{id}`) or a query
/// (`?lease=`): a decimal number above 0. The error is `invalid_lease_id`
/// naming `field`.
///
/// ```
/// use schemas::api::parse_lease_id;
///
/// assert_eq!(parse_lease_id("42", "lease").unwrap(), 42);
/// assert_eq!(parse_lease_id("0", "lease").unwrap_err().field, "lease");
/// ```
pub fn parse_lease_id(text: &str, field: &str) -> Result<LeaseId, FieldError> {
    // `u64::from_str` takes a leading `+`; an id is digits only.
    let digits_only = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse::<LeaseId>() {
        Ok(id) if digits_only && id > 0 => Ok(id),
        _ => Err(FieldError::new(
            ErrorCode::InvalidLeaseId,
            field,
            format!(
                "{field} {:?} is not a lease id: a decimal number above 0",
                crate::error::shown(text)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_within_the_limits_is_accepted() {
        for ttl_s in [MIN_LEASE_TTL_S, 30, MAX_LEASE_TTL_S] {
            GrantLease { ttl_s }.validate().unwrap();
        }
    }

    #[test]
    fn a_ttl_outside_the_limits_is_invalid_ttl_naming_ttl_s() {
        for ttl_s in [0, MIN_LEASE_TTL_S - 1, MAX_LEASE_TTL_S + 1, u64::MAX] {
            let refused = GrantLease { ttl_s }.validate().unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidTtl);
            assert_eq!(refused.field, "ttl_s");
            assert!(refused.message.contains(&ttl_s.to_string()), "{refused}");
        }
    }

    #[test]
    fn a_ttl_that_is_not_a_whole_number_is_refused_naming_the_range() {
        for (body, got) in [
            (
                r#"{"ttl_s": 18446744073709551616}"#,
                "got 1.8446744073709552e19, a number with a fraction or an exponent",
            ),
            (r#"{"ttl_s": -1}"#, "got -1"),
            (r#"{"ttl_s": 7.5}"#, "got 7.5, a number with"),
            (r#"{"ttl_s": 1e3}"#, "got 1000.0, a number with"),
        ] {
            let error = serde_json::from_str::<GrantLease>(body)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("ttl_s must be a whole number of seconds from 5 to 86400")
                    && error.contains(got),
                "{body}: {error}"
            );
        }
        let quoted = serde_json::from_str::<GrantLease>(r#"{"ttl_s": "30"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            quoted.contains(
                r#"invalid type: string "30", expected ttl_s as a whole number of seconds from 5 to 86400"#
            ),
            "{quoted}"
        );
        let grant: GrantLease = serde_json::from_str(r#"{"ttl_s": 30}"#).unwrap();
        assert_eq!(grant.ttl_s, 30);
    }

    #[test]
    fn a_grant_with_an_unknown_field_is_refused() {
        let error = serde_json::from_str::<GrantLease>(r#"{"ttl_s": 10, "ttl": 10}"#);
        assert!(error.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn a_lease_id_is_a_positive_decimal_number() {
        assert_eq!(parse_lease_id("1", "id").unwrap(), 1);
        assert_eq!(
            parse_lease_id("18446744073709551615", "id").unwrap(),
            u64::MAX
        );
    }

    #[test]
    fn anything_else_is_invalid_lease_id_naming_the_field() {
        for text in [
            "",
            "0",
            "-1",
            "+1",
            "1.0",
            "0x10",
            " 1",
            "abc",
            "18446744073709551616",
        ] {
            let refused = parse_lease_id(text, "lease").unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidLeaseId, "{text:?}");
            assert_eq!(refused.field, "lease");
        }
    }

    #[test]
    fn lease_answers_use_the_documented_field_names() {
        let info = LeaseInfo {
            id: 7,
            ttl_s: 30,
            remaining_ttl_s: 12,
            keys: vec!["brokers/b1".into()],
        };
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            serde_json::json!({"id": 7, "ttl_s": 30, "remaining_ttl_s": 12, "keys": ["brokers/b1"]})
        );
        let list: LeaseList =
            serde_json::from_str(r#"{"leases":[{"id":7,"ttl_s":30,"remaining_ttl_s":12}]}"#)
                .unwrap();
        assert_eq!(list.leases[0].remaining_ttl_s, 12);
    }
}
