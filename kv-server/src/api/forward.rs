//! Any node takes any write: what only the leader can do is done there.
//!
//! Writes (every method but GET and HEAD), and reads of leases (whose
//! deadlines only the leader keeps), reaching a follower are passed to
//! the leader whole (method, path, query, headers, body) and the leader's
//! answer is passed back, so the client sees one answer. If the leader
//! changed or was gone before it got the request, the follower waits for
//! the next leader and passes it there; a request the leader may have
//! received is never sent twice. Reads are served where they arrive (see
//! [`crate::api::read`]).
//!
//! A forwarded request carries `X-Kv-Forwarded-By` and is never forwarded
//! again: a node that is no longer the leader answers 503 `not_leader`.
//!
//! Key-value writes (`PUT` and `DELETE` of `/v1/kv/{key}`) are the
//! exception: a follower serves them itself and passes only their commands
//! to the leader, many to a request (see [`crate::api::relay`]).
//!
//! The leader must serve the very route the follower checked the request
//! against (its `--auth` grant above all): a URL is normalized when it is
//! sent (`/v1/kv/a/%2e%2e/%2e%2e/raft/x` becomes `/raft/x`), so a path
//! that reads otherwise once sent is never passed on; this node answers it
//! as the leader would have (`invalid_key` and the like).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use schemas::api::header::INTERNAL;
use schemas::api::{ErrorBody, ErrorCode};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tracing::debug;

use crate::api::error::ApiError;
use crate::api::leader::{known_leader, wait_for_leader, Leader};
use crate::api::write::body_read_error;
use crate::api::{
    max_body_bytes, max_internal_body_bytes, AppState, InternalRequest, PassedOn, FORWARDED_HEADER,
};
use crate::types::NodeId;

/// Times a request is passed on after the leader changed under it.
const FORWARD_ATTEMPTS: usize = 3;
/// Time a forwarded request is given beyond the leader's own request
/// timeout, for the hop itself.
const FORWARD_SLACK: Duration = Duration::from_secs(1);

/// Layer of [`ForwardWrites`]: refuses every request once the node was
/// removed, and passes writes that reach a follower to the leader.
#[derive(Clone)]
pub struct ForwardWritesLayer {
    state: AppState,
}

impl ForwardWritesLayer {
    /// The layer over the routes of `state`'s node.
    pub fn new(state: AppState) -> ForwardWritesLayer {
        ForwardWritesLayer { state }
    }
}

impl<S> Layer<S> for ForwardWritesLayer {
    type Service = ForwardWrites<S>;

    fn layer(&self, inner: S) -> ForwardWrites<S> {
        ForwardWrites {
            state: self.state.clone(),
            inner,
        }
    }
}

/// A route that serves reads where they arrive and writes on the leader.
///
/// A service of its own rather than a `from_fn` middleware: a read (a
/// waiting long-poll above all) goes straight to the route's own future,
/// with nothing boxed or held around it; only a write pays for the boxed
/// future that may forward it.
#[derive(Clone)]
pub struct ForwardWrites<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for ForwardWrites<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if let Some(refusal) = crate::removal::refusal_if_removed(&self.state) {
            return Either::Right(Box::pin(std::future::ready(Ok(refusal))));
        }
        // The leases' deadlines live on the leader: their reads go there too.
        let read_only = matches!(*request.method(), Method::GET | Method::HEAD)
            && !request.uri().path().starts_with("/v1/leases");
        if read_only
            && !self.state.caught_up.is_done(&self.state.raft)
            && crate::caught_up::reads_the_view(request.uri().path())
        {
            // Only until a restarted node has caught up (see `caught_up`).
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let state = self.state.clone();
            return Either::Right(Box::pin(async move {
                match crate::caught_up::before_read(&state).await {
                    Ok(()) => Ok(serve_here(inner, request).await),
                    Err(refusal) => Ok(refusal.into_response()),
                }
            }));
        }
        if read_only || request.extensions().get::<PassedOn>().is_some() {
            return Either::Left(self.inner.call(request));
        }
        // The service made ready serves the request; a clone stays.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            Ok(route_write(state, request, inner).await)
        }))
    }
}

