//! The path items of the data routes: keys, the change feed, the topic
//! replayed, and the typed metadata (the node's own routes are in `node`).

use schemars::JsonSchema;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder};

use super::lease::{lease_query, LEASE_QUERY_ERRORS};
use super::parts::{
    any_json, boolean_schema, consistency, integer_schema, json_content, long_poll, ok, operation,
    pagination, parameter, query, string_schema, write_headers, WRITE_ERRORS,
};
use super::Components;
use crate::api::{
    ChangeRecord, ChangesPage, ErrorCode, KeyList, KeyValue, MetadataKind, WriteResult,
};

pub(super) fn list_keys(components: &mut Components) -> PathItem {
    let answer = ok(
        "One page of keys, in key order.",
        components.of::<KeyList>(),
    );
    let operation = operation(
        "list_keys",
        "List keys by prefix; with `index`, a prefix long-poll",
        ("200", answer),
        &[
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::InvalidKey,
            ErrorCode::NotLeader,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameter(query(
        "prefix",
        string_schema(),
        "Only keys starting with this.",
    ))
    .parameters(Some(pagination("key")))
    .parameter(consistency())
    .parameters(Some(long_poll()));
    PathItem::new(HttpMethod::Get, operation)
}

pub(super) fn key(components: &mut Components) -> PathItem {
    let key = || {
        parameter(
            "key",
            ParameterIn::Path,
            string_schema(),
            "The key: `/`-separated segments, none of them empty, `.` or `..`.",
        )
    };
    let read = ok(
        "The key; `ETag` is its `mod_revision`.",
        components.of::<KeyValue>(),
    );
    let get = operation(
        "get_key",
        "Read a key; with `index`, a long-poll",
        ("200", read),
        &[
            ErrorCode::InvalidKey,
            ErrorCode::KeyNotFound,
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::NotLeader,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameter(key())
    .parameter(consistency())
    .parameters(Some(long_poll()));
    let written = ok(
        "Written (201 when created).",
        components.of::<WriteResult>(),
    );
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .description(Some("Any JSON value."))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(any_json())).build(),
        )
        .build();
    let put = operation(
        "put_key",
        "Write a key",
        ("200", written.clone()),
        &[WRITE_ERRORS, LEASE_QUERY_ERRORS].concat(),
        components,
    )
    .parameter(key())
    .parameter(lease_query())
    .parameters(Some(write_headers()))
    .request_body(Some(body))
    .response("201", written.clone());
    let delete = operation(
        "delete_key",
        "Delete a key (appends a tombstone)",
        ("200", written),
        &[&[ErrorCode::KeyNotFound], WRITE_ERRORS].concat(),
        components,
    )
    .parameter(key())
    .parameters(Some(write_headers()));
    read_write_delete(get, put, delete)
}

pub(super) fn changes(components: &mut Components) -> PathItem {
    let answer = ok(
        "The latest record of each key changed after `from`.",
        components.of::<ChangesPage>(),
    );
    let operation = operation(
        "changes",
        "The change feed: records after an offset, compacted; a long-poll with `wait`",
        ("200", answer),
        &[
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::InvalidKey,
            ErrorCode::BelowTombstoneFloor,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameter(query(
        "prefix",
        string_schema(),
        "Only keys starting with this.",
    ))
    .parameter(query(
        "from",
        integer_schema(),
        "Records with an offset above this (the `next` of the last page).",
    ))
    .parameter(query(
        "limit",
        integer_schema(),
        "Records read per page (default 1,000, at most 10,000).",
    ))
    .parameter(query(
        "wait",
        string_schema(),
        "Hold up to this long for a change.",
    ));
    PathItem::new(HttpMethod::Get, operation)
}

pub(super) fn records(components: &mut Components) -> PathItem {
    let record = components.of::<ChangeRecord>();
    let answer = ResponseBuilder::new()
        .description(
            "Every record from `from` on, one JSON object a line, streamed. A replay the node \
             cannot finish (damaged data, or deletes compacted away while it ran) ends with a \
             line `{\"error\": {\"code\", \"message\"}}` (the ErrorBody) after the records it \
             read; no record has an `error` member.",
        )
        .content(
            "application/x-ndjson",
            ContentBuilder::new().schema(Some(record)).build(),
        )
        .build();
    let operation = operation(
        "records",
        "Replay: the compacted topic as NDJSON",
        ("200", answer),
        &[
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::InvalidKey,
            ErrorCode::BelowTombstoneFloor,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameter(query(
        "from",
        integer_schema(),
        "The first offset to send. A write's records (a transaction's, a \
         lease end's) are sent whole: a `from` inside them starts at their \
         first record.",
    ));
    PathItem::new(HttpMethod::Get, operation)
}

pub(super) fn list_metadata<T: MetadataKind + JsonSchema>(components: &mut Components) -> PathItem {
    let answer = ok(
        &format!("One page of {}, by name.", T::COLLECTION),
        components.of::<T::List>(),
    );
    let operation = operation(
        &format!("list_{}", T::COLLECTION),
        &format!("List {}", T::COLLECTION),
        ("200", answer),
        &[
            ErrorCode::InvalidParameter,
            ErrorCode::UnknownParameter,
            ErrorCode::NotLeader,
            ErrorCode::NotReady,
        ],
        components,
    )
    .parameters(Some(pagination("name")))
    .parameter(consistency());
    PathItem::new(HttpMethod::Get, operation)
}

pub(super) fn metadata<T: MetadataKind + JsonSchema>(components: &mut Components) -> PathItem {
    let noun = T::NOUN;
    let name = || parameter("name", ParameterIn::Path, string_schema(), "The name.");
    let config = components.of::<T>();
    let read = ok(
        &format!("The {noun}; `ETag` is its `mod_revision`."),
        config.clone(),
    );
    let get = operation(
        &format!("get_{}", T::KIND),
        &format!("Read a {noun}"),
        ("200", read),
        &[
            NAME_ERRORS,
            &[T::NOT_FOUND, ErrorCode::NotLeader, ErrorCode::NotReady],
        ]
        .concat(),
        components,
    )
    .parameter(name())
    .parameter(consistency());
    let written = ok(
        "Written (201 when created).",
        components.of::<WriteResult>(),
    );
    let rules = [
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
        ErrorCode::BlankField,
        ErrorCode::IllegalCharacter,
        ErrorCode::TooLong,
        ErrorCode::OutOfRange,
        ErrorCode::NotAllowedValue,
        ErrorCode::Malformed,
        ErrorCode::SystemName,
        ErrorCode::NameMismatch,
        ErrorCode::Unchangeable,
        ErrorCode::Duplicate,
        ErrorCode::Conflict,
        ErrorCode::InvalidName,
    ];
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json_content(config))
        .build();
    let put = operation(
        &format!("put_{}", T::KIND),
        &format!("Create or replace a {noun}, validated"),
        ("200", written.clone()),
        &[&rules[..], WRITE_ERRORS, LEASE_QUERY_ERRORS].concat(),
        components,
    )
    .parameter(name())
    .parameter(query(
        "system",
        boolean_schema(),
        "`true` allows RocketMQ's reserved system names.",
    ))
    .parameter(lease_query())
    .parameters(Some(write_headers()))
    .request_body(Some(body))
    .response("201", written.clone());
    let delete = operation(
        &format!("delete_{}", T::KIND),
        &format!("Delete a {noun}"),
        ("200", written),
        &[
            NAME_ERRORS,
            &[
                T::NOT_FOUND,
                ErrorCode::SystemName,
                ErrorCode::InvalidParameter,
            ],
            WRITE_ERRORS,
        ]
        .concat(),
        components,
    )
    .parameter(name())
    .parameter(query(
        "system",
        boolean_schema(),
        "`true` allows deleting one of RocketMQ's reserved system names, which brokers need.",
    ))
    .parameters(Some(write_headers()));
    read_write_delete(get, put, delete)
}

/// What a name in the path of a topic or group may be refused for.
const NAME_ERRORS: &[ErrorCode] = &[
    ErrorCode::InvalidName,
    ErrorCode::BlankField,
    ErrorCode::IllegalCharacter,
    ErrorCode::TooLong,
];

/// A resource's path: read it, write it, delete it.
fn read_write_delete(
    get: OperationBuilder,
    put: OperationBuilder,
    delete: OperationBuilder,
) -> PathItem {
    PathItemBuilder::new()
        .operation(HttpMethod::Get, get)
        .operation(HttpMethod::Put, put)
        .operation(HttpMethod::Delete, delete)
        .build()
}
