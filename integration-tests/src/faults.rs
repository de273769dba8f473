//! Faulty nodes on loopback, for client failover tests: a port nobody
//! listens on, a node that answers every request with one fixed error, and
//! a proxy that lets a write reach the server but loses its answer.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a fault helper waits on one socket before it gives up on it.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(30);

/// The URL of a loopback port nothing listens on: connections are refused.
///
/// The port stays bound, never listening, for the rest of the process: a
/// port let go at once could be taken by another test's server before the
/// caller connects, and the "refused" call would reach that server.
pub fn closed_port_url() -> String {
    held_port_url(false)
}

/// The URL of a loopback port that takes connections and never answers:
/// a socket listening that nothing accepts from, as a node whose process
/// is stopped behaves. Held for the rest of the test process.
pub fn silent_port_url() -> String {
    held_port_url(true)
}

/// A loopback port bound (and listening, if `listen`) by a socket held for
/// the rest of the test process.
fn held_port_url(listen: bool) -> String {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket can be made");
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("a loopback port can be bound");
    if listen {
        socket.listen(128).expect("the socket listens");
    }
    let port = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("a bound socket has an address")
        .port();
    HELD_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(socket);
    format!("http://127.0.0.1:{port}")
}

/// The sockets that hold the ports of [`closed_port_url`].
static HELD_PORTS: std::sync::Mutex<Vec<socket2::Socket>> = std::sync::Mutex::new(Vec::new());

/// A node that answers every request with the same status and JSON body,
/// and counts the requests. Stops when dropped.
pub struct StubNode {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StubNode {
    /// A node answering `status` with the API's error body
    /// `{"error":{"code","message"}}` (and `Retry-After: 1` for a 503).
    pub async fn answering(status: u16, code: &str, message: &str) -> StubNode {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        StubNode::answering_error(status, &body).await
    }

    /// A node answering `status` with this error body (and `Retry-After: 1`
    /// for a 503).
    pub async fn answering_error(status: u16, body: &serde_json::Value) -> StubNode {
        let body = body.to_string();
        let retry_after = if status == 503 {
            "Retry-After: 1\r\n"
        } else {
            ""
        };
        let answer = format!(
            "HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry_after}Connection: close\r\n\r\n{body}",
            body.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port can be bound");
        let port = listener.local_addr().expect("bound").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answer.clone();
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    // One read takes the request head (and a small body).
                    let read = tokio::time::timeout(SOCKET_TIMEOUT, socket.read(&mut buffer)).await;
                    if matches!(read, Ok(Ok(n)) if n > 0) {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let _ = socket.write_all(answer.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                });
            }
        });
        StubNode {
            port,
            requests,
            task,
        }
    }

    /// The node's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests it answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for StubNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP proxy in front of a server that, for the first `count` requests
/// whose head starts with `method`, forwards the request, waits until the
/// server's answer starts, and then closes the client's connection without
/// passing the answer on: the write happened, the client cannot know.
/// Everything else passes through. Speaks through HTTP/1.1 only, where a
/// client sends a request only after the previous answer. Stops when dropped.
pub struct AnswerDroppingProxy {
    port: u16,
    dropped: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl AnswerDroppingProxy {
    /// A proxy to `target` that loses the answers of the first `count`
    /// requests of `method` (`"PUT"`, `"DELETE"`, …).
    pub async fn start(target: SocketAddr, method: &'static str, count: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port can be bound");
        let port = listener.local_addr().expect("bound").port();
        let remaining = Arc::new(AtomicUsize::new(count));
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&dropped);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let remaining = Arc::clone(&remaining);
                let counter = Arc::clone(&counter);
                tokio::spawn(relay(client, server, method, remaining, counter));
            }
        });
        AnswerDroppingProxy {
            port,
            dropped,
            task,
        }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many answers it lost so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for AnswerDroppingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection both ways; returns (closing both sockets) when
