//! The path items of the node's own routes: health, readiness, metrics,
//! the API's description, the cluster and its members, alarms, space and
//! backups.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{ContentBuilder, Required, ResponseBuilder};

use super::parts::{
    any_json, consistency, integer_schema, json_content, ok, operation, parameter, query,
    string_schema,
};
use super::Components;
use crate::api::{
    AddMember, AlarmList, ClusterStatus, ErrorCode, Health, MembershipChange, NodeSpace,
};

pub(super) fn health(components: &mut Components) -> PathItem {
    let answer = ok(
        "The process answers; `leader` is the leader it knows, if any.",
        components.of::<Health>(),
    );
    PathItem::new(
        HttpMethod::Get,
        operation(
            "health",
            "Liveness: whether the process answers",
            ("200", answer),
            &[],
            components,
        ),
    )
}

pub(super) fn ready(components: &mut Components) -> PathItem {
    let answer = ok(
        "Ready: a leader is known, raft runs, the disk takes writes, no alarm is raised.",
        components.of::<Health>(),
    );
    PathItem::new(
        HttpMethod::Get,
        operation(
            "ready",
            "Readiness for traffic; 503 `not_ready` names every reason",
            ("200", answer),
            &[ErrorCode::NotReady],
            components,
        ),
    )
}

pub(super) fn alarms(components: &mut Components) -> PathItem {
    let list = operation(
        "list_alarms",
        "The alarms raised in the cluster",
        (
            "200",
            ok("The alarms, by member.", components.of::<AlarmList>()),
        ),
        &[ErrorCode::UnknownParameter],
        components,
    );
    let disarm = operation(
        "disarm_alarms",
        "Disarm every alarm once each member that raised one has room again",
        (
            "200",
            ok("The alarms disarmed.", components.of::<AlarmList>()),
        ),
        &[
            ErrorCode::AlarmHolds,
            ErrorCode::NotLeader,
            ErrorCode::UnknownParameter,
        ],
        components,
    );
    PathItemBuilder::new()
        .operation(HttpMethod::Get, list)
        .operation(HttpMethod::Delete, disarm)
        .build()
}

pub(super) fn snapshot(components: &mut Components) -> PathItem {
    let answer = ResponseBuilder::new()
        .description(
            "The node's snapshot of what it has applied: the compacted topic as of the \
             revision in `X-Kv-Revision`, in the topic's record frames (each with its CRC). \
             `kv-server restore` lays a new cluster down from it. Unless `consistency=stale`, \
             it holds every write acknowledged before it was asked for.",
        )
        .content(
            "application/octet-stream",
            ContentBuilder::new().schema(Some(string_schema())).build(),
        )
        .build();
    PathItem::new(
        HttpMethod::Get,
        operation(
            "snapshot",
            "A backup of the store (admin)",
            ("200", answer),
            &[
                ErrorCode::UnknownParameter,
                ErrorCode::InvalidParameter,
                ErrorCode::NotLeader,
                ErrorCode::NotReady,
            ],
            components,
        )
        .parameter(consistency()),
    )
}

pub(super) fn space(components: &mut Components) -> PathItem {
    let answer = ok(
        "What the quota counts, what is free, and the limit crossed, if any.",
        components.of::<NodeSpace>(),
    );
    PathItem::new(
        HttpMethod::Get,
        operation(
            "space",
            "This node's disk, measured now",
            ("200", answer),
            &[ErrorCode::UnknownParameter],
            components,
        ),
    )
}

pub(super) fn metrics() -> PathItem {
    let answer = ResponseBuilder::new()
        .description("Prometheus text format.")
        .content(
            "text/plain",
            ContentBuilder::new().schema(Some(string_schema())).build(),
        )
        .build();
    PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .operation_id(Some("metrics"))
            .summary(Some("Metrics for Prometheus"))
            .response("200", answer),
    )
}

pub(super) fn openapi() -> PathItem {
    let answer = ResponseBuilder::new()
        .description("This document.")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(any_json())).build(),
        )
        .build();
    PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .operation_id(Some("openapi"))
            .summary(Some("The OpenAPI document of this API"))
            .response("200", answer),
    )
}

pub(super) fn cluster(components: &mut Components) -> PathItem {
    let answer = ok(
        "Leader, term, indexes and members as this node sees them.",
        components.of::<ClusterStatus>(),
    );
    PathItem::new(
        HttpMethod::Get,
        operation(
            "cluster_status",
            "The cluster's state",
            ("200", answer),
            &[ErrorCode::InvalidParameter, ErrorCode::UnknownParameter],
            components,
        )
        .parameters(Some([
            query(
                "index",
                integer_schema(),
                "Long-poll: the `X-Kv-Index` of the last answer, an opaque digest of this node's \
                 Raft state (term, leader, role, membership, log, what is applied, each member's \
                 progress). The answer comes once the state differs from that answer's: at once \
                 if it already does.",
            ),
            query(
                "wait",
                string_schema(),
                "Long-poll: the longest hold, as `30s`, `500ms`, `5m`, `1m30s` or a number of seconds \
                 (default 60s; a longer one is cut to `--max-wait-ms`, 5m by default).",
            ),
        ])),
    )
}

pub(super) fn add_member(components: &mut Components) -> PathItem {
    let answer = ok(
        "The membership after the change.",
        components.of::<MembershipChange>(),
    );
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            json_content(components.of::<AddMember>()),
        )
        .build();
    let operation = operation(
        "add_member",
        "Add a node: as a learner, made a voter once caught up",
        ("200", answer),
        &[
            ErrorCode::InvalidJson,
            ErrorCode::Duplicate,
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::InvalidAddr,
            ErrorCode::ValueTooLarge,
            ErrorCode::MemberExists,
            ErrorCode::ForeignCluster,
            ErrorCode::MembershipChangeRefused,
            ErrorCode::NotCaughtUp,
            ErrorCode::NotLeader,
            ErrorCode::UnknownParameter,
        ],
        components,
    )
    .request_body(Some(body));
    PathItem::new(HttpMethod::Post, operation)
}

pub(super) fn remove_member(components: &mut Components) -> PathItem {
    let answer = ok(
        "The membership after the change.",
        components.of::<MembershipChange>(),
    );
    let operation = operation(
        "remove_member",
        "Remove a voter or a learner",
        ("200", answer),
        &[
            ErrorCode::InvalidId,
            ErrorCode::MemberNotFound,
            ErrorCode::LastVoter,
            ErrorCode::NotEnoughMembers,
            ErrorCode::MembershipChangeRefused,
            ErrorCode::NotLeader,
            ErrorCode::UnknownParameter,
        ],
        components,
    )
    .parameter(parameter(
        "id",
        ParameterIn::Path,
        integer_schema(),
        "The node's id.",
    ));
    PathItem::new(HttpMethod::Delete, operation)
}
