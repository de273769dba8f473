//! Replay of the compacted topic (`/v1/topic/records`, NDJSON) as a
//! stream of [`Record`]s that holds whole writes only: the records of a
//! transaction are handed out once they are all there, and a broken
//! connection is resumed after the last complete write.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::warn;

use schemas::api::header::REVISION;
use schemas::api::ChangeRecord;

use crate::client::Client;
use crate::error::{ApiError, Error, Result};
use crate::request::Request;
use crate::Revision;

mod whole_writes;

use whole_writes::{Unreadable, WholeWrites};

/// Times a replay reconnects after its connection broke, in a row without
/// a complete write in between, before it ends with the error.
const MAX_RECONNECTS: u32 = 3;

/// The pause before a replay asks again of a node behind it, times the
/// reconnects so far.
const BEHIND_PAUSE: Duration = Duration::from_millis(200);

/// A type a record's value is read into: `serde_json::Value` (the
/// default), or `Box<RawValue>`, the JSON text as the server sent it, which
/// keeps every number exactly and holds any JSON the server stores (a
/// number past `f64`'s range, nesting past 128 levels), where a `Value`
/// cannot.
pub trait RecordValue:
    Clone + std::fmt::Debug + Serialize + DeserializeOwned + Send + 'static
{
    /// The JSON `null`: the value of a put of `null`, which the wire shows
    /// as `"value": null`, as it shows a delete.
    fn null() -> Self;
}

impl RecordValue for serde_json::Value {
    fn null() -> Self {
        serde_json::Value::Null
    }
}

impl RecordValue for Box<RawValue> {
    fn null() -> Self {
        RawValue::from_string("null".to_string()).expect("null is JSON")
    }
}

/// One record of the compacted topic: a write or a delete of a key.
///
/// ```
/// let put: kv_client::Record = serde_json::from_str(
///     r#"{"offset":7,"revision":7,"timestamp_ms":1700000000000,"key":"a/b","value":{"x":1},"create_revision":7,"version":1}"#,
/// ).unwrap();
/// assert_eq!(put.value.as_ref().unwrap()["x"], 1);
/// let delete: kv_client::Record = serde_json::from_str(
///     r#"{"offset":9,"revision":9,"timestamp_ms":1700000000001,"key":"a/b","value":null,"create_revision":7,"version":0}"#,
/// ).unwrap();
/// assert!(delete.is_delete());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    from = "ChangeRecord<V>",
    into = "ChangeRecord<V>",
    bound = "V: RecordValue"
)]
pub struct Record<V: RecordValue = serde_json::Value> {
    /// The record's offset in the topic.
    pub offset: Revision,
    /// The revision of the write it belongs to (the offset of that write's
    /// last record): the `mod_revision` it gave its key. A transaction's
    /// records share it.
    pub revision: Revision,
    /// When the write was proposed, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The key written.
    pub key: String,
    /// The value written; `None` for a delete.
    pub value: Option<V>,
    /// The key's `create_revision` at this write.
    pub create_revision: Revision,
    /// The key's version after this write; 0 for a delete.
    pub version: u64,
}

impl<V: RecordValue> Record<V> {
    /// Whether the record deletes its key.
    ///
    /// ```
    /// let record: kv_client::Record = kv_client::Record {
    ///     offset: 3, revision: 3, timestamp_ms: 0, key: "k".into(), value: None, create_revision: 2,
    ///     version: 0,
    /// };
    /// assert!(record.is_delete());
    /// ```
    pub fn is_delete(&self) -> bool {
        self.value.is_none()
    }
}

/// A record as the API sends it. A put of the JSON value `null` shows
/// `"value": null` too, but is no delete: `deleted` is false and its
/// version 1 or more (a server that does not send `deleted` is read by the
/// version alone).
impl<V: RecordValue> From<ChangeRecord<V>> for Record<V> {
    fn from(wire: ChangeRecord<V>) -> Record<V> {
        let deleted = wire.deleted || wire.version == 0;
        Record {
            offset: wire.offset,
            revision: wire.revision,
            timestamp_ms: wire.timestamp_ms,
            key: wire.key,
            value: (!deleted).then(|| wire.value.unwrap_or_else(V::null)),
            create_revision: wire.create_revision,
            version: wire.version,
        }
    }
}

