//! The client port's check of who calls, with `--auth`: a middleware that
//! resolves the `Authorization: Bearer` token and decides, from the route
//! alone, what the request needs.
//!
//! It runs outside the forwarding middleware, so a follower checks a write
//! before it passes it to the leader; the peer port does not run it (it
//! is for the cluster's own nodes, which send no token). Routes that read
//! many keys (the change feed, replay) are let through with any valid
//! token and filter what they answer by the [`Caller`] it leaves in the
//! request. A list (`/v1/kv?prefix=`, `/v1/topics`, `/v1/subscriptions`)
//! needs read on its whole prefix, as in etcd, so a page is never cut
//! short by keys the caller may not see. A transaction is the one route
//! whose needs are in its body: it is read here (within the body limit) and
//! each compare and read needs read on its key or prefix, each write
//! write on its key or prefix.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestPartsExt;
use schemas::api::{parse_txn, Access, ErrorCode, KeyOrPrefix, TxnOp, TxnRequest};
use schemas::{SUBSCRIPTIONS_PREFIX, TOPICS_PREFIX};
use tracing::info;

use crate::acl::principal::Principal;
use crate::acl::secret;
use crate::api::error::ApiError;
use crate::api::{AppState, InternalRequest, PassedOn};

/// Who a request comes from, as the handlers that filter keys see it.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No check applies: `--auth` is off, or the request came through the
    /// peer port from another node, which checked it.
    Anyone,
    /// A request that presented this token.
    Token(Arc<Principal>),
}

impl Caller {
    /// Whether the caller may read `key`.
    pub fn may_read(&self, key: &str) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Token(principal) => principal.may(Access::Read, key),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anyone))
    }
}

/// The hash of the token a request presented, left in the request beside
/// its [`Caller`]. A follower relays a key-value write to the leader as a
/// command (see `relay`), not as the request, and names this with it, so
/// that the leader checks the write again against its own tokens and
/// roles, which a follower's copy may lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential(pub Arc<str>);

impl Credential {
    /// The hash of the token's secret.
    pub fn hash(&self) -> &str {
        &self.0
    }
}

/// The request's [`Credential`], if it presented a token that was checked.
pub struct Presented(pub Option<Credential>);

impl<S: Send + Sync> FromRequestParts<S> for Presented {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Presented(parts.extensions.get::<Credential>().cloned()))
    }
}

/// The leader's check of a key-value write a follower relayed for the
/// token `credential` names (none: the follower's own write, or a follower
/// without `--auth`), against this node's tokens and roles: 401 for a
/// token it does not know, 403 for a key the token may not write. Without
/// `--auth` here, nothing is checked.
pub fn check_relayed(
    state: &AppState,
    credential: Option<&str>,
    command: &crate::types::Command,
) -> Result<(), ApiError> {
    let (true, Some(hash)) = (state.config.auth, credential) else {
        return Ok(());
    };
    let principal = state.tokens.resolve(&state.store, hash)?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "the token is not known to the leader: revoked, or never made",
        )
    })?;
    let allowed = match &command.op {
        crate::types::Op::Put { key, .. } | crate::types::Op::Delete { key, .. } => {
            principal.check_key(Access::ReadWrite, key)
        }
        _ => principal.check_admin("relay this write"),
    };
    allowed.map_err(|refusal| ApiError::new(ErrorCode::PermissionDenied, refusal))
}

/// What a route needs of the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: health, metrics, bootstrap.
    Nothing,
    /// Any valid token; the handler filters what it answers.
    Token,
    /// `access` on one key.
    Key(Access, String),
    /// Read on every key under a prefix.
    Prefix(String),
    /// An admin role; `what` names the action for the refusal.
    Admin(&'static str),
    /// What each compare and operation of the transaction in the body
    /// needs.
    Txn,
    /// Write on every key attached to the lease of the path (etcd's rule
    /// for a revoke, which deletes them).
    LeaseRevoke(String),
    /// Read on every key attached to the lease of the path (etcd's rule for
    /// a lease's time to live with its keys, which names them).
    LeaseKeys(String),
}

