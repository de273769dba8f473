//! The layers every public request passes: [`Observe`] (its span, its
//! metrics, the revision header) and [`Limits`] (load shedding past
//! `--max-concurrent-requests`, the hard timeout, a body that stalls, a
//! body declared over the limit).
//!
//! Both are services of their own, with futures that hold the inner
//! future inline: no box per request, nothing copied twice. A waiting
//! long-poll keeps its whole stack of futures for as long as it waits, so
//! these bytes are paid once per watcher (see docs/performance.md, "A
//! waiting watcher's memory").

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};
use tracing::{debug, debug_span, instrument::Instrumented, Instrument};

use crate::api::error::ApiError;
use crate::api::request_metrics;
use crate::api::{AppState, InternalRequest, REVISION_HEADER};
use schemas::api::ErrorCode;

/// Layer of [`Observe`].
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    /// Observes the requests of `state`'s node.
    pub fn new(state: AppState) -> ObserveLayer {
        ObserveLayer { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            state: self.state.clone(),
            inner,
        }
    }
}

/// Runs each request in a span of its own, records its route's metrics,
/// and stamps the store's revision on an answer that carries none.
#[derive(Clone)]
pub struct Observe<S> {
    state: AppState,
    inner: S,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The route pattern, not the path, so keys do not become label
        // values (an Arc inside: the clone does not copy it).
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        let span = debug_span!("request", %method, path = %request.uri().path());
        ObserveFuture {
            inner: self.inner.call(request).instrument(span),
            state: self.state.clone(),
            route,
            method,
            started: Instant::now(),
        }
    }
}

pin_project! {
    /// The future of an [`Observe`]d request.
    pub struct ObserveFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        state: AppState,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Ok(mut response) = ready!(this.inner.as_mut().poll(cx));
        if !response.headers().contains_key(REVISION_HEADER) {
            // Never below the revision the answer names: a write relayed
            // to the leader may answer (a 412's ETag) from further along
            // than this node has applied.
            let named = response
                .headers()
                .get(axum::http::header::ETAG)
                .and_then(|etag| etag.to_str().ok())
                .and_then(|etag| etag.trim_matches('"').parse::<u64>().ok())
                .unwrap_or(0);
            let revision = HeaderValue::from(this.state.store.revision().max(named));
            response.headers_mut().insert(REVISION_HEADER, revision);
        }
        let elapsed = this.started.elapsed();
        let route = this
            .route
            .as_ref()
            .map_or("unmatched", |path| path.as_str());
        let status = response.status().as_u16();
        request_metrics::record(route, this.method, status, elapsed);
        this.inner
            .span()
            .in_scope(|| debug!(status, elapsed_us = elapsed.as_micros() as u64, "answered"));
        Poll::Ready(Ok(response))
    }
}

/// Layer of [`Limits`].
#[derive(Clone)]
pub struct LimitsLayer {
    slots: Arc<Semaphore>,
    timeout: Duration,
    stall: Duration,
    body: BodyBound,
}

/// The largest body a client's request may declare.
#[derive(Clone, Copy, Debug)]
pub struct BodyBound {
    /// Bytes of a whole body (`--max-value-bytes` and room for the JSON
    /// around it).
    pub max_body_bytes: usize,
    /// `--max-value-bytes`, which the refusal names.
    pub max_value_bytes: usize,
}

impl BodyBound {
    /// 413 for a client's request whose `Content-Length` is over the bound,
    /// before anything reads its body: a client that sent `Expect:
    /// 100-continue` is told without being asked for the body. The node's
    /// own requests ([`InternalRequest`]) may be larger; their handlers
    /// bound them.
    fn refuses(&self, request: &Request) -> Option<Response> {
        if request.extensions().get::<InternalRequest>().is_some() {
            return None;
        }
        if let Some(coding) = content_coding(request) {
            let refused = ApiError::bad_field(
                ErrorCode::UnsupportedEncoding,
                "Content-Encoding",
                format!(
                    "the body is sent with Content-Encoding {coding:?}; bodies are read as sent \
                     (only identity)"
                ),
            );
            return Some(closing_unread(request, refused.into_response()));
        }
        let declared: u64 = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        (declared > self.max_body_bytes as u64).then(|| {
            let response = ApiError::new(
                ErrorCode::ValueTooLarge,
                format!(
                    "the body is {declared} bytes, over the limit of {} bytes \
                     (--max-value-bytes {} and room for the JSON around it)",
                    self.max_body_bytes, self.max_value_bytes
                ),
            )
            .into_response();
            closing_unread(request, response)
        })
    }
}

