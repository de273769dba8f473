//! JSON bodies for the answers hyper gives by itself.
//!
//! hyper answers a request head it cannot parse (400), a URI longer than
//! it reads (414) and headers over its limits (431) before any route sees
//! the request: the status line, `connection: close`, `content-length: 0`,
//! a date, no body, and the connection closed. [`ErrorBodies`] wraps a
//! connection and gives those answers the JSON error body (`{"error":
//! {"code", "message"}}`) every other refusal carries. It knows them by
//! their exact start, which no route's answer has: a route's error always
//! has a JSON body, so never `content-length: 0`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use schemas::api::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What follows the status line in hyper's own answers.
const HYPER_ANSWER_HEADERS: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// hyper's own answers by status line: the code and message each gets.
const HYPER_ANSWERS: &[(&[u8], ErrorCode, &str)] = &[
    (
        b"HTTP/1.1 400 Bad Request",
        ErrorCode::MalformedRequest,
        "the request is not HTTP this node can read: its request line or a header is malformed",
    ),
    (
        b"HTTP/1.1 414 URI Too Long",
        ErrorCode::UriTooLong,
        "the request's URI is longer than this node reads (64 KiB)",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large",
        ErrorCode::HeadersTooLarge,
        "the request's headers are more (over 100) or larger than this node reads",
    ),
];

/// A connection whose hyper-made error answers get a JSON body.
pub struct ErrorBodies<S> {
    /// The connection.
    inner: S,
    /// An answer rewritten with its body, and how much of it went out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<S> ErrorBodies<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> ErrorBodies<S> {
        ErrorBodies {
            inner,
            pending: None,
        }
    }
}

/// `written` with a JSON body, if it is one of hyper's own answers, whole.
fn with_body(written: &[u8]) -> Option<Vec<u8>> {
    let (status_line, code, message) = HYPER_ANSWERS
        .iter()
        .find(|(status_line, ..)| written.starts_with(status_line))?;
    let rest = written[status_line.len()..].strip_prefix(HYPER_ANSWER_HEADERS)?;
    if !rest.ends_with(b"\r\n\r\n") {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody::new(*code, *message))
        .expect("an error body always serializes");
    let mut answer = Vec::with_capacity(written.len() + body.len() + 64);
    answer.extend_from_slice(status_line);
    answer.extend_from_slice(b"\r\nconnection: close\r\ncontent-type: application/json\r\n");
    answer.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    answer.extend_from_slice(rest);
    answer.extend_from_slice(&body);
    Some(answer)
}

impl<S: AsyncWrite + Unpin> ErrorBodies<S> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, sent)) = &mut self.pending {
            if *sent == answer.len() {
                self.pending = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => *sent += written,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `written` as a rewritten answer if it is one of hyper's: its
    /// length, as hyper sees it written.
    fn poll_rewrite(
        &mut self,
        cx: &mut Context<'_>,
        written: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        let answer = with_body(written)?;
        self.pending = Some((answer, 0));
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // The rest goes out on the next write, flush or shutdown.
            _ => Poll::Ready(Ok(written.len())),
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ErrorBodies<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(rewritten) = this.poll_rewrite(cx, buf) {
            return rewritten;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        // hyper's own answer is a head alone, in one slice.
        let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if let Some(rewritten) = this.poll_rewrite(cx, only) {
                return rewritten;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const DATE: &[u8] = b"date: Mon, 07 Dec 2026 00:24:45 GMT\r\n\r\n";

    fn hyper_answer(status_line: &[u8]) -> Vec<u8> {
        [status_line, HYPER_ANSWER_HEADERS, DATE].concat()
    }

    /// What `written` reaches the far end of a narrow pipe as, written
    /// through [`ErrorBodies`] and shut down, as hyper does.
    async fn through(written: &[u8]) -> Vec<u8> {
        let (near, mut far) = tokio::io::duplex(16);
        let mut bodies = ErrorBodies::new(near);
        let written = written.to_vec();
        let writer = tokio::spawn(async move {
            bodies.write_all(&written).await.unwrap();
            bodies.shutdown().await.unwrap();
        });
        let mut read = Vec::new();
        far.read_to_end(&mut read).await.unwrap();
        writer.await.unwrap();
        read
    }

    #[tokio::test]
    async fn each_of_hypers_own_answers_gets_its_json_body() {
        for (status_line, code, _) in HYPER_ANSWERS {
            let read = through(&hyper_answer(status_line)).await;
            let text = String::from_utf8(read).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
            assert!(head.starts_with(std::str::from_utf8(status_line).unwrap()));
            assert!(head.contains("content-type: application/json"), "{head}");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            assert!(head.contains("connection: close"), "{head}");
            assert!(head.contains("date: "), "{head}");
            let body: ErrorBody = serde_json::from_str(body).unwrap();
            assert_eq!(body.error.code, *code);
        }
    }

    #[tokio::test]
    async fn every_other_write_goes_through_as_it_is() {
        let answers: [&[u8]; 4] = [
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            // A head cut short is not hyper's whole answer.
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n",
            b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x01\x00",
        ];
        for written in answers {
            assert_eq!(through(written).await, written);
        }
    }
}
