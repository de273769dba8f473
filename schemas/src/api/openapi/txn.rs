//! The path item of `/v1/txn`: a multi-key transaction.

use utoipa::openapi::path::{HttpMethod, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::Required;

use super::parts::{json_content, ok, operation, parameter, string_schema};
use super::Components;
use crate::api::{ErrorCode, TxnRequest, TxnResponse};

pub(super) fn txn(components: &mut Components) -> PathItem {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .description(Some(
            "Compares, and the ops of each branch: at most 128 of each; a branch writes a key once.",
        ))
        .content(
            "application/json",
            json_content(components.of::<TxnRequest>()),
        )
        .build();
    let answer = ok(
        "The branch that ran, its revision and each op's result (200 either way).",
        components.of::<TxnResponse>(),
    );
    let operation = operation(
        "txn",
        "Compare keys, then run the success or the failure ops, atomically as one revision",
        ("200", answer),
        &[
            ErrorCode::InvalidJson,
            ErrorCode::Duplicate,
            ErrorCode::InvalidBody,
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::InvalidKey,
            ErrorCode::ReservedKey,
            ErrorCode::TooManyOps,
            ErrorCode::DuplicateKey,
            ErrorCode::InvalidHeader,
            ErrorCode::UnknownParameter,
            ErrorCode::InvalidLeaseId,
            ErrorCode::LeaseNotFound,
            ErrorCode::ValueTooLarge,
            ErrorCode::NotLeader,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::NoSpace,
        ],
        components,
    )
    .parameter(parameter(
        "Idempotency-Key",
        ParameterIn::Header,
        string_schema(),
        "A UUID naming the transaction: a retry with the same key is applied once and answers \
         `succeeded` and `revision` of the first, with `deduplicated: true` and no results.",
    ))
    .request_body(Some(body));
    PathItem::new(HttpMethod::Post, operation)
}
