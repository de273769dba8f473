//! How the name server writes: through this node's own HTTP API, called
//! in-process, so a follower passes each write to the leader exactly as
//! it passes a client's (see `api::forward`), and every write is checked
//! as a client's is.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use schemas::api::{ErrorBody, ErrorCode, Lease, TxnResponse};
use serde_json::{json, Value};
use tower::ServiceExt;
use tracing::debug;
use uuid::Uuid;

use crate::store::Store;

/// The largest answer of the API read back (a txn's answer is small).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// How long a write is asked again while the store cannot take it (as the
/// API waits for a leader to be known: `api::leader`).
const LEADER_CHANGE_WAIT: Duration = Duration::from_secs(5);
/// The pause before the first retry; each next one doubles, up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
const MAX_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Namespace of the idempotency keys of the name server's writes.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6e61_6d65_7372_7600_8000_0000_0000_0016);

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The lease the write named is gone.
    #[error("lease {id} does not exist")]
    LeaseNotFound {
        /// The lease.
        id: u64,
    },
    /// The API refused the write or could not do it.
    #[error("{method} {path}: {status} {code}: {message}")]
    Refused {
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The answer's status.
        status: StatusCode,
        /// The error code of the answer.
        code: String,
        /// Its message.
        message: String,
    },
}

/// One op of a transaction, as the txn API takes it.
#[derive(Clone, Debug)]
pub enum Op {
    /// Put `value` at `key`, attached to `lease` if any.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Value,
        /// The lease.
        lease: Option<u64>,
    },
    /// Delete `key`.
    Delete(String),
    /// Delete every key under a prefix.
    DeletePrefix(String),
}

impl Op {
    fn to_json(&self) -> Value {
        match self {
            Op::Put { key, value, lease } => match lease {
                Some(lease) => json!({"put": {"key": key, "value": value, "lease": lease}}),
                None => json!({"put": {"key": key, "value": value}}),
            },
            Op::Delete(key) => json!({"delete": {"key": key}}),
            Op::DeletePrefix(prefix) => json!({"delete": {"prefix": prefix}}),
        }
    }
}

/// A condition of a transaction, as the txn API takes it.
#[derive(Clone, Debug)]
pub enum Guard {
    /// The key's `mod_revision` is this (0: the key is absent).
    ModRevision(String, u64),
}

impl Guard {
    fn to_json(&self) -> Value {
        match self {
            Guard::ModRevision(key, revision) => {
                json!({"key": key, "target": "mod_revision", "op": "=", "value": revision})
            }
        }
    }
}

