//! Kept-alive HTTP/1.1 connections to one other node, for the calls every
//! replicated write makes: append-entries and votes to each follower, and a
//! follower's relayed writes to the leader.
//!
//! The other calls between nodes (snapshots, joins, read indexes, writes
//! passed whole, removal notices) go through reqwest, which parses each
//! URL, checks a connection out of a pool shared by every host and hands
//! the request to the connection's task through a channel. On a leader of three nodes that
//! machinery was about a tenth of the CPU (docs/performance.md). A
//! [`PeerChannel`] belongs to one node: its address, `Host` header and TLS
//! name are made once, and a request takes an idle connection off a short
//! stack, has it to itself, and puts it back once the answer is read.
//!
//! What a caller may conclude from a failure ([`CallError::surely_unsent`]):
//!
//! * no connection could be made (refused, unreachable, the TLS handshake
//!   failed, or [`CONNECT_TIMEOUT`] passed): the node surely did not get
//!   the request;
//! * a kept connection that the node had closed before the request went out
//!   hands the request back, and it goes out once more on a new connection;
//! * any failure after the request went out (a broken connection, the time
//!   limit, an unreadable body) may have followed the node's taking it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use rustls_pki_types::ServerName;
use schemas::api::header::{CLUSTER_ID, DATA_FORMAT};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::peer::ClusterId;

/// Longest time spent connecting to a node, TLS handshake included, before
/// the call counts as not sent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long an idle connection is kept for the next call: below the 30 s
/// after which a node's listener closes a connection that sends nothing,
/// so a kept connection is seldom one the node is closing.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle connections kept per node; more are closed when they come back.
/// A follower is sent one append at a time, and a follower relays at most
/// `--max-proposals-in-flight` batches at once (8 by default).
const MAX_IDLE: usize = 16;

/// Connections to one node, shared by the clones.
#[derive(Clone)]
pub struct PeerChannel(Arc<Channel>);

struct Channel {
    /// The node's URL as given, for errors.
    url: String,
    /// Where to connect, or why the URL cannot be used.
    target: Result<Target, String>,
    cluster_id: Arc<ClusterId>,
    idle: Mutex<Vec<Idle>>,
}

/// What connecting needs, parsed once from the node's URL.
struct Target {
    /// `host:port`, for the TCP connect and the `Host` header.
    authority: String,
    host: HeaderValue,
    /// The URL's path without its trailing slash (usually empty): routes
    /// follow it.
    base_path: String,
    /// The connector and the name the node's certificate must carry, for
    /// `https://`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// A node's answer: its status, headers and whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Why a call got no answer; each names the node's URL.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made, or the URL cannot be called: the
    /// request was not sent.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The node's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The request went out and no whole answer came within the limit.
    #[error("{url} did not answer within {limit:?}")]
    Timeout {
        /// The node's URL.
        url: String,
        /// The call's time limit.
        limit: Duration,
    },
    /// The request went out and the connection failed before the whole
    /// answer was read.
    #[error("the call to {url} failed: {source}")]
    Broken {
        /// The node's URL.
        url: String,
        /// What hyper said.
        source: hyper::Error,
    },
}

impl CallError {
    /// Whether the node surely did not get the request.
    pub fn surely_unsent(&self) -> bool {
        matches!(self, CallError::Connect { .. })
    }
}

impl PeerChannel {
    /// Connections to the node at `url` (`http://host:port`, or `https://`
    /// with `tls`, the peer TLS connector), every request naming the
    /// cluster `cluster_id` and this node's data format. A URL that does
    /// not parse makes a channel whose every call fails, naming it.
    pub fn new(url: &str, tls: Option<&TlsConnector>, cluster_id: Arc<ClusterId>) -> PeerChannel {
        PeerChannel(Arc::new(Channel {
            url: url.to_string(),
            target: Target::parse(url, tls),
            cluster_id,
            idle: Mutex::default(),
        }))
    }

    /// The node's URL, as given.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// How many kept connections are still open.
    #[cfg(test)]
    fn kept_open(&self) -> usize {
        self.0.kept_open()
    }

