//! The error body every failed request gets, and its codes.
//!
//! `{"error": {"code": "...", "message": "...", "field": "...", "leader": {...}}}`:
//! `code` is what a program matches on, `message` is for people, `field`
//! names the offending field, parameter or header, and `leader` tells a
//! client that reached a node which cannot take the request where the
//! leader is.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::NodeId;

/// Declares [`ErrorCode`]: each code with its wire name, its HTTP status
/// and what it means, in one table.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = ($name:literal, $status:literal),)*) => {
        /// What went wrong, for programs: each code comes with one HTTP status.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
            /// A code this build does not know (a newer server's).
            #[serde(other)]
            Unknown,
        }

        impl ErrorCode {
            /// Every known code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                    ErrorCode::Unknown => "unknown",
                }
            }

            /// The HTTP status an answer with this code has.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                    ErrorCode::Unknown => 500,
                }
            }
        }
    };
}

error_codes! {
    // A request that cannot be read.
    /// The request is not HTTP this node can read: a malformed request
    /// line or header (answered before any route).
    MalformedRequest = ("malformed_request", 400),
    /// Plain HTTP reached a port that speaks HTTPS (TLS): the client's URL
    /// should start with `https://`.
    TlsRequired = ("tls_required", 400),
    /// The request's URI is longer than this node reads (64 KiB).
    UriTooLong = ("uri_too_long", 414),
    /// The request's headers are more (over 100) or larger than this node
    /// reads.
    HeadersTooLarge = ("headers_too_large", 431),
    /// The body is not one JSON value, or not the JSON the route takes.
    InvalidJson = ("invalid_json", 400),
    /// The body could not be read at all.
    InvalidBody = ("invalid_body", 400),
    /// A key is empty, too long, or has an empty or dot segment.
    InvalidKey = ("invalid_key", 400),
    /// A topic or group name in the path is unreadable.
    InvalidName = ("invalid_name", 400),
    /// A node id in the path is not a number.
    InvalidId = ("invalid_id", 400),
    /// A node address is not an `http(s)://host:port` URL.
    InvalidAddr = ("invalid_addr", 400),
    /// A header is malformed (`If-Match`, `Idempotency-Key`, …).
    InvalidHeader = ("invalid_header", 400),
    /// The query string cannot be parsed.
    InvalidQuery = ("invalid_query", 400),
    /// A query parameter has a value the route does not take.
    InvalidParameter = ("invalid_parameter", 400),
    /// A query parameter the route does not know.
    UnknownParameter = ("unknown_parameter", 400),
    /// A query parameter given twice.
    RepeatedParameter = ("repeated_parameter", 400),
    /// `If-Match` and `If-None-Match` together.
    ConflictingConditions = ("conflicting_conditions", 400),
    /// A raw KV write to a key that only the typed metadata API writes.
    ReservedKey = ("reserved_key", 400),
    /// A snapshot sent to the peer API does not decode.
    InvalidSnapshot = ("invalid_snapshot", 400),
    /// Removing the only voter of a cluster.
    LastVoter = ("last_voter", 400),
    /// Removing a voter would leave fewer of the remaining voters
    /// answering than a quorum of them: the change could not commit, and
    /// the cluster would take no write until they answered.
    NotEnoughMembers = ("not_enough_members", 409),
    /// A request between nodes came from a node of another cluster.
    ForeignCluster = ("foreign_cluster", 403),
    /// A request between nodes came from a node that writes another data
    /// format (or names none): a mixed cluster would diverge.
    IncompatiblePeer = ("incompatible_peer", 403),
    /// A role named in a token does not exist.
    UnknownRole = ("unknown_role", 400),
    /// An `/v1/acl` call to a cluster that runs without `--auth`.
    AuthDisabled = ("auth_disabled", 400),
    // Transactions and leases.
    /// A transaction with more than 128 compares, or more than 128 ops in
    /// one branch.
    TooManyOps = ("too_many_ops", 400),
    /// A transaction's branch writes a key twice: two puts, a put and a
    /// delete, or a write under a prefix the branch deletes.
    DuplicateKey = ("duplicate_key", 400),
    /// A lease TTL under 5 s or over 24 h.
    InvalidTtl = ("invalid_ttl", 400),
    /// A lease id (in the path or `?lease=`) is not a decimal number above 0.
    InvalidLeaseId = ("invalid_lease_id", 400),
    // Who may do what (with `--auth`).
    /// No `Authorization: Bearer` token, a malformed one, or one the
    /// cluster does not know (revoked, or never made).
    Unauthenticated = ("unauthenticated", 401),
    /// The token's roles do not allow the request; the message says what
    /// was missing.
    PermissionDenied = ("permission_denied", 403),
    // A metadata config that breaks RocketMQ's rules (the schemas crate's
    // validation); `field` names the JSON field.
    /// A required field is missing.
    MissingField = ("missing_field", 400),
    /// A field has the wrong JSON type.
    InvalidField = ("invalid_field", 400),
    /// A field is empty or blank.
    BlankField = ("blank_field", 400),
    /// A name holds a character RocketMQ refuses.
    IllegalCharacter = ("illegal_character", 400),
    /// A field is longer than allowed.
    TooLong = ("too_long", 400),
    /// A number is outside its range.
    OutOfRange = ("out_of_range", 400),
    /// A value is not one of those allowed.
    NotAllowedValue = ("not_allowed_value", 400),
    /// A value does not have the shape required.
    Malformed = ("malformed", 400),
    /// A reserved system name, without `?system=true`.
    SystemName = ("system_name", 400),
    /// The name in the body differs from the name in the path.
    NameMismatch = ("name_mismatch", 400),
    /// A field fixed at creation was changed.
    Unchangeable = ("unchangeable", 400),
    /// An entry appears twice.
    Duplicate = ("duplicate", 400),
    // Things that do not exist.
    /// No such route.
    NotFound = ("not_found", 404),
    /// The key does not exist.
    KeyNotFound = ("key_not_found", 404),
    /// The topic does not exist.
    TopicNotFound = ("topic_not_found", 404),
    /// The subscription group does not exist.
    SubscriptionNotFound = ("subscription_not_found", 404),
    /// The node is not a member of the cluster.
    MemberNotFound = ("member_not_found", 404),
    /// The role does not exist.
    RoleNotFound = ("role_not_found", 404),
    /// No token has this name.
    TokenNotFound = ("token_not_found", 404),
    /// No lease has this id: never granted, revoked, or expired.
    LeaseNotFound = ("lease_not_found", 404),
    /// The route does not take this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    // Conditions and conflicts.
    /// A typed metadata write raced another write; retry.
    Conflict = ("conflict", 409),
    /// A node with this id is a member at another address.
    MemberExists = ("member_exists", 409),
    /// The cluster already has its root token: bootstrap happens once.
    AclAlreadyBootstrapped = ("acl_already_bootstrapped", 409),
    /// A token with this name exists.
    TokenExists = ("token_exists", 409),
    /// openraft refused the membership change (another one is under way).
    MembershipChangeRefused = ("membership_change_refused", 409),
    /// The change feed no longer holds the deletes after `from`: list the
    /// keys and read the changes after the list's revision.
    BelowTombstoneFloor = ("below_tombstone_floor", 410),
    /// `If-Match` or `If-None-Match` did not hold.
    PreconditionFailed = ("precondition_failed", 412),
    /// An alarm cannot be disarmed: the member that raised it still
    /// crosses its limit, or could not be asked.
    AlarmHolds = ("alarm_holds", 409),
    /// The value is over the size limit.
    ValueTooLarge = ("value_too_large", 413),
    /// The body has a `Content-Encoding` (gzip, br, …): bodies are taken
    /// as sent, so only `identity` is read.
    UnsupportedEncoding = ("unsupported_encoding", 415),
    /// An `Idempotency-Key` sent again with another request while the
    /// first write is remembered: a retry must repeat its request.
    IdempotencyKeyReused = ("idempotency_key_reused", 422),
    /// The cluster holds as many leases as `--max-leases` allows; revoke
    /// one, or let one expire.
    LeaseLimit = ("lease_limit", 429),
    // The server's side.
    /// A fault of this server (storage), not of the request.
    Internal = ("internal", 500),
    /// No leader, no quorum, overloaded, or too slow: retry, perhaps elsewhere.
    Unavailable = ("unavailable", 503),
    /// This node cannot take the request and could not pass it to the
    /// leader; `leader` says where it is, when known.
    NotLeader = ("not_leader", 503),
    /// This node was removed from the cluster: it serves nothing more.
    /// Ask another node.
    NotAMember = ("not_a_member", 503),
    /// The node is not ready for traffic (`/readyz`): no leader known, no
    /// linearizable read in time (behind the leader, or no quorum), a
    /// full disk or a raised alarm; the message says which.
    NotReady = ("not_ready", 503),
    /// The NOSPACE alarm is raised (a member crossed `--quota-bytes` or
    /// `--min-free-bytes`), or this node's disk is full: writes that add
    /// data are refused until space is won back and the alarm disarmed.
    NoSpace = ("no_space", 507),
    /// A new member did not catch up in time; it stays a learner.
    NotCaughtUp = ("not_caught_up", 504),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A node of the cluster as an error names it: the leader to ask instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LeaderHint {
    /// The node's id.
    pub id: NodeId,
    /// The URL clients reach it at.
    pub addr: String,
}

/// The body of every error answer.
///
/// ```
/// use schemas::api::{ErrorBody, ErrorCode};
///
/// let body: ErrorBody = serde_json::from_str(
///     r#"{"error":{"code":"not_leader","message":"ask node 2","leader":{"id":2,"addr":"http://127.0.0.1:7072"}}}"#,
/// ).unwrap();
/// assert_eq!(body.error.code, ErrorCode::NotLeader);
/// assert_eq!(body.error.leader.unwrap().addr, "http://127.0.0.1:7072");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What an error answer says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The field, query parameter or header the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `not_leader`: the leader this node knows of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderHint>,
}

