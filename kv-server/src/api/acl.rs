//! `/v1/acl`: bootstrap of the root token, roles and tokens (`--auth`).
//!
//! Each is a key under the ACL prefix, written through Raft like any other
//! (see [`crate::acl`]); writes reach the leader through the forwarding
//! middleware, so a secret is made once, on the node that writes it. A
//! write here carries no `Idempotency-Key`, even when the client sent one:
//! a retried bootstrap or token creation would otherwise be answered with
//! a fresh secret the store never kept. A caller that may retry names the
//! secret itself (`token` in the body): a retry whose secret matches what
//! was stored is answered the same token (Consul's bootstrap secret). Who
//! may call these routes is decided before they run (`api::auth`: admin,
//! bootstrap for anyone).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use schemas::api::{
    Bootstrap, CreateToken, CreatedToken, ErrorCode, Role, RoleList, TokenInfo, TokenList,
    ROOT_TOKEN_NAME,
};
use serde::Serialize;

use crate::acl::cache::decode;
use crate::acl::{
    name_key, role_key, roles_prefix, root_key, secret, token_key, tokens_prefix, StoredName,
    StoredRoot, StoredToken,
};
use crate::api::auth::{Credential, Presented};
use crate::api::error::ApiError;
use crate::api::params::{path_capture, Query};
use crate::api::write::object_body;
use crate::api::{propose, AppState};
use crate::store::queries::PageBounds;
use crate::types::{
    Command, CommandResult, Compare, CompareOp, CompareTarget, Condition, Op, Txn, TxnOp,
};

/// Most roles or tokens a list answers: all of them, in practice.
const MAX_LISTED: usize = 100_000;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/acl/bootstrap", post(bootstrap))
        .route("/v1/acl/roles", axum::routing::get(list_roles))
        .route("/v1/acl/roles/{name}", put(put_role).delete(delete_role))
        .route("/v1/acl/tokens", post(create_token).get(list_tokens))
        .route("/v1/acl/tokens/{name}", axum::routing::delete(revoke_token))
}

/// 400 unless the node runs with `--auth`.
fn require_auth(state: &AppState) -> Result<(), ApiError> {
    if state.config.auth {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::AuthDisabled,
        "this cluster runs without --auth: there are no roles or tokens to manage; \
         start every node with --auth to enable them",
    ))
}

/// A role or token name: 1 to 128 bytes, no '/', no control character.
fn checked_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let name = path_capture(path, ErrorCode::InvalidName, "name")?;
    check_name(&name)?;
    Ok(name)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    schemas::api::check_acl_name(name)
        .map_err(|message| ApiError::bad_field(ErrorCode::InvalidName, "name", message))
}

/// Writes `value` under `key` if `condition` holds.
async fn put_record(
    state: &AppState,
    credential: Option<&Credential>,
    key: String,
    value: &impl Serialize,
    condition: Condition,
) -> Result<CommandResult, ApiError> {
    let value = serde_json::to_string(value).expect("an ACL record serializes");
    propose(
        state,
        Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: None,
            request_hash: None,
            op: Op::Put {
                key,
                value,
                condition,
                lease: None,
            },
        },
        credential,
    )
    .await
}

async fn delete_record(
    state: &AppState,
    credential: Option<&Credential>,
    key: String,
) -> Result<CommandResult, ApiError> {
    propose(
        state,
        Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: None,
            request_hash: None,
            op: Op::Delete {
                key,
                condition: Condition::Always,
            },
        },
        credential,
    )
    .await
}

/// Every record under `prefix`, decoded.
fn records<T: serde::de::DeserializeOwned>(
    state: &AppState,
    prefix: &str,
) -> Result<Vec<T>, ApiError> {
    let (entries, _) = state
        .store
        .list_internal(prefix, PageBounds::entries(MAX_LISTED))?;
    entries
        .into_iter()
        .map(|(key, entry)| Ok(decode(&key, &entry.value)?))
        .collect()
}