/// What the request to `route` (axum's pattern; `None` for no route) needs.
/// `param` gives the path's captures, `prefix` the query's `prefix`.
pub fn needs(
    method: &Method,
    route: Option<&str>,
    param: impl Fn(&str) -> Option<String>,
    prefix: impl Fn() -> String,
) -> Needs {
    let write = !matches!(*method, Method::GET | Method::HEAD);
    let access = if write {
        Access::ReadWrite
    } else {
        Access::Read
    };
    let key = |under: &str, name: &str| {
        Needs::Key(
            access,
            format!("{under}{}", param(name).unwrap_or_default()),
        )
    };
    match route {
        Some("/healthz" | "/readyz" | "/metrics" | "/v1/acl/bootstrap") => Needs::Nothing,
        // The console's files hold no data: the API it calls asks for the token.
        Some("/ui" | "/ui/" | "/ui/{*file}") if !write => Needs::Nothing,
        // Unknown routes still need a token: a 404 tells a stranger nothing.
        None | Some("/v1/openapi.json" | "/v1/changes" | "/v1/topic/records") => Needs::Token,
        Some("/v1/cluster" | "/v1/space") if !write => Needs::Token,
        Some("/v1/alarms") => Needs::Admin("list or disarm alarms"),
        Some("/v1/txn") => Needs::Txn,
        Some("/v1/leases/{id}") if *method == Method::DELETE => {
            Needs::LeaseRevoke(param("id").unwrap_or_default())
        }
        Some("/v1/leases/{id}") if !write => Needs::LeaseKeys(param("id").unwrap_or_default()),
        Some("/v1/leases" | "/v1/leases/{id}" | "/v1/leases/{id}/keepalive") => Needs::Token,
        Some("/v1/kv" | "/v1/kv/") => Needs::Prefix(prefix()),
        Some("/v1/kv/{*key}") => key("", "key"),
        Some("/v1/topics") => Needs::Prefix(TOPICS_PREFIX.to_string()),
        Some("/v1/topics/{name}") => key(TOPICS_PREFIX, "name"),
        Some("/v1/subscriptions") => Needs::Prefix(SUBSCRIPTIONS_PREFIX.to_string()),
        Some("/v1/subscriptions/{name}") => key(SUBSCRIPTIONS_PREFIX, "name"),
        // The name server's views read every key under namesrv/.
        Some("/v1/brokers" | "/v1/routes/{topic}") => {
            Needs::Prefix(crate::namesrv::keys::ROOT.to_string())
        }
        Some(route) if route.starts_with("/v1/cluster/") => {
            Needs::Admin("change the cluster's members")
        }
        Some(route) if route.starts_with("/v1/acl/") => Needs::Admin("manage roles and tokens"),
        // A route added without a rule here is for admins until it has one.
        Some(_) => Needs::Admin("use this route"),
    }
}

/// Middleware of the peer port, with `--auth`: a client's request another
/// node passed on (it carries the client's token) is checked again here,
/// against this node's tokens, roles and data, which the write goes by.
/// The node that passed it on checked its own copy, which may lag the
/// leader's: a lease's keys (a revoke of keys the token may not write), a
/// token or role changed since. A node's own calls (no token: a look at
/// the cluster or its space, the name server's writes) are the nodes'.
pub async fn check_passed_on(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let extensions = request.extensions();
    let clients = extensions.get::<PassedOn>().is_some()
        && extensions.get::<InternalRequest>().is_none()
        && request.headers().contains_key(header::AUTHORIZATION);
    if !clients {
        return next.run(request).await;
    }
    check(State(state), request, next).await
}

