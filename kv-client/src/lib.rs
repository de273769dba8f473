//! The Rust client of openmessaging-kv, and the `kvctl` tool built on it.
//!
//! The crate speaks only the server's public HTTP/JSON API. Its main type
//! is [`Client`]: a handle on a cluster given by several node URLs, which
//! finds the leader, fails over to another node when a connection fails or
//! a node answers 503, and retries with backoff within a deadline. Every
//! write carries an `Idempotency-Key` that all its retries share, so a
//! write retried after a failover is applied once.
//!
//! * Keys: [`Client::get`], [`Client::put`], [`Client::create`],
//!   [`Client::cas`], [`Client::delete`], [`Client::list`] (a stream over
//!   pages); values are any JSON, answers carry revisions ([`KeyValue`],
//!   [`WriteResult`]). Values are read into `serde_json::Value`;
//!   [`Client::get_as`], [`Client::list_as`] and [`Client::replay_as`]
//!   read them into another type, `Box<RawValue>` to keep the JSON as
//!   stored (a number past `f64` included).
//! * [`Client::txn`]: a multi-key transaction ([`Txn`]) of [`Compare`]s
//!   and two branches of [`TxnOp`]s, applied as one write with one
//!   revision, once however often the call retries.
//! * Leases: [`Client::grant_lease`], keys attached with
//!   [`WriteOptions::lease`], [`Client::keep_alive`] (a background task
//!   behind a [`KeepAlive`] handle that says when the lease is lost),
//!   [`Client::revoke_lease`], [`Client::lease`], [`Client::leases`].
//! * RocketMQ metadata, typed with the `schemas` crate: topics
//!   ([`Client::put_topic`], …) and subscription groups
//!   ([`Client::put_subscription`], …).
//! * [`Client::watch`]: a stream of [`WatchEvent`]s for a key or a prefix
//!   that resumes after errors and failovers and resynchronizes when it
//!   fell behind the compacted history.
//! * [`Client::replay`]: the compacted topic as a stream of [`Record`]s,
//!   whole writes at a time.
//! * [`Client::cluster_status`], [`Client::add_member`],
//!   [`Client::remove_member`].
//! * Roles and tokens of a cluster run with `--auth`:
//!   [`ClientBuilder::token`], [`Client::acl_bootstrap`],
//!   [`Client::put_role`], [`Client::create_token`], [`Client::revoke_token`], …
//! * [`Error`]: one enum for every failure, with the server's error code
//!   and message.
//!
//! # Example
//!
//! ```no_run
//! use futures::TryStreamExt;
//! use kv_client::{Client, Watch, WatchEvent};
//! use serde_json::json;
//!
//! # async fn example() -> Result<(), kv_client::Error> {
//! let client = Client::new(["http://127.0.0.1:7070", "http://127.0.0.1:7071"])?;
//!
//! let written = client.put("app/config", &json!({"retention": "7d"})).await?;
//! client.cas("app/config", written.revision, &json!({"retention": "3d"})).await?;
//!
//! let mut orders = schemas::TopicConfig::new("orders");
//! orders.write_queue_nums = 8;
//! client.put_topic(&orders).await?;
//!
//! let mut events = client.watch(Watch::prefix("app/")).await?;
//! while let Some(event) = events.try_next().await? {
//!     if let WatchEvent::Put(entry) = event {
//!         println!("{} = {}", entry.key, entry.value);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod acl;
mod client;
mod cluster;
mod error;
mod keep_alive;
mod kv;
mod lease;
mod metadata;
mod replay;
mod request;
mod snapshot;
mod tls;
mod transport;
mod txn;
mod watch;

pub use client::{
    Client, ClientBuilder, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS, DEFAULT_REQUEST_TIMEOUT,
};
pub use error::{ApiError, Error, Result};
pub use keep_alive::{KeepAlive, KeepAliveStatus, LeaseLost};
pub use kv::{Condition, Consistency, ListPage, WriteOptions};
pub use metadata::{MetadataOptions, Versioned};
pub use replay::{Record, RecordValue, Replay};
pub use schemas::api::{Access, CreatedToken, Permission, Role, TokenInfo};
pub use schemas::api::{
    ClusterStatus, ErrorCode, KeyValue, LeaderHint, Member, MemberRole, NodeId, Revision,
    WriteResult,
};
pub use schemas::api::{
    CompareOp, CompareTarget, KeyOrPrefix, TxnOpResult, TxnRequest, TxnResponse,
};
pub use schemas::api::{
    Lease, LeaseId, LeaseInfo, LeaseKeepAlive, LeaseRevoked, LeaseSummary, MAX_LEASE_TTL_S,
    MIN_LEASE_TTL_S,
};
pub use snapshot::SnapshotDownload;
pub use txn::{Compare, Txn, TxnOp};
pub use watch::{Watch, WatchEvent, DEFAULT_MAX_FAILURES, DEFAULT_POLL_WAIT};
