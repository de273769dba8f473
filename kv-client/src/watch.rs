//! Watches of a key or a prefix, built on the change feed's long-poll
//! (`/v1/changes?from=N&wait=…`).
//!
//! A watch remembers the index it has delivered up to. Each poll asks for
//! the records after it; an error or a failover only delays the next poll,
//! which asks from the same index, so nothing is lost or repeated. When the
//! feed answers 410 (the index fell below the tombstone floor: deletes
//! after it may have been compacted away), the watch lists the current
//! state, delivers it as one [`WatchEvent::Resync`], and goes on from the
//! revision of that list.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use schemas::api::header::REVISION;
use schemas::api::{ChangesPage, ErrorCode, KeyValue};
use tracing::{debug, info};

use crate::client::Client;
use crate::error::Result;
use crate::kv::LIST_PAGE_SIZE;
use crate::replay::{Record, RecordValue};
use crate::request::Request;
use crate::Revision;

/// Default longest time one poll waits for a change.
///
/// ```
/// let watch = kv_client::Watch::key("k").poll_wait(kv_client::DEFAULT_POLL_WAIT / 3);
/// # let _ = watch;
/// ```
pub const DEFAULT_POLL_WAIT: Duration = Duration::from_secs(30);
/// Default number of failed polls in a row after which a watch ends.
///
/// ```
/// let watch = kv_client::Watch::key("k").max_failures(kv_client::DEFAULT_MAX_FAILURES * 4);
/// # let _ = watch;
/// ```
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// Records one poll reads at most.
const POLL_LIMIT: u32 = 1_000;

/// What to watch, and from where.
///
/// ```
/// use std::time::Duration;
/// use kv_client::Watch;
///
/// let one_key = Watch::key("app/config");
/// let a_prefix = Watch::prefix("app/").after(42).poll_wait(Duration::from_secs(10));
/// # let _ = (one_key, a_prefix);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    target: Target,
    after: Option<Revision>,
    poll_wait: Duration,
    max_failures: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Key(String),
    Prefix(String),
}

impl Watch {
    /// Changes of one key.
    ///
    /// ```
    /// let watch = kv_client::Watch::key("app/config");
    /// # let _ = watch;
    /// ```
    pub fn key(key: impl Into<String>) -> Watch {
        Watch::new(Target::Key(key.into()))
    }

    /// Changes of every key that starts with `prefix` (`""`: every key).
    ///
    /// ```
    /// let watch = kv_client::Watch::prefix("topics/");
    /// # let _ = watch;
    /// ```
    pub fn prefix(prefix: impl Into<String>) -> Watch {
        Watch::new(Target::Prefix(prefix.into()))
    }

    fn new(target: Target) -> Watch {
        Watch {
            target,
            after: None,
            poll_wait: DEFAULT_POLL_WAIT,
            max_failures: DEFAULT_MAX_FAILURES,
        }
    }

    /// Delivers the changes after `revision` (default: after the store's
    /// revision when [`Client::watch`] is called).
    ///
    /// ```
    /// let watch = kv_client::Watch::prefix("app/").after(0); // everything still in the topic
    /// # let _ = watch;
    /// ```
    pub fn after(mut self, revision: Revision) -> Watch {
        self.after = Some(revision);
        self
    }

    /// How long one poll waits for a change (default 30 s; the server's
    /// limit is 5 minutes). A shorter wait notices a dropped connection sooner.
    ///
    /// ```
    /// let watch = kv_client::Watch::key("k").poll_wait(std::time::Duration::from_secs(5));
    /// # let _ = watch;
    /// ```
    pub fn poll_wait(mut self, wait: Duration) -> Watch {
        self.poll_wait = wait.max(Duration::from_millis(1));
        self
    }

    /// How many polls in a row may fail (each after the client's own
    /// retries and failover) before the stream ends (default 5).
    ///
    /// ```
    /// let watch = kv_client::Watch::key("k").max_failures(20);
    /// # let _ = watch;
    /// ```
    pub fn max_failures(mut self, failures: u32) -> Watch {
        self.max_failures = failures.max(1);
        self
    }

    fn prefix_param(&self) -> &str {
        match &self.target {
            Target::Key(key) | Target::Prefix(key) => key,
        }
    }

    fn matches(&self, key: &str) -> bool {
        match &self.target {
            Target::Key(watched) => key == watched,
            Target::Prefix(prefix) => key.starts_with(prefix.as_str()),
        }
    }
}

