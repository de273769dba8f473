//! Serving the router: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on
//! one port, with graceful shutdown and bounded connections.
//!
//! A long-poll holds its request open, so the cost of one waiting watcher is
//! mostly the cost of one open request. Over HTTP/1.1 that is a whole
//! connection (tens of KB of buffers); over HTTP/2 many watchers share a
//! connection and each costs one stream. HTTP/2 streams per connection are
//! capped at `--max-http2-streams` (1,000 by default, above hyper's 200),
//! so many watchers share a connection while one client cannot open an
//! unbounded number of them; more watchers take more connections.
//!
//! Connections are capped at `--max-connections`: beyond it the accept loop
//! waits for one to close before it accepts the next, as Go's
//! `netutil.LimitListener` (which etcd uses) does. A client beyond the cap
//! waits in the kernel's backlog instead of costing the node a task and
//! buffers. A connection whose peer stops reading what it is sent is closed
//! after `--stream-idle-timeout-ms` ([`StallGuard`]). The answers hyper
//! gives by itself (a head it cannot parse, a URI or headers over its
//! limits) get the JSON error body every refusal carries ([`ErrorBodies`]).
//!
//! With TLS, each accepted connection does its handshake in its own task,
//! bounded by [`HANDSHAKE_TIMEOUT`], so a slow or failing client never holds
//! up the accept loop; the connection's slot is taken before the handshake,
//! so handshakes in progress count against `--max-connections` too. A
//! client that sends plain HTTP to a TLS port is answered 400
//! `tls_required` in plain HTTP, as Go's servers answer it, and does not
//! retry a connection it cannot read.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use schemas::api::{ErrorBody, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::util::MapRequest;
use tracing::{debug, info, warn};

use crate::api::long_polls::ConnectionLongPolls;
use crate::config::Config;
use crate::http_error_body::ErrorBodies;
use crate::write_stall::StallGuard;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for in-flight requests (long-polls included).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a client may take to send its first byte and, on a TLS port,
/// to complete the handshake: a connection that sends nothing holds a
/// `--max-connections` slot no longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an HTTP/2 connection with nothing to say is pinged, and how
/// long the ping may go unanswered before the connection is closed: a
/// client gone without closing (its machine down, the network cut) holds
/// no slot for long.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// A warning about one kind of failed connection is logged at most this
/// often; the ones held back are counted in the next. A client retrying a
/// wrong URL or a wrong certificate in a loop would otherwise fill the log.
const CONNECTION_WARN_EVERY: Duration = Duration::from_secs(10);

/// One kind of connection warning, let through at most once per
/// [`CONNECTION_WARN_EVERY`].
#[derive(Debug, Default)]
struct Throttled {
    /// When the last one was let through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttled {
    /// `Some(held back since the last one let through)` if a warning seen
    /// `now` is to be logged; `None` if it is held back (and counted).
    fn pass(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < CONNECTION_WARN_EVERY) {
            *held += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(held))
    }
}

/// Counts a connection refused on `listener` for `reason`, every one,
/// where its warning is throttled.
fn count_refused(listener: &'static str, reason: &'static str) {
    ::metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "listener" => listener, "reason" => reason)
        .increment(1);
}

/// The throttled warnings of one listener's failed connections.
#[derive(Debug, Default)]
struct ConnectionWarnings {
    /// Plain HTTP on a TLS port.
    plain_http: Throttled,
    /// A TLS handshake that failed.
    handshake_failed: Throttled,
    /// A TLS handshake not done in time.
    handshake_timed_out: Throttled,
}

/// What one listener bounds.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams one connection may carry.
    pub max_http2_streams: u32,
    /// A connection whose writes make no progress for this long is closed.
    pub write_stall: Duration,
    /// Long-polls one connection may have waiting at once.
    pub max_long_polls_per_connection: usize,
}

impl ListenerLimits {
    /// The limits `config` sets.
    pub fn of(config: &Config) -> ListenerLimits {
        ListenerLimits {
            max_connections: config.max_connections as usize,
            max_http2_streams: config.max_http2_streams,
            write_stall: Duration::from_millis(config.stream_idle_timeout_ms),
            max_long_polls_per_connection: config.max_long_polls_per_connection as usize,
        }
    }
}