impl ErrorBody {
    /// A body with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field: None,
                leader: None,
            },
        }
    }
}

/// A request refused because of one field: what the contract's own checks
/// (a transaction, a lease grant, a lease id) return, ready to become an
/// [`ErrorBody`].
///
/// ```
/// use schemas::api::{parse_lease_id, ErrorBody, ErrorCode};
///
/// let refused = parse_lease_id("abc", "id").unwrap_err();
/// let body = ErrorBody::from(refused);
/// assert_eq!(body.error.code, ErrorCode::InvalidLeaseId);
/// assert_eq!(body.error.field.as_deref(), Some("id"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FieldError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// The field as a JSON path (`success[3].put.key`), or the parameter;
    /// empty when the error concerns the whole body (malformed JSON).
    pub field: String,
    /// What went wrong, for people; it names the field too.
    pub message: String,
}

impl FieldError {
    /// An error about `field`.
    pub fn new(code: ErrorCode, field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            code,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<crate::ValidationError> for FieldError {
    /// A rule of the crate broken: its code is the rule's kind
    /// ([`crate::api::validation_code`]).
    fn from(error: crate::ValidationError) -> Self {
        FieldError::new(
            crate::api::validation_code(&error),
            error.field(),
            error.to_string(),
        )
    }
}

impl From<FieldError> for ErrorBody {
    fn from(error: FieldError) -> Self {
        let mut body = ErrorBody::new(error.code, error.message);
        if !error.field.is_empty() {
            body.error.field = Some(error.field);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
            assert!((400..600).contains(&code.status()), "{code}");
        }
    }

    #[test]
    fn a_code_from_a_newer_server_reads_as_unknown() {
        let code: ErrorCode = serde_json::from_str("\"quota_exceeded\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }

    #[test]
    fn lease_and_transaction_codes_have_their_statuses() {
        assert_eq!(ErrorCode::LeaseNotFound.status(), 404);
        assert_eq!(ErrorCode::LeaseLimit.status(), 429);
        for code in [
            ErrorCode::InvalidTtl,
            ErrorCode::InvalidLeaseId,
            ErrorCode::TooManyOps,
            ErrorCode::DuplicateKey,
        ] {
            assert_eq!(code.status(), 400, "{code}");
        }
    }

    #[test]
    fn a_field_error_about_the_whole_body_names_no_field() {
        let body = ErrorBody::from(FieldError::new(ErrorCode::InvalidJson, "", "EOF"));
        assert_eq!(body.error.field, None);
        let body = ErrorBody::from(FieldError::new(ErrorCode::InvalidTtl, "ttl_s", "too short"));
        assert_eq!(body.error.field.as_deref(), Some("ttl_s"));
        assert_eq!(body.error.message, "too short");
    }

    #[test]
    fn wire_names_are_unique() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
