//! The servers a run drives and the shape of their requests: kv-server's
//! `/v1/kv` API, and etcd 3.4's JSON gateway (`/v3/kv/put`, `/v3/kv/range`,
//! base64 keys and values), so both are measured by the same client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use serde_json::json;

use crate::bench::connection::{Connection, Endpoint};
use crate::bench::BenchError;

/// Which server answers at the endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// kv-server's HTTP/JSON API.
    Kv,
    /// etcd 3.4's gRPC JSON gateway.
    Etcd,
}

impl TargetKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Kv => "kv-server",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// kv-server `consistency=linearizable`; etcd's default range.
    Linearizable,
    /// kv-server `consistency=stale`; etcd `serializable: true`.
    Stale,
}

impl Consistency {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Stale => "stale",
        }
    }
}

/// One operation of a closed-loop workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Write the fixed value to a key.
    Put,
    /// Read a key.
    Get(Consistency),
    /// A transaction: if the key's mod revision is below 2^53 (always),
    /// put the value to it and the next two keys.
    Txn,
    /// A put's request to kv-server's no-op route
    /// (`--bench-noop-route`), which reads it and writes nothing.
    Noop,
}

/// A revision no key reaches: the transactions' condition always holds, and
/// both servers evaluate it.
const ALWAYS_BELOW: u64 = 1 << 53;