/// One thing a watch reports.
///
/// A transaction that writes several watched keys is reported as one
/// event per key, one right after the other, all with the transaction's
/// revision: no poll, error or other write comes between them, so an event
/// of a later revision shows the write before it was delivered whole.
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// use std::collections::BTreeMap;
/// use futures::TryStreamExt;
/// use kv_client::{Watch, WatchEvent};
///
/// let mut state = BTreeMap::new();
/// let mut events = client.watch(Watch::prefix("app/")).await?;
/// while let Some(event) = events.try_next().await? {
///     match event {
///         WatchEvent::Put(entry) => { state.insert(entry.key.clone(), entry.value); }
///         WatchEvent::Delete { key, .. } => { state.remove(&key); }
///         WatchEvent::Resync { entries, .. } => {
///             state = entries.into_iter().map(|entry| (entry.key, entry.value)).collect();
///         }
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<V = serde_json::Value> {
    /// A key was written; `mod_revision` is the revision of the write.
    Put(KeyValue<V>),
    /// A key was deleted at `revision`.
    Delete {
        /// The key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
    },
    /// The watch fell behind the compacted history and started over: the
    /// watched keys are exactly `entries` as of `revision`; forget what
    /// was known before. Changes after `revision` follow as usual (some
    /// may repeat what `entries` already shows).
    Resync {
        /// The revision the listing reflects (at least).
        revision: Revision,
        /// Every watched key that exists.
        entries: Vec<KeyValue<V>>,
    },
}

impl<V> WatchEvent<V> {
    /// The revision of the change, or of the resynchronized state.
    ///
    /// ```
    /// let event: kv_client::WatchEvent = kv_client::WatchEvent::Delete { key: "k".into(), revision: 9 };
    /// assert_eq!(event.revision(), 9);
    /// ```
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(entry) => entry.mod_revision,
            WatchEvent::Delete { revision, .. } | WatchEvent::Resync { revision, .. } => *revision,
        }
    }
}

/// A running watch.
struct State<V> {
    client: Client,
    watch: Watch,
    /// Delivered up to here.
    index: Revision,
    queued: VecDeque<WatchEvent<V>>,
    failures: u32,
    /// Whether the watch may be far behind the store: at the start, and
    /// after a page cut at the limit. Such a poll does not wait.
    catching_up: bool,
    /// Pause before the next poll, after a failure.
    pause: Duration,
    ended: bool,
}

impl Client {
    /// Watches a key or a prefix: a stream of [`WatchEvent`]s, in revision
    /// order, of the changes after [`Watch::after`] or, by default, after
    /// the store's revision when this returns (which is why it is async:
    /// it reads that revision first). The stream goes on until dropped; it yields an error for a
    /// poll that failed after the client's retries and keeps going, and
    /// ends after [`Watch::max_failures`] failures in a row or an error
    /// that a retry cannot mend (a 4xx).
    ///
    /// The change feed is compacted: when several writes to a key fall
    /// between two polls, only the last one may be reported.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use futures::TryStreamExt;
    /// use kv_client::{Watch, WatchEvent};
    ///
    /// let mut events = client.watch(Watch::key("app/config")).await?;
    /// while let Some(event) = events.try_next().await? {
    ///     if let WatchEvent::Put(entry) = event {
    ///         println!("config is now {}", entry.value);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch(&self, watch: Watch) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        self.watch_as(watch).await
    }

    /// [`Client::watch`], each value read into a `V`: with
    /// `Box<serde_json::value::RawValue>`, as the server sent it, so a
    /// value a `serde_json::Value` cannot hold (a number past `f64`'s
    /// range) does not end the watch.
    pub async fn watch_as<V: RecordValue>(
        &self,
        watch: Watch,
    ) -> Result<BoxStream<'static, Result<WatchEvent<V>>>> {
        // A key no write can have would be watched in vain, forever.
        match &watch.target {
            Target::Key(key) => drop(crate::kv::key_segments(key)?),
            Target::Prefix(prefix) => crate::kv::check_prefix(prefix)?,
        }
        let index = match watch.after {
            Some(revision) => revision,
            None => self.current_revision(watch.prefix_param()).await?,
        };
        debug!(index, "watch starts");
        let state = State {
            client: self.clone(),
            index,
            watch,
            queued: VecDeque::new(),
            failures: 0,
            catching_up: true,
            pause: Duration::ZERO,
            ended: false,
        };
        Ok(stream::unfold(state, |mut state| async move {
            let item = state.next_event().await?;
            Some((item, state))
        })
        .boxed())
    }

    /// The store's revision now (a linearizable read of one key).
    async fn current_revision(&self, prefix: &str) -> Result<Revision> {
        Ok(self.list_page(prefix, None, 1).await?.revision)
    }
}

