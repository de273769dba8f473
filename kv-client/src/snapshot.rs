//! Backups (`GET /v1/snapshot`): the node's snapshot, streamed.

use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use schemas::api::header;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::Consistency;
use crate::request::Request;

/// How long a node may take to make the snapshot before it sends the
/// first byte.
const SNAPSHOT_MAKING: Duration = Duration::from_secs(300);

/// A backup being received: its size and revision, then its bytes.
#[derive(Debug)]
pub struct SnapshotDownload {
    response: reqwest::Response,
    endpoint: String,
    /// Its length in bytes, as the node announced it.
    pub len: Option<u64>,
    /// The revision it holds the store at.
    pub revision: Option<u64>,
    received: u64,
    /// Longest wait for the next bytes: the client's request timeout.
    idle_timeout: Duration,
}

impl SnapshotDownload {
    /// The next bytes; `None` at the end. A backup that ends short of its
    /// announced length is an error, never a quiet end, and one whose node
    /// sends nothing for the client's request timeout is an error too.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let chunk = tokio::time::timeout(self.idle_timeout, self.response.chunk())
            .await
            .map_err(|_| Error::Timeout {
                request: "GET /v1/snapshot".to_string(),
                endpoint: self.endpoint.clone(),
                after: self.idle_timeout,
            })?
            .map_err(|source| Error::Transport {
                request: "GET /v1/snapshot".to_string(),
                endpoint: self.endpoint.clone(),
                source,
            })?;
        match chunk {
            Some(bytes) => {
                self.received += bytes.len() as u64;
                Ok(Some(bytes))
            }
            None => match self.len {
                Some(len) if len != self.received => Err(Error::Decode {
                    request: "GET /v1/snapshot".to_string(),
                    endpoint: self.endpoint.clone(),
                    message: format!(
                        "the backup ended after {} of its {len} bytes",
                        self.received
                    ),
                }),
                _ => Ok(None),
            },
        }
    }

    /// The node it comes from.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Client {
    /// A backup of the store (etcd's `snapshot save`): the node asked
    /// makes a snapshot of what it has applied and sends it; `kv-server
    /// restore` lays a new cluster down from the bytes. It holds every
    /// write acknowledged before the call ([`Client::snapshot_with`] and
    /// [`Consistency::Stale`] take what the node has, without a quorum).
    /// Needs an admin token on a cluster run with `--auth`.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let mut backup = client.snapshot().await?;
    /// let mut bytes = Vec::new();
    /// while let Some(chunk) = backup.chunk().await? {
    ///     bytes.extend_from_slice(&chunk);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn snapshot(&self) -> Result<SnapshotDownload> {
        self.snapshot_with(Consistency::Linearizable).await
    }

    /// [`Client::snapshot`] with the given consistency: `Stale` saves what
    /// the answering node has applied, which a cluster that lost its
    /// quorum can still give.
    pub async fn snapshot_with(&self, consistency: Consistency) -> Result<SnapshotDownload> {
        let mut request = Request::new(Method::GET, ["v1", "snapshot"])
            .query("consistency", consistency.as_param());
        request.streaming = true;
        request.extra_time = SNAPSHOT_MAKING;
        request.refusal_ends_extra_time = true;
        request.probe_first = true;
        let (response, endpoint) = self.call_streaming(&request).await?;
        let revision = response
            .headers()
            .get(header::REVISION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok());
        Ok(SnapshotDownload {
            len: response.content_length(),
            revision,
            response,
            endpoint,
            received: 0,
            idle_timeout: self.inner.options.request_timeout,
        })
    }
}