/// Checks that `url` is HTTP or HTTPS to a loopback address (`127.0.0.0/8`,
/// `::1` or `localhost`) and returns it without a trailing slash: the tool
/// only ever loads servers on this machine.
pub fn loopback_endpoint(url: &str) -> Result<String, BenchError> {
    let parsed = reqwest::Url::parse(url).map_err(|error| BenchError::BadEndpoint {
        url: url.to_string(),
        reason: error.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BenchError::BadEndpoint {
            url: url.to_string(),
            reason: format!(
                "the scheme is {:?}; only http and https are driven",
                parsed.scheme()
            ),
        });
    }
    let host = parsed.host_str().unwrap_or("");
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(BenchError::NotLoopback {
            url: url.to_string(),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Builds and judges the requests of one target over its endpoints.
pub struct Requests {
    /// The server kind.
    pub target: TargetKind,
    /// Base URLs (`http://127.0.0.1:7070`), checked to be loopback.
    pub endpoints: Vec<String>,
    /// Prefix of the benchmark's keys (`bench/k`).
    key_prefix: String,
    /// The value of every put: for kv-server a JSON string whose text is
    /// `value_bytes` long, for etcd `value_bytes` raw bytes.
    value: String,
    /// `value` as a body, shared by every put.
    value_body: Bytes,
}

impl Requests {
    /// Requests against `endpoints`, with keys `{key_prefix}{n:07}` and
    /// values of `value_bytes` bytes.
    pub fn new(
        target: TargetKind,
        endpoints: Vec<String>,
        key_prefix: &str,
        value_bytes: usize,
    ) -> Requests {
        let value = match target {
            // The quotes are part of the body's bytes.
            TargetKind::Kv => format!("\"{}\"", "v".repeat(value_bytes.saturating_sub(2))),
            TargetKind::Etcd => "v".repeat(value_bytes),
        };
        Requests {
            target,
            endpoints,
            key_prefix: key_prefix.to_string(),
            value_body: Bytes::from(value.clone()),
            value,
        }
    }

    /// The name of key number `n`.
    pub fn key(&self, n: usize) -> String {
        format!("{}{n:07}", self.key_prefix)
    }

    /// The endpoints, each parsed once, for the closed loop's connections.
    pub fn parsed_endpoints(&self) -> Result<Vec<Arc<Endpoint>>, BenchError> {
        self.endpoints
            .iter()
            .map(|url| Endpoint::parse(url).map(Arc::new))
            .collect()
    }

    /// Sends `operation` on key number `key` over `connection` and reads the
    /// whole answer; `Err` holds the kind of failure.
    pub async fn execute(
        &self,
        connection: &mut Connection,
        key: usize,
        operation: Operation,
    ) -> Result<(), String> {
        let keys = [key, key + 1, key + 2].map(|n| self.key(n));
        let key = self.key(key);
        let (method, path, body) = match (self.target, operation) {
            (TargetKind::Kv, Operation::Txn) => (
                Method::POST,
                "/v1/txn".to_string(),
                json!({
                    "compare": [{"key": key, "target": "mod_revision", "op": "<", "value": ALWAYS_BELOW}],
                    "success": keys.iter().map(|key| json!({"put": {
                        "key": key,
                        // The same JSON string a put sends.
                        "value": self.value.trim_matches('"'),
                    }})).collect::<Vec<_>>(),
                })
                .to_string()
                .into(),
            ),
            (TargetKind::Etcd, Operation::Txn) => (
                Method::POST,
                "/v3/kv/txn".to_string(),
                json!({
                    "compare": [{"key": BASE64.encode(&key), "target": "MOD", "result": "LESS",
                                 "mod_revision": ALWAYS_BELOW.to_string()}],
                    "success": keys.iter().map(|key| json!({"request_put": {
                        "key": BASE64.encode(key),
                        "value": BASE64.encode(&self.value),
                    }})).collect::<Vec<_>>(),
                })
                .to_string()
                .into(),
            ),
            (TargetKind::Kv, Operation::Put) => {
                (Method::PUT, format!("/v1/kv/{key}"), self.value_body.clone())
            }
            (TargetKind::Kv, Operation::Noop) => (
                Method::PUT,
                format!("/v1/bench/noop/{key}"),
                self.value_body.clone(),
            ),
            (TargetKind::Etcd, Operation::Noop) => {
                return Err("etcd has no no-op route".to_string())
            }
            (TargetKind::Kv, Operation::Get(consistency)) => (
                Method::GET,
                format!("/v1/kv/{key}?consistency={}", consistency.name()),
                Bytes::new(),
            ),
            (TargetKind::Etcd, Operation::Put) => (
                Method::POST,
                "/v3/kv/put".to_string(),
                json!({
                    "key": BASE64.encode(&key),
                    "value": BASE64.encode(&self.value),
                })
                .to_string()
                .into(),
            ),
            (TargetKind::Etcd, Operation::Get(consistency)) => (
                Method::POST,
                "/v3/kv/range".to_string(),
                json!({
                    "key": BASE64.encode(&key),
                    "serializable": consistency == Consistency::Stale,
                })
                .to_string()
                .into(),
            ),
        };
        let answer = connection
            .send(method, &path, body)
            .await
            .map_err(str::to_string)?;
        if !(200..300).contains(&answer.status) {
            return Err(self.http_error_kind(answer.status, &answer.body));
        }
        // etcd answers a range over a missing key with 200 and no `kvs`.
        if self.target == TargetKind::Etcd
            && matches!(operation, Operation::Get(_))
            && !contains(&answer.body, b"\"kvs\"")
        {
            return Err("key missing".to_string());
        }
        Ok(())
    }

    /// `http 503 unavailable`: the status and the server's error code.
    fn http_error_kind(&self, status: u16, body: &[u8]) -> String {
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let code = parsed.as_ref().and_then(|body| match self.target {
            TargetKind::Kv => body["error"]["code"].as_str().map(str::to_string),
            TargetKind::Etcd => body["message"]
                .as_str()
                .or_else(|| body["error"].as_str())
                .map(|message| message.chars().take(60).collect()),
        });
        match code {
            Some(code) => format!("http {status} {code}"),
            None => format!("http {status}"),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The kind of a failed request, for the error counts.
pub fn error_kind(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_string()
    } else if error.is_connect() {
        "connect".to_string()
    } else if error.is_body() || error.is_decode() {
        "body".to_string()
    } else {
        "request".to_string()
    }
}

/// The `--token` of this run, set once at start-up: every client the tool
/// builds presents it, so no workload has to carry it.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every client built from now on present `token`.
pub fn present_token(token: &str) -> Result<(), BenchError> {
    TOKEN
        .set(token.to_string())
        .map_err(|_| BenchError::Setup("the token is set once per run".into()))
}

/// The `Authorization` header of the run's token, when one was given.
pub fn authorization() -> Result<Option<HeaderValue>, BenchError> {
    let Some(token) = TOKEN.get() else {
        return Ok(None);
    };
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| BenchError::Setup("--token is not visible ASCII text".into()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// The headers every client sends: the token, when one was given.
pub fn default_headers() -> Result<reqwest::header::HeaderMap, BenchError> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = authorization()? {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// An HTTP/1.1 client that keeps one connection: a worker owns one, so N
/// workers are N connections.
pub fn connection_client(request_timeout: Duration) -> Result<reqwest::Client, BenchError> {
    crate::bench::tls::apply(reqwest::Client::builder())
        .default_headers(default_headers()?)
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .pool_idle_timeout(None)
        .timeout(request_timeout)
        .build()
        .map_err(|error| BenchError::Setup(format!("cannot build an HTTP client: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints_are_accepted_without_trailing_slash() {
        for url in [
            "http://127.0.0.1:7070/",
            "http://127.0.0.2:1",
            "http://localhost:2379",
            "http://[::1]:7070",
            "https://127.0.0.1:7070",
        ] {
            let endpoint = loopback_endpoint(url).unwrap();
            assert!(!endpoint.ends_with('/'), "{endpoint}");
        }
    }

    #[test]
    fn other_hosts_and_schemes_are_refused() {
        for url in [
            "http://10.0.0.1:7070",
            "http://example.com",
            "ftp://127.0.0.1:7070",
            "127.0.0.1:7070",
        ] {
            assert!(loopback_endpoint(url).is_err(), "{url} was accepted");
        }
    }

    #[test]
    fn a_kv_value_is_a_json_string_of_the_requested_size() {
        let requests = Requests::new(TargetKind::Kv, vec![], "bench/k", 256);
        assert_eq!(requests.value.len(), 256);
        assert!(serde_json::from_str::<String>(&requests.value).is_ok());
        assert_eq!(requests.key(42), "bench/k0000042");
    }
}
