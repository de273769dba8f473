//! The crate's one error type.
//!
//! An answer of the server that is an error keeps the server's `code`,
//! `message` and `field`; every variant names the request it belongs to
//! (`PUT /v1/kv/app/config`) and, where one was reached, the endpoint.

use std::time::Duration;

use schemas::api::{ErrorCode, LeaderHint};

use crate::Revision;

/// Everything a call of this crate can fail with.
///
/// ```
/// use kv_client::{Error, ErrorCode};
///
/// fn explain(error: &Error) -> String {
///     match error.code() {
///         Some(ErrorCode::PreconditionFailed) => "someone else changed it first".to_string(),
///         Some(code) => format!("the server refused: {code}"),
///         None => format!("no answer: {error}"),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error: `{"error":{"code","message","field"?}}`.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// One attempt at one endpoint failed before an answer came: refused
    /// connection, reset, timeout.
    #[error("{request} at {endpoint}: {}", with_causes(source))]
    Transport {
        /// The request, as `METHOD /path`.
        request: String,
        /// The endpoint tried.
        endpoint: String,
        /// What the HTTP client reported.
        #[source]
        source: reqwest::Error,
    },

    /// The TLS handshake with an endpoint failed: its certificate is not
    /// trusted, or it refused this client's certificate. Retrying does
    /// not help, so the call ends at once.
    #[error("{request} at {endpoint}: {reason}")]
    Tls {
        /// The request, as `METHOD /path`.
        request: String,
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong, in plain words.
        reason: String,
        /// What the HTTP client reported.
        #[source]
        source: reqwest::Error,
    },

    /// One attempt at one endpoint got no answer in time.
    #[error("{request} at {endpoint}: no answer within {after:?}")]
    Timeout {
        /// The request, as `METHOD /path`.
        request: String,
        /// The endpoint tried.
        endpoint: String,
        /// How long it waited.
        after: Duration,
    },

    /// Every attempt failed (no endpoint reachable, or each one answered
    /// 503) until the attempts or the deadline ran out.
    #[error(
        "{request}: gave up after {attempts} attempts in {elapsed:?}; last error: {last}{}",
        .last_answer.as_ref().map(|answer| format!("; the last answer: {answer}")).unwrap_or_default()
    )]
    Unavailable {
        /// The request, as `METHOD /path`.
        request: String,
        /// How many attempts were made.
        attempts: u32,
        /// How long they took together.
        elapsed: Duration,
        /// The error of the last attempt.
        #[source]
        last: Box<Error>,
        /// When the last attempt got no answer (cut off by the deadline,
        /// say), the last error a node answered with, if one did: it says
        /// why the nodes could not serve (`not_ready`, `not_leader`, …).
        last_answer: Option<Box<Error>>,
    },

    /// An answer that does not have the shape the API promises.
    #[error("{request} at {endpoint}: unexpected answer: {message}")]
    Decode {
        /// The request, as `METHOD /path`.
        request: String,
        /// The endpoint that answered.
        endpoint: String,
        /// What was wrong with it.
        message: String,
    },

    /// An argument refused before anything was sent: an endpoint that is
    /// not an HTTP URL, a key the server would refuse, a value that does
    /// not serialize.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was invalid (`endpoint`, `key`, `value`, …).
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// An error answer of the server, and where it came from.
///
/// ```
/// # async fn example(client: kv_client::Client) {
/// if let Err(kv_client::Error::Api(answer)) = client.put("topics/raw", &1).await {
///     assert_eq!((answer.status, answer.code), (400, kv_client::ErrorCode::ReservedKey));
///     assert_eq!(answer.field.as_deref(), Some("key"));
///     println!("{} said: {}", answer.endpoint, answer.message);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{request} at {endpoint}: {status} {code}: {message}{}",
    field_suffix(field)
)]
pub struct ApiError {
    /// The request, as `METHOD /path`.
    pub request: String,
    /// The endpoint that answered.
    pub endpoint: String,
    /// The HTTP status (for the error a replay's last line gave, on an
    /// answer that began 200, the status of its code).
    pub status: u16,
    /// The server's error code (`key_not_found`, `precondition_failed`, …);
    /// [`ErrorCode::Unknown`] for a code this build does not know, and for
    /// an answer that is not the API's error (a proxy's page).
    pub code: ErrorCode,
    /// The server's explanation.
    pub message: String,
    /// The field or parameter the error is about, if the server named one.
    pub field: Option<String>,
    /// With `not_leader`: the leader the answering node knows of.
    pub leader: Option<LeaderHint>,
    /// The key's current revision, when the answer carried an `ETag`
    /// (a failed compare-and-set does).
    pub current_revision: Option<Revision>,
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|field| format!(" (field {field})"))
        .unwrap_or_default()
}

