//! The watch workload's etcd side: watchers as etcd's own clients make
//! them, on gRPC watch streams (`etcdserverpb.Watch/Watch`), and the
//! writer and revision reads through etcd's JSON gateway like every other
//! etcd cell.
//!
//! The messages are written here by hand with prost, carrying only the
//! fields the workload uses (protobuf skips the others), so the build needs
//! no `protoc` and no copy of etcd's `.proto` files. Field numbers are
//! those of etcd 3.4's `rpc.proto` and `kv.proto`.
//!
//! etcd's client multiplexes every watch of a context on one stream; here
//! the watchers are spread over `h2_connections` channels with one stream
//! each, so each stream carries watchers / connections watches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::json;
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;

use crate::bench::watch::{acknowledged, WatchEvent, WatchOptions};
use crate::bench::BenchError;

/// etcd's watch RPC: a stream of requests, a stream of responses.
const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";
/// Longest wait for a channel to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `etcdserverpb.WatchRequest`, with only its create request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchRequest {
    #[prost(oneof = "watch_request::RequestUnion", tags = "1")]
    pub request_union: Option<watch_request::RequestUnion>,
}

pub mod watch_request {
    /// The request kinds of a `WatchRequest`; only creation is sent.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum RequestUnion {
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
    }
}

/// `etcdserverpb.WatchCreateRequest`: the key and the first revision.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub start_revision: i64,
}

/// `etcdserverpb.WatchResponse`: creation, cancellation or events.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchResponse {
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// `mvccpb.Event`: only the changed key-value is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// `mvccpb.KeyValue`: only the revision of the change is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
}

/// The watchers' tasks and how many of their watches etcd has created.
pub struct EtcdWatchers {
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub created: Arc<AtomicU64>,
}

/// Starts the watchers: watcher w watches key `keys[w mod K]` from
/// `start_revision`, on the stream of channel w mod C, until aborted.
pub async fn spawn_watchers(
    endpoint: &str,
    options: &WatchOptions,
    keys: &[String],
    start_revision: u64,
    events: mpsc::UnboundedSender<WatchEvent>,
) -> Result<EtcdWatchers, BenchError> {
    let created = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(options.h2_connections);
    for connection in 0..options.h2_connections {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|error| BenchError::Setup(format!("etcd endpoint {endpoint}: {error}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|error| {
                BenchError::Setup(format!("cannot connect to etcd at {endpoint}: {error}"))
            })?;
        let requests: Vec<WatchRequest> = (connection..options.watchers)
            .step_by(options.h2_connections)
            .map(|watcher| WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(
                    WatchCreateRequest {
                        key: keys[watcher % keys.len()].clone().into_bytes(),
                        start_revision: start_revision as i64,
                    },
                )),
            })
            .collect();
        let events = events.clone();
        let created = Arc::clone(&created);
        tasks.push(tokio::spawn(async move {
            if let Err(error) = watch_stream(channel, requests, &events, &created).await {
                let _ = events.send(WatchEvent::Failed(error));
            }
        }));
    }
    Ok(EtcdWatchers { tasks, created })
}

/// Sends `requests` on one watch stream, kept open, and reports what comes
/// back until the stream ends or the task is aborted.
async fn watch_stream(
    channel: tonic::transport::Channel,
    requests: Vec<WatchRequest>,
    events: &mpsc::UnboundedSender<WatchEvent>,
    created: &AtomicU64,
) -> Result<(), String> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| format!("grpc not ready: {error}"))?;
    // The requests, then nothing: the stream stays open for the events.
    let outbound =
        futures::StreamExt::chain(futures::stream::iter(requests), futures::stream::pending());
    let codec = tonic::codec::ProstCodec::<WatchRequest, WatchResponse>::default();
    let mut inbound = grpc
        .streaming(
            tonic::Request::new(outbound),
            PathAndQuery::from_static(WATCH_PATH),
            codec,
        )
        .await
        .map_err(|status| format!("grpc {:?}", status.code()))?
        .into_inner();
    loop {
        let response = match inbound.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err("the watch stream ended".to_string()),
            Err(status) => return Err(format!("grpc {:?}", status.code())),
        };
        let at = Instant::now();
        if response.created {
            created.fetch_add(1, Ordering::AcqRel);
        }
        if response.canceled {
            let _ = events.send(WatchEvent::Failed(format!(
                "watch canceled: {}",
                response.cancel_reason
            )));
        }
        for event in response.events {
            if let Some(kv) = event.kv {
                let revision = kv.mod_revision.max(0) as u64;
                let _ = events.send(WatchEvent::Delivered { revision, at });
            }
        }
    }
}

/// Writes `{"n": n}` to `key` through the gateway; returns the write's
/// revision and when its answer arrived.
pub async fn put(
    client: &reqwest::Client,
    endpoint: &str,
    key: &str,
    n: usize,
) -> Result<(u64, Instant), String> {
    let body = json!({
        "key": BASE64.encode(key),
        "value": BASE64.encode(format!("{{\"n\":{n}}}")),
    });
    let response = client
        .post(format!("{endpoint}/v3/kv/put"))
        .body(body.to_string())
        .send()
        .await;
    acknowledged(response, header_revision).await
}

/// etcd's current revision, from the header of a range answer.
pub async fn revision(client: &reqwest::Client, endpoint: &str) -> Result<u64, BenchError> {
    let body = json!({ "key": BASE64.encode("watch/k"), "count_only": true });
    let response = client
        .post(format!("{endpoint}/v3/kv/range"))
        .body(body.to_string())
        .send()
        .await
        .map_err(|error| BenchError::Setup(format!("reading etcd's revision: {error}")))?;
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|error| BenchError::Setup(format!("reading etcd's revision: {error}")))?;
    header_revision(&body)
        .ok_or_else(|| BenchError::Setup(format!("etcd's answer has no revision: {body}")))
}

/// `header.revision` of a gateway answer (an int64, so a JSON string).
fn header_revision(body: &serde_json::Value) -> Option<u64> {
    let revision = &body["header"]["revision"];
    revision
        .as_str()
        .and_then(|text| text.parse().ok())
        .or_else(|| revision.as_u64())
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// The create request encodes as etcd's `WatchRequest` does: field 1
    /// (create_request), holding field 1 (key) and field 3 (start_revision).
    #[test]
    fn a_create_request_has_etcds_field_numbers() {
        let request = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"k".to_vec(),
                    start_revision: 5,
                },
            )),
        };
        assert_eq!(
            request.encode_to_vec(),
            [0x0a, 0x05, 0x0a, 0x01, b'k', 0x18, 0x05]
        );
    }

    /// A response with fields this module does not read still decodes,
    /// and the event's revision is found.
    #[test]
    fn a_response_with_unread_fields_decodes() {
        // header (1) {revision (3): 9}, watch_id (2): 4, events (11) {type
        // (1): 0, kv (2) {key (1): "k", mod_revision (3): 9}}.
        let bytes = [
            0x0a, 0x02, 0x18, 0x09, 0x10, 0x04, 0x5a, 0x09, 0x08, 0x00, 0x12, 0x05, 0x0a, 0x01,
            b'k', 0x18, 0x09,
        ];
        let response = WatchResponse::decode(&bytes[..]).expect("decodes");
        assert_eq!(response.watch_id, 4);
        assert_eq!(response.events.len(), 1);
        assert_eq!(
            response.events[0].kv.as_ref().map(|kv| kv.mod_revision),
            Some(9)
        );
    }
}