    /// `route` (`/raft/append`) on this node, for [`PeerChannel::post`];
    /// made once per route.
    pub fn route(&self, route: &'static str) -> Uri {
        let base = match &self.0.target {
            Ok(target) if !target.base_path.is_empty() => &target.base_path,
            _ => return Uri::from_static(route),
        };
        Uri::try_from(format!("{base}{route}")).unwrap_or_else(|_| Uri::from_static(route))
    }

    /// POSTs `body` (of `content_type`) to `route` and reads the whole
    /// answer, all within `limit`.
    pub async fn post(
        &self,
        route: &Uri,
        content_type: &'static str,
        body: Bytes,
        limit: Duration,
    ) -> Result<Reply, CallError> {
        let channel = &*self.0;
        let target = channel
            .target
            .as_ref()
            .map_err(|reason| CallError::Connect {
                url: channel.url.clone(),
                reason: reason.clone(),
            })?;
        let deadline = Instant::now() + limit;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = route.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, target.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            DATA_FORMAT,
            HeaderValue::from_static(crate::store::data_format::DATA_FORMAT),
        );
        if let Some(id) = channel.cluster_id.header() {
            headers.insert(CLUSTER_ID, id);
        }
        let timed_out = || CallError::Timeout {
            url: channel.url.clone(),
            limit,
        };
        let mut sender = self.checkout(target, deadline).await?;
        let response = match tokio::time::timeout_at(deadline, sender.try_send_request(request))
            .await
            .map_err(|_| timed_out())?
        {
            Ok(response) => response,
            Err(mut failed) => match failed.take_message() {
                // The kept connection had closed before the request went
                // out: once more, on a new one.
                Some(request) => {
                    sender = self.connect(target, deadline).await?;
                    match tokio::time::timeout_at(deadline, sender.try_send_request(request))
                        .await
                        .map_err(|_| timed_out())?
                    {
                        Ok(response) => response,
                        Err(failed) if failed.message().is_some() => {
                            return Err(CallError::Connect {
                                url: channel.url.clone(),
                                reason: format!(
                                    "the new connection closed before the request went out: {}",
                                    failed.error()
                                ),
                            })
                        }
                        Err(failed) => return Err(self.broken(failed.into_error())),
                    }
                }
                None => return Err(self.broken(failed.into_error())),
            },
        };
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout_at(deadline, body.collect())
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| self.broken(source))?
            .to_bytes();
        channel.put_back(sender);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    fn broken(&self, source: hyper::Error) -> CallError {
        CallError::Broken {
            url: self.0.url.clone(),
            source,
        }
    }

    /// A kept connection ready for a request, or else a new one.
    async fn checkout(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<SendRequest<Full<Bytes>>, CallError> {
        while let Some(mut sender) = self.0.take_idle() {
            // Ready once the connection's task is done with the last
            // exchange; an error is a connection that closed meanwhile.
            match tokio::time::timeout_at(deadline, sender.ready()).await {
                Ok(Ok(())) => return Ok(sender),
                Ok(Err(_)) => continue,
                Err(_) => {
                    return Err(CallError::Connect {
                        url: self.0.url.clone(),
                        reason: "timed out waiting for a kept connection".into(),
                    })
                }
            }
        }
        self.connect(target, deadline).await
    }

    /// A new connection, made within [`CONNECT_TIMEOUT`] and `deadline`.
    async fn connect(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let failed = |reason: String| CallError::Connect {
            url: self.0.url.clone(),
            reason,
        };
        tokio::time::timeout_at(deadline, target.connect())
            .await
            .map_err(|_| failed("timed out".into()))?
            .map_err(failed)
    }
}