impl<V: RecordValue> From<Record<V>> for ChangeRecord<V> {
    fn from(record: Record<V>) -> ChangeRecord<V> {
        let deleted = record.value.is_none();
        ChangeRecord {
            offset: record.offset,
            revision: record.revision,
            timestamp_ms: record.timestamp_ms,
            key: record.key,
            value: record.value,
            deleted,
            create_revision: record.create_revision,
            version: record.version,
        }
    }
}

/// A replay in progress: a [`Stream`] of the topic's records in offset
/// order, from the offset asked for to the end of the topic. It yields
/// whole writes only: the records of one write (all of a transaction's
/// keys) share a [`Record::revision`] and come one after another, and a
/// record of a write is yielded only once every record of that write the
/// answer holds has been read.
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// use futures::TryStreamExt;
///
/// let mut replay = client.replay(0).await?;
/// println!("replaying up to revision {}", replay.end_revision());
/// while let Some(record) = replay.try_next().await? {
///     println!("{} {} {:?}", record.offset, record.key, record.value);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Replay<V: RecordValue = serde_json::Value> {
    end_revision: Revision,
    records: BoxStream<'static, Result<Record<V>>>,
}

impl<V: RecordValue> Replay<V> {
    /// The store's revision when the replay started: the stream reaches at
    /// least this offset (records written meanwhile may follow it).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let replay = client.replay(0).await?;
    /// let progress_total = replay.end_revision();
    /// # let _ = progress_total;
    /// # Ok(())
    /// # }
    /// ```
    pub fn end_revision(&self) -> Revision {
        self.end_revision
    }
}

impl<V: RecordValue> Stream for Replay<V> {
    type Item = Result<Record<V>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.records.poll_next_unpin(cx)
    }
}

impl<V: RecordValue> std::fmt::Debug for Replay<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("end_revision", &self.end_revision)
            .finish_non_exhaustive()
    }
}

/// Where a replay stands.
struct State<V: RecordValue> {
    client: Client,
    /// The open answer's body, if a connection is open.
    body: Option<BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    /// Which endpoint the body comes from.
    endpoint: String,
    /// The body read so far, cut into whole writes.
    writes: WholeWrites<V>,
    /// Reconnects since the last complete write.
    reconnects: u32,
    /// The revision the stream reaches: an answer opened again must reach
    /// it too.
    end_revision: Revision,
    /// Why the last answer was given up, for the error once reconnects run
    /// out.
    last_break: String,
    /// Longest wait for the next chunk.
    idle_timeout: Duration,
    finished: bool,
    /// The error that ended the answer, yielded once the records of the
    /// whole writes read before it are.
    failed: Option<Error>,
}

impl Client {
    /// Replays the compacted topic from offset `from` (0: everything).
    /// Reading from 0 yields the latest value of every live key; from a
    /// later offset, the latest state of every key changed since, as long
    /// as `from` is above the tombstone floor (else the error has code
    /// `below_tombstone_floor`). A `from` inside a write starts at the
    /// write's first record. A broken connection is resumed after the last
    /// complete write, on another endpoint if need be; the records read of
    /// a write it cut were not yielded and are read again.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use std::collections::BTreeMap;
    /// use futures::TryStreamExt;
    ///
    /// // Folding the topic from 0 gives the store's state.
    /// let mut state = BTreeMap::new();
    /// let mut replay = client.replay(0).await?;
    /// while let Some(record) = replay.try_next().await? {
    ///     match record.value {
    ///         Some(value) => state.insert(record.key, value),
    ///         None => state.remove(&record.key),
    ///     };
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn replay(&self, from: Revision) -> Result<Replay> {
        self.replay_as(from).await
    }

    /// [`Client::replay`], each value read into a `V`: `Box<RawValue>`
    /// keeps the JSON as the server sent it (see [`RecordValue`]).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// use futures::TryStreamExt;
    /// use serde_json::value::RawValue;
    ///
    /// let mut replay = client.replay_as::<Box<RawValue>>(0).await?;
    /// while let Some(record) = replay.try_next().await? {
    ///     let value = record.value.as_deref().map_or("(deleted)", RawValue::get);
    ///     println!("{} {value}", record.key);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn replay_as<V: RecordValue>(&self, from: Revision) -> Result<Replay<V>> {
        let (response, endpoint) = self.open_replay(from).await?;
        let end_revision = response
            .headers()
            .get(REVISION)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .ok_or_else(|| Error::Decode {
                request: replay_request(from).describe(),
                endpoint: endpoint.clone(),
                message: format!("no numeric {REVISION} header"),
            })?;
        let state = State {
            client: self.clone(),
            body: Some(response.bytes_stream().boxed()),
            endpoint,
            writes: WholeWrites::new(from),
            reconnects: 0,
            failed: None,
            end_revision,
            last_break: String::new(),
            idle_timeout: self.inner.options.request_timeout,
            finished: false,
        };
        let records = stream::unfold(state, |mut state| async move {
            let item = state.next_record().await?;
            Some((item, state))
        })
        .boxed();
        Ok(Replay {
            end_revision,
            records,
        })
    }

    async fn open_replay(&self, from: Revision) -> Result<(reqwest::Response, String)> {
        self.call_streaming(&replay_request(from)).await
    }
}

