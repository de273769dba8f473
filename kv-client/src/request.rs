//! One request as every attempt sends it, and a final answer read whole,
//! with what calls read from it: the JSON body, the revision headers, and
//! the API's error body as an [`Error::Api`].

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, ETAG};
use reqwest::{Method, StatusCode, Url};
use schemas::api::{ErrorBody, ErrorCode, ErrorDetail};
use uuid::Uuid;

use crate::error::{ApiError, Error, Result};
use crate::Revision;

/// One request, as every attempt sends it.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// Path segments after the endpoint's own path, each percent-encoded
    /// on the way out (`["v1", "kv", "app", "config"]`).
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Option<Bytes>,
    /// Set for writes: the same on every attempt.
    pub(crate) idempotency_key: Option<Uuid>,
    /// Added to the client's per-attempt timeout and deadline (long-polls).
    pub(crate) extra_time: Duration,
    /// A 503 earns the call no extra time: it says the node is not making
    /// the answer (a backup refused for want of a quorum), where a 503 to
    /// a long-poll or a membership change comes after the wait it needed.
    pub(crate) refusal_ends_extra_time: bool,
    /// The body is a stream read later: the timeout covers the head only.
    pub(crate) streaming: bool,
    /// With several endpoints, each is asked whether it answers at all
    /// (`/healthz`, within a short time) before the request is sent: for a
    /// request whose answer may take minutes to start (a backup), so that
    /// a node that takes the connection and never answers is passed over
    /// rather than waited on for all that time.
    pub(crate) probe_first: bool,
    /// Overrides the client's per-attempt timeout and call deadline, for
    /// calls whose answer is worthless after a time of their own (a
    /// lease's keep-alive).
    pub(crate) limits: Option<CallLimits>,
}

/// A call's own per-attempt timeout and deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallLimits {
    pub(crate) attempt_timeout: Duration,
    pub(crate) deadline: Duration,
}

impl Request {
    /// A request of `method` on the path made of `segments`.
    pub(crate) fn new<S: Into<String>>(
        method: Method,
        segments: impl IntoIterator<Item = S>,
    ) -> Request {
        Request {
            method,
            segments: segments.into_iter().map(Into::into).collect(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            idempotency_key: None,
            extra_time: Duration::ZERO,
            refusal_ends_extra_time: false,
            probe_first: false,
            streaming: false,
            limits: None,
        }
    }

    /// A write: a fresh idempotency key shared by all its attempts.
    pub(crate) fn write<S: Into<String>>(
        method: Method,
        segments: impl IntoIterator<Item = S>,
    ) -> Request {
        let mut request = Request::new(method, segments);
        request.idempotency_key = Some(Uuid::new_v4());
        request
    }

    pub(crate) fn query(mut self, name: &'static str, value: impl ToString) -> Request {
        self.query.push((name, value.to_string()));
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// A JSON body.
    pub(crate) fn json(mut self, body: String) -> Request {
        self.body = Some(Bytes::from(body));
        self
    }

    /// `METHOD /path?query` for messages and logs (without the endpoint).
    pub(crate) fn describe(&self) -> String {
        let base = Url::parse("http://x/").expect("a constant URL parses");
        let url = self.url(&base);
        match url.query() {
            Some(query) => format!("{} {}?{query}", self.method, url.path()),
            None => format!("{} {}", self.method, url.path()),
        }
    }

    /// The request's URL at `endpoint`.
    pub(crate) fn url(&self, endpoint: &Url) -> Url {
        let mut url = endpoint.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("endpoints are checked to be http(s) URLs, which have paths");
            path.pop_if_empty().extend(&self.segments);
        }
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&self.query);
        }
        url
    }
}

/// A final answer (not 502–504), read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Which endpoint answered.
    pub(crate) endpoint: String,
    /// `METHOD /path` of the request.
    pub(crate) request: String,
}

