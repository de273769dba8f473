//! The HTTP/JSON API's contract, shared by the server and every client:
//! header names, the error body and its codes, the request and answer
//! types of every route, and the OpenAPI document generated from them.
//!
//! * [`header`]: `X-Kv-Revision`, `X-Kv-Index`, `Idempotency-Key`, …
//! * [`ErrorBody`], [`ErrorCode`]: every failure as
//!   `{"error":{"code","message","field"?,"leader"?}}`; a code has one status.
//!   [`FieldError`]: what the contract's own checks refuse, naming the field.
//! * [`KeyValue`], [`WriteResult`], [`KeyList`]: `/v1/kv`.
//! * [`ChangeRecord`], [`ChangesPage`]: `/v1/changes`, `/v1/topic/records`.
//! * [`ClusterStatus`], [`Member`], [`AddMember`], [`MembershipChange`],
//!   [`Health`]: `/v1/cluster`, `/healthz`.
//! * [`Role`], [`CreateToken`], [`CreatedToken`], [`TokenInfo`]: `/v1/acl`.
//! * [`TxnRequest`] (its [`Compare`]s and [`TxnOp`]s), [`parse_txn`],
//!   [`TxnResponse`]: `/v1/txn`.
//! * [`GrantLease`], [`Lease`], [`LeaseKeepAlive`], [`LeaseInfo`],
//!   [`LeaseList`], [`LeaseRevoked`], [`parse_lease_id`]: `/v1/leases`, and
//!   `?lease=` on puts.
//! * [`MetadataKind`]: what topics and subscription groups share.
//! * [`openapi::document`]: the OpenAPI 3.1 document of all of it.
//!
//! ```
//! use schemas::api::{header, ErrorBody, ErrorCode};
//!
//! let body = ErrorBody::new(ErrorCode::KeyNotFound, "key \"a/b\" does not exist");
//! assert_eq!(body.error.code.status(), 404);
//! assert_eq!(header::REVISION, "x-kv-revision");
//! ```

mod acl;
mod alarm;
mod changes;
mod cluster;
mod duration;
mod error;
pub mod header;
mod kv;
mod lease;
mod metadata;
pub mod openapi;
mod txn;

pub use acl::{
    check_acl_name, is_well_formed_secret, Access, Bootstrap, CreateToken, CreatedToken,
    Permission, Role, RoleList, TokenInfo, TokenList, ACL_PREFIX, MAX_ACL_NAME_BYTES,
    ROOT_TOKEN_NAME, SECRET_HEX_DIGITS,
};
pub use alarm::{Alarm, AlarmKind, AlarmList, NodeSpace};
pub use changes::{ChangeRecord, ChangesPage};
pub use cluster::{AddMember, ClusterStatus, Health, Member, MemberRole, MembershipChange};
pub use duration::{parse_duration, DurationError};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, FieldError, LeaderHint};
pub use kv::{KeyList, KeyValue, WriteResult};
pub use lease::{
    parse_lease_id, GrantLease, Lease, LeaseId, LeaseInfo, LeaseKeepAlive, LeaseList, LeaseRevoked,
    LeaseSummary, MAX_LEASE_TTL_S, MIN_LEASE_TTL_S,
};
pub use metadata::{is_metadata_key, validation_code, MetadataKind, SubscriptionList, TopicList};
pub use txn::{
    check_read_prefix, parse_txn, Compare, CompareOp, CompareTarget, JsonText, KeyOrPrefix, TxnOp,
    TxnOpResult, TxnPut, TxnRequest, TxnResponse, MAX_INTERNAL_TXN_OPS, MAX_TXN_OPS,
};

/// A revision of the store: the offset of a write in the compacted topic.
/// Every key has a `create_revision` and a `mod_revision`; every answer
/// reflects one (`X-Kv-Revision`).
pub type Revision = u64;

/// A node's id in the cluster.
pub type NodeId = u64;

/// The largest node id: 2^53 − 1, the largest integer a JSON number keeps
/// exactly in every client (JavaScript's `Number.MAX_SAFE_INTEGER`, the
/// console's). A larger id would be read back as another.
pub const MAX_NODE_ID: NodeId = (1 << 53) - 1;
