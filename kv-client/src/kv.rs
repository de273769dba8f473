//! The raw key-value API (`/v1/kv`): point reads and writes, conditions,
//! and listing by prefix as a stream over pages.

use std::collections::VecDeque;

use futures::stream::{self, BoxStream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use schemas::api::header::REVISION;
use schemas::api::{ErrorCode, KeyList, KeyValue, LeaseId, WriteResult};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::request::Request;
use crate::Revision;

/// Keys a list asks for per page.
pub(crate) const LIST_PAGE_SIZE: u32 = 1_000;

/// How fresh a read must be.
///
/// ```
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// use kv_client::Consistency;
/// let nearby = client.get_with("app/config", Consistency::Stale).await?;
/// # let _ = nearby;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Confirmed with a quorum through the leader: sees every acknowledged
    /// write (the default).
    #[default]
    Linearizable,
    /// The answering node's view as it is: faster, may lag behind.
    Stale,
}

impl Consistency {
    pub(crate) fn as_param(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
        }
    }
}

/// When a write applies.
///
/// ```
/// use kv_client::{Condition, WriteOptions};
///
/// let create_only = WriteOptions::new().condition(Condition::Absent);
/// let compare_and_set = WriteOptions::new().condition(Condition::ModRevision(42));
/// # let _ = (create_only, compare_and_set);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// Always (the default).
    #[default]
    Always,
    /// Only if the key does not exist (`If-None-Match: *`).
    Absent,
    /// Only if the key's `mod_revision` is this (`If-Match: "<rev>"`).
    ModRevision(Revision),
}

impl Condition {
    /// The header that carries the condition, if any.
    pub(crate) fn header(self) -> Option<(&'static str, String)> {
        match self {
            Condition::Always => None,
            Condition::Absent => Some(("if-none-match", "*".to_string())),
            Condition::ModRevision(revision) => Some(("if-match", format!("\"{revision}\""))),
        }
    }
}

/// A write's condition, idempotency key and lease.
///
/// ```
/// use kv_client::{Condition, WriteOptions};
///
/// // A key of the caller's own, e.g. kept across a restart of the caller:
/// // the server applies a write with the same key once (for 10 minutes).
/// let options = WriteOptions::new()
///     .condition(Condition::Absent)
///     .idempotency_key(uuid::Uuid::new_v4());
/// # let _ = options;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// When the write applies.
    pub condition: Condition,
    /// The write's idempotency key; a fresh one per call when `None`.
    pub idempotency_key: Option<Uuid>,
    /// The lease the key is attached to (`?lease=`): the key is deleted
    /// when the lease ends. `None` detaches the key from any lease.
    pub lease: Option<LeaseId>,
}

impl WriteOptions {
    /// No condition, a fresh idempotency key, no lease.
    ///
    /// ```
    /// assert_eq!(kv_client::WriteOptions::new(), kv_client::WriteOptions::default());
    /// ```
    pub fn new() -> WriteOptions {
        WriteOptions::default()
    }

    /// Sets the condition.
    ///
    /// ```
    /// let options = kv_client::WriteOptions::new().condition(kv_client::Condition::ModRevision(3));
    /// assert_eq!(options.condition, kv_client::Condition::ModRevision(3));
    /// ```
    pub fn condition(mut self, condition: Condition) -> WriteOptions {
        self.condition = condition;
        self
    }

    /// Sets the idempotency key.
    ///
    /// ```
    /// let key = uuid::Uuid::new_v4();
    /// let options = kv_client::WriteOptions::new().idempotency_key(key);
    /// assert_eq!(options.idempotency_key, Some(key));
    /// ```
    pub fn idempotency_key(mut self, key: Uuid) -> WriteOptions {
        self.idempotency_key = Some(key);
        self
    }

    /// Attaches the key to a lease (see [`Client::grant_lease`]): it is
    /// deleted when the lease is revoked or expires.
    ///
    /// ```
    /// let options = kv_client::WriteOptions::new().lease(42);
    /// assert_eq!(options.lease, Some(42));
    /// ```
    pub fn lease(mut self, lease: LeaseId) -> WriteOptions {
        self.lease = Some(lease);
        self
    }

    /// Applies the options to a write request.
    pub(crate) fn apply(&self, mut request: Request) -> Request {
        if let Some(lease) = self.lease {
            request = request.query("lease", lease);
        }
        if let Some((name, value)) = self.condition.header() {
            request = request.header(name, value);
        }
        if let Some(key) = self.idempotency_key {
            request.idempotency_key = Some(key);
        }
        request
    }
}

/// One page of a list.
///
/// ```
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// let page = client.list_page("app/", None, 100).await?;
/// for entry in &page.entries {
///     println!("{} = {}", entry.key, entry.value);
/// }
/// if page.more {
///     let last = page.entries.last().map(|entry| entry.key.as_str());
///     let _next = client.list_page("app/", last, 100).await?;
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ListPage<V = serde_json::Value> {
    /// The keys of the page, in key order.
    pub entries: Vec<KeyValue<V>>,
    /// Whether more keys follow the last one.
    pub more: bool,
    /// The store revision the page reflects.
    pub revision: Revision,
}