impl Answer {
    /// The answer when it is a success, else its error.
    pub(crate) fn success(self) -> Result<Answer> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.into_error())
        }
    }

    /// The body as the API's error, if it is one (not, say, a proxy's page).
    pub(crate) fn error_body(&self) -> Option<ErrorBody> {
        if self.status.is_success() {
            return None;
        }
        serde_json::from_slice::<ErrorBody>(&self.body).ok()
    }

    /// Whether the answer is an error with this code.
    pub(crate) fn has_code(&self, code: ErrorCode) -> bool {
        self.error_body()
            .is_some_and(|body| body.error.code == code)
    }

    /// The answer as an [`Error::Api`]; a body that is not the API's error
    /// shape keeps the status and the text, with the code `unknown`.
    pub(crate) fn into_error(self) -> Error {
        let current_revision = etag_revision(&self.headers);
        let detail = match self.error_body() {
            Some(body) => body.error,
            None => ErrorDetail {
                code: ErrorCode::Unknown,
                message: String::from_utf8_lossy(&self.body).trim().to_string(),
                field: None,
                leader: None,
            },
        };
        Error::Api(Box::new(ApiError {
            request: self.request,
            endpoint: self.endpoint,
            status: self.status.as_u16(),
            code: detail.code,
            message: detail.message,
            field: detail.field,
            leader: detail.leader,
            current_revision,
        }))
    }

    /// The body as JSON of type `T`.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|error| self.decode_error(error.to_string()))
    }

    /// A numeric header (`X-Kv-Revision`, `X-Kv-Index`).
    pub(crate) fn number_header(&self, name: &str) -> Result<Revision> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok())
            .ok_or_else(|| self.decode_error(format!("no numeric {name} header")))
    }

    /// The revision in the `ETag` header.
    pub(crate) fn etag(&self) -> Result<Revision> {
        etag_revision(&self.headers).ok_or_else(|| self.decode_error("no ETag header".into()))
    }

    pub(crate) fn decode_error(&self, message: String) -> Error {
        Error::Decode {
            request: self.request.clone(),
            endpoint: self.endpoint.clone(),
            message,
        }
    }
}

/// The revision in an `ETag: "<rev>"` header.
fn etag_revision(headers: &HeaderMap) -> Option<Revision> {
    headers
        .get(ETAG)?
        .to_str()
        .ok()?
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_per_segment() {
        let request = Request::new(Method::GET, ["v1", "kv", "a b", "c?d"]).query("prefix", "x&y");
        let url = request.url(&Url::parse("http://127.0.0.1:7070/base/").unwrap());
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/base/v1/kv/a%20b/c%3Fd?prefix=x%26y"
        );
        assert_eq!(request.describe(), "GET /v1/kv/a%20b/c%3Fd?prefix=x%26y");
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
            endpoint: "http://127.0.0.1:7071/".to_string(),
            request: "PUT /v1/kv/a".to_string(),
        }
    }

    #[test]
    fn error_answers_keep_the_servers_code_field_and_leader() {
        let cases = [
            (
                503,
                r#"{"error":{"code":"not_leader","message":"ask 2","leader":{"id":2,"addr":"http://127.0.0.1:7072"}}}"#,
                ErrorCode::NotLeader,
                None,
                Some("http://127.0.0.1:7072"),
            ),
            (
                400,
                r#"{"error":{"code":"invalid_key","message":"empty segment","field":"key"}}"#,
                ErrorCode::InvalidKey,
                Some("key"),
                None,
            ),
            (
                409,
                r#"{"error":{"code":"a_code_of_a_newer_server","message":"?"}}"#,
                ErrorCode::Unknown,
                None,
                None,
            ),
            (
                502,
                "<html>bad gateway</html>",
                ErrorCode::Unknown,
                None,
                None,
            ),
        ];
        for (status, body, code, field, leader) in cases {
            let Error::Api(error) = answer(status, body).into_error() else {
                panic!("{body} is not an API error");
            };
            assert_eq!(error.status, status, "{body}");
            assert_eq!(error.code, code, "{body}");
            assert_eq!(error.field.as_deref(), field, "{body}");
            assert_eq!(
                error.leader.map(|leader| leader.addr).as_deref(),
                leader,
                "{body}"
            );
        }
    }

    #[test]
    fn a_proxys_page_is_not_the_apis_error_but_keeps_its_text() {
        let page = answer(502, "<html>bad gateway</html>");
        assert!(page.error_body().is_none());
        let Error::Api(error) = page.into_error() else {
            panic!("not an API error");
        };
        assert_eq!(error.message, "<html>bad gateway</html>");
    }
}