/// The idempotency key of a write described by `parts`: the same parts
/// give the same key on every node, so a retry is applied once.
pub fn idempotency_key(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// The node's public API without authentication, called in-process.
#[derive(Clone)]
pub struct Writer {
    router: Router,
    /// This node's store, whose apply a transaction waits for.
    store: Arc<Store>,
    /// How long a transaction waits for this node to apply it.
    apply_wait: Duration,
}

impl Writer {
    /// Writes through `router` (see `api::internal_router`) to `store`,
    /// waiting up to `apply_wait` for this node to apply each transaction.
    pub fn new(router: Router, store: Arc<Store>, apply_wait: Duration) -> Writer {
        Writer {
            router,
            store,
            apply_wait,
        }
    }

    /// Grants a lease of `ttl_s` seconds.
    pub async fn grant(&self, ttl_s: u64) -> Result<u64, WriteError> {
        let answer = self
            .call(
                Method::POST,
                "/v1/leases",
                None,
                Some(json!({ "ttl_s": ttl_s })),
            )
            .await?;
        let lease: Lease = parse(&Method::POST, "/v1/leases", &answer)?;
        Ok(lease.id)
    }

    /// Renews lease `id`; false if it does not exist.
    pub async fn keep_alive(&self, id: u64) -> Result<bool, WriteError> {
        let path = format!("/v1/leases/{id}/keepalive");
        match self.call(Method::POST, &path, None, None).await {
            Ok(_) => Ok(true),
            Err(WriteError::LeaseNotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Revokes lease `id`, deleting its keys; a missing lease is no error.
    pub async fn revoke(&self, id: u64) -> Result<(), WriteError> {
        let path = format!("/v1/leases/{id}");
        match self.call(Method::DELETE, &path, None, None).await {
            Ok(_) | Err(WriteError::LeaseNotFound { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Runs `ops` as one transaction if every guard holds; whether they
    /// held.
    pub async fn txn(
        &self,
        guards: &[Guard],
        ops: &[Op],
        idempotency: Uuid,
    ) -> Result<TxnResponse, WriteError> {
        let body = json!({
            "compare": guards.iter().map(Guard::to_json).collect::<Vec<_>>(),
            "success": ops.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        let answer = self
            .call(Method::POST, "/v1/txn", Some(idempotency), Some(body))
            .await?;
        let answer: TxnResponse = parse(&Method::POST, "/v1/txn", &answer)?;
        // The leader answered once it applied the transaction; a follower
        // that passed it on may not have yet. Apache's name server reads
        // its own writes, and so does a broker or an admin tool here: the
        // next request on this node sees this one. (It also moves the
        // revision the next write's idempotency key is made with.)
        if !self.store.applied(answer.revision, self.apply_wait).await {
            debug!(
                revision = answer.revision,
                "the transaction is not applied on this node yet; answering anyway"
            );
        }
        Ok(answer)
    }

    /// One request to the API; the body of a 2xx answer, else the error.
    /// An answer that the store cannot take writes now (a 503: no leader
    /// known, a leader just elected and not yet keeping the leases'
    /// deadlines) is asked again until [`LEADER_CHANGE_WAIT`] from the
    /// first try: a broker's heartbeat sent during an election is
    /// answered once it ends, as a client's write with kv-client is.
    async fn call(
        &self,
        method: Method,
        path: &str,
        idempotency: Option<Uuid>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, WriteError> {
        let deadline = tokio::time::Instant::now() + LEADER_CHANGE_WAIT;
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let answer = self
                .call_once(method.clone(), path, idempotency, body.clone())
                .await;
            match answer {
                Err(error)
                    if error.is_transient() && tokio::time::Instant::now() + pause < deadline =>
                {
                    debug!(%error, ?pause, "the store cannot take the write now; asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
                answer => return answer,
            }
        }
    }

    /// One request to the API, once.
    async fn call_once(
        &self,
        method: Method,
        path: &str,
        idempotency: Option<Uuid>,
        body: Option<Value>,
    ) -> Result<Vec<u8>, WriteError> {
        let refused = |status: StatusCode, code: &str, message: String| WriteError::Refused {
            method: method.clone(),
            path: path.to_string(),
            status,
            code: code.to_string(),
            message,
        };
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(axum::http::header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency {
            request = request.header(schemas::api::header::IDEMPOTENCY_KEY, key.to_string());
        }
        let body = body.map_or_else(Vec::new, |body| body.to_string().into_bytes());
        let request = request
            .body(Body::from(body))
            .map_err(|error| refused(StatusCode::BAD_REQUEST, "internal", error.to_string()))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|error| refused(status, "internal", error.to_string()))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(ErrorBody { error }) if error.code == ErrorCode::LeaseNotFound => {
                Err(WriteError::LeaseNotFound {
                    id: lease_in(&error.message),
                })
            }
            Ok(ErrorBody { error }) => Err(refused(status, error.code.as_str(), error.message)),
            Err(_) => Err(refused(
                status,
                "internal",
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
        }
    }
}

impl WriteError {
    /// Whether the store could not take the write now and may once a
    /// leader is elected or settled: a 503, other than from a node that is
    /// not a member of the cluster.
    fn is_transient(&self) -> bool {
        matches!(self, WriteError::Refused { status, code, .. }
            if *status == StatusCode::SERVICE_UNAVAILABLE
                && code != ErrorCode::NotAMember.as_str())
    }

    /// What the name server's answer says of the failure: the store's code
    /// and message, without the HTTP request that carried it.
    pub fn remark(&self) -> String {
        match self {
            WriteError::LeaseNotFound { .. } => self.to_string(),
            WriteError::Refused { code, message, .. } => format!("{code}: {message}"),
        }
    }
}

/// The lease id an error message names, if it names one (0 if not).
fn lease_in(message: &str) -> u64 {
    message
        .split(|c: char| !c.is_ascii_digit())
        .find_map(|digits| digits.parse().ok())
        .unwrap_or(0)
}

fn parse<T: serde::de::DeserializeOwned>(
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<T, WriteError> {
    serde_json::from_slice(body).map_err(|error| WriteError::Refused {
        method: method.clone(),
        path: path.to_string(),
        status: StatusCode::OK,
        code: "internal".to_string(),
        message: format!("the answer does not parse: {error}"),
    })
}
