//! The request loop every call goes through: endpoint choice, failover,
//! backoff, the deadline, and turning error answers into [`Error::Api`].
//!
//! One call makes at most `max_attempts` attempts within `deadline`. An
//! attempt that gets no answer (refused, reset, timed out), a 503, or a
//! 502 or 504 that is not the API's own error (a proxy's) moves on to the
//! next endpoint — straight to the leader when a 503 named it — and once
//! every endpoint failed in a round, the loop pauses (50 ms doubling to
//! 2 s by default, jittered, at least the server's `Retry-After`). A 507
//! (a node out of space) moves on to the next endpoint at once and leaves
//! that one out for the rest of the call, until every endpoint has refused
//! so: then the 507 is the answer. A 400 `tls_required` (an `http://`
//! endpoint for a port that speaks HTTPS) does the same, and is named if
//! the call then gives up for want of an answer. Any other answer ends the
//! loop, success or not.
//!
//! A write's `Idempotency-Key` is chosen once per call, before the first
//! attempt, so the server applies the write once however many attempts
//! reach it.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use schemas::api::header::IDEMPOTENCY_KEY;
use schemas::api::ErrorCode;
use tracing::{debug, warn};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::request::{Answer, Request};

/// The longest a probe for the leader waits for one node's answer.
const LEADER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest the look for the leader before a write takes, all probes
/// together (and at most half the call's deadline).
const LEADER_LOOK_TIMEOUT: Duration = Duration::from_secs(4);

/// The least time an attempt at one of several endpoints is given.
const MIN_ATTEMPT_SHARE: Duration = Duration::from_secs(2);

/// What one attempt came to.
enum Attempt<T> {
    /// A final outcome: the loop ends.
    Done(T),
    /// Worth trying again; a 503 may name the leader's address and ask
    /// for a pause.
    Retry {
        error: Error,
        leader_hint: Option<String>,
        retry_after: Option<Duration>,
    },
}

/// A final answer as the request loop hands it to a call: its head with
/// the body unread, or read whole already (an error the loop looked into).
enum Received {
    Head(reqwest::Response),
    Whole(Answer),
}

impl Client {
    /// Sends `request` until a final answer comes, and reads it whole.
    pub(crate) async fn call(&self, request: &Request) -> Result<Answer> {
        self.run(request, |received, endpoint, description| async move {
            let response = match received {
                Received::Whole(answer) => return Attempt::Done(Ok(answer)),
                Received::Head(response) => response,
            };
            let status = response.status();
            let headers = response.headers().clone();
            match response.bytes().await {
                Ok(body) => Attempt::Done(Ok(Answer {
                    status,
                    headers,
                    body,
                    endpoint,
                    request: description,
                })),
                // The answer was cut off: as good as no answer.
                Err(source) => Attempt::Retry {
                    error: Error::Transport {
                        request: description,
                        endpoint,
                        source,
                    },
                    leader_hint: None,
                    retry_after: None,
                },
            }
        })
        .await?
    }

    /// Sends `request` until a final answer's head comes, and hands over
    /// the response with its body unread (for streams). An error answer
    /// is returned as [`Error::Api`].
    pub(crate) async fn call_streaming(
        &self,
        request: &Request,
    ) -> Result<(reqwest::Response, String)> {
        self.run(request, |received, endpoint, description| async move {
            let response = match received {
                Received::Whole(answer) => return Attempt::Done(Err(answer.into_error())),
                Received::Head(response) => response,
            };
            if response.status().is_success() {
                return Attempt::Done(Ok((response, endpoint)));
            }
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            let answer = Answer {
                status,
                headers,
                body,
                endpoint,
                request: description,
            };
            Attempt::Done(Err(answer.into_error()))
        })
        .await?
    }