/// Middleware of the client port: with `--auth`, 401 without a known token,
/// 403 without the permission the route needs; the [`Caller`] is left in
/// the request for the handlers that filter.
pub async fn check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let params = parts.extract::<RawPathParams>().await;
    let (params, unreadable) = match params {
        Ok(params) => (Some(params), None),
        Err(rejection) => (None, Some(rejection)),
    };
    let param = |name: &str| {
        params.as_ref().and_then(|params| {
            params
                .iter()
                .find(|(found, _)| *found == name)
                .map(|(_, value)| value.to_string())
        })
    };
    let prefix = || query_prefix(parts.uri.query());
    let needs = needs(&parts.method, route.as_deref(), param, prefix);
    if needs == Needs::Nothing {
        return next.run(Request::from_parts(parts, body)).await;
    }
    // Read before the token is: an ACL change from here on is seen below.
    let acl_generation = state.store.acl_generation();
    let (principal, hash) = match authenticated(&state, &parts.headers) {
        Ok(found) => found,
        Err(error) => return error.into_response(),
    };
    if let (Some(route), Some(rejection)) = (route.as_deref(), unreadable) {
        if route.contains('{') {
            return unreadable_capture(route, &rejection).into_response();
        }
    }
    let mut body = body;
    let allowed = match &needs {
        Needs::Nothing | Needs::Token => Ok(()),
        Needs::Key(access, key) => principal.check_key(*access, key),
        Needs::Prefix(prefix) => principal.check_prefix(Access::Read, prefix),
        Needs::Admin(what) => principal.check_admin(what),
        Needs::Txn => {
            let limit = crate::api::max_body_bytes(&state.config);
            let bytes = match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => bytes,
                Err(error) => {
                    if let Some(stalled) = crate::api::layers::BodyStalled::behind(&error) {
                        return ApiError::new(
                            ErrorCode::InvalidBody,
                            format!("the body could not be read: {stalled}"),
                        )
                        .into_response();
                    }
                    return ApiError::new(
                        ErrorCode::ValueTooLarge,
                        format!("the transaction is over the body limit of {limit} bytes"),
                    )
                    .into_response();
                }
            };
            // A body that does not parse is refused by the handler, which
            // says why; it holds no key to check.
            let allowed = match parse_txn(&bytes) {
                Ok(txn) => txn_allowed(&principal, &txn),
                Err(_) => Ok(()),
            };
            body = axum::body::Body::from(bytes);
            allowed
        }
        Needs::LeaseRevoke(id) | Needs::LeaseKeys(id) => match lease_keys(&state, id) {
            Ok(keys) => {
                let access = match needs {
                    Needs::LeaseRevoke(_) => Access::ReadWrite,
                    _ => Access::Read,
                };
                // The refusal names no key: the caller may not read them.
                if keys.iter().all(|key| principal.may(access, key)) {
                    Ok(())
                } else {
                    Err(format!(
                        "token '{}' may not {access} every key attached to lease {id}, \
                         which this needs (as etcd asks)",
                        principal.name
                    ))
                }
            }
            Err(error) => return error.into_response(),
        },
    };
    if let Err(refusal) = allowed {
        return ApiError::new(ErrorCode::PermissionDenied, refusal).into_response();
    }
    if matches!(needs, Needs::Admin(_)) && parts.method != Method::GET {
        info!(token = %principal.name, method = %parts.method, path = %parts.uri.path(), "admin action");
    }
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    let headers = read.then(|| parts.headers.clone());
    parts
        .extensions
        .insert(Caller::Token(Arc::clone(&principal)));
    parts.extensions.insert(Credential(hash.into()));
    let response = next.run(Request::from_parts(parts, body)).await;
    match headers {
        // A read (a long-poll may wait minutes) during which the ACL
        // changed answers only as the token stands now: a revoked token or
        // a withdrawn grant must not be served what it waited for.
        Some(headers) if state.store.acl_generation() != acl_generation => {
            match check_again(&state, &headers, &needs, &principal) {
                Ok(()) => response,
                Err(error) => error.into_response(),
            }
        }
        _ => response,
    }
}

/// Whether the token of `headers` still resolves to `before`: what a
/// stream that answers on after its request was checked (a replay) asks
/// before it sends more, once roles or tokens changed.
pub fn token_unchanged(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    before: &Principal,
) -> Result<(), String> {
    match authenticate(state, headers) {
        Err(error) => Err(error.message().to_string()),
        Ok(now) if *now != *before => Err(format!("the roles of token '{}' changed", now.name)),
        Ok(_) => Ok(()),
    }
}

/// The read's check made again with the token as it stands now: 401 if it
/// is gone, 403 if it lost what the route needs. A route that filters what
/// it answers by the token (the change feed, say) asks the client to read
/// again if the token's roles changed: its answer was filtered by the old
/// ones.
fn check_again(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    needs: &Needs,
    before: &Principal,
) -> Result<(), ApiError> {
    let now = authenticate(state, headers)?;
    let allowed = match needs {
        Needs::Key(access, key) => now.check_key(*access, key),
        Needs::Prefix(prefix) => now.check_prefix(Access::Read, prefix),
        Needs::Admin(what) => now.check_admin(what),
        Needs::Nothing
        | Needs::Token
        | Needs::Txn
        | Needs::LeaseRevoke(_)
        | Needs::LeaseKeys(_) => {
            if *now != *before {
                return Err(ApiError::unavailable(format!(
                    "the roles of token '{}' changed while the request waited; ask again",
                    now.name
                )));
            }
            Ok(())
        }
    };
    allowed.map_err(|refusal| ApiError::new(ErrorCode::PermissionDenied, refusal))
}

