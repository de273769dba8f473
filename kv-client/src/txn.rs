//! Multi-key transactions (`POST /v1/txn`), built the way etcd's are:
//! compares, the ops that run when they all hold, and the ops that run
//! when one does not. Either branch is applied as one write with one
//! revision, which readers, watches and replays see whole or not at all.
//!
//! [`Compare`] and [`TxnOp`] are thin constructors around the wire types
//! of the `schemas` crate ([`schemas::api::Compare`],
//! [`schemas::api::TxnOp`]); the builder takes either.

use reqwest::Method;
use serde::Serialize;
use uuid::Uuid;

use schemas::api::{
    CompareOp, CompareTarget, JsonText, KeyOrPrefix, LeaseId, TxnPut, TxnRequest, TxnResponse,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::request::Request;
use crate::Revision;

/// A condition on one key: `the key's <target> <op> <value>`.
///
/// A missing key has version, create and mod revision 0 and no value.
///
/// ```
/// use kv_client::{Compare, CompareOp};
///
/// let unchanged = Compare::mod_revision("accounts/a", CompareOp::Equal, 41);
/// let absent = Compare::missing("locks/job");
/// let rich = Compare::value("accounts/a", CompareOp::Greater, &100).unwrap();
/// # let _ = (unchanged, absent, rich);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Compare(pub schemas::api::Compare);

impl Compare {
    fn new(
        key: impl Into<String>,
        target: CompareTarget,
        op: CompareOp,
        value: JsonText,
    ) -> Compare {
        Compare(schemas::api::Compare {
            key: key.into(),
            target,
            op,
            value,
        })
    }

    /// Compares the key's value, as JSON: `=` and `!=` any JSON, `<` and
    /// `>` two numbers or two strings. A missing key's value never matches.
    ///
    /// ```
    /// let compare = kv_client::Compare::value("app/mode", kv_client::CompareOp::Equal, &"active").unwrap();
    /// assert_eq!(compare.0.value.get(), r#""active""#);
    /// ```
    pub fn value<V: Serialize + ?Sized>(
        key: impl Into<String>,
        op: CompareOp,
        value: &V,
    ) -> Result<Compare> {
        let value = JsonText::of(value).map_err(|error| Error::Invalid {
            what: "value",
            message: format!("the compared value does not serialize to JSON: {error}"),
        })?;
        Ok(Compare::new(key, CompareTarget::Value, op, value))
    }

    /// Compares the key's version (1 at creation, +1 per put, 0 when missing).
    ///
    /// ```
    /// let first_write = kv_client::Compare::version("app/mode", kv_client::CompareOp::Equal, 1);
    /// # let _ = first_write;
    /// ```
    pub fn version(key: impl Into<String>, op: CompareOp, version: u64) -> Compare {
        Compare::new(key, CompareTarget::Version, op, JsonText::from(version))
    }

    /// Compares the revision that created the key (0 when missing).
    ///
    /// ```
    /// let same_incarnation =
    ///     kv_client::Compare::create_revision("locks/job", kv_client::CompareOp::Equal, 17);
    /// # let _ = same_incarnation;
    /// ```
    pub fn create_revision(key: impl Into<String>, op: CompareOp, revision: Revision) -> Compare {
        Compare::new(
            key,
            CompareTarget::CreateRevision,
            op,
            JsonText::from(revision),
        )
    }

    /// Compares the revision of the key's last write (0 when missing): the
    /// compare of a compare-and-set.
    ///
    /// ```
    /// let unchanged = kv_client::Compare::mod_revision("app/mode", kv_client::CompareOp::Equal, 42);
    /// # let _ = unchanged;
    /// ```
    pub fn mod_revision(key: impl Into<String>, op: CompareOp, revision: Revision) -> Compare {
        Compare::new(
            key,
            CompareTarget::ModRevision,
            op,
            JsonText::from(revision),
        )
    }

    /// Compares the lease the key is attached to (0: none, also when missing).
    ///
    /// ```
    /// let still_mine = kv_client::Compare::lease("brokers/b1", kv_client::CompareOp::Equal, 42);
    /// # let _ = still_mine;
    /// ```
    pub fn lease(key: impl Into<String>, op: CompareOp, lease: LeaseId) -> Compare {
        Compare::new(key, CompareTarget::Lease, op, JsonText::from(lease))
    }

    /// Holds when the key exists.
    ///
    /// ```
    /// let present = kv_client::Compare::exists("app/mode");
    /// assert_eq!(present.0.value.get(), "true");
    /// ```
    pub fn exists(key: impl Into<String>) -> Compare {
        Compare::new(
            key,
            CompareTarget::Exists,
            CompareOp::Equal,
            JsonText::from(true),
        )
    }

    /// Holds when the key does not exist.
    ///
    /// ```
    /// let absent = kv_client::Compare::missing("locks/job");
    /// assert_eq!(absent.0.value.get(), "false");
    /// ```
    pub fn missing(key: impl Into<String>) -> Compare {
        Compare::new(
            key,
            CompareTarget::Exists,
            CompareOp::Equal,
            JsonText::from(false),
        )
    }
}

impl From<Compare> for schemas::api::Compare {
    fn from(compare: Compare) -> Self {
        compare.0
    }
}

/// One compare is a list of one: `when(Compare::exists("k"))` reads as
/// `when([Compare::exists("k")])`.
impl IntoIterator for Compare {
    type Item = Compare;
    type IntoIter = std::iter::Once<Compare>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self)
    }
}

