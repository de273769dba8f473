//! HTTP/1.1 spoken by hand over one TCP connection, for the limit tests:
//! a body far larger than memory streamed from a generator, and the
//! server's answer read while the body is still being sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes of body written per write.
const CHUNK_BYTES: usize = 256 * 1024;
/// How long the answer to an upload may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How the upload's length is told.
#[derive(Clone, Copy, Debug)]
pub enum Framing {
    /// `Content-Length` up front.
    Length,
    /// `Transfer-Encoding: chunked`: the server learns the size only by
    /// reading.
    Chunked,
}

/// The server's answer to an upload, and how much of the body had been
/// sent when it came.
#[derive(Debug)]
pub struct UploadAnswer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// Body bytes written to the socket when the answer had arrived.
    pub sent_when_answered: u64,
}

/// Sends `method path` with a body of `total` spaces, streamed in chunks
/// (never held in memory whole), and returns the answer as soon as it
/// arrives; the rest of the body is then abandoned.
pub async fn upload(
    addr: SocketAddr,
    method: &str,
    path: &str,
    total: u64,
    framing: Framing,
) -> UploadAnswer {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {addr}: {error}"));
    let (mut reader, mut writer) = stream.into_split();
    let length_header = match framing {
        Framing::Length => format!("Content-Length: {total}"),
        Framing::Chunked => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{length_header}\r\n\r\n"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; CHUNK_BYTES];
            while sent.load(Ordering::SeqCst) < total {
                let left = total - sent.load(Ordering::SeqCst);
                let piece = &chunk[..CHUNK_BYTES.min(left as usize)];
                if let Framing::Chunked = framing {
                    writer
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                }
                writer.write_all(piece).await?;
                if let Framing::Chunked = framing {
                    writer.write_all(b"\r\n").await?;
                }
                sent.fetch_add(piece.len() as u64, Ordering::SeqCst);
            }
            if let Framing::Chunked = framing {
                writer.write_all(b"0\r\n\r\n").await?;
            }
            // Dropping the writer would half-close the connection, which
            // the server takes for the client going away.
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>(())
        })
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, read_answer(&mut reader))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{method} {path}: no answer within {ANSWER_TIMEOUT:?} ({} bytes sent)",
                sent.load(Ordering::SeqCst)
            )
        });
    let sent_when_answered = sent.load(Ordering::SeqCst);
    sender.abort();
    let (status, body) = answer;
    UploadAnswer {
        status,
        body,
        sent_when_answered,
    }
}

/// How long [`exchange`] waits for an answer.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `method path` (the path as written: no client library normalizes
/// its dot segments) with `headers` and a JSON `body`, and gives the
/// answer's status and body.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {addr}: {error}"));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .unwrap_or_else(|error| panic!("{method} {path} could not be sent: {error}"));
    tokio::time::timeout(EXCHANGE_TIMEOUT, read_answer(&mut stream))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {EXCHANGE_TIMEOUT:?}"))
}

/// One HTTP/1.1 connection, kept open between requests.
pub struct RawConnection {
    stream: TcpStream,
}

impl RawConnection {
    /// Connects to `addr` (the kernel completes the handshake even while
    /// the server does not accept).
    pub async fn open(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {addr}: {error}"));
        RawConnection { stream }
    }

    /// Sends `GET path`, keeping the connection open.
    pub async fn send_get(&mut self, path: &str) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: kv\r\n\r\n");
        self.stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|error| panic!("GET {path} could not be sent: {error}"));
    }

    /// The status of the answer to the request sent, if it comes within
    /// `limit`.
    pub async fn status_within(&mut self, limit: Duration) -> Option<u16> {
        tokio::time::timeout(limit, read_answer(&mut self.stream))
            .await
            .ok()
            .map(|(status, _)| status)
    }
}

/// Sends `method path` declaring a body of `declared` bytes, sends only
/// `sent` of them and then stalls; returns the answer and how long it took.
pub async fn stalled_upload(
    addr: SocketAddr,
    method: &str,
    path: &str,
    declared: u64,
    sent: usize,
) -> (u16, String, Duration) {
    stalled_upload_with(addr, method, path, "", declared, sent).await
}

/// [`stalled_upload`] with `headers` (whole lines, each ending in `\r\n`)
/// added to the request's head.
pub async fn stalled_upload_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    declared: u64,
    sent: usize,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {addr}: {error}"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the head can be sent");
    stream
        .write_all(&vec![b' '; sent])
        .await
        .expect("the start of the body can be sent");
    let (mut reader, _writer) = stream.into_split();
    let (status, body) = tokio::time::timeout(ANSWER_TIMEOUT, read_answer(&mut reader))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {ANSWER_TIMEOUT:?}"));
    (status, body, started.elapsed())
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (or ended by EOF).
async fn read_answer(reader: &mut (impl AsyncRead + Unpin)) -> (u16, String) {
    let started = Instant::now();
    let mut buffer = Vec::new();
    let mut piece = [0u8; 8192];
    loop {
        if let Some(answer) = parse_answer(&buffer) {
            return answer;
        }
        let read = reader
            .read(&mut piece)
            .await
            .unwrap_or_else(|error| panic!("the answer could not be read: {error}"));
        if read == 0 {
            return parse_answer(&buffer)
                .or_else(|| parse_head(&buffer).map(|(status, body)| (status, body.to_string())))
                .unwrap_or_else(|| {
                    panic!(
                        "the connection closed after {:?} without an answer: {:?}",
                        started.elapsed(),
                        String::from_utf8_lossy(&buffer)
                    )
                });
        }
        buffer.extend_from_slice(&piece[..read]);
    }
}

/// The head and the body so far, once the head is whole.
fn split_head(buffer: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(buffer).ok()?.split_once("\r\n\r\n")
}

/// The status and the body so far, once the head is whole.
fn parse_head(buffer: &[u8]) -> Option<(u16, &str)> {
    let (head, body) = split_head(buffer)?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body))
}

/// The status and the whole body, once `Content-Length` bytes have come.
fn parse_answer(buffer: &[u8]) -> Option<(u16, String)> {
    let (head, _) = split_head(buffer)?;
    let (status, body) = parse_head(buffer)?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if name.eq_ignore_ascii_case("content-length") {
                value.trim().parse().ok()
            } else {
                None
            }
        })
        .unwrap_or(usize::MAX);
    (body.len() >= length).then(|| (status, body.to_string()))
}