/// Serves `router` on `listener` (the `name`d one: `client` or `peer`),
/// over TLS when `tls` is given, until `shutdown` resolves, then stops
/// accepting and waits (bounded) for in-flight requests to finish.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_http2_streams)
        .keep_alive_interval(HTTP2_KEEP_ALIVE)
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    // One permit per open connection, held by its task until it ends.
    let connection_slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Cancelled when the listener stops accepting: a connection that has
    // not sent its first byte or finished its handshake by then carries no
    // request, and is closed rather than hold the graceful shutdown.
    let closing = CancellationToken::new();
    let warnings = Arc::new(ConnectionWarnings::default());
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&connection_slots).acquire_owned() => {
                slot.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, most likely: back off, go on.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        // Each request of the connection carries the connection's own
        // long-poll slots.
        let long_polls = ConnectionLongPolls::new(limits.max_long_polls_per_connection);
        let service = TowerToHyperService::new(MapRequest::new(
            router.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(long_polls.clone());
                request
            },
        ));
        let Some(tls) = tls.clone() else {
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let write_stall = limits.write_stall;
            let closing = closing.clone();
            tokio::spawn(async move {
                // hyper's header timeout starts at the first byte; until
                // then, this deadline holds the slot.
                let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
                match first_byte(&stream, deadline, &closing).await {
                    FirstByte::Closed => {
                        debug!(listener = name, %peer, "a connection closed before it sent anything");
                        return;
                    }
                    FirstByte::Silent => {
                        debug!(listener = name, %peer, timeout = ?HANDSHAKE_TIMEOUT, "a connection sent nothing in time: closed");
                        return;
                    }
                    FirstByte::Stopping => {
                        debug!(listener = name, %peer, "a connection that sent nothing yet closed: the node is stopping");
                        return;
                    }
                    FirstByte::Http | FirstByte::Other => {}
                }
                let stream = StallGuard::new(stream, write_stall);
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(ErrorBodies::new(stream)), service)
                    .into_owned();
                if let Err(error) = watcher.watch(connection).await {
                    debug!(%peer, %error, "connection ended with an error");
                }
                drop(slot);
            });
            continue;
        };
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let write_stall = limits.write_stall;
        let warnings = Arc::clone(&warnings);
        let closing = closing.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            // One deadline for the first byte and the handshake.
            let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
            match first_byte(&stream, deadline, &closing).await {
                FirstByte::Http => {
                    count_refused(name, "plain_http");
                    if let Some(held_back) = warnings.plain_http.pass(Instant::now()) {
                        warn!(listener = name, %peer, held_back, "plain HTTP on a port that speaks HTTPS: refused");
                    }
                    refuse_plain_http(&mut stream).await;
                    close_after_alert(stream).await;
                    return;
                }
                // A TCP check (a load balancer's, say): nothing to warn of.
                FirstByte::Closed => {
                    debug!(listener = name, %peer, "a connection closed before it sent anything");
                    return;
                }
                FirstByte::Silent => {
                    count_refused(name, "handshake_timed_out");
                    if let Some(held_back) = warnings.handshake_timed_out.pass(Instant::now()) {
                        warn!(listener = name, %peer, timeout = ?HANDSHAKE_TIMEOUT, held_back, "TLS handshake timed out");
                    }
                    return;
                }
                FirstByte::Stopping => {
                    debug!(listener = name, %peer, "a connection that sent nothing yet closed: the node is stopping");
                    return;
                }
                FirstByte::Other => {}
            }
            let stream = StallGuard::new(stream, write_stall);
            let accept = tls.accept(stream).into_fallible();
            let accepted = tokio::select! {
                accepted = tokio::time::timeout_at(deadline, accept) => accepted,
                () = closing.cancelled() => {
                    debug!(listener = name, %peer, "a TLS handshake cut off: the node is stopping");
                    return;
                }
            };
            let stream = match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err((error, stream))) => {
                    count_refused(name, "handshake_failed");
                    if let Some(held_back) = warnings.handshake_failed.pass(Instant::now()) {
                        warn!(listener = name, %peer, %error, held_back, "TLS handshake failed");
                    }
                    close_after_alert(stream).await;
                    return;
                }
                Err(_) => {
                    count_refused(name, "handshake_timed_out");
                    if let Some(held_back) = warnings.handshake_timed_out.pass(Instant::now()) {
                        warn!(listener = name, %peer, timeout = ?HANDSHAKE_TIMEOUT, held_back, "TLS handshake timed out");
                    }
                    return;
                }
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(ErrorBodies::new(stream)), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                debug!(%peer, %error, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    closing.cancel();
    info!("no longer accepting; waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(grace = ?SHUTDOWN_GRACE, "in-flight requests outlived the grace period; closing them");
    }
}