    /// The loop itself; `finish` turns a final answer's head into the
    /// outcome (and may still ask for a retry if reading the body fails).
    async fn run<T, F, Fut>(&self, request: &Request, finish: F) -> Result<T>
    where
        F: Fn(Received, String, String) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let inner = &self.inner;
        let options = &inner.options;
        let description = request.describe();
        let started = Instant::now();
        let count = inner.endpoints.len();
        let (attempt_timeout, call_deadline, extra_time) = match request.limits {
            Some(limits) => (limits.attempt_timeout, limits.deadline, Duration::ZERO),
            None if request.extra_time.is_zero() && count > 1 => (
                // A node that takes the connection and never answers (a
                // stopped process) must not take the whole call: each
                // attempt gets a share of it, so the others are tried.
                // A write tried again elsewhere keeps its idempotency key.
                options
                    .request_timeout
                    .min((options.deadline / count as u32).max(MIN_ATTEMPT_SHARE)),
                options.deadline,
                Duration::ZERO,
            ),
            None => (
                options.request_timeout + request.extra_time,
                options.deadline,
                request.extra_time,
            ),
        };
        // The extra time (a node making a snapshot, a watch's wait) is for
        // an answer being made: an attempt may take it, and the call takes
        // it once an attempt has reached a node. Against nodes that cannot
        // be reached, or that refuse a backup with a 503, the call gives up
        // at its own deadline.
        let extended = started + call_deadline + extra_time;
        let mut deadline = started + call_deadline;
        if request.idempotency_key.is_some() && !inner.leader_checked.load(Ordering::Relaxed) {
            // A look for the leader only spares a hop: it takes at most
            // half the call's deadline, the rest is for the write.
            let look = (call_deadline / 2).min(LEADER_LOOK_TIMEOUT);
            if tokio::time::timeout(look, self.locate_leader())
                .await
                .is_err()
            {
                debug!(after = ?look, "no leader located in time; writing to the preferred node");
            }
        }
        let mut index = inner.preferred.load(Ordering::Relaxed) % count;
        let mut failed_in_round = 0;
        // The longest `Retry-After` of the round's answers.
        let mut round_retry_after = Duration::ZERO;
        let mut backoff = options.backoff_initial;
        let mut attempts = 0;
        // Endpoints passed over for the rest of this call: they refused for
        // want of space, or were given as http:// for a port that speaks
        // HTTPS. Such a refusal is the answer only from the last endpoint
        // not passed over.
        let mut passed_over = vec![false; count];
        // The last error a node answered with, kept while later attempts
        // get no answer: it says why, where a timeout does not.
        let mut last_answer: Option<Error> = None;
        loop {
            attempts += 1;
            let endpoint = &inner.endpoints[index];
            let remaining = extended.saturating_duration_since(Instant::now());
            let timeout = attempt_timeout.min(remaining);
            let silent = request.probe_first && count > 1 && !self.answers(endpoint).await;
            let sent = if silent {
                Err(Error::Timeout {
                    request: format!("GET /healthz before {description}"),
                    endpoint: endpoint.to_string(),
                    after: LEADER_PROBE_TIMEOUT,
                })
            } else {
                self.send_once(request, endpoint, timeout).await
            };
            let unreached = silent
                || matches!(&sent, Err(Error::Transport { source, .. }) if source.is_connect());
            // A backup's 503 (no quorum, say) says the node is making no
            // answer: it does not earn the call the extra time.
            let refused = request.refusal_ends_extra_time
                && matches!(&sent, Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE);
            if !unreached && !refused {
                deadline = extended;
            }
            let outcome = match sent {
                // A node whose own disk is full refuses what another node
                // may take (nothing was applied); under the cluster's
                // NOSPACE alarm every node refuses, and the last refusal
                // is the answer.
                Ok(response)
                    if response.status() == StatusCode::INSUFFICIENT_STORAGE
                        && open_count(&passed_over) > 1 =>
                {
                    passed_over[index] = true;
                    debug!(endpoint = %endpoint, "no space on this node; trying the next");
                    index = next_open(&passed_over, index);
                    continue;
                }
                // An endpoint given as http:// for a port that speaks
                // HTTPS is a mistake in that one URL: the others may be
                // right. The last one's refusal is the answer.
                Ok(response)
                    if response.status() == StatusCode::BAD_REQUEST
                        && open_count(&passed_over) > 1 =>
                {
                    let answer = Answer {
                        status: response.status(),
                        headers: response.headers().clone(),
                        body: response.bytes().await.unwrap_or_default(),
                        endpoint: endpoint.to_string(),
                        request: description.clone(),
                    };
                    if answer.has_code(ErrorCode::TlsRequired) {
                        passed_over[index] = true;
                        debug!(endpoint = %endpoint, "this endpoint speaks HTTPS, not http://; trying the next");
                        index = next_open(&passed_over, index);
                        // Named if the call gives up for want of an answer.
                        last_answer = Some(answer.into_error());
                        continue;
                    }
                    finish(
                        Received::Whole(answer),
                        endpoint.to_string(),
                        description.clone(),
                    )
                    .await
                }
                Ok(response) if is_unavailable(response.status()) => {
                    let retry_after = retry_after(response.headers());
                    let status = response.status();
                    let headers = response.headers().clone();
                    let body = response.bytes().await.unwrap_or_default();
                    let answer = Answer {
                        status,
                        headers,
                        body,
                        endpoint: endpoint.to_string(),
                        request: description.clone(),
                    };
                    let error_body = answer.error_body();
                    // A node removed from the cluster stays removed: with
                    // no other endpoint to try, its 503 is the answer.
                    let removed = count == 1 && answer.has_code(ErrorCode::NotAMember);
                    if removed
                        || (status != StatusCode::SERVICE_UNAVAILABLE && error_body.is_some())
                    {
                        // The server's own 502 or 504 (a membership change
                        // timed out, say) is its answer; a proxy's is not.
                        let received = Received::Whole(answer);
                        finish(received, endpoint.to_string(), description.clone()).await
                    } else {
                        let leader_hint = error_body
                            .and_then(|body| body.error.leader)
                            .map(|leader| leader.addr);
                        let error = answer.into_error();
                        Attempt::Retry {
                            error,
                            leader_hint,
                            retry_after,
                        }
                    }
                }
                Ok(response) => {
                    let received = Received::Head(response);
                    finish(received, endpoint.to_string(), description.clone()).await
                }
                // A failed TLS handshake is a matter of certificates and
                // CAs, which no retry changes: the call ends with it. So
                // does a request that cannot be built (a URI too long).
                Err(error @ Error::Tls { .. }) => return Err(error),
                Err(Error::Transport { source, .. }) if source.is_builder() => {
                    return Err(Error::Invalid {
                        what: "request",
                        message: format!("{description} cannot be sent: {source}"),
                    })
                }
                Err(error) => Attempt::Retry {
                    error,
                    leader_hint: None,
                    retry_after: None,
                },
            };
            let (error, leader_hint, retry_after) = match outcome {
                Attempt::Done(result) => {
                    if inner.preferred.swap(index, Ordering::Relaxed) != index {
                        debug!(endpoint = %endpoint, "now preferring this endpoint");
                    }
                    return Ok(result);
                }
                Attempt::Retry {
                    error,
                    leader_hint,
                    retry_after,
                } => (error, leader_hint, retry_after),
            };
            warn!(%error, attempt = attempts, "attempt failed");
            // Another node may lead now: look again before the next write.
            inner.leader_checked.store(false, Ordering::Relaxed);
            let answered = error.status().is_some();
            let give_up = |error: Error, last_answer: &mut Option<Error>| Error::Unavailable {
                request: description.clone(),
                attempts,
                elapsed: started.elapsed(),
                last: Box::new(error),
                last_answer: last_answer.take().filter(|_| !answered).map(Box::new),
            };
            let hinted = leader_hint.and_then(|address| self.endpoint_index(&address));
            index = match hinted {
                Some(leader) if leader != index && !passed_over[leader] => leader,
                _ => next_open(&passed_over, index),
            };
            // The next call starts past the endpoint that failed, even if
            // this one gives up: a watch polling a stopped node would try
            // it alone, call after call.
            inner.preferred.store(index, Ordering::Relaxed);
            if attempts >= options.max_attempts || Instant::now() >= deadline {
                return Err(give_up(error, &mut last_answer));
            }
            failed_in_round += 1;
            round_retry_after = round_retry_after.max(retry_after.unwrap_or_default());
            if failed_in_round >= open_count(&passed_over) {
                failed_in_round = 0;
                // The server's Retry-After (any of the round's) is waited
                // out even past `backoff_max`; the deadline still holds.
                let pause = jittered(backoff)
                    .min(options.backoff_max)
                    .max(round_retry_after);
                round_retry_after = Duration::ZERO;
                if Instant::now() + pause >= deadline {
                    return Err(give_up(error, &mut last_answer));
                }
                debug!(?pause, "every endpoint failed once; pausing");
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(options.backoff_max);
            }
            if answered {
                last_answer = Some(error);
            }
        }
    }

    /// One attempt at one endpoint, up to the answer's head. A streaming
    /// request's timeout covers only the head: its body is read with a
    /// timeout per chunk by the stream that reads it.
    async fn send_once(
        &self,
        request: &Request,
        endpoint: &Url,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), request.url(endpoint));
        if !request.streaming {
            builder = builder.timeout(timeout);
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(key) = request.idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY, key.to_string());
        }
        if let Some(body) = &request.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let transport = |source: reqwest::Error| match crate::tls::describe_failure(&source) {
            Some(reason) => Error::Tls {
                request: request.describe(),
                endpoint: endpoint.to_string(),
                reason,
                source,
            },
            None => Error::Transport {
                request: request.describe(),
                endpoint: endpoint.to_string(),
                source,
            },
        };
        if request.streaming {
            match tokio::time::timeout(timeout, builder.send()).await {
                Ok(sent) => sent.map_err(transport),
                Err(_) => Err(Error::Timeout {
                    request: request.describe(),
                    endpoint: endpoint.to_string(),
                    after: timeout,
                }),
            }
        } else {
            builder.send().await.map_err(transport)
        }
    }

    /// Whether the node at `endpoint` answers `/healthz` at all (whatever
    /// it says) within [`LEADER_PROBE_TIMEOUT`].
    async fn answers(&self, endpoint: &Url) -> bool {
        let probe = Request::new(Method::GET, ["healthz"]);
        let timeout = self.inner.options.request_timeout.min(LEADER_PROBE_TIMEOUT);
        self.send_once(&probe, endpoint, timeout).await.is_ok()
    }

    /// Asks the nodes, in order from the preferred one, who leads, and
    /// prefers the leader's endpoint when it is one of ours. Writes then
    /// skip a forwarding hop. Failures are only logged: the request loop
    /// finds a working node anyway.
    async fn locate_leader(&self) {
        if self.locate_ready_leader().await {
            return;
        }
        let inner = &self.inner;
        let count = inner.endpoints.len();
        let start = inner.preferred.load(Ordering::Relaxed) % count;
        let probe = Request::new(Method::GET, ["v1", "cluster"]);
        for offset in 0..count {
            let index = (start + offset) % count;
            let endpoint = &inner.endpoints[index];
            let timeout = inner.options.request_timeout.min(LEADER_PROBE_TIMEOUT);
            let answer = match self.send_once(&probe, endpoint, timeout).await {
                Ok(response) if response.status().is_success() => response
                    .json::<crate::ClusterStatus>()
                    .await
                    .map_err(|error| error.to_string()),
                Ok(response) => {
                    debug!(endpoint = %endpoint, status = %response.status(), "no cluster status");
                    continue;
                }
                Err(error) => Err(error.to_string()),
            };
            let status = match answer {
                Ok(status) => status,
                Err(error) => {
                    debug!(endpoint = %endpoint, %error, "no cluster status");
                    continue;
                }
            };
            let leader_index = status
                .leader_member()
                .and_then(|member| self.endpoint_index(&member.addr));
            let chosen = leader_index.unwrap_or(index);
            inner.preferred.store(chosen, Ordering::Relaxed);
            inner.leader_checked.store(true, Ordering::Relaxed);
            debug!(endpoint = %inner.endpoints[chosen], leader = ?status.leader, "leader located");
            return;
        }
    }

    /// Asks the endpoints' `/readyz` in turn, from the preferred one, and
    /// prefers the leader the first ready node names (or that node itself,
    /// if the leader is none of our endpoints). A node that is not ready
    /// (no leader, behind it, a full disk, a raised alarm) is passed over. `false` if
    /// none is ready: then [`Client::locate_leader`] asks for the cluster's
    /// status instead.
    async fn locate_ready_leader(&self) -> bool {
        let inner = &self.inner;
        let count = inner.endpoints.len();
        let start = inner.preferred.load(Ordering::Relaxed) % count;
        let probe = Request::new(Method::GET, ["readyz"]);
        let timeout = inner.options.request_timeout.min(LEADER_PROBE_TIMEOUT);
        for offset in 0..count {
            let index = (start + offset) % count;
            let endpoint = &inner.endpoints[index];
            let health = match self.send_once(&probe, endpoint, timeout).await {
                Ok(response) if response.status().is_success() => {
                    response.json::<schemas::api::Health>().await.ok()
                }
                Ok(response) => {
                    debug!(endpoint = %endpoint, status = %response.status(), "not ready");
                    None
                }
                Err(error) => {
                    debug!(endpoint = %endpoint, %error, "not ready");
                    None
                }
            };
            let Some(health) = health else {
                continue;
            };
            let chosen = health
                .leader_addr
                .and_then(|addr| self.endpoint_index(&addr))
                .unwrap_or(index);
            inner.preferred.store(chosen, Ordering::Relaxed);
            inner.leader_checked.store(true, Ordering::Relaxed);
            debug!(endpoint = %inner.endpoints[chosen], leader = ?health.leader, "leader located");
            return true;
        }
        false
    }

    /// Which of our endpoints is at `address` (same scheme, host and port).
    pub(crate) fn endpoint_index(&self, address: &str) -> Option<usize> {
        let wanted = Url::parse(address).ok()?;
        self.inner.endpoints.iter().position(|endpoint| {
            endpoint.scheme() == wanted.scheme()
                && endpoint.host_str() == wanted.host_str()
                && endpoint.port_or_known_default() == wanted.port_or_known_default()
        })
    }
}