/// The content coding of `request`'s body other than `identity`, if it
/// names one. A body read as sent with one (a gzip, say) would be stored
/// as other bytes than the client meant, or refused as not JSON.
fn content_coding(request: &Request) -> Option<String> {
    let mut codings = request
        .headers()
        .get_all(axum::http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| {
            String::from_utf8_lossy(value.as_bytes())
                .split(',')
                .map(|coding| coding.trim().to_string())
                .collect::<Vec<_>>()
        });
    codings.find(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
}

/// `response`, to a request whose body is left unread: over HTTP/1 the
/// connection ends with it, or the client, still sending the body, would
/// send its next request after it on the same connection.
fn closing_unread(request: &Request, mut response: Response) -> Response {
    if request.version() < axum::http::Version::HTTP_2 {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

impl LimitsLayer {
    /// At most `concurrent` requests served at once, none for longer than
    /// `timeout`, none whose body stops arriving for `stall`, and none
    /// whose body is declared over `body`.
    pub fn new(
        concurrent: usize,
        timeout: Duration,
        stall: Duration,
        body: BodyBound,
    ) -> LimitsLayer {
        LimitsLayer {
            slots: Arc::new(Semaphore::new(concurrent)),
            timeout,
            stall,
            body,
        }
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limits<S>;

    fn layer(&self, inner: S) -> Limits<S> {
        Limits {
            slots: Arc::clone(&self.slots),
            timeout: self.timeout,
            stall: self.stall,
            body: self.body,
            inner,
        }
    }
}

/// Refuses a request at once with 503 when `--max-concurrent-requests`
/// are being served (load shedding, rather than a queue), and answers 503
/// for one that outlives the hard timeout. A body that sends nothing for
/// `stall` ends in an error, which its handler answers with 400: a client
/// that stops part-way through its body holds its slot for the stall, not
/// for the hard timeout (which long-polls need).
#[derive(Clone)]
pub struct Limits<S> {
    slots: Arc<Semaphore>,
    timeout: Duration,
    stall: Duration,
    body: BodyBound,
    inner: S,
}

impl<S> Service<Request> for Limits<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = LimitsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if let Some(refused) = self.body.refuses(&request) {
            return LimitsFuture::Answered {
                response: Some(refused),
            };
        }
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                // A body already whole (a GET's) cannot stall, nor be left
                // unread.
                let (request, unread) = if http_body::Body::is_end_stream(request.body()) {
                    (request, None)
                } else {
                    let stall = self.stall;
                    let read = Arc::new(AtomicBool::new(false));
                    let http1 = request.version() < axum::http::Version::HTTP_2;
                    let body_read = Arc::clone(&read);
                    let request = request
                        .map(|body| axum::body::Body::new(StallBody::new(body, stall, body_read)));
                    (request, http1.then_some(read))
                };
                LimitsFuture::Serving {
                    inner: tokio::time::timeout(self.timeout, self.inner.call(request)),
                    _slot: slot,
                    unread,
                }
            }
            Err(_) => {
                let refused = ApiError::unavailable(
                    "the server is overloaded: every request slot is taken \
                     (--max-concurrent-requests)",
                )
                .into_response();
                let response = if http_body::Body::is_end_stream(request.body()) {
                    refused
                } else {
                    closing_unread(&request, refused)
                };
                LimitsFuture::Answered {
                    response: Some(response),
                }
            }
        }
    }
}

pin_project! {
    /// The future of a request under [`Limits`].
    #[project = LimitsProjection]
    pub enum LimitsFuture<F> {
        /// Served, holding its slot until it answers.
        Serving {
            #[pin]
            inner: tokio::time::Timeout<F>,
            _slot: OwnedSemaphorePermit,
            // Over HTTP/1, whether the request's body was read to its end:
            // an answer given before it was (a refusal by the route or the
            // token, say) ends the connection, which hyper will not read
            // on, and says so.
            unread: Option<Arc<AtomicBool>>,
        },
        /// Answered without the inner service.
        Answered { response: Option<Response> },
    }
}

impl<F> Future for LimitsFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LimitsProjection::Serving { inner, unread, .. } => {
                let mut response = match ready!(inner.poll(cx)) {
                    Ok(Ok(answered)) => answered,
                    Ok(Err(never)) => match never {},
                    Err(_elapsed) => {
                        ApiError::unavailable("the request took too long").into_response()
                    }
                };
                if unread
                    .as_ref()
                    .is_some_and(|read| !read.load(Ordering::Acquire))
                {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        HeaderValue::from_static("close"),
                    );
                }
                Poll::Ready(Ok(response))
            }
            LimitsProjection::Answered { response } => Poll::Ready(Ok(response
                .take()
                .expect("an answered request's future is polled until it is ready, once"))),
        }
    }
}

pin_project! {
    /// A request body that fails once no byte of it has arrived for
    /// `stall`. The timer is set only while the body is waiting for the
    /// client, so a body that is already there costs none. `read` is set
    /// once it was read to its end.
    pub struct StallBody<B> {
        #[pin]
        inner: B,
        stall: Duration,
        #[pin]
        waiting: Option<tokio::time::Sleep>,
        read: Arc<AtomicBool>,
    }
}

impl<B> StallBody<B> {
    /// `inner`, failing after `stall` without a byte, setting `read` at
    /// its end.
    pub fn new(inner: B, stall: Duration, read: Arc<AtomicBool>) -> StallBody<B> {
        StallBody {
            inner,
            stall,
            waiting: None,
            read,
        }
    }
}

/// Why a [`StallBody`] failed.
#[derive(Debug, thiserror::Error)]
#[error("no byte of the body arrived for {0:?} (--request-timeout-ms)")]
pub struct BodyStalled(Duration);

impl BodyStalled {
    /// The stall behind `error`, if a body's read failed on one.
    pub fn behind<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e BodyStalled> {
        std::iter::successors(Some(error), |error| error.source())
            .find_map(|error| error.downcast_ref::<BodyStalled>())
    }
}

impl<B> http_body::Body for StallBody<B>
where
    B: http_body::Body,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, axum::BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.as_mut().poll_frame(cx) {
            this.waiting.set(None);
            if frame.is_none() || this.inner.is_end_stream() {
                this.read.store(true, Ordering::Release);
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.waiting.as_mut().as_pin_mut().is_none() {
            this.waiting.set(Some(tokio::time::sleep(*this.stall)));
        }
        let waiting = this.waiting.as_pin_mut().expect("set just above");
        ready!(waiting.poll(cx));
        Poll::Ready(Some(Err(BodyStalled(*this.stall).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
