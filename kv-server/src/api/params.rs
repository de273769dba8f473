//! Query parameters and headers, parsed by hand so that every malformed one
//! is a 400 naming it (axum's own extractors answer in plain text).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::HeaderMap;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::store::queries::PageBounds;
use crate::types::Revision;

/// How many entries one page of a list may hold.
#[derive(Clone, Copy, Debug)]
pub struct PageLimit {
    /// Without `limit`.
    pub default: u64,
    /// The largest `limit` taken.
    pub max: u64,
}

/// Pages of keys, topics and subscription groups.
pub const LIST_PAGE: PageLimit = PageLimit {
    default: 100,
    max: 10_000,
};

/// Pages of the change feed (records read, not records answered).
pub const CHANGES_PAGE: PageLimit = PageLimit {
    default: 1_000,
    max: 10_000,
};

/// The largest revision a request may name, as etcd's (a signed 64-bit
/// number): far beyond any store's, and `from + 1` never overflows.
pub const MAX_REVISION: Revision = i64::MAX as Revision;

/// The bounds of one page: `limit` entries, and no more value bytes than
/// `--max-page-bytes` (the first entry excepted).
pub fn page_bounds(state: &AppState, limit: u64) -> PageBounds {
    PageBounds {
        entries: usize::try_from(limit).unwrap_or(usize::MAX),
        value_bytes: state.config.max_page_bytes,
    }
}

/// The query parameters of a request, each name at most once.
#[derive(Debug)]
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Parses a raw query string, refusing unknown or repeated parameters.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        // serde_urlencoded decodes bytes that are not UTF-8 lossily, into
        // U+FFFD: a prefix of %FF would quietly be another prefix.
        for part in raw.unwrap_or("").split('&') {
            let text = part.replace('+', " ");
            if percent_encoding::percent_decode_str(&text)
                .decode_utf8()
                .is_err()
            {
                let name = part.split('=').next().unwrap_or_default();
                return Err(ApiError::bad_field(
                    ErrorCode::InvalidQuery,
                    name,
                    format!("query parameter {name:?} is not UTF-8 once percent-decoded"),
                ));
            }
        }
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|error| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("malformed query string: {error}"),
                )
            })?;
        let mut params = HashMap::new();
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                return Err(ApiError::bad_field(
                    ErrorCode::UnknownParameter,
                    &name,
                    format!("unknown query parameter {name:?}; this route takes {allowed:?}"),
                ));
            }
            if params.insert(name.clone(), value).is_some() {
                return Err(ApiError::bad_field(
                    ErrorCode::RepeatedParameter,
                    &name,
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
        }
        Ok(Query { params })
    }

    /// The raw value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The `lease` parameter: a lease id, if given.
    pub fn lease(&self) -> Result<Option<u64>, ApiError> {
        self.get("lease")
            .map(|raw| schemas::api::parse_lease_id(raw, "lease").map_err(ApiError::from))
            .transpose()
    }

    /// A non-negative integer parameter.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|raw| {
                let digits = digits_only(raw);
                let refused = |what: &str| {
                    ApiError::bad_field(
                        ErrorCode::InvalidParameter,
                        name,
                        format!("{name} must be {what}, got {raw:?}"),
                    )
                };
                match raw.parse::<u64>() {
                    Ok(number) if digits => Ok(number),
                    Err(_) if digits => Err(refused(&format!("at most {}", u64::MAX))),
                    _ => Err(refused("a non-negative integer")),
                }
            })
            .transpose()
    }

    /// A revision parameter (`from`, `index`): at most [`MAX_REVISION`], so
    /// that the revision after it is one too.
    pub fn revision(&self, name: &str) -> Result<Option<Revision>, ApiError> {
        let past_the_last = || {
            ApiError::bad_field(
                ErrorCode::InvalidParameter,
                name,
                format!(
                    "{name} must be a revision, at most {MAX_REVISION}, got {}",
                    self.get(name).unwrap_or_default()
                ),
            )
        };
        let digits = self.get(name).is_some_and(digits_only);
        match self.number(name) {
            Ok(Some(revision)) if revision > MAX_REVISION => Err(past_the_last()),
            Err(_) if digits => Err(past_the_last()),
            revision => revision,
        }
    }

    /// The `limit` parameter: the page's default when absent, else
    /// 1..=its max.
    pub fn limit(&self, page: PageLimit) -> Result<u64, ApiError> {
        let max = page.max;
        let limit = self.number("limit")?.unwrap_or(page.default);
        if limit == 0 || limit > max {
            return Err(ApiError::bad_field(
                ErrorCode::InvalidParameter,
                "limit",
                format!("limit must be between 1 and {max}, got {limit}"),
            ));
        }
        Ok(limit)
    }

    /// The `consistency` parameter: linearizable unless `stale`.
    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.get("consistency") {
            None | Some("linearizable") => Ok(Consistency::Linearizable),
            Some("stale") => Ok(Consistency::Stale),
            Some(other) => Err(ApiError::bad_field(
                ErrorCode::InvalidParameter,
                "consistency",
                format!("consistency must be \"linearizable\" or \"stale\", got {other:?}"),
            )),
        }
    }

    /// The long-poll parameters `index` and `wait`; `wait` needs `index`.
    pub fn blocking(&self, max_wait_ms: u64) -> Result<Option<Blocking>, ApiError> {
        let index = self.revision("index")?;
        let wait = self
            .get("wait")
            .map(|raw| parse_wait(raw, max_wait_ms))
            .transpose()?;
        match (index, wait) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ApiError::bad_field(
                ErrorCode::InvalidParameter,
                "wait",
                "wait needs index: the revision to wait past",
            )),
            (Some(index), wait) => Ok(Some(Blocking {
                index,
                wait: wait.unwrap_or(DEFAULT_WAIT.min(Duration::from_millis(max_wait_ms))),
            })),
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum through the leader: sees every acknowledged write.
    Linearizable,
    /// This node's view as it is: may lag behind the leader.
    Stale,
}