impl<V: RecordValue> State<V> {
    async fn next_event(&mut self) -> Option<Result<WatchEvent<V>>> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(Ok(event));
            }
            if self.ended {
                return None;
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
                self.pause = Duration::ZERO;
            }
            let step = self.poll(self.index).await;
            match step {
                Ok(()) => self.failures = 0,
                Err(error) if error.is_retryable() => {
                    self.failures += 1;
                    if self.failures >= self.watch.max_failures {
                        self.ended = true;
                    } else {
                        let options = &self.client.inner.options;
                        let growth = 1u32 << self.failures.min(6);
                        self.pause = (options.backoff_initial * growth).min(options.backoff_max);
                    }
                    return Some(Err(error));
                }
                Err(error) => {
                    self.ended = true;
                    return Some(Err(error));
                }
            }
        }
    }

    /// One long-poll of the change feed after `index`.
    async fn poll(&mut self, index: Revision) -> Result<()> {
        let mut request = Request::new(Method::GET, ["v1", "changes"])
            .query("prefix", self.watch.prefix_param())
            .query("from", index)
            .query("limit", POLL_LIMIT);
        // Possibly far behind (at the start, or after a page cut at the
        // limit): read on at once, as the feed would otherwise hold a page
        // without a match for the whole wait.
        if !self.catching_up {
            let wait_ms = self.watch.poll_wait.as_millis();
            request = request.query("wait", format!("{wait_ms}ms"));
            request.extra_time = self.watch.poll_wait;
        }
        let answer = self.client.call(&request).await?;
        if answer.has_code(ErrorCode::BelowTombstoneFloor) {
            info!(
                index,
                "the watch fell below the tombstone floor; listing again"
            );
            return self.resync().await;
        }
        let answer = answer.success()?;
        let store_revision = answer.number_header(REVISION).unwrap_or(0);
        let body: ChangesPage<V> = answer.json()?;
        // A page cut at the limit says so (`more`); a server that does not
        // say it read POLL_LIMIT offsets and ended short of the store.
        self.catching_up =
            body.more || (body.next >= index + u64::from(POLL_LIMIT) && body.next < store_revision);
        // A page holds whole writes and `next` is the revision of its last
        // one, so the events of a transaction are queued together, and
        // `index` never stops inside a write. A write is delivered once:
        // its revision, not its records' offsets, says whether it is new.
        for record in body.records.into_iter().map(Record::from) {
            if record.revision <= index || !self.watch.matches(&record.key) {
                continue;
            }
            self.queued.push_back(event_of(record));
        }
        self.index = body.next.max(index);
        Ok(())
    }

    /// Lists the watched keys and queues them as one resync.
    async fn resync(&mut self) -> Result<()> {
        let prefix = self.watch.prefix_param().to_string();
        let mut entries = Vec::new();
        let mut start_after: Option<String> = None;
        let mut revision = None;
        loop {
            let page = self
                .client
                .list_page_as::<V>(&prefix, start_after.as_deref(), LIST_PAGE_SIZE)
                .await?;
            // Changes after the first page's revision are delivered as
            // events, so starting there misses nothing.
            revision.get_or_insert(page.revision);
            start_after = page.entries.last().map(|entry| entry.key.clone());
            let done = !page.more || matches!(self.watch.target, Target::Key(_));
            entries.extend(
                page.entries
                    .into_iter()
                    .filter(|entry| self.watch.matches(&entry.key)),
            );
            if done || start_after.is_none() {
                break;
            }
        }
        let revision = revision.expect("the loop reads at least one page");
        self.queued
            .push_back(WatchEvent::Resync { revision, entries });
        self.index = revision;
        Ok(())
    }
}

fn event_of<V: RecordValue>(record: Record<V>) -> WatchEvent<V> {
    match record.value {
        Some(value) => WatchEvent::Put(KeyValue {
            key: record.key,
            value,
            create_revision: record.create_revision,
            mod_revision: record.revision,
            version: record.version,
            lease: None,
        }),
        None => WatchEvent::Delete {
            key: record.key,
            revision: record.revision,
        },
    }
}