/// 502, 503, 504: this node cannot serve now; another might.
fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Endpoints not passed over.
fn open_count(passed_over: &[bool]) -> usize {
    passed_over.iter().filter(|passed| !**passed).count()
}

/// The next endpoint after `index`, round the list, that is not passed
/// over; `index` itself if it is the only one. One always is: an endpoint
/// is passed over only while another is not.
fn next_open(passed_over: &[bool], index: usize) -> usize {
    let count = passed_over.len();
    (1..=count)
        .map(|step| (index + step) % count)
        .find(|next| !passed_over[*next])
        .unwrap_or(index)
}

/// `Retry-After` in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// `pause` scaled by a random factor in [0.5, 1.0], so clients that failed
/// together do not retry together.
fn jittered(pause: Duration) -> Duration {
    let factor = rand::rng().random_range(0.5..=1.0);
    pause.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_endpoint_skips_those_passed_over() {
        assert_eq!(next_open(&[false, false, false], 0), 1);
        assert_eq!(next_open(&[false, false, false], 2), 0);
        assert_eq!(next_open(&[false, true, false], 0), 2);
        assert_eq!(next_open(&[true, false, true], 1), 1, "the only one left");
        assert_eq!(open_count(&[true, false, true]), 1);
    }

    #[test]
    fn jitter_stays_within_half_and_whole() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_millis(100));
            assert!(pause >= Duration::from_millis(50) && pause <= Duration::from_millis(100));
        }
    }
}