/// `POST /v1/acl/bootstrap`: the root token, once per cluster.
async fn bootstrap(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_auth(&state)?;
    Query::parse(query.as_deref(), &[])?;
    let asked: Bootstrap = match &body {
        Ok(bytes) if bytes.trim_ascii().is_empty() => Bootstrap::default(),
        _ => object_body(&state, body, "{\"token\"?}")?,
    };
    let given = asked.token.map(checked_secret).transpose()?;
    let token = match &given {
        Some(token) => token.clone(),
        None => secret::new_secret().map_err(ApiError::internal)?,
    };
    let root = StoredRoot {
        name: ROOT_TOKEN_NAME.to_string(),
        hash: secret::hash(&token),
        created_ms: crate::clock::now_ms(),
    };
    // A root already here is answered without a write: a bootstrap needs
    // no token, and each refused attempt would otherwise be an entry in
    // every node's log. Absent: of two bootstraps racing, one writes; the
    // other is refused, but for a retry of the one that wrote (the same
    // secret).
    let written = state.store.get(&root_key())?.is_none()
        && matches!(
            put_record(&state, None, root_key(), &root, Condition::Absent).await?,
            CommandResult::Written { .. }
        );
    let retried = !written
        && given.is_some()
        && stored_hash::<StoredRoot>(&state, &root_key())?.is_some_and(|hash| hash == root.hash);
    if !written && !retried {
        return Err(ApiError::new(
            ErrorCode::AclAlreadyBootstrapped,
            "this cluster already has its root token; bootstrap happens once",
        ));
    }
    if written {
        tracing::info!("the root token was made: the cluster's ACL is bootstrapped");
    }
    Ok(Json(CreatedToken {
        name: root.name,
        token,
    })
    .into_response())
}

/// A secret a caller names for its token: refused unless it has the shape
/// of one the server makes (256 bits in hex).
fn checked_secret(token: String) -> Result<String, ApiError> {
    if !secret::is_well_formed(&token) {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidField,
            "token",
            format!(
                "a token's secret is {} hex digits (256 random bits)",
                schemas::api::SECRET_HEX_DIGITS
            ),
        ));
    }
    Ok(token)
}

/// The secret's hash the record at `key` holds, if there is one.
fn stored_hash<T: HasHash + serde::de::DeserializeOwned>(
    state: &AppState,
    key: &str,
) -> Result<Option<String>, ApiError> {
    let Some(entry) = state.store.get(key)? else {
        return Ok(None);
    };
    Ok(Some(decode::<T>(key, &entry.value)?.hash().to_string()))
}

/// A record that keeps a secret's hash.
trait HasHash {
    fn hash(&self) -> &str;
}

impl HasHash for StoredRoot {
    fn hash(&self) -> &str {
        &self.hash
    }
}

impl HasHash for StoredName {
    fn hash(&self) -> &str {
        &self.hash
    }
}

/// `PUT /v1/acl/roles/{name}`: creates or replaces a role.
async fn put_role(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_auth(&state)?;
    Query::parse(query.as_deref(), &[])?;
    let name = checked_name(path)?;
    let role: Role = object_body(&state, body, "{\"name\", \"permissions\", \"admin\"}")?;
    role.validate()?;
    if role.name != name {
        return Err(ApiError::bad_field(
            ErrorCode::NameMismatch,
            "name",
            format!("the body names role {:?}, the path {name:?}", role.name),
        ));
    }
    put_record(
        &state,
        credential.as_ref(),
        role_key(&name),
        &role,
        Condition::Always,
    )
    .await?;
    Ok(Json(role).into_response())
}

/// `GET /v1/acl/roles`.
async fn list_roles(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    require_auth(&state)?;
    let roles = records::<Role>(&state, &roles_prefix())?;
    Ok(Json(RoleList { roles }).into_response())
}