/// One op of a transaction's branch. Ops run in order; a `get` sees the
/// writes of the ops before it, and a branch may write a key only once.
///
/// ```
/// use kv_client::TxnOp;
///
/// let ops = [
///     TxnOp::put("accounts/a", &90).unwrap(),
///     TxnOp::delete("sessions/old"),
///     TxnOp::delete_prefix("cache/"),
///     TxnOp::get("accounts/a"),
///     TxnOp::get_prefix("accounts/"),
/// ];
/// # let _ = ops;
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TxnOp(pub schemas::api::TxnOp);

impl TxnOp {
    /// Writes `value` (any JSON) to `key`.
    ///
    /// ```
    /// let op = kv_client::TxnOp::put("app/config", &serde_json::json!({"retention": "7d"})).unwrap();
    /// # let _ = op;
    /// ```
    pub fn put<V: Serialize + ?Sized>(key: impl Into<String>, value: &V) -> Result<TxnOp> {
        TxnOp::put_on(key.into(), value, None)
    }

    /// Writes `value` to `key` and attaches the key to `lease`: it is
    /// deleted when the lease ends. (A plain [`TxnOp::put`] detaches it.)
    ///
    /// ```
    /// let op = kv_client::TxnOp::put_with_lease("brokers/b1", &"10.0.0.7:10911", 42).unwrap();
    /// # let _ = op;
    /// ```
    pub fn put_with_lease<V: Serialize + ?Sized>(
        key: impl Into<String>,
        value: &V,
        lease: LeaseId,
    ) -> Result<TxnOp> {
        TxnOp::put_on(key.into(), value, Some(lease))
    }

    fn put_on<V: Serialize + ?Sized>(
        key: String,
        value: &V,
        lease: Option<LeaseId>,
    ) -> Result<TxnOp> {
        let value = JsonText::of(value).map_err(|error| Error::Invalid {
            what: "value",
            message: format!("the value does not serialize to JSON: {error}"),
        })?;
        Ok(TxnOp(schemas::api::TxnOp::Put(TxnPut {
            key,
            value,
            lease,
        })))
    }

    /// Deletes `key` (nothing happens if it does not exist).
    ///
    /// ```
    /// let op = kv_client::TxnOp::delete("locks/job");
    /// # let _ = op;
    /// ```
    pub fn delete(key: impl Into<String>) -> TxnOp {
        TxnOp(schemas::api::TxnOp::Delete(KeyOrPrefix::Key(key.into())))
    }

    /// Deletes every key that starts with `prefix` (which may not be empty).
    ///
    /// ```
    /// let op = kv_client::TxnOp::delete_prefix("cache/");
    /// # let _ = op;
    /// ```
    pub fn delete_prefix(prefix: impl Into<String>) -> TxnOp {
        TxnOp(schemas::api::TxnOp::Delete(KeyOrPrefix::Prefix(
            prefix.into(),
        )))
    }

