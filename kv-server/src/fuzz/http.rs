//! The HTTP query and header parsers: every query string and header value
//! a client can send gives a value or a 4xx, never a panic or a 500.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::IntoResponse;
use fuzzkit::proptest::collection::vec;
use fuzzkit::proptest::prelude::*;
use fuzzkit::{apply, mutations, outcome, within_allocation_limit, Mutation};

use super::SLACK_BYTES;
use crate::api::error::ApiError;
use crate::api::params::{parse_wait, Query, CHANGES_PAGE, LIST_PAGE};
use crate::api::write::{condition, idempotency_key};

/// Every query parameter any route takes.
const PARAMETERS: [&str; 9] = [
    "prefix",
    "limit",
    "start_after",
    "consistency",
    "index",
    "wait",
    "lease",
    "from",
    "system",
];

/// The longest `wait` the server takes by default (5 min).
const MAX_WAIT_MS: u64 = 300_000;

/// A value a parameter may carry: valid ones and the edges around them.
fn parameter_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-1".to_string()),
        (
            0u64..400,
            prop_oneof![Just(""), Just("s"), Just("ms"), Just("m")]
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        Just("linearizable".to_string()),
        Just("stale".to_string()),
        "[a-z/%+ &=.-]{0,12}",
        ".{0,8}",
    ]
}

/// A query string of known parameters, some repeated, percent-encoded.
fn query_string() -> impl Strategy<Value = String> {
    vec(
        (prop::sample::select(&PARAMETERS[..]), parameter_value()),
        0..5,
    )
    .prop_map(|pairs| {
        let pairs: Vec<(&str, String)> = pairs.into_iter().collect();
        serde_urlencoded::to_string(pairs).expect("pairs of strings encode")
    })
}

/// Fails unless `error` is a 4xx answer.
fn is_client_error(error: ApiError) -> Result<(), String> {
    let status = error.into_response().status();
    outcome(&status.to_string());
    if status.is_client_error() {
        Ok(())
    } else {
        Err(format!("bad input answered {status}"))
    }
}

/// Parses a query as every route does and reads every parameter.
fn parse_query(raw: &str, allowed: &[&str]) -> Result<(), ApiError> {
    let query = Query::parse(Some(raw), allowed)?;
    query.lease()?;
    query.number("from")?;
    query.number("index")?;
    query.limit(LIST_PAGE)?;
    query.limit(CHANGES_PAGE)?;
    query.consistency()?;
    query.blocking(MAX_WAIT_MS)?;
    Ok(())
}

#[test]
fn fuzz_query_strings() {
    let strategy = (query_string(), mutations(), 0usize..=PARAMETERS.len());
    fuzzkit::fuzz(
        "HTTP query strings",
        strategy,
        |(valid, mutations, allowed)| {
            let bytes = apply(valid.as_bytes(), &[], mutations);
            let raw = String::from_utf8_lossy(&bytes);
            let parsed = within_allocation_limit(raw.len() * 4 + SLACK_BYTES, || {
                parse_query(&raw, &PARAMETERS[..*allowed])
            })?;
            match parsed {
                Ok(()) => outcome("accepted"),
                Err(error) => is_client_error(error)?,
            }
            if let Ok(wait) =
                within_allocation_limit(SLACK_BYTES, || parse_wait(&raw, MAX_WAIT_MS))?
            {
                if wait.as_millis() > u128::from(MAX_WAIT_MS) {
                    return Err(format!("wait {wait:?} is over the limit"));
                }
            }
            Ok(())
        },
    );
}

/// Header values around the valid ones: revisions, `*`, UUIDs.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| format!("\"{n}\"")),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("*".to_string()),
        Just(" * ".to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).simple().to_string()),
        ".{0,40}",
    ]
}

/// The condition and idempotency headers, each maybe present, mutated.
fn headers() -> impl Strategy<Value = Vec<(&'static str, String, Vec<Mutation>)>> {
    vec(
        (
            prop::sample::select(&["if-match", "if-none-match", "idempotency-key"][..]),
            header_value(),
            mutations(),
        ),
        0..4,
    )
}

#[test]
fn fuzz_condition_and_idempotency_headers() {
    fuzzkit::fuzz("HTTP headers", headers(), |headers| {
        let mut map = HeaderMap::new();
        for (name, valid, mutations) in headers {
            let bytes = apply(valid.as_bytes(), &[], mutations);
            // Bytes HTTP cannot carry never reach a handler.
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        let (condition, key) =
            within_allocation_limit(SLACK_BYTES, || (condition(&map), idempotency_key(&map)))?;
        for parsed in [condition.map(drop), key.map(drop)] {
            match parsed {
                Ok(()) => outcome("accepted"),
                Err(error) => is_client_error(error)?,
            }
        }
        Ok(())
    });
}