/// `DELETE /v1/acl/roles/{name}`: the role goes, and so does its name from
/// every token holding it, in one write (etcd's role delete): a role made
/// later under the same name grants nothing to them. They keep their other
/// roles.
async fn delete_role(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    require_auth(&state)?;
    Query::parse(query.as_deref(), &[])?;
    let name = checked_name(path)?;
    for _ in 0..ROLE_DELETE_ATTEMPTS {
        let Some(txn) = role_delete(&state, &name)? else {
            return Err(role_not_found(&name));
        };
        let command = Command {
            timestamp_ms: crate::clock::now_ms(),
            idempotency_key: None,
            request_hash: None,
            op: Op::Txn(txn),
        };
        match propose(&state, command, credential.as_ref()).await? {
            CommandResult::Txn(outcome) if outcome.succeeded => {
                return Ok(StatusCode::NO_CONTENT.into_response())
            }
            // The role or a token holding it changed since they were read.
            CommandResult::Txn(_) => {}
            other => {
                return Err(ApiError::internal(format!(
                    "a role's delete produced {other:?}"
                )))
            }
        }
    }
    Err(ApiError::new(
        ErrorCode::Conflict,
        format!(
            "role {name:?} or the tokens holding it changed during each of \
             {ROLE_DELETE_ATTEMPTS} tries to delete it; try again"
        ),
    ))
}

/// Tries a role's delete makes while the role or its tokens change under it.
const ROLE_DELETE_ATTEMPTS: usize = 3;

fn role_not_found(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::RoleNotFound,
        format!("role {name:?} does not exist"),
    )
}

/// The transaction that deletes role `name` and takes it from every token
/// holding it, if each is unchanged since read here; `None` if there is no
/// such role.
fn role_delete(state: &AppState, name: &str) -> Result<Option<Txn>, ApiError> {
    let key = role_key(name);
    let Some(role) = state.store.get(&key)? else {
        return Ok(None);
    };
    let unchanged = |key: &str, revision| Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(revision),
        op: CompareOp::Equal,
    };
    let mut compare = vec![unchanged(&key, role.mod_revision)];
    let mut success = vec![TxnOp::Delete { key }];
    let (tokens, _) = state
        .store
        .list_internal(&tokens_prefix(), PageBounds::entries(MAX_LISTED))?;
    for (token_key, entry) in tokens {
        let mut token: StoredToken = decode(&token_key, &entry.value)?;
        if !token.roles.iter().any(|held| held == name) {
            continue;
        }
        token.roles.retain(|held| held != name);
        compare.push(unchanged(&token_key, entry.mod_revision));
        success.push(TxnOp::Put {
            key: token_key,
            value: serde_json::to_string(&token).expect("a token record serializes"),
            lease: None,
        });
    }
    Ok(Some(Txn {
        compare,
        success,
        failure: Vec::new(),
    }))
}

