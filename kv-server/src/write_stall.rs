//! A connection whose peer stops reading is closed.
//!
//! [`StallGuard`] wraps a connection's socket and fails a write that has
//! made no progress for `--stream-idle-timeout-ms`: hyper then closes the
//! connection and drops what its answers held (a replay's buffered chunks,
//! say). Only writes are timed, so a long-poll that waits with nothing to
//! send is not affected, and any progress (a single byte) starts the clock
//! again, so a slow reader is served.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// A socket whose writes fail once they have been stuck for `limit`.
pub struct StallGuard<S> {
    /// The socket.
    inner: S,
    /// How long a write may stay pending.
    limit: Duration,
    /// Armed when a write first finds the socket full; cleared by progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallGuard<S> {
    /// Guards `inner`: a write pending for `limit` fails.
    pub fn new(inner: S, limit: Duration) -> StallGuard<S> {
        StallGuard {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes `result` on, and fails it once writes have been pending for
    /// the limit. The timer is polled with the same waker, so a stalled
    /// connection is woken when it expires.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            return result;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {} ms", limit.as_millis()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Bytes went out: the clock starts again at the next stall.
    fn progressed(&mut self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(written)) if *written > 0) {
            self.stalled = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(&result);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(&result);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::StallGuard;

    /// A pipe whose far end holds `capacity` bytes.
    fn pipe(capacity: usize) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        tokio::io::duplex(capacity)
    }

    /// The limit of these tests.
    const LIMIT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_limit() {
        let (near, _far) = pipe(16);
        let mut guarded = StallGuard::new(near, LIMIT);
        let started = tokio::time::Instant::now();
        let error = guarded
            .write_all(&[0; 64])
            .await
            .expect_err("the peer reads nothing");
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(
            waited >= LIMIT && waited < 10 * LIMIT,
            "failed after {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_reader_is_served_as_long_as_each_wait_is_under_the_limit() {
        let (near, mut far) = pipe(16);
        let mut guarded = StallGuard::new(near, LIMIT);
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            let mut piece = [0u8; 16];
            while received.len() < 64 {
                tokio::time::sleep(LIMIT / 4).await;
                let read = far.read(&mut piece).await.expect("the pipe reads");
                received.extend_from_slice(&piece[..read]);
            }
            received.len()
        });
        guarded
            .write_all(&[1; 64])
            .await
            .expect("each wait is shorter than the limit");
        assert_eq!(reader.await.expect("the reader ends"), 64);
    }
}