impl Error {
    /// The server's error code, if the error is (or ended in) an error
    /// answer of the server.
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) {
    /// match client.create("locks/job", &"owner-1").await {
    ///     Err(error) if error.code() == Some(kv_client::ErrorCode::PreconditionFailed) => {
    ///         println!("taken")
    ///     }
    ///     other => println!("{other:?}"),
    /// }
    /// # }
    /// ```
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api(answer) => Some(answer.code),
            Error::Unavailable { last, .. } => last.code(),
            _ => None,
        }
    }

    /// The HTTP status, if the error is (or ended in) an answer of the server.
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) {
    /// if let Err(error) = client.put("a/b", &1).await {
    ///     eprintln!("status {:?}", error.status());
    /// }
    /// # }
    /// ```
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(answer) => Some(answer.status),
            Error::Unavailable { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The server's message, if the error is (or ended in) an error answer.
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) {
    /// if let Err(error) = client.put("bad//key", &1).await {
    ///     eprintln!("{}", error.server_message().unwrap_or("no answer"));
    /// }
    /// # }
    /// ```
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Api(answer) => Some(&answer.message),
            Error::Unavailable { last, .. } => last.server_message(),
            _ => None,
        }
    }

    /// Whether a condition (`If-Match`, `If-None-Match`) did not hold: the
    /// key changed, exists already, or is gone.
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let first = client.put("config/x", &1).await?;
    /// client.put("config/x", &2).await?;
    /// let stale = client.cas("config/x", first.revision, &3).await.unwrap_err();
    /// assert!(stale.is_precondition_failed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_precondition_failed(&self) -> bool {
        self.code() == Some(ErrorCode::PreconditionFailed)
    }

    /// Whether the thing asked for does not exist (a key, topic, group or
    /// lease).
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) {
    /// let missing = client.delete_if("never/written", 5).await.unwrap_err();
    /// assert!(missing.is_not_found() || missing.is_precondition_failed());
    /// # }
    /// ```
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code(),
            Some(
                ErrorCode::KeyNotFound
                    | ErrorCode::TopicNotFound
                    | ErrorCode::SubscriptionNotFound
                    | ErrorCode::LeaseNotFound
            )
        )
    }

    /// Whether the server wants a token this client did not send, or does
    /// not know the one it sent (401 `unauthenticated`: none, malformed,
    /// revoked).
    pub fn is_unauthenticated(&self) -> bool {
        self.code() == Some(ErrorCode::Unauthenticated)
    }

    /// Whether the token's roles do not allow the call (403
    /// `permission_denied`); the server's message says what was missing.
    pub fn is_permission_denied(&self) -> bool {
        self.code() == Some(ErrorCode::PermissionDenied)
    }

    /// Whether the error is worth another attempt elsewhere or later: no
    /// answer came, or the answer said the node cannot serve now (502, 503,
    /// 504).
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) {
    /// if let Err(error) = client.get("a/b").await {
    ///     if error.is_retryable() {
    ///         eprintln!("the cluster is not reachable now: {error}");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } | Error::Unavailable { .. } => true,
            Error::Api(answer) => matches!(answer.status, 502..=504),
            Error::Decode { .. } | Error::Invalid { .. } | Error::Tls { .. } => false,
        }
    }

    /// The key's current revision after a failed compare-and-set, when the
    /// server sent it (`ETag`); `None` also when the key does not exist.
    ///
    /// ```
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.put("config/y", &1).await?;
    /// let refused = client.cas("config/y", 1, &2).await.unwrap_err();
    /// println!("now at {:?}", refused.current_revision());
    /// # Ok(())
    /// # }
    /// ```
    pub fn current_revision(&self) -> Option<Revision> {
        match self {
            Error::Api(answer) => answer.current_revision,
            Error::Unavailable { last, .. } => last.current_revision(),
            _ => None,
        }
    }
}

/// The crate's result type.
///
/// ```
/// fn parse_revision(text: &str) -> kv_client::Result<u64> {
///     text.parse().map_err(|_| kv_client::Error::Invalid {
///         what: "revision",
///         message: format!("{text:?} is not a number"),
///     })
/// }
/// assert_eq!(parse_revision("7").unwrap(), 7);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `error`'s message followed by those of its causes that it does not
/// already say: an HTTP client's "error sending request" alone hides
/// whether the connection was refused, reset or never resolved.
pub(crate) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let message = inner.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = inner.source();
    }
    text
}