/// The 400 the handler of `route` gives a path capture that is not UTF-8
/// once percent-decoded, given here: what the capture names cannot be
/// checked against the caller's permissions.
fn unreadable_capture(route: &str, rejection: &impl std::fmt::Display) -> ApiError {
    let (code, field) = match route {
        "/v1/kv/{*key}" => (ErrorCode::InvalidKey, "key"),
        "/v1/routes/{topic}" => (ErrorCode::InvalidField, "topic"),
        route if route.starts_with("/v1/leases/") => (ErrorCode::InvalidLeaseId, "id"),
        route if route.starts_with("/v1/cluster/") => (ErrorCode::InvalidId, "id"),
        _ => (ErrorCode::InvalidName, "name"),
    };
    ApiError::bad_field(
        code,
        field,
        format!("the {field} in the path is unreadable: {rejection}"),
    )
}

/// Whether `principal` may run `txn`: read on every compared or read key
/// (on the whole prefix of a prefix read), write on every written key (on
/// the whole prefix of a prefix delete), in both branches.
fn txn_allowed(principal: &Principal, txn: &TxnRequest) -> Result<(), String> {
    for compare in &txn.compare {
        principal.check_key(Access::Read, &compare.key)?;
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            TxnOp::Put(put) => principal.check_key(Access::ReadWrite, &put.key)?,
            TxnOp::Delete(KeyOrPrefix::Key(key)) => principal.check_key(Access::ReadWrite, key)?,
            TxnOp::Delete(KeyOrPrefix::Prefix(prefix)) => {
                principal.check_prefix(Access::ReadWrite, prefix)?
            }
            TxnOp::Get(KeyOrPrefix::Key(key)) => principal.check_key(Access::Read, key)?,
            TxnOp::Get(KeyOrPrefix::Prefix(prefix)) => {
                principal.check_prefix(Access::Read, prefix)?
            }
        }
    }
    Ok(())
}

/// The keys attached to the lease `id` names (none if it names no lease:
/// the handler says so).
fn lease_keys(state: &AppState, id: &str) -> Result<Vec<String>, ApiError> {
    let Ok(id) = schemas::api::parse_lease_id(id, "id") else {
        return Ok(Vec::new());
    };
    Ok(state.store.lease_keys(id)?)
}

/// The token of `Authorization: Bearer <secret>`, resolved.
fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Arc<Principal>, ApiError> {
    authenticated(state, headers).map(|(principal, _)| principal)
}

/// The token of `Authorization: Bearer <secret>`, resolved, and the hash
/// of its secret.
fn authenticated(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(Arc<Principal>, String), ApiError> {
    let unauthenticated = |message: &str| ApiError::new(ErrorCode::Unauthenticated, message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthenticated(
            "this cluster runs with --auth: send Authorization: Bearer <token>",
        ));
    };
    let secret = value
        .to_str()
        .ok()
        .and_then(bearer_credentials)
        .map(str::trim)
        .filter(|secret| secret::is_well_formed(secret))
        .ok_or_else(|| {
            unauthenticated("the Authorization header is not \"Bearer <token>\" with a token this cluster makes")
        })?;
    let hash = secret::hash(secret);
    let principal = state
        .tokens
        .resolve(&state.store, &hash)?
        .ok_or_else(|| unauthenticated("the token is not known here: revoked, or never made"))?;
    Ok((principal, hash))
}

/// What follows the `Bearer` scheme of an `Authorization` value; the
/// scheme's name is case-insensitive (RFC 9110, 11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(credentials)
}