/// The route's own answer to `request`.
async fn serve_here<S>(inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Serves a write here if this node leads, else passes it to the leader.
async fn route_write<S>(state: AppState, request: Request, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let deadline = Instant::now() + Duration::from_millis(state.config.request_timeout_ms);
    let leader = match known_leader(&state) {
        Some(leader) => leader,
        None => match wait_for_leader(&state, None, deadline).await {
            Ok(leader) => leader,
            Err(error) => return error.into_response(),
        },
    };
    if leader == Leader::This
        || relays_here(&state, &leader, &request)
        || !reads_the_same_once_sent(&sent_target(request.uri()), request.uri())
        // Sent, a CONNECT names an authority, not this path.
        || request.method() == Method::CONNECT
    {
        return serve_here(inner, request).await;
    }
    let internal = request.extensions().get::<InternalRequest>().is_some();
    let (parts, body) = request.into_parts();
    let limit = if internal {
        max_internal_body_bytes(&state.config)
    } else {
        max_body_bytes(&state.config)
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(error) => return body_read_error(&state, error).into_response(),
    };
    let path = sent_target(&parts.uri);
    let mut leader = leader;
    for attempt in 1..=FORWARD_ATTEMPTS {
        let Leader::Other { id, peer_addr, .. } = &leader else {
            // Leadership came here while we waited: serve it ourselves.
            let request = Request::from_parts(parts, Body::from(body));
            return serve_here(inner, request).await;
        };
        let hop = Hop {
            peers: &state.peers,
            from: state.node_id,
            timeout: forward_timeout(&state, &path),
            internal,
        };
        match hop
            .send(peer_addr, &parts.method, &path, &parts.headers, &body)
            .await
        {
            Ok(Sent::Answer(response)) => {
                if response.status().is_success() && path.starts_with("/v1/acl/") {
                    // A token or role made through this node works here as
                    // soon as the answer arrives, as in etcd, where the
                    // member asked waits for its own apply: the leader
                    // applied it before answering, and a read barrier
                    // waits until this node has applied as much.
                    if let Err(error) = crate::api::read::linearizable_barrier(&state).await {
                        debug!(error = %error.message(), "an ACL change passed on is not applied here yet; answering anyway");
                    }
                }
                return response;
            }
            Ok(Sent::NotDelivered(why)) => {
                debug!(leader = id, attempt, %why, "the leader did not take the request; waiting for the next one");
            }
            Err(error) => return error.into_response(),
        }
        leader = match wait_for_leader(&state, Some(&leader), deadline).await {
            Ok(next_leader) => next_leader,
            Err(error) => return error.into_response(),
        };
    }
    ApiError::not_leader(
        "the leader changed while the request was passed to it; retry",
        leader.hint(),
    )
    .into_response()
}

/// Whether `request` is a key-value write this follower serves itself,
/// relaying only its command to `leader` (see [`crate::api::relay`]).
fn relays_here(state: &AppState, leader: &Leader, request: &Request) -> bool {
    let Leader::Other { peer_addr, .. } = leader else {
        return false;
    };
    matches!(*request.method(), Method::PUT | Method::DELETE)
        && request.uri().path().starts_with("/v1/kv/")
        && state.relay.takes(peer_addr)
}

/// The path and query of `uri` as it is passed on: a `\` in the path
/// percent-encoded, as a URL sent would otherwise read it as `/`; the
/// route here decodes `%5C` to the same `\`.
fn sent_target(uri: &axum::http::Uri) -> String {
    let path = uri.path().replace('\\', "%5C");
    match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    }
}

/// Whether `target`, the [`sent_target`] of `uri`, names the same path and
/// query once it is sent on: sent, a URL loses its dot segments (`.`, `..`,
/// percent-encoded too), which the routes here never do; and it is encoded
/// again (a `'` becomes `%27`), which must leave it within what an HTTP
/// request may carry, or it would never be sent.
fn reads_the_same_once_sent(target: &str, uri: &axum::http::Uri) -> bool {
    let Ok(sent) = reqwest::Url::parse(&format!("http://leader{target}")) else {
        return false;
    };
    let decoded = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let sent_target = sent.path().len() + sent.query().map_or(0, |query| query.len() + 1);
    sent_target <= MAX_SENT_TARGET_BYTES
        && decoded(sent.path()) == decoded(uri.path())
        && decoded(sent.query().unwrap_or("")) == decoded(uri.query().unwrap_or(""))
}

/// The longest path and query passed on: the `http` crate's limit for a
/// URI, less room for the leader's address in front of it.
const MAX_SENT_TARGET_BYTES: usize = 65_534 - 256;

/// The outcome of passing a request on.
enum Sent {
    /// The leader's answer, to hand back.
    Answer(Response),
    /// The leader surely did not act on the request: it refused the
    /// connection, or answered that it is no longer the leader.
    NotDelivered(String),
}

/// How long a forwarded request may take. The leader bounds its own work
/// (a write's commit, a new member's catch-up); this guards against a
/// leader that stopped answering.
fn forward_timeout(state: &AppState, path: &str) -> Duration {
    let mut timeout = Duration::from_millis(state.config.request_timeout_ms) + FORWARD_SLACK;
    if path.starts_with("/v1/cluster/members") {
        timeout += crate::api::cluster::CATCH_UP_TIMEOUT;
    }
    timeout
}

