//! The path items of `/v1/acl`: bootstrap, roles and tokens.

use utoipa::openapi::path::{HttpMethod, ParameterIn, PathItem, PathItemBuilder};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{Required, Response, ResponseBuilder};

use super::parts::{json_content, ok, operation, parameter, string_schema};
use super::Components;
use crate::api::{Bootstrap, CreateToken, CreatedToken, ErrorCode, Role, RoleList, TokenList};

/// What every `/v1/acl` route but bootstrap may answer on a cluster
/// without `--auth`, when passed to a leader that is gone, or asked with a
/// query parameter it does not take.
const ACL_ERRORS: &[ErrorCode] = &[
    ErrorCode::AuthDisabled,
    ErrorCode::NotLeader,
    ErrorCode::UnknownParameter,
];
/// The lists, served from this node's view.
const ACL_READ_ERRORS: &[ErrorCode] = &[
    ErrorCode::AuthDisabled,
    ErrorCode::NotLeader,
    ErrorCode::NotReady,
    ErrorCode::UnknownParameter,
];

pub(super) fn bootstrap(components: &mut Components) -> PathItem {
    let answer = ok(
        "The root token; its secret is shown this once.",
        components.of::<CreatedToken>(),
    );
    let body = RequestBodyBuilder::new()
        .required(Some(Required::False))
        .content(
            "application/json",
            json_content(components.of::<Bootstrap>()),
        )
        .build();
    PathItem::new(
        HttpMethod::Post,
        operation(
            "acl_bootstrap",
            "Make the cluster's root token (once per cluster)",
            ("200", answer),
            &[
                ErrorCode::AclAlreadyBootstrapped,
                ErrorCode::AuthDisabled,
                ErrorCode::InvalidJson,
                ErrorCode::Duplicate,
                ErrorCode::InvalidField,
                ErrorCode::UnknownParameter,
            ],
            components,
        )
        .request_body(Some(body)),
    )
}

pub(super) fn roles(components: &mut Components) -> PathItem {
    let answer = ok("Every role, in name order.", components.of::<RoleList>());
    let list = operation(
        "acl_list_roles",
        "List the roles",
        ("200", answer),
        ACL_READ_ERRORS,
        components,
    );
    PathItemBuilder::new()
        .operation(HttpMethod::Get, list)
        .build()
}

pub(super) fn role(components: &mut Components) -> PathItem {
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content("application/json", json_content(components.of::<Role>()))
        .build();
    let put = operation(
        "acl_put_role",
        "Create or replace a role",
        ("200", ok("The role as stored.", components.of::<Role>())),
        &[
            &[
                ErrorCode::InvalidJson,
                ErrorCode::Duplicate,
                ErrorCode::InvalidName,
                ErrorCode::NameMismatch,
            ],
            ACL_ERRORS,
        ]
        .concat(),
        components,
    )
    .parameter(name_parameter("The role's name."))
    .request_body(Some(body));
    let delete = operation(
        "acl_delete_role",
        "Delete a role, and take it from every token holding it",
        (
            "204",
            empty("The role is gone, and no token holds it any longer."),
        ),
        &[&[ErrorCode::RoleNotFound, ErrorCode::Conflict], ACL_ERRORS].concat(),
        components,
    )
    .parameter(name_parameter("The role's name."));
    PathItemBuilder::new()
        .operation(HttpMethod::Put, put)
        .operation(HttpMethod::Delete, delete)
        .build()
}

pub(super) fn tokens(components: &mut Components) -> PathItem {
    let list = operation(
        "acl_list_tokens",
        "List the tokens: names, roles, creation times; never secrets",
        (
            "200",
            ok("Every token, in name order.", components.of::<TokenList>()),
        ),
        ACL_READ_ERRORS,
        components,
    );
    let body = RequestBodyBuilder::new()
        .required(Some(Required::True))
        .content(
            "application/json",
            json_content(components.of::<CreateToken>()),
        )
        .build();
    let create = operation(
        "acl_create_token",
        "Make a token holding roles",
        (
            "201",
            ok(
                "The token; its secret is shown this once.",
                components.of::<CreatedToken>(),
            ),
        ),
        &[
            &[
                ErrorCode::InvalidJson,
                ErrorCode::Duplicate,
                ErrorCode::InvalidName,
                ErrorCode::InvalidField,
                ErrorCode::UnknownRole,
                ErrorCode::TokenExists,
            ],
            ACL_ERRORS,
        ]
        .concat(),
        components,
    )
    .request_body(Some(body));
    PathItemBuilder::new()
        .operation(HttpMethod::Get, list)
        .operation(HttpMethod::Post, create)
        .build()
}

pub(super) fn token(components: &mut Components) -> PathItem {
    let revoke = operation(
        "acl_revoke_token",
        "Revoke a token: every node refuses it once it has applied this",
        ("204", empty("The token is revoked.")),
        &[&[ErrorCode::TokenNotFound], ACL_ERRORS].concat(),
        components,
    )
    .parameter(name_parameter("The token's name."));
    PathItem::new(HttpMethod::Delete, revoke)
}

fn name_parameter(description: &str) -> utoipa::openapi::path::Parameter {
    parameter("name", ParameterIn::Path, string_schema(), description)
}

fn empty(description: &str) -> Response {
    ResponseBuilder::new().description(description).build()
}