/// What the first byte a client sent says.
enum FirstByte {
    /// It starts an HTTP/1 request (a method's capital letter), not a TLS
    /// handshake (a record of type 22): on a TLS port, a client given
    /// `http://` for it.
    Http,
    /// The client closed the connection without sending anything.
    Closed,
    /// Nothing came by the deadline.
    Silent,
    /// Nothing came before the listener stopped accepting.
    Stopping,
    /// Anything else (a TLS record, HTTP/2's preface begins with `P`, a
    /// capital too), or a failed peek: the connection's to judge.
    Other,
}

/// Peeks at the first byte a client sent, waiting for it until `deadline`
/// or until `closing` is cancelled.
async fn first_byte(
    stream: &tokio::net::TcpStream,
    deadline: tokio::time::Instant,
    closing: &CancellationToken,
) -> FirstByte {
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => peeked,
        () = closing.cancelled() => return FirstByte::Stopping,
    };
    match peeked {
        Ok(Ok(0)) => FirstByte::Closed,
        Ok(Ok(_)) if first[0].is_ascii_uppercase() => FirstByte::Http,
        Ok(_) => FirstByte::Other,
        Err(_) => FirstByte::Silent,
    }
}

/// Answers a plain HTTP request on a TLS port as Go's servers (etcd's
/// among them) do: 400, in plain HTTP, saying to use `https://`, with the
/// JSON error body every refusal carries. The client then stops, instead
/// of retrying a connection it cannot read.
async fn refuse_plain_http(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::to_vec(&ErrorBody::new(
        ErrorCode::TlsRequired,
        "this port speaks HTTPS (TLS) and the request came in plain HTTP: use an https:// URL \
         for it",
    ))
    .expect("an error body always serializes");
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let answer = [head.as_bytes(), &body].concat();
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(&answer)).await;
}

/// How long a refused TLS connection is read from before it is closed.
const ALERT_LINGER: Duration = Duration::from_secs(1);
/// How much a refused TLS connection is read before it is closed anyway.
const ALERT_LINGER_BYTES: usize = 64 * 1024;

/// Closes a connection whose handshake failed so that the alert sent to
/// the client reaches it.
///
/// In TLS 1.3 the server checks the client's certificate after the client
/// has finished its side of the handshake, so the client has often sent
/// its first request already. Closing a socket with unread data (or
/// receiving data after the close) makes the kernel answer with a reset,
/// and a reset can reach the client before it reads the alert: it then
/// sees only "broken pipe" or "connection reset", and retries as if the
/// server were down. So the write side is shut (the client reads the
/// alert, then end of stream) and what the client sends is read and
/// dropped, bounded in time and bytes, before the socket is closed.
async fn close_after_alert<S>(mut stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut buffer = [0u8; 4096];
        let mut read = 0;
        while read < ALERT_LINGER_BYTES {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(ALERT_LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_passes_once_per_interval_and_counts_the_ones_held_back() {
        let warning = Throttled::default();
        let start = Instant::now();
        assert_eq!(warning.pass(start), Some(0), "the first passes");
        for later in 1..=5 {
            assert_eq!(warning.pass(start + Duration::from_secs(later)), None);
        }
        let next = start + CONNECTION_WARN_EVERY;
        assert_eq!(
            warning.pass(next),
            Some(5),
            "the next names the five held back"
        );
        assert_eq!(warning.pass(next), None);
        assert_eq!(
            warning.pass(next + CONNECTION_WARN_EVERY),
            Some(1),
            "the count starts again"
        );
    }
}