/// One hop of a forwarded request: from this node to the leader.
struct Hop<'a> {
    /// The pooled HTTP client for other nodes.
    peers: &'a crate::peer::PeerClient,
    /// This node's id, sent in `X-Kv-Forwarded-By`.
    from: NodeId,
    /// How long the leader may take to answer.
    timeout: Duration,
    /// Whether the request is this node's own ([`InternalRequest`]), sent
    /// on marked `x-kv-internal`.
    internal: bool,
}

impl Hop<'_> {
    /// Sends the request to the leader at `addr`.
    async fn send(
        &self,
        addr: &str,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Sent, ApiError> {
        let url = format!("{addr}{path}");
        let mut outgoing = self
            .peers
            .request(method.clone(), &url)
            .timeout(self.timeout)
            .header(FORWARDED_HEADER, HeaderValue::from(self.from))
            .body(body.clone());
        if self.internal {
            outgoing = outgoing.header(INTERNAL, HeaderValue::from_static("1"));
        }
        for (name, value) in headers {
            // A client's own `x-kv-internal` and `x-kv-forwarded-by` stay
            // behind: only this node says a request is its own, or whence
            // it was passed on.
            if !is_hop_by_hop(name)
                && *name != header::HOST
                && *name != header::CONTENT_LENGTH
                && *name != INTERNAL
                && *name != FORWARDED_HEADER
            {
                outgoing = outgoing.header(name, value);
            }
        }
        let response = match outgoing.send().await {
        Ok(response) => response,
        Err(error) if error.is_connect() => {
            return Ok(Sent::NotDelivered(format!("cannot connect to {addr}: {error}")))
        }
        Err(error) => {
            return Err(ApiError::unavailable(format!(
                "the leader at {addr} did not answer ({error}); the request may or may not have taken effect"
            )))
        }
    };
        let status = StatusCode::from_u16(response.status().as_u16())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut answer_headers = HeaderMap::new();
        for (name, value) in response.headers() {
            // The peer port's own headers (the cluster id and data format
            // it answers a node with) are for nodes, not the client.
            let peers_own = [
                schemas::api::header::CLUSTER_ID,
                schemas::api::header::DATA_FORMAT,
            ]
            .contains(&name.as_str());
            if !is_hop_by_hop(name) && *name != header::CONTENT_LENGTH && !peers_own {
                answer_headers.append(name.clone(), value.clone());
            }
        }
        let bytes = response.bytes().await.map_err(|error| {
            ApiError::unavailable(format!(
                "the leader at {addr} answered {status} but its body was cut off: {error}"
            ))
        })?;
        if status == StatusCode::SERVICE_UNAVAILABLE
            && error_code(&bytes) == Some(ErrorCode::NotLeader)
        {
            return Ok(Sent::NotDelivered(format!(
                "{addr} is no longer the leader: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        let mut answer = (status, bytes).into_response();
        *answer.headers_mut() = answer_headers;
        Ok(Sent::Answer(answer))
    }
}

/// The code of an error body.
fn error_code(body: &[u8]) -> Option<ErrorCode> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|body| body.error.code)
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
    )
}

#[cfg(test)]
mod tests {
    use axum::routing::any;
    use axum::Router;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn a_path_that_reads_otherwise_once_sent_is_not_passed_on() {
        let same = |uri: &str| {
            let uri: axum::http::Uri = uri.parse().unwrap();
            reads_the_same_once_sent(&sent_target(&uri), &uri)
        };
        for kept in [
            "/v1/kv/app/k",
            "/v1/kv/app/a%2Fb",
            "/v1/kv/app/a%20b?prefix=%22x%22&limit=2",
            "/v1/kv/app/a\"b'c",
            "/v1/kv/app/...",
            "/v1/kv/app/.x/x.",
            "/v1/txn",
            // Sent as `%5C`, which the leader reads as the same `\`.
            "/v1/acl/roles/x\\y",
            "/v1/kv/app\\..\\..\\v1\\txn",
        ] {
            assert!(same(kept), "{kept}");
        }
        for changed in [
            "/v1/kv/app/%2e%2e/%2e%2e/%2e%2e/raft/propose",
            "/v1/kv/app/%2E%2e/x",
            "/v1/kv/app/.%2E/x",
            "/v1/kv/app/../x",
            "/v1/kv/app/./x",
            "/v1/kv/app/%2e/x",
            "/v1/kv/app/..",
        ] {
            assert!(!same(changed), "{changed}");
        }
        // Within the limit as received, past it once encoded again.
        let quoted = format!("/v1/leases?{}", "'".repeat(22_000));
        assert!(!same(&quoted));
        assert!(same(&format!("/v1/leases?{}", "a".repeat(22_000))));
    }
    use crate::api::test_peers::{closed_port, peer_client, silent_peer};

    /// A leader on a loopback port that answers every request with `status`
    /// and `body`, echoing in headers what it received.
    async fn leader(status: StatusCode, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(any(move |request: Request| async move {
            let forwarded_by = request.headers().get(FORWARDED_HEADER).cloned();
            let idempotency = request.headers().get("idempotency-key").cloned();
            let mut answer = (status, body).into_response();
            let headers = answer.headers_mut();
            headers.insert("connection", HeaderValue::from_static("keep-alive"));
            if let Some(value) = forwarded_by {
                headers.insert("x-seen-forwarded-by", value);
            }
            if let Some(value) = idempotency {
                headers.insert("x-seen-idempotency-key", value);
            }
            answer
        }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn forward(addr: &str) -> Result<Sent, ApiError> {
        let dir = tempfile::tempdir().unwrap();
        let peers = peer_client(&dir);
        let hop = Hop {
            peers: &peers,
            from: 2,
            timeout: Duration::from_secs(5),
            internal: false,
        };
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        headers.insert("connection", HeaderValue::from_static("close"));
        let body = Bytes::from_static(b"{}");
        hop.send(addr, &Method::PUT, "/v1/kv/a", &headers, &body)
            .await
    }

    #[tokio::test]
    async fn a_request_reaches_the_leader_or_is_known_not_to_have() {
        let not_leader = r#"{"error":{"code":"not_leader","message":"no"}}"#;
        let unavailable = r#"{"error":{"code":"unavailable","message":"slow"}}"#;
        // (the leader's answer, whether the request is known undelivered,
        // the status handed back when it was delivered)
        let cases = [
            (Some((StatusCode::OK, "{}")), false, Some(StatusCode::OK)),
            (
                Some((StatusCode::PRECONDITION_FAILED, "{}")),
                false,
                Some(StatusCode::PRECONDITION_FAILED),
            ),
            (
                Some((StatusCode::SERVICE_UNAVAILABLE, not_leader)),
                true,
                None,
            ),
            (
                Some((StatusCode::SERVICE_UNAVAILABLE, unavailable)),
                false,
                Some(StatusCode::SERVICE_UNAVAILABLE),
            ),
            (None, true, None),
        ];
        for (answer, undelivered, status) in cases {
            let addr = match answer {
                Some((status, body)) => leader(status, body).await,
                None => closed_port().await,
            };
            match forward(&addr).await {
                Ok(Sent::NotDelivered(_)) => assert!(undelivered, "{answer:?}"),
                Ok(Sent::Answer(response)) => {
                    assert!(!undelivered, "{answer:?}");
                    assert_eq!(Some(response.status()), status, "{answer:?}");
                }
                Err(error) => panic!("{answer:?}: {error:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_leader_sees_who_forwarded_and_hop_by_hop_headers_stay_behind() {
        let addr = leader(StatusCode::OK, "{}").await;
        let Ok(Sent::Answer(response)) = forward(&addr).await else {
            panic!("the leader's answer was not handed back");
        };
        let headers = response.headers();
        assert_eq!(headers["x-seen-forwarded-by"], "2");
        assert_eq!(headers["x-seen-idempotency-key"], "k-1");
        assert!(headers.get("connection").is_none(), "{headers:?}");
    }

    #[tokio::test]
    async fn a_leader_that_takes_the_request_and_never_answers_may_have_applied_it() {
        let (addr, holder) = silent_peer().await;
        let dir = tempfile::tempdir().unwrap();
        let peers = peer_client(&dir);
        let hop = Hop {
            peers: &peers,
            from: 2,
            timeout: Duration::from_millis(300),
            internal: false,
        };
        let outcome = hop
            .send(
                &addr,
                &Method::PUT,
                "/v1/kv/a",
                &HeaderMap::new(),
                &Bytes::new(),
            )
            .await;
        holder.abort();
        let error = match outcome {
            Err(error) => error,
            Ok(_) => {
                panic!("a request the leader may have applied was reported undelivered or answered")
            }
        };
        assert_eq!(error.code(), ErrorCode::Unavailable);
    }

    #[test]
    fn error_codes_are_read_from_error_bodies_only() {
        let cases: [(&[u8], Option<ErrorCode>); 4] = [
            (
                br#"{"error":{"code":"not_leader","message":"m"}}"#,
                Some(ErrorCode::NotLeader),
            ),
            (
                br#"{"error":{"code":"key_not_found","message":"m"}}"#,
                Some(ErrorCode::KeyNotFound),
            ),
            (b"{}", None),
            (b"<html>", None),
        ];
        for (body, code) in cases {
            assert_eq!(error_code(body), code, "{}", String::from_utf8_lossy(body));
        }
    }
}