/// either side closes, on an error, after `SOCKET_TIMEOUT` of silence, or
/// when an armed request's answer starts.
async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    method: &'static str,
    remaining: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
) {
    let prefix = format!("{method} ");
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_server = vec![0u8; 64 * 1024];
    let mut armed = false;
    loop {
        let Some((is_client, n)) =
            read_either(&mut client, &mut server, &mut from_client, &mut from_server).await
        else {
            return;
        };
        if is_client {
            let chunk = &from_client[..n];
            if !armed
                && chunk.starts_with(prefix.as_bytes())
                && remaining
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok()
            {
                armed = true;
            }
            if server.write_all(chunk).await.is_err() {
                return;
            }
        } else if armed {
            // The server answered the write: lose the answer.
            dropped.fetch_add(1, Ordering::SeqCst);
            return;
        } else if client.write_all(&from_server[..n]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy that passes everything through until it is armed with
/// [`CuttingProxy::cut_after`]; then, once `bytes` more have gone from
/// clients to the server, it closes the connection carrying the byte that
/// crosses the mark (mid-request), once. [`CuttingProxy::slow_to`] makes
/// it a slow link. It counts every byte clients sent through it. Stops
/// when dropped.
pub struct CuttingProxy {
    port: u16,
    state: Arc<CutState>,
    task: JoinHandle<()>,
}

/// What the relays of a [`CuttingProxy`] share.
struct CutState {
    /// Bytes clients sent through the proxy.
    sent: std::sync::atomic::AtomicU64,
    /// The value of `sent` at which to cut; `u64::MAX`: none.
    cut_at: std::sync::atomic::AtomicU64,
    /// Connections cut.
    cuts: AtomicUsize,
    /// Client bytes passed per second at most; 0: as fast as they come.
    bytes_per_sec: std::sync::atomic::AtomicU64,
}

impl CuttingProxy {
    /// A proxy to `target`, listening on a loopback port of its own. Called
    /// within a tokio runtime.
    pub fn start(target: SocketAddr) -> Self {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("a loopback port can be bound");
        listener
            .set_nonblocking(true)
            .expect("a listener can be set non-blocking");
        let port = listener.local_addr().expect("bound").port();
        let listener = TcpListener::from_std(listener).expect("within a tokio runtime");
        let state = Arc::new(CutState {
            sent: Default::default(),
            cut_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            cuts: AtomicUsize::new(0),
            bytes_per_sec: Default::default(),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                tokio::spawn(relay_until_cut(client, server, Arc::clone(&shared)));
            }
        });
        CuttingProxy { port, state, task }
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Arms the proxy: the connection that carries the `bytes`-th client
    /// byte from now on is closed.
    pub fn cut_after(&self, bytes: u64) {
        let now = self.state.sent.load(Ordering::SeqCst);
        self.state.cut_at.store(now + bytes, Ordering::SeqCst);
    }

    /// Slows what clients send to `bytes_per_sec` (0: no limit), as a slow
    /// link would.
    pub fn slow_to(&self, bytes_per_sec: u64) {
        self.state
            .bytes_per_sec
            .store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Bytes clients sent through the proxy so far.
    pub fn bytes_sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// How many connections it cut.
    pub fn cuts(&self) -> usize {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection both ways until either side closes, an error,
/// `SOCKET_TIMEOUT` of silence, or the cut mark is crossed.
async fn relay_until_cut(mut client: TcpStream, mut server: TcpStream, state: Arc<CutState>) {
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_server = vec![0u8; 64 * 1024];
    loop {
        let Some((is_client, n)) =
            read_either(&mut client, &mut server, &mut from_client, &mut from_server).await
        else {
            return;
        };
        if !is_client {
            if client.write_all(&from_server[..n]).await.is_err() {
                return;
            }
            continue;
        }
        let before = state.sent.fetch_add(n as u64, Ordering::SeqCst);
        let cut_at = state.cut_at.load(Ordering::SeqCst);
        if before + n as u64 > cut_at
            && state
                .cut_at
                .compare_exchange(cut_at, u64::MAX, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // Pass the bytes up to the mark, then drop the connection.
            let upto = cut_at.saturating_sub(before) as usize;
            let _ = server.write_all(&from_client[..upto]).await;
            state.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if server.write_all(&from_client[..n]).await.is_err() {
            return;
        }
        let rate = state.bytes_per_sec.load(Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
}

/// The next bytes either side of a relayed connection sends: `(from the
/// client?, how many)`, or `None` once a side closes, fails, or stays silent
/// for `SOCKET_TIMEOUT`.
async fn read_either(
    client: &mut TcpStream,
    server: &mut TcpStream,
    from_client: &mut [u8],
    from_server: &mut [u8],
) -> Option<(bool, usize)> {
    let step = tokio::time::timeout(SOCKET_TIMEOUT, async {
        tokio::select! {
            read = client.read(from_client) => (true, read),
            read = server.read(from_server) => (false, read),
        }
    })
    .await;
    match step {
        Ok((is_client, Ok(n))) if n > 0 => Some((is_client, n)),
        _ => None,
    }
}