    /// Reads `key`.
    ///
    /// ```
    /// let op = kv_client::TxnOp::get("app/config");
    /// # let _ = op;
    /// ```
    pub fn get(key: impl Into<String>) -> TxnOp {
        TxnOp(schemas::api::TxnOp::Get(KeyOrPrefix::Key(key.into())))
    }

    /// Reads the keys that start with `prefix` (one page).
    ///
    /// ```
    /// let op = kv_client::TxnOp::get_prefix("app/");
    /// # let _ = op;
    /// ```
    pub fn get_prefix(prefix: impl Into<String>) -> TxnOp {
        TxnOp(schemas::api::TxnOp::Get(KeyOrPrefix::Prefix(prefix.into())))
    }
}

impl From<TxnOp> for schemas::api::TxnOp {
    fn from(op: TxnOp) -> Self {
        op.0
    }
}

/// One op is a list of one: `and_then(TxnOp::get("k"))` reads as
/// `and_then([TxnOp::get("k")])`.
impl IntoIterator for TxnOp {
    type Item = TxnOp;
    type IntoIter = std::iter::Once<TxnOp>;

    fn into_iter(self) -> Self::IntoIter {
        std::iter::once(self)
    }
}

/// A transaction being built; [`Txn::commit`] sends it. Made by
/// [`Client::txn`].
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// use kv_client::{Compare, CompareOp, TxnOp, TxnOpResult};
///
/// let a = client.get("accounts/a").await?.expect("exists");
/// let answer = client
///     .txn()
///     .when(Compare::mod_revision("accounts/a", CompareOp::Equal, a.mod_revision))
///     .and_then([TxnOp::put("accounts/a", &90)?, TxnOp::put("accounts/b", &110)?])
///     .or_else(TxnOp::get("accounts/a"))
///     .commit()
///     .await?;
/// if answer.succeeded {
///     println!("moved at revision {}", answer.revision);
/// } else if let Some(TxnOpResult::Get { kvs, .. }) = answer.results.first() {
///     println!("changed meanwhile: {:?}", kvs.first().map(|kv| &kv.value));
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a transaction does nothing until it is committed"]
pub struct Txn {
    client: Client,
    request: TxnRequest,
    idempotency_key: Option<Uuid>,
}

impl Txn {
    /// Adds compares; every one must hold for the `and_then` ops to run.
    /// Takes one [`Compare`], a list of them, or the wire type.
    pub fn when<I>(mut self, compares: I) -> Txn
    where
        I: IntoIterator,
        I::Item: Into<schemas::api::Compare>,
    {
        self.request
            .compare
            .extend(compares.into_iter().map(Into::into));
        self
    }

    /// Adds ops to run when every compare holds (also when there is none).
    pub fn and_then<I>(mut self, ops: I) -> Txn
    where
        I: IntoIterator,
        I::Item: Into<schemas::api::TxnOp>,
    {
        self.request.success.extend(ops.into_iter().map(Into::into));
        self
    }

    /// Adds ops to run when a compare does not hold.
    pub fn or_else<I>(mut self, ops: I) -> Txn
    where
        I: IntoIterator,
        I::Item: Into<schemas::api::TxnOp>,
    {
        self.request.failure.extend(ops.into_iter().map(Into::into));
        self
    }

    /// Uses the caller's own idempotency key (default: a fresh one per
    /// commit): a transaction sent again with the same key, within the
    /// server's window, is applied once and answered `deduplicated`.
    pub fn idempotency_key(mut self, key: Uuid) -> Txn {
        self.idempotency_key = Some(key);
        self
    }

    /// The request as it will be sent.
    pub fn request(&self) -> &TxnRequest {
        &self.request
    }

    /// Sends the transaction. The answer says which branch ran and what
    /// each of its ops did; a transaction the server refuses (a key written
    /// twice, too many ops, a reserved key) is an [`Error::Api`] with the
    /// server's code and the field, as a JSON path (`success[1].put.key`).
    pub async fn commit(self) -> Result<TxnResponse> {
        self.client
            .commit_txn(&self.request, self.idempotency_key)
            .await
    }
}