/// The request path of a key, after checking it as the server would.
pub(crate) fn key_segments(key: &str) -> Result<Vec<String>> {
    schemas::validate_key(key).map_err(|error| Error::Invalid {
        what: "key",
        message: error.to_string(),
    })?;
    Ok(["v1", "kv"]
        .into_iter()
        .chain(key.split('/'))
        .map(str::to_string)
        .collect())
}

/// Checks a prefix as the server would read it: one that begins no key
/// (longer than a key, or with a control character) is refused before it
/// is sent, as a key is.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    let message = if prefix.len() > schemas::MAX_KEY_BYTES {
        format!(
            "the prefix is {} bytes, longer than any key ({} bytes at most)",
            prefix.len(),
            schemas::MAX_KEY_BYTES
        )
    } else if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        format!(
            "the prefix holds control character U+{:04X}, which no key holds",
            u32::from(c)
        )
    } else {
        return Ok(());
    };
    Err(Error::Invalid {
        what: "prefix",
        message,
    })
}

/// A value as JSON text.
pub(crate) fn to_json<V: Serialize + ?Sized>(value: &V) -> Result<String> {
    serde_json::to_string(value).map_err(|error| Error::Invalid {
        what: "value",
        message: format!("the value does not serialize to JSON: {error}"),
    })
}