impl Channel {
    /// An idle connection still open, if one is kept; expired ones are
    /// closed on the way.
    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock();
        while let Some(kept) = idle.pop() {
            if !kept.sender.is_closed() && kept.since.elapsed() < IDLE_TIMEOUT {
                return Some(kept.sender);
            }
        }
        None
    }

    /// How many kept connections are still open.
    #[cfg(test)]
    fn kept_open(&self) -> usize {
        let idle = self.idle.lock();
        idle.iter().filter(|kept| !kept.sender.is_closed()).count()
    }

    /// Keeps `sender` for the next call, unless it closed or enough are kept.
    fn put_back(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock();
        // The oldest first, so the stack's top is the most recently used.
        idle.retain(|kept| kept.since.elapsed() < IDLE_TIMEOUT);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

impl Target {
    fn parse(url: &str, tls: Option<&TlsConnector>) -> Result<Target, String> {
        let parsed = reqwest::Url::parse(url).map_err(|error| format!("not a URL: {error}"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| "the URL names no host".to_string())?;
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| "the URL names no port".to_string())?;
        let authority = format!("{host}:{port}");
        let tls = match (parsed.scheme(), tls) {
            ("http", None) => None,
            ("http", Some(_)) => {
                return Err("the URL is http://, and this node's peer port speaks TLS \
                     (--peer-tls-cert): the calls between nodes are never sent in clear"
                    .into())
            }
            ("https", Some(connector)) => {
                let name = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(name.to_string())
                    .map_err(|error| format!("{host} is not a TLS server name: {error}"))?;
                Some((connector.clone(), name))
            }
            ("https", None) => {
                return Err(
                    "the URL is https:// but this node has no peer TLS (--peer-tls-cert)".into(),
                )
            }
            (scheme, _) => return Err(format!("{scheme}:// is neither http:// nor https://")),
        };
        Ok(Target {
            host: HeaderValue::from_str(&authority).map_err(|error| error.to_string())?,
            authority,
            base_path: parsed.path().trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// Connects, with TLS for `https://`, and starts the connection's task.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|error| error.to_string())?;
        stream
            .set_nodelay(true)
            .map_err(|error| error.to_string())?;
        match &self.tls {
            None => handshake(stream).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|error| format!("TLS handshake: {error}"))?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    // Ends when the node closes the connection or the sender is dropped.
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::post;
    use axum::Router;
    use hyper_util::service::TowerToHyperService;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A node answering `router` on loopback, closing each connection
    /// after one answer unless `keep_alive`; with the count of connections
    /// it took.
    async fn node(router: Router, keep_alive: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let service = TowerToHyperService::new(router.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .keep_alive(keep_alive)
                        .serve_connection(TokioIo::new(socket), service),
                );
            }
        });
        (url, accepted)
    }

    /// A channel of a node that knows its cluster.
    fn channel(url: &str) -> (PeerChannel, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cluster_id = ClusterId::open(dir.path()).unwrap();
        cluster_id.create().unwrap();
        (PeerChannel::new(url, None, Arc::new(cluster_id)), dir)
    }

    /// What the test nodes answer: the headers every call must carry.
    fn echo() -> Router {
        let answer = |headers: HeaderMap| async move {
            let named = |name| {
                headers
                    .get(name)
                    .map(|value: &HeaderValue| value.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            format!("{} {}", named(DATA_FORMAT), named(CLUSTER_ID))
        };
        Router::new()
            .route("/raft/append", post(answer))
            .route("/under/raft/append", post(answer))
    }

    async fn call(channel: &PeerChannel, route: &Uri) -> Result<Reply, CallError> {
        let body = Bytes::from_static(b"entries");
        channel
            .post(
                route,
                "application/x-postcard",
                body,
                Duration::from_secs(5),
            )
            .await
    }

    /// With TLS on the peer port, a member's http:// URL is refused before
    /// any call: the calls between nodes are never sent in clear.
    #[test]
    fn a_plain_url_is_refused_when_this_nodes_peer_port_speaks_tls() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let refused = Target::parse("http://127.0.0.1:1", Some(&connector))
            .err()
            .expect("a plain URL with peer TLS is refused");
        assert!(refused.contains("never sent in clear"), "{refused}");
        assert!(Target::parse("https://127.0.0.1:1", Some(&connector)).is_ok());
        assert!(Target::parse("http://127.0.0.1:1", None).is_ok());
    }

    #[tokio::test]
    async fn calls_take_turns_on_kept_connections_and_name_the_cluster() {
        let (url, accepted) = node(echo(), true).await;
        let (channel, dir) = channel(&url);
        let cluster_id = ClusterId::open(dir.path()).unwrap().get().unwrap();
        let route = channel.route("/raft/append");
        for turn in 0..5 {
            let reply = call(&channel, &route).await.expect("the node answers");
            assert_eq!(reply.status, StatusCode::OK, "turn {turn}");
            assert_eq!(
                reply.body,
                format!("{} {cluster_id}", crate::store::data_format::DATA_FORMAT),
                "turn {turn}"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection");

        // Four at once need four; afterwards they are kept and reused.
        let together = (0..4).map(|_| call(&channel, &route));
        for reply in futures::future::join_all(together).await {
            assert_eq!(reply.expect("the node answers").status, StatusCode::OK);
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!((2..=4).contains(&opened), "{opened} connections");
        for _ in 0..4 {
            call(&channel, &route).await.expect("the node answers");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), opened, "none opened");

        // A URL with a path: the routes follow it.
        let (under, _dir) = self::channel(&format!("{url}/under/"));
        let route = under.route("/raft/append");
        assert_eq!(route.path(), "/under/raft/append");
        let reply = call(&under, &route).await.expect("the node answers");
        assert_eq!(reply.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_connection_the_node_closed_is_left_for_a_new_one() {
        // The node says it closes.
        let (url, accepted) = node(echo(), false).await;
        let (channel, _dir) = channel(&url);
        let route = channel.route("/raft/append");
        for turn in 1..=3 {
            let reply = call(&channel, &route).await.expect("the node answers");
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(accepted.load(Ordering::SeqCst), turn);
        }

        // The node closes without saying so: the kept connection is seen
        // closed, and the next call opens another.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                read_request(&mut socket).await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                socket.write_all(answer).await.unwrap();
            }
        });
        let (channel, _dir) = self::channel(&url);
        for turn in 1..=3 {
            let reply = call(&channel, &route).await.expect("the node answers");
            assert_eq!(reply.body, "ok");
            assert_eq!(accepted.load(Ordering::SeqCst), turn);
            let deadline = Instant::now() + Duration::from_secs(5);
            while channel.kept_open() > 0 {
                assert!(Instant::now() < deadline, "the close was never seen");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Reads one request's head and its `content-length` body.
    async fn read_request(socket: &mut TcpStream) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let read = socket.read(&mut buf).await.unwrap();
            assert!(read > 0, "the request ended early");
            seen.extend_from_slice(&buf[..read]);
            let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
            let Some(head) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text[..head]
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse::<usize>().unwrap());
            if seen.len() >= head + 4 + length {
                return;
            }
        }
    }

    #[tokio::test]
    async fn a_failure_says_whether_the_request_surely_did_not_go_out() {
        let route = Uri::from_static("/raft/append");
        let closed = crate::api::test_peers::closed_port().await;
        let (refused, _dir) = channel(&closed);
        let error = call(&refused, &route).await.unwrap_err();
        assert!(error.surely_unsent(), "{error}");
        assert!(error.to_string().contains(&closed), "{error}");

        for (url, says) in [
            ("not a url", "not a URL"),
            ("https://127.0.0.1:1", "no peer TLS"),
            ("ftp://127.0.0.1:1", "neither http:// nor https://"),
        ] {
            let (unusable, _dir) = channel(url);
            let error = call(&unusable, &route).await.unwrap_err();
            assert!(error.surely_unsent(), "{url}: {error}");
            assert!(error.to_string().contains(says), "{url}: {error}");
        }

        // A node that takes the request and never answers may have acted
        // on it.
        let (silent, holder) = crate::api::test_peers::silent_peer().await;
        let (channel, _dir) = channel(&silent);
        let body = Bytes::from_static(b"entries");
        let error = channel
            .post(
                &route,
                "application/x-postcard",
                body,
                Duration::from_millis(200),
            )
            .await
            .unwrap_err();
        holder.abort();
        assert!(matches!(error, CallError::Timeout { .. }), "{error}");
        assert!(!error.surely_unsent(), "{error}");
    }
}