/// `POST /v1/acl/tokens`: a new token; its secret is in this answer only.
async fn create_token(
    State(state): State<AppState>,
    Presented(credential): Presented,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_auth(&state)?;
    Query::parse(query.as_deref(), &[])?;
    let request: CreateToken = object_body(&state, body, "{\"name\", \"roles\"}")?;
    check_name(&request.name)?;
    if request.name == ROOT_TOKEN_NAME {
        return Err(token_exists(&request.name));
    }
    for role in &request.roles {
        if state.store.get(&role_key(role))?.is_none() {
            return Err(ApiError::bad_field(
                ErrorCode::UnknownRole,
                "roles",
                format!("role {role:?} does not exist; create it first"),
            ));
        }
    }
    let given = request.token.map(checked_secret).transpose()?;
    let token = match &given {
        Some(token) => token.clone(),
        None => secret::new_secret().map_err(ApiError::internal)?,
    };
    let hash = secret::hash(&token);
    // A secret another token (root included) holds is refused: its record
    // would be written over, and that token's secret would then resolve
    // to this one's roles (Consul refuses a SecretID in use too). Read
    // here for a prompt answer; the record's write below is what decides.
    if given.is_some() && secret_held_by_another(&state, &hash, &request.name)? {
        return Err(secret_in_use());
    }
    // The name is claimed first, so two tokens never share it; a token
    // whose claim stands but whose record was never written is revoked
    // like any other. A retry with the secret of the claim goes on and
    // writes the record (again).
    let claim = StoredName { hash: hash.clone() };
    let claimed = matches!(
        put_record(
            &state,
            credential.as_ref(),
            name_key(&request.name),
            &claim,
            Condition::Absent,
        )
        .await?,
        CommandResult::Written { .. }
    );
    let retried = !claimed
        && given.is_some()
        && stored_hash::<StoredName>(&state, &name_key(&request.name))?
            .is_some_and(|stored| stored == hash);
    if !claimed && !retried {
        return Err(token_exists(&request.name));
    }
    let record = StoredToken {
        name: request.name.clone(),
        roles: request.roles,
        created_ms: crate::clock::now_ms(),
    };
    // Only where no record is, unless this is a retry of the same name
    // and secret: another creation with the same secret may have written
    // one since the check above.
    let condition = if retried {
        Condition::Always
    } else {
        Condition::Absent
    };
    let written = put_record(
        &state,
        credential.as_ref(),
        token_key(&hash),
        &record,
        condition,
    )
    .await?;
    if !matches!(written, CommandResult::Written { .. }) {
        // The name claimed above goes back: no token stands behind it.
        delete_record(&state, credential.as_ref(), name_key(&request.name)).await?;
        return Err(secret_in_use());
    }
    let created = CreatedToken {
        name: request.name,
        token,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Whether `hash` is the secret of root or of a token other than `name`.
fn secret_held_by_another(state: &AppState, hash: &str, name: &str) -> Result<bool, ApiError> {
    if stored_hash::<StoredRoot>(state, &root_key())?.is_some_and(|root| root == hash) {
        return Ok(true);
    }
    let Some(entry) = state.store.get(&token_key(hash))? else {
        return Ok(false);
    };
    let held: StoredToken = decode(&token_key(hash), &entry.value)?;
    Ok(held.name != name)
}

fn secret_in_use() -> ApiError {
    ApiError::bad_field(
        ErrorCode::TokenExists,
        "token",
        "another token has this secret: give another one, or leave it out and the node makes one",
    )
}

fn token_exists(name: &str) -> ApiError {
    ApiError::bad_field(
        ErrorCode::TokenExists,
        "name",
        format!("a token named {name:?} exists; revoke it first or pick another name"),
    )
}

/// `GET /v1/acl/tokens`: names, roles and creation times, never secrets.
async fn list_tokens(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    Query::parse(query.as_deref(), &[])?;
    require_auth(&state)?;
    let mut tokens: Vec<TokenInfo> = records::<StoredToken>(&state, &tokens_prefix())?
        .into_iter()
        .map(|token| TokenInfo {
            name: token.name,
            roles: token.roles,
            created_ms: token.created_ms,
        })
        .collect();
    if let Some(entry) = state.store.get(&root_key())? {
        let root: StoredRoot = decode(&root_key(), &entry.value)?;
        tokens.push(TokenInfo {
            name: root.name,
            roles: Vec::new(),
            created_ms: root.created_ms,
        });
    }
    tokens.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(TokenList { tokens }).into_response())
}

/// `DELETE /v1/acl/tokens/{name}`: every node refuses the token once it has
/// applied this. The root token cannot be revoked: without it, anyone
/// could bootstrap the cluster again.
async fn revoke_token(
    State(state): State<AppState>,
    Presented(credential): Presented,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    require_auth(&state)?;
    Query::parse(query.as_deref(), &[])?;
    let name = checked_name(path)?;
    if name == ROOT_TOKEN_NAME {
        return Err(ApiError::bad_field(
            ErrorCode::InvalidName,
            "name",
            "the root token cannot be revoked: it is what keeps bootstrap from running again",
        ));
    }
    let not_found = || {
        ApiError::new(
            ErrorCode::TokenNotFound,
            format!("no token is named {name:?}"),
        )
    };
    let entry = state.store.get(&name_key(&name))?.ok_or_else(not_found)?;
    let claim: StoredName = decode(&name_key(&name), &entry.value)?;
    // The token first: once it is gone the secret stops working, and the
    // name is freed only after.
    delete_record(&state, credential.as_ref(), token_key(&claim.hash)).await?;
    // Freeing the name finishes the revoke the check above let through:
    // it is not checked again, so a token that revoked itself still frees
    // its name.
    delete_record(&state, None, name_key(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