/// The query's `prefix`, as the list will read it (`""` when absent or
/// unreadable: the strictest case).
fn query_prefix(query: Option<&str>) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
        .ok()
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(name, _)| name == "prefix")
                .map(|(_, value)| value)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs_of(method: Method, route: Option<&str>, capture: &str, prefix: &str) -> Needs {
        needs(
            &method,
            route,
            |_| Some(capture.to_string()),
            || prefix.to_string(),
        )
    }

    #[test]
    fn each_route_needs_what_its_keys_and_actions_need() {
        use Access::{Read, ReadWrite};
        let key = |access, key: &str| Needs::Key(access, key.to_string());
        let cases = [
            (Method::GET, Some("/healthz"), "", "", Needs::Nothing),
            (Method::GET, Some("/metrics"), "", "", Needs::Nothing),
            (
                Method::POST,
                Some("/v1/acl/bootstrap"),
                "",
                "",
                Needs::Nothing,
            ),
            (Method::GET, None, "", "", Needs::Token),
            (Method::GET, Some("/v1/changes"), "", "", Needs::Token),
            (Method::GET, Some("/v1/topic/records"), "", "", Needs::Token),
            (Method::GET, Some("/v1/cluster"), "", "", Needs::Token),
            (Method::GET, Some("/readyz"), "", "", Needs::Nothing),
            (Method::GET, Some("/ui/"), "", "", Needs::Nothing),
            (Method::GET, Some("/ui/{*file}"), "", "", Needs::Nothing),
            (
                Method::POST,
                Some("/ui/{*file}"),
                "",
                "",
                Needs::Admin("use this route"),
            ),
            (Method::GET, Some("/v1/space"), "", "", Needs::Token),
            (
                Method::GET,
                Some("/v1/alarms"),
                "",
                "",
                Needs::Admin("list or disarm alarms"),
            ),
            (
                Method::DELETE,
                Some("/v1/alarms"),
                "",
                "",
                Needs::Admin("list or disarm alarms"),
            ),
            (
                Method::GET,
                Some("/v1/kv/{*key}"),
                "a/b",
                "",
                key(Read, "a/b"),
            ),
            (
                Method::PUT,
                Some("/v1/kv/{*key}"),
                "a/b",
                "",
                key(ReadWrite, "a/b"),
            ),
            (
                Method::DELETE,
                Some("/v1/kv/{*key}"),
                "a/b",
                "",
                key(ReadWrite, "a/b"),
            ),
            (
                Method::GET,
                Some("/v1/kv"),
                "",
                "a/",
                Needs::Prefix("a/".into()),
            ),
            (
                Method::GET,
                Some("/v1/topics"),
                "",
                "",
                Needs::Prefix("topics/".into()),
            ),
            (
                Method::GET,
                Some("/v1/routes/{topic}"),
                "TBW102",
                "",
                Needs::Prefix("namesrv/".into()),
            ),
            (
                Method::GET,
                Some("/v1/topics/{name}"),
                "T",
                "",
                key(Read, "topics/T"),
            ),
            (
                Method::PUT,
                Some("/v1/topics/{name}"),
                "T",
                "",
                key(ReadWrite, "topics/T"),
            ),
            (
                Method::DELETE,
                Some("/v1/subscriptions/{name}"),
                "G",
                "",
                key(ReadWrite, "subscriptions/G"),
            ),
            (
                Method::GET,
                Some("/v1/subscriptions"),
                "",
                "",
                Needs::Prefix("subscriptions/".into()),
            ),
            (
                Method::POST,
                Some("/v1/cluster/members"),
                "",
                "",
                Needs::Admin("change the cluster's members"),
            ),
            (
                Method::DELETE,
                Some("/v1/cluster/members/{id}"),
                "2",
                "",
                Needs::Admin("change the cluster's members"),
            ),
            (
                Method::GET,
                Some("/v1/acl/tokens"),
                "",
                "",
                Needs::Admin("manage roles and tokens"),
            ),
            (
                Method::GET,
                Some("/v1/new-route"),
                "",
                "",
                Needs::Admin("use this route"),
            ),
        ];
        for (method, route, capture, prefix, expected) in cases {
            assert_eq!(
                needs_of(method.clone(), route, capture, prefix),
                expected,
                "{method} {route:?}"
            );
        }
    }

    #[test]
    fn the_list_prefix_comes_from_the_query_decoded() {
        assert_eq!(query_prefix(Some("prefix=a%2Fb&limit=3")), "a/b");
        assert_eq!(query_prefix(Some("limit=3")), "");
        assert_eq!(query_prefix(None), "");
    }
}
