//! One kept-alive HTTP/1.1 connection of a closed-loop worker, driven with
//! hyper's connection-level client.
//!
//! A pooled client (reqwest) parses the URL, checks a connection out of its
//! pool and hands each request to the connection's task through a channel.
//! On a 2-core machine shared with the servers, that work (with glibc's
//! malloc, before the tool took jemalloc) took more of the machine under
//! reads than the server did, and what the tool spends is taken from the
//! server it measures (docs/performance.md). A worker owns its connection,
//! so none of that is needed: the endpoint is parsed once, and each request
//! is its method, path, headers and body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::bench::BenchError;

/// What a connection connects to, parsed once from an endpoint URL.
#[derive(Clone)]
pub struct Endpoint {
    /// `host:port`, for the TCP connect and the `Host` header.
    authority: String,
    /// The `Host` header's value.
    host: HeaderValue,
    /// The TLS connector and the name the certificate must carry, for
    /// `https://`.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// `Bearer <token>`, when the run has one.
    authorization: Option<HeaderValue>,
    /// The URL's path without its trailing slash (usually empty): the
    /// requests' paths follow it.
    base_path: String,
}

impl Endpoint {
    /// Parses `url` (`http://127.0.0.1:7070`, checked to be loopback
    /// already) with the run's TLS settings and token.
    pub fn parse(url: &str) -> Result<Endpoint, BenchError> {
        let bad = |reason: String| BenchError::BadEndpoint {
            url: url.to_string(),
            reason,
        };
        let parsed = reqwest::Url::parse(url).map_err(|error| bad(error.to_string()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| bad("it names no host".into()))?
            .to_string();
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| bad("it names no port".into()))?;
        let authority = format!("{host}:{port}");
        let tls = match parsed.scheme() {
            "https" => {
                let name = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|error| bad(format!("{host} is not a TLS server name: {error}")))?;
                Some((crate::bench::tls::connector(), name))
            }
            _ => None,
        };
        Ok(Endpoint {
            host: HeaderValue::from_str(&authority).map_err(|error| bad(error.to_string()))?,
            authority,
            tls,
            authorization: crate::bench::target::authorization()?,
            base_path: parsed.path().trim_end_matches('/').to_string(),
        })
    }
}

/// One connection to one endpoint, opened on first use and again after a
/// failure.
pub struct Connection {
    endpoint: Arc<Endpoint>,
    /// Time limit of one request, connecting included.
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A request's answer: its status and whole body.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Connection {
    /// A connection to `endpoint`, not opened yet.
    pub fn new(endpoint: Arc<Endpoint>, timeout: Duration) -> Connection {
        Connection {
            endpoint,
            timeout,
            sender: None,
        }
    }

    /// Sends `method path` with `body` (JSON when not empty) and reads the
    /// whole answer. `Err` is the kind of failure (`connect`, `timeout`,
    /// `request`, `body`); after one the connection is opened anew.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, &'static str> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(kind)) => {
                self.sender = None;
                Err(kind)
            }
            Err(_) => {
                self.sender = None;
                Err("timeout")
            }
        }
    }

    /// One request and its whole answer, on the open connection or a new one.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, &'static str> {
        let endpoint = &self.endpoint;
        let uri = if endpoint.base_path.is_empty() {
            Uri::try_from(path)
        } else {
            Uri::try_from(format!("{}{path}", endpoint.base_path))
        }
        .map_err(|_| "request")?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, endpoint.host.clone());
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(authorization) = &endpoint.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(body)).map_err(|_| "request")?;
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(self.open().await?),
        };
        sender.ready().await.map_err(|_| "request")?;
        let response = sender.send_request(request).await.map_err(|_| "request")?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| "body")?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// Connects, with TLS for `https://`, and starts the connection's task.
    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, &'static str> {
        let endpoint = &self.endpoint;
        let stream = TcpStream::connect(&endpoint.authority)
            .await
            .map_err(|_| "connect")?;
        stream.set_nodelay(true).map_err(|_| "connect")?;
        match &endpoint.tls {
            None => handshake(stream).await,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|_| "connect")?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, &'static str>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    // Ends when the connection closes or the sender is dropped.
    tokio::spawn(connection);
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_parsed_once_into_its_address_host_and_path() {
        let endpoint = Endpoint::parse("http://127.0.0.1:7070").unwrap();
        assert_eq!(endpoint.authority, "127.0.0.1:7070");
        assert_eq!(endpoint.host, "127.0.0.1:7070");
        assert_eq!(endpoint.base_path, "");
        assert!(endpoint.tls.is_none());

        let endpoint = Endpoint::parse("https://[::1]:7443/behind/a/proxy/").unwrap();
        assert_eq!(endpoint.authority, "[::1]:7443");
        assert_eq!(endpoint.base_path, "/behind/a/proxy");
        assert!(endpoint.tls.is_some());

        assert!(Endpoint::parse("http://127.0.0.1:70000").is_err());
    }
}