impl Client {
    /// Reads a key (linearizable); `None` when it does not exist.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// match client.get("app/config").await? {
    ///     Some(entry) => println!("{} at revision {}", entry.value, entry.mod_revision),
    ///     None => println!("not set"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.get_with(key, Consistency::Linearizable).await
    }

    /// Reads a key with the given consistency; `None` when it does not exist.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let entry = client.get_with("app/config", kv_client::Consistency::Stale).await?;
    /// # let _ = entry;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_with(&self, key: &str, consistency: Consistency) -> Result<Option<KeyValue>> {
        self.get_as(key, consistency).await
    }

    /// [`Client::get_with`], the value read into a `V`: `Box<RawValue>`
    /// keeps the JSON as the server sent it (see [`crate::RecordValue`]).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use serde_json::value::RawValue;
    ///
    /// let entry = client
    ///     .get_as::<Box<RawValue>>("app/config", kv_client::Consistency::Linearizable)
    ///     .await?;
    /// # let _ = entry;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_as<V: DeserializeOwned>(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<KeyValue<V>>> {
        let request = Request::new(Method::GET, key_segments(key)?)
            .query("consistency", consistency.as_param());
        let answer = self.call(&request).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.has_code(ErrorCode::KeyNotFound) {
            return Ok(None);
        }
        answer.success()?.json().map(Some)
    }

    /// Writes a key, whatever it holds.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let written = client.put("app/config", &serde_json::json!({"retention": "7d"})).await?;
    /// println!("revision {}, version {}", written.revision, written.version);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put<V: Serialize + ?Sized>(&self, key: &str, value: &V) -> Result<WriteResult> {
        self.put_with(key, value, WriteOptions::new()).await
    }

    /// Writes a key only if it does not exist; else the error
    /// [`is_precondition_failed`](Error::is_precondition_failed).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// match client.create("locks/nightly-job", &"worker-7").await {
    ///     Ok(_) => println!("lock taken"),
    ///     Err(error) if error.is_precondition_failed() => println!("held by someone else"),
    ///     Err(error) => return Err(error),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create<V: Serialize + ?Sized>(&self, key: &str, value: &V) -> Result<WriteResult> {
        let options = WriteOptions::new().condition(Condition::Absent);
        self.put_with(key, value, options).await
    }

    /// Compare-and-set: writes a key only if its `mod_revision` is
    /// `mod_revision`; else the error
    /// [`is_precondition_failed`](Error::is_precondition_failed), with the
    /// key's [`current_revision`](Error::current_revision).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let entry = client.get("counters/visits").await?.expect("exists");
    /// let next = entry.value.as_u64().unwrap_or(0) + 1;
    /// client.cas("counters/visits", entry.mod_revision, &next).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cas<V: Serialize + ?Sized>(
        &self,
        key: &str,
        mod_revision: Revision,
        value: &V,
    ) -> Result<WriteResult> {
        let options = WriteOptions::new().condition(Condition::ModRevision(mod_revision));
        self.put_with(key, value, options).await
    }

    /// Writes a key with a condition and, if given, the caller's own
    /// idempotency key.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use kv_client::{Condition, WriteOptions};
    ///
    /// let id = uuid::Uuid::new_v4();
    /// let options = WriteOptions::new().condition(Condition::Absent).idempotency_key(id);
    /// let first = client.put_with("jobs/42", &"queued", options).await?;
    /// // The same idempotency key again: the first result, applied once.
    /// let again = client.put_with("jobs/42", &"queued", options).await?;
    /// assert_eq!(first, again);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_with<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        options: WriteOptions,
    ) -> Result<WriteResult> {
        let request = Request::write(Method::PUT, key_segments(key)?).json(to_json(value)?);
        let request = options.apply(request);
        self.call(&request).await?.success()?.json()
    }

    /// Deletes a key; `None` when there was no such key.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// if client.delete("locks/nightly-job").await?.is_none() {
    ///     println!("there was no lock");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(&self, key: &str) -> Result<Option<WriteResult>> {
        self.delete_with(key, WriteOptions::new()).await
    }

    /// Deletes a key only if its `mod_revision` is `mod_revision`.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let lock = client.get("locks/nightly-job").await?.expect("held");
    /// client.delete_if("locks/nightly-job", lock.mod_revision).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_if(&self, key: &str, mod_revision: Revision) -> Result<WriteResult> {
        let options = WriteOptions::new().condition(Condition::ModRevision(mod_revision));
        let request = options.apply(Request::write(Method::DELETE, key_segments(key)?));
        self.call(&request).await?.success()?.json()
    }

    /// Deletes a key with a condition and, if given, the caller's own
    /// idempotency key; `None` when there was no such key.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let options = kv_client::WriteOptions::new().idempotency_key(uuid::Uuid::new_v4());
    /// client.delete_with("jobs/42", options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_with(
        &self,
        key: &str,
        options: WriteOptions,
    ) -> Result<Option<WriteResult>> {
        let request = options.apply(Request::write(Method::DELETE, key_segments(key)?));
        let answer = self.call(&request).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.has_code(ErrorCode::KeyNotFound) {
            return Ok(None);
        }
        answer.success()?.json().map(Some)
    }

    /// One page of the keys under `prefix` (linearizable), after
    /// `start_after` if given, at most `limit` (1 ..= 10,000) keys.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let page = client.list_page("app/", None, 10).await?;
    /// println!("{} keys at revision {}, more: {}", page.entries.len(), page.revision, page.more);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_page(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<ListPage> {
        self.list_page_as(prefix, start_after, limit).await
    }

    /// [`Client::list_page`], each value read into a `V` (see
    /// [`Client::get_as`]).
    pub async fn list_page_as<V: DeserializeOwned>(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<ListPage<V>> {
        check_prefix(prefix)?;
        let mut request = Request::new(Method::GET, ["v1", "kv"])
            .query("prefix", prefix)
            .query("limit", limit);
        if let Some(start_after) = start_after {
            request = request.query("start_after", start_after);
        }
        let answer = self.call(&request).await?.success()?;
        let body: KeyList<V> = answer.json()?;
        Ok(ListPage {
            entries: body.entries,
            more: body.more,
            revision: answer.number_header(REVISION)?,
        })
    }

    /// Every key under `prefix`, in key order, as a stream over pages.
    /// Each page is a linearizable read of its own: a key written while
    /// the stream runs shows up if it sorts after the current page.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use futures::TryStreamExt;
    ///
    /// let entries: Vec<kv_client::KeyValue> = client.list("app/").try_collect().await?;
    /// println!("{} keys", entries.len());
    /// # Ok(())
    /// # }
    /// ```
    pub fn list(&self, prefix: &str) -> BoxStream<'static, Result<KeyValue>> {
        self.list_as(prefix)
    }

    /// [`Client::list`], each value read into a `V` (see
    /// [`Client::get_as`]).
    pub fn list_as<V: DeserializeOwned + Send + 'static>(
        &self,
        prefix: &str,
    ) -> BoxStream<'static, Result<KeyValue<V>>> {
        let client = self.clone();
        let prefix = prefix.to_string();
        paged(move |start_after| {
            let client = client.clone();
            let prefix = prefix.clone();
            async move {
                let page = client
                    .list_page_as::<V>(&prefix, start_after.as_deref(), LIST_PAGE_SIZE)
                    .await?;
                let last = page.entries.last().map(|entry| entry.key.clone());
                Ok((page.entries, last.filter(|_| page.more)))
            }
        })
    }
}

/// A stream over pages: `fetch(start_after)` returns a page and the
/// `start_after` of the next one (`None` after the last page). The stream
/// ends after the first error.
pub(crate) fn paged<T, F, Fut>(fetch: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: Fn(Option<String>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>> + Send + 'static,
{
    struct State<T, F> {
        fetch: F,
        buffered: VecDeque<T>,
        /// `Some(start_after)` while pages remain; `Some(None)` before the first.
        next: Option<Option<String>>,
    }
    let state = State {
        fetch,
        buffered: VecDeque::new(),
        next: Some(None),
    };
    stream::unfold(state, |mut state| async move {
        loop {
            if let Some(item) = state.buffered.pop_front() {
                return Some((Ok(item), state));
            }
            let start_after = state.next.take()?;
            match (state.fetch)(start_after).await {
                Ok((items, next)) => {
                    state.buffered.extend(items);
                    state.next = next.map(Some);
                }
                // `next` stays `None`: the stream ends after the error.
                Err(error) => return Some((Err(error), state)),
            }
        }
    })
    .boxed()
}