fn replay_request(from: Revision) -> Request {
    let mut request = Request::new(Method::GET, ["v1", "topic", "records"]).query("from", from);
    request.streaming = true;
    request
}

impl<V: RecordValue> State<V> {
    /// The next record, `None` at the end; after an error, the stream ends.
    async fn next_record(&mut self) -> Option<Result<Record<V>>> {
        loop {
            if let Some(record) = self.writes.next_record() {
                self.reconnects = 0;
                return Some(Ok(record));
            }
            if let Some(error) = self.failed.take() {
                return Some(Err(error));
            }
            if self.finished {
                return None;
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(error) = self.reconnect().await {
                    self.finished = true;
                    return Some(Err(error));
                }
                continue;
            };
            let read = match tokio::time::timeout(self.idle_timeout, body.next()).await {
                Ok(Some(Ok(chunk))) => self.writes.feed(&chunk),
                Ok(None) => {
                    self.finished = true;
                    self.writes.finish()
                }
                Ok(Some(Err(error))) => {
                    warn!(endpoint = %self.endpoint, %error, "replay connection broke; resuming");
                    self.broke(format!(
                        "the connection to {} broke: {error}",
                        self.endpoint
                    ));
                    Ok(())
                }
                Err(_) => {
                    warn!(endpoint = %self.endpoint, timeout = ?self.idle_timeout, "replay stalled; resuming");
                    self.broke(format!(
                        "{} sent nothing for {:?}",
                        self.endpoint, self.idle_timeout
                    ));
                    Ok(())
                }
            };
            if let Err(unreadable) = read {
                self.finished = true;
                let request = replay_request(self.writes.resume_from()).describe();
                let endpoint = self.endpoint.clone();
                self.failed = Some(match unreadable {
                    Unreadable::NotARecord(message) => Error::Decode {
                        request,
                        endpoint,
                        message,
                    },
                    Unreadable::Cut(body) => Error::Api(Box::new(ApiError {
                        request,
                        endpoint,
                        status: body.error.code.status(),
                        code: body.error.code,
                        message: body.error.message,
                        field: body.error.field,
                        leader: body.error.leader,
                        current_revision: None,
                    })),
                });
            }
        }
    }

    /// Drops the connection and what it held of an incomplete write;
    /// `why` says what happened.
    fn broke(&mut self, why: String) {
        self.body = None;
        self.writes.broke();
        self.last_break = why;
    }

    /// Opens the replay again just after the last complete write; the
    /// server starts the new answer with the write that was cut.
    async fn reconnect(&mut self) -> Result<()> {
        self.reconnects += 1;
        let from = self.writes.resume_from();
        if self.reconnects > MAX_RECONNECTS {
            return Err(Error::Decode {
                request: replay_request(from).describe(),
                endpoint: self.endpoint.clone(),
                message: format!(
                    "the replay broke off {MAX_RECONNECTS} times in a row; last, {}",
                    self.last_break
                ),
            });
        }
        let (response, endpoint) = self.client.open_replay(from).await?;
        // Each answer ends at its node's revision: one from a node still
        // behind the first would end the stream short of what it promised,
        // without a word. Asked again after a pause, as a broken one is.
        let reaches = response
            .headers()
            .get(REVISION)
            .and_then(|value| value.to_str().ok()?.parse::<Revision>().ok());
        if reaches.is_none_or(|reaches| reaches < self.end_revision) {
            warn!(%endpoint, reaches, end_revision = self.end_revision, "the replay's node is behind; asking again");
            self.last_break = format!(
                "{endpoint} answered up to revision {}, short of the replay's {}",
                reaches.map_or_else(|| "(none said)".to_string(), |r| r.to_string()),
                self.end_revision
            );
            tokio::time::sleep(BEHIND_PAUSE * self.reconnects).await;
            return Ok(());
        }
        self.body = Some(response.bytes_stream().boxed());
        self.endpoint = endpoint;
        Ok(())
    }
}
