//! The building blocks of operations: parameters, answers, and the error
//! answers an operation lists by status.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{OperationBuilder, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{
    Content, ContentBuilder, RefOr, Required, Response, ResponseBuilder, Schema,
};

use super::Components;
use crate::api::{header, ErrorBody, ErrorCode};

pub(super) fn json_content(schema: RefOr<Schema>) -> Content {
    ContentBuilder::new().schema(Some(schema)).build()
}

pub(super) fn string_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

pub(super) fn integer_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .build()
        .into()
}

/// Any JSON value at all.
pub(super) fn any_json() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .build()
        .into()
}

pub(super) fn boolean_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .build()
        .into()
}

/// A parameter of the path or the query.
pub(super) fn parameter(
    name: &str,
    place: ParameterIn,
    schema: Schema,
    description: &str,
) -> Parameter {
    let required = if place == ParameterIn::Path {
        Required::True
    } else {
        Required::False
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

pub(super) fn query(name: &str, schema: Schema, description: &str) -> Parameter {
    parameter(name, ParameterIn::Query, schema, description)
}

pub(super) fn consistency() -> Parameter {
    query(
        "consistency",
        string_schema(),
        "`linearizable` (default: confirmed with a quorum) or `stale` (this node's view).",
    )
}

pub(super) fn long_poll() -> [Parameter; 2] {
    [
        query(
            "index",
            integer_schema(),
            "Long-poll: answer once something changed after this revision (`X-Kv-Index` of the last answer).",
        ),
        query(
            "wait",
            string_schema(),
            "Long-poll: the longest hold, as `30s`, `500ms`, `5m`, `1m30s` or a number of seconds \
             (default 60s; a longer one is cut to `--max-wait-ms`, 5m by default).",
        ),
    ]
}

pub(super) fn pagination(what: &str) -> [Parameter; 2] {
    [
        query(
            "limit",
            integer_schema(),
            "Entries per page (default 100, at most 10,000).",
        ),
        query(
            "start_after",
            string_schema(),
            &format!("Start after this {what} (the last of the previous page)."),
        ),
    ]
}

pub(super) fn write_headers() -> [Parameter; 3] {
    let header = |name: &str, description: &str| {
        parameter(name, ParameterIn::Header, string_schema(), description)
    };
    [
        header(
            "If-Match",
            "Compare-and-set: apply only if the key's `mod_revision` is this (`\"42\"`).",
        ),
        header(
            "If-None-Match",
            "`*`: create only; apply only if the key does not exist.",
        ),
        header(
            "Idempotency-Key",
            "A UUID naming the write: a retry with the same key returns the first result and is applied once.",
        ),
    ]
}

/// A success answer whose body is `schema` in JSON.
pub(super) fn ok(description: &str, schema: RefOr<Schema>) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content(schema))
        .header(
            header::REVISION,
            HeaderBuilder::new()
                .schema(integer_schema())
                .description(Some("The store revision the answer reflects."))
                .build(),
        )
        .build()
}

/// An operation with its success answer and one answer per error status
/// among `codes` (plus those every route can give).
pub(super) fn operation(
    id: &str,
    summary: &str,
    success: (&str, Response),
    codes: &[ErrorCode],
    components: &mut Components,
) -> OperationBuilder {
    let mut by_status: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    let always = [
        ErrorCode::InvalidQuery,
        ErrorCode::RepeatedParameter,
        ErrorCode::Unavailable,
        ErrorCode::NotAMember,
        // A `Content-Encoding` the node does not read, on any request.
        ErrorCode::UnsupportedEncoding,
    ];
    // With `--auth`, every operation but these needs a token.
    let guarded = [ErrorCode::Unauthenticated, ErrorCode::PermissionDenied];
    let guards: &[ErrorCode] = if OPEN_OPERATIONS.contains(&id) {
        &[]
    } else {
        &guarded
    };
    for code in codes.iter().chain(&always).chain(guards) {
        by_status
            .entry(code.status())
            .or_default()
            .push(code.as_str());
    }
    let error_body = components.of::<ErrorBody>();
    let mut builder = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .response(success.0, success.1);
    for (status, names) in by_status {
        let mut names = names;
        names.sort_unstable();
        names.dedup();
        let description = format!("Error codes: {}.", names.join(", "));
        builder = builder.response(
            status.to_string(),
            ResponseBuilder::new()
                .description(description)
                .content("application/json", json_content(error_body.clone()))
                .build(),
        );
    }
    builder
}

/// The operations that need no token, even with `--auth` (`/metrics`
/// is built without [`operation`]).
const OPEN_OPERATIONS: &[&str] = &["health", "ready", "acl_bootstrap"];

pub(super) const WRITE_ERRORS: &[ErrorCode] = &[
    ErrorCode::InvalidKey,
    ErrorCode::InvalidJson,
    ErrorCode::InvalidBody,
    ErrorCode::InvalidHeader,
    ErrorCode::ConflictingConditions,
    ErrorCode::ReservedKey,
    ErrorCode::UnknownParameter,
    ErrorCode::PreconditionFailed,
    ErrorCode::ValueTooLarge,
    ErrorCode::NotLeader,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::NoSpace,
];