/// A long-poll: answer once something changed after `index`, or after `wait`.
#[derive(Clone, Copy, Debug)]
pub struct Blocking {
    /// The revision the client has seen.
    pub index: Revision,
    /// How long to hold the request at most.
    pub wait: Duration,
}

/// Default long-poll duration, as Consul's.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Parses a long-poll's `wait` ([`schemas::api::parse_duration`]); a wait
/// over `max_wait_ms` is cut to it, as Consul cuts one to its limit: the
/// poll answers then, and the client asks again.
pub fn parse_wait(raw: &str, max_wait_ms: u64) -> Result<Duration, ApiError> {
    let longest = Duration::from_millis(max_wait_ms);
    match schemas::api::parse_duration(raw) {
        Ok(wait) => Ok(wait.min(longest)),
        // Longer than a duration holds is longer than the limit: cut to it,
        // as any wait over the limit is.
        Err(schemas::api::DurationError::TooLong(_)) => Ok(longest),
        Err(error) => Err(ApiError::bad_field(
            ErrorCode::InvalidParameter,
            "wait",
            format!("wait: {error}"),
        )),
    }
}

/// The path's one capture (a key or a name), or 400 with `code` naming
/// `field` when the path cannot be read (bad percent-encoding, say).
pub fn path_capture(
    path: Result<Path<String>, PathRejection>,
    code: ErrorCode,
    field: &str,
) -> Result<String, ApiError> {
    let Path(capture) = path.map_err(|rejection| {
        ApiError::bad_field(
            code,
            field,
            format!("the {field} in the path is unreadable: {rejection}"),
        )
    })?;
    Ok(capture)
}

/// A header's value as text, if present; 400 when it is not visible ASCII,
/// or is given more than once.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    // Of two conditions or two keys, neither can be chosen safely.
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidHeader,
            name,
            format!("header {name} is given more than once"),
        ));
    }
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::bad_field(
                    ErrorCode::InvalidHeader,
                    name,
                    format!("header {name} is not valid text"),
                )
            })
        })
        .transpose()
}

/// Whether `raw` is a decimal number's digits and nothing else (Rust's
/// parse also takes a leading `+`).
fn digits_only(raw: &str) -> bool {
    !raw.is_empty() && raw.bytes().all(|byte| byte.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_parameter_is_refused_past_the_largest_revision_naming_it() {
        // (query, the revision, or the error naming the parameter)
        let cases: &[(&str, Result<Option<Revision>, &str>)] = &[
            ("", Ok(None)),
            ("from=0", Ok(Some(0))),
            ("from=9223372036854775807", Ok(Some(MAX_REVISION))),
            ("from=9223372036854775808", Err("from")),
            ("from=18446744073709551615", Err("from")),
            ("from=18446744073709551616", Err("from")),
            ("from=99999999999999999999", Err("from")),
            ("from=-1", Err("from")),
            ("from=%2B5", Err("from")),
            ("from=+5", Err("from")),
            ("from=", Err("from")),
        ];
        let error = Query::parse(Some("index=99999999999999999999"), &["index"])
            .expect("the query parses")
            .revision("index")
            .expect_err("past the last revision");
        assert!(
            format!("{error:?}").contains("at most 9223372036854775807"),
            "a number too large is not called negative: {error:?}"
        );
        for (raw, expected) in cases {
            let query = Query::parse(Some(raw), &["from"]).expect("the query parses");
            match (query.revision("from"), expected) {
                (Ok(found), Ok(expected)) => assert_eq!(found, *expected, "{raw}"),
                (Err(error), Err(named)) => {
                    assert_eq!(error.code(), ErrorCode::InvalidParameter, "{raw}");
                    let field = format!("field: Some({named:?})");
                    assert!(format!("{error:?}").contains(&field), "{raw}: {error:?}");
                }
                (found, expected) => panic!("{raw}: {found:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_parameter_that_is_not_utf8_once_decoded_is_refused_naming_it() {
        let query = Query::parse(Some("prefix=caf%C3%A9+au+lait"), &["prefix"]).unwrap();
        assert_eq!(query.get("prefix"), Some("café au lait"));
        for raw in ["prefix=%FF", "prefix=a%C3", "limit=1&prefix=%E2%82"] {
            let error = Query::parse(Some(raw), &["prefix", "limit"]).expect_err(raw);
            assert_eq!(error.code(), ErrorCode::InvalidQuery, "{raw}");
            assert!(
                format!("{error:?}").contains("field: Some(\"prefix\")"),
                "{raw}: {error:?}"
            );
        }
    }

    #[test]
    fn wait_takes_units_and_is_cut_to_the_limit() {
        assert_eq!(parse_wait("30s", 300_000).unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_wait("250ms", 300_000).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_wait("2m", 300_000).unwrap(), Duration::from_secs(120));
        assert_eq!(parse_wait("7", 300_000).unwrap(), Duration::from_secs(7));
        assert_eq!(parse_wait("6m", 300_000).unwrap(), Duration::from_secs(300));
        assert!(parse_wait("soon", 300_000).is_err());
        assert!(parse_wait("-1s", 300_000).is_err());
        // Past what a duration holds is past the limit too.
        for huge in [
            "99999999999999999999m",
            "99999999999999999999",
            "99999999999999999999s",
        ] {
            assert_eq!(
                parse_wait(huge, 300_000).unwrap(),
                Duration::from_secs(300),
                "{huge}"
            );
        }
    }
}
