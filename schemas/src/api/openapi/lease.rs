//! The path items of `/v1/leases`: grant, list, read, revoke, keep alive.
//! The leader holds the leases' deadlines, so a follower passes every
//! lease route to it.

use utoipa::openapi::path::{HttpMethod, Parameter, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::Required;

use super::parts::{integer_schema, json_content, ok, operation, parameter};
use super::Components;
use crate::api::{
    ErrorCode, GrantLease, Lease, LeaseInfo, LeaseKeepAlive, LeaseList, LeaseRevoked,
};

/// What every route of one lease may answer besides its success.
const ONE_LEASE_ERRORS: &[ErrorCode] = &[
    ErrorCode::UnknownParameter,
    ErrorCode::InvalidLeaseId,
    ErrorCode::LeaseNotFound,
    ErrorCode::NotLeader,
];

pub(super) fn leases(components: &mut Components) -> PathItem {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            json_content(components.of::<GrantLease>()),
        )
        .build();
    let grant = operation(
        "grant_lease",
        "Grant a lease with a TTL of 5 s to 24 h",
        (
            "201",
            ok(
                "The lease; its id is the revision of the grant.",
                components.of::<Lease>(),
            ),
        ),
        &[
            ErrorCode::InvalidJson,
            ErrorCode::Duplicate,
            ErrorCode::InvalidBody,
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::InvalidTtl,
            ErrorCode::LeaseLimit,
            ErrorCode::UnknownParameter,
            ErrorCode::ValueTooLarge,
            ErrorCode::NotLeader,
            ErrorCode::NoSpace,
        ],
        components,
    )
    .request_body(Some(body));
    let list = operation(
        "list_leases",
        "List the leases and the time each has left",
        (
            "200",
            ok("Every lease, by id.", components.of::<LeaseList>()),
        ),
        &[ErrorCode::NotLeader, ErrorCode::UnknownParameter],
        components,
    );
    PathItemBuilder::new()
        .operation(HttpMethod::Post, grant)
        .operation(HttpMethod::Get, list)
        .build()
}

pub(super) fn lease(components: &mut Components) -> PathItem {
    let read = operation(
        "get_lease",
        "Read a lease: its TTL, the time it has left and its keys",
        (
            "200",
            ok("The lease and its keys.", components.of::<LeaseInfo>()),
        ),
        ONE_LEASE_ERRORS,
        components,
    )
    .parameter(id_parameter());
    let revoke = operation(
        "revoke_lease",
        "Revoke a lease and delete its keys, in one write",
        (
            "200",
            ok(
                "The lease is gone, and its keys with it.",
                components.of::<LeaseRevoked>(),
            ),
        ),
        ONE_LEASE_ERRORS,
        components,
    )
    .parameter(id_parameter());
    PathItemBuilder::new()
        .operation(HttpMethod::Get, read)
        .operation(HttpMethod::Delete, revoke)
        .build()
}

pub(super) fn keep_alive(components: &mut Components) -> PathItem {
    let renew = operation(
        "keep_alive_lease",
        "Restart a lease's TTL (answered by the leader, not replicated)",
        (
            "200",
            ok(
                "The time the lease has left: its whole TTL.",
                components.of::<LeaseKeepAlive>(),
            ),
        ),
        &[
            ErrorCode::InvalidLeaseId,
            ErrorCode::LeaseNotFound,
            ErrorCode::NotLeader,
            ErrorCode::UnknownParameter,
            // A body other than none or `{}`: the TTL is the grant's.
            ErrorCode::InvalidBody,
        ],
        components,
    )
    .parameter(id_parameter());
    PathItem::new(HttpMethod::Post, renew)
}

fn id_parameter() -> Parameter {
    parameter(
        "id",
        ParameterIn::Path,
        integer_schema(),
        "The lease's id: a decimal number above 0.",
    )
}

/// `?lease=` of the puts that may attach their key to a lease.
pub(super) fn lease_query() -> Parameter {
    parameter(
        "lease",
        ParameterIn::Query,
        integer_schema(),
        "Attach the key to this lease (its id); without it, a put detaches the key from any lease.",
    )
}

/// What `?lease=` adds to a put's errors.
pub(super) const LEASE_QUERY_ERRORS: &[ErrorCode] =
    &[ErrorCode::InvalidLeaseId, ErrorCode::LeaseNotFound];