impl Client {
    /// Starts a transaction: add compares with [`Txn::when`], ops with
    /// [`Txn::and_then`] and [`Txn::or_else`], send it with [`Txn::commit`].
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use kv_client::{Compare, TxnOp};
    ///
    /// let taken = client
    ///     .txn()
    ///     .when(Compare::missing("locks/job"))
    ///     .and_then(TxnOp::put("locks/job", &"worker-7")?)
    ///     .commit()
    ///     .await?
    ///     .succeeded;
    /// # let _ = taken;
    /// # Ok(())
    /// # }
    /// ```
    pub fn txn(&self) -> Txn {
        Txn {
            client: self.clone(),
            request: TxnRequest::default(),
            idempotency_key: None,
        }
    }

    /// Sends a transaction given as its wire type (read from JSON, say).
    /// All attempts of the call share one idempotency key (`key`, or a
    /// fresh one), so a transaction retried after a timeout or a failover
    /// is applied once.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let request = schemas::api::parse_txn(br#"{"success": [{"delete": {"prefix": "cache/"}}]}"#)
    ///     .expect("a transaction");
    /// let answer = client.commit_txn(&request, None).await?;
    /// println!("revision {}", answer.revision);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit_txn(&self, request: &TxnRequest, key: Option<Uuid>) -> Result<TxnResponse> {
        self.commit_txn_as(request, key).await
    }

    /// [`Client::commit_txn`], the values its gets read into a `V`: with
    /// `Box<serde_json::value::RawValue>`, as the server sent them, so an
    /// answer holding a value a `serde_json::Value` cannot hold (a number
    /// past `f64`'s range) is still read.
    pub async fn commit_txn_as<V: serde::de::DeserializeOwned>(
        &self,
        request: &TxnRequest,
        key: Option<Uuid>,
    ) -> Result<TxnResponse<V>> {
        let body = crate::kv::to_json(request)?;
        let mut call = Request::write(Method::POST, ["v1", "txn"]).json(body);
        if key.is_some() {
            call.idempotency_key = key;
        }
        self.call(&call).await?.success()?.json()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn client() -> Client {
        Client::new(["http://127.0.0.1:1"]).expect("a loopback URL is a valid endpoint")
    }

    #[test]
    fn the_builder_makes_the_wire_request_in_order() {
        let txn = client()
            .txn()
            .when(Compare::mod_revision("a", CompareOp::Equal, 5))
            .when([
                Compare::missing("b"),
                Compare::version("c", CompareOp::Less, 3),
            ])
            .and_then(TxnOp::put("a", &json!(1)).unwrap())
            .and_then([TxnOp::delete("b"), TxnOp::get_prefix("c/")])
            .and_then(TxnOp::put_with_lease("d", &json!(2), 7).unwrap())
            .or_else(TxnOp::get("a"));
        assert_eq!(
            serde_json::to_value(txn.request()).unwrap(),
            json!({
                "compare": [
                    {"key": "a", "target": "mod_revision", "op": "=", "value": 5},
                    {"key": "b", "target": "exists", "op": "=", "value": false},
                    {"key": "c", "target": "version", "op": "<", "value": 3},
                ],
                "success": [
                    {"put": {"key": "a", "value": 1}},
                    {"delete": {"key": "b"}},
                    {"get": {"prefix": "c/"}},
                    {"put": {"key": "d", "value": 2, "lease": 7}},
                ],
                "failure": [{"get": {"key": "a"}}],
            })
        );
    }

    #[test]
    fn the_builder_takes_the_wire_types_too() {
        let wire = schemas::api::parse_txn(
            br#"{"compare": [{"key": "a", "target": "value", "op": "!=", "value": [1]}],
                 "success": [{"delete": {"prefix": "p/"}}]}"#,
        )
        .unwrap();
        let txn = client()
            .txn()
            .when(wire.compare.clone())
            .and_then(wire.success.clone());
        assert_eq!(txn.request(), &wire);
        assert_eq!(
            Compare::value("a", CompareOp::NotEqual, &[1]).unwrap().0,
            wire.compare[0]
        );
    }
}
