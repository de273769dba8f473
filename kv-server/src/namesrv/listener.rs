//! The remoting port: accepts connections, reads frames with a bounded
//! buffer, answers each request in the header form it came in.
//!
//! Connections are capped at `--max-connections`, as the HTTP ports are:
//! beyond it the accept loop waits for one to close. Each connection has a
//! reader (this task) and a writer task; requests are answered
//! concurrently, at most [`IN_FLIGHT_PER_CONNECTION`] at a time, each
//! answer carrying its request's opaque. While a connection's answers not
//! yet written pass [`UNWRITTEN_ANSWER_BYTES`], its next request waits: a
//! client that sends and never reads holds at most that and the answers in
//! flight, not an answer per request it sent. A frame that does not decode
//! (bad length, oversized, undecodable header) is logged and closes its
//! connection: after it, the stream's framing cannot be trusted. A
//! connection that neither sends nor waits for an answer for
//! `--namesrv-idle-timeout-s` (RocketMQ's serverChannelMaxIdleTimeSeconds,
//! 120) is closed, as is one whose peer takes no answer for that long, so
//! silent clients cannot hold every connection slot. So is one whose frame
//! is not whole that long after its first byte, and a frame past
//! [`READ_CHUNK_BYTES`] is read only once [`RECEIVING_BYTES`] has room for
//! it: frames sent slowly hold a bounded share of memory.
//!
//! A SYSTEM_BUSY answer (a node that may be stale, see
//! [`crate::namesrv::freshness`]) closes its connection once written.
//! RocketMQ's clients keep asking the name server whose connection is
//! open, whatever it answers, and pick the next one only when it closes.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use schemas::remoting::{
    decode_frame, response_code, FrameError, RemotingCommand, DEFAULT_MAX_FRAME_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use tracing::{debug, info, warn};

use crate::namesrv::dispatch::dispatch;
use crate::namesrv::NameServer;

/// Requests of one connection answered at once; the reader waits beyond.
/// (Apache's name server answers every connection's requests on 8 threads.)
pub const IN_FLIGHT_PER_CONNECTION: usize = 16;
/// Bytes of a connection's answers built and not yet written beyond which
/// its next request waits for the peer to read.
pub const UNWRITTEN_ANSWER_BYTES: usize = 4 << 20;
/// Bytes of request frames being answered at once, over every connection:
/// a large registration costs several times its size while it is parsed,
/// so without a bound many at once could take the node's memory. Readers
/// wait beyond it; a frame takes at least 1 KiB of it, at most all.
pub const IN_FLIGHT_BYTES: usize = 16 << 20;
/// Bytes of large request frames being received at once, over every
/// connection: a frame past [`READ_CHUNK_BYTES`] takes its declared size
/// from it before its body is read, and gives it back once whole (the
/// answer then takes [`IN_FLIGHT_BYTES`]). A client that declares 16 MiB
/// frames and sends them slowly holds this, not the node's memory.
pub const RECEIVING_BYTES: usize = 64 << 20;
/// The pause after a failed accept (no file descriptor left, say).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Serves the name server on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    ns: NameServer,
    max_connections: usize,
    idle: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let budgets = Budgets {
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT_BYTES >> 10)),
        receiving: Arc::new(Semaphore::new(RECEIVING_BYTES >> 10)),
    };
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: the next accept
                // would fail at once too. Back off, as the HTTP ports do,
                // rather than spin and fill the log.
                warn!(%error, "namesrv: accept failed");
                drop(slot);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let ns = ns.clone();
        let budgets = budgets.clone();
        tokio::spawn(async move {
            serve_connection(stream, ns, idle, budgets).await;
            debug!(%peer, "namesrv: connection closed");
            drop(slot);
        });
    }
    info!("namesrv: stopped accepting");
}

/// The node-wide budgets of request bytes, in KiB permits.
#[derive(Clone)]
struct Budgets {
    /// Frames whole and being answered ([`IN_FLIGHT_BYTES`]).
    in_flight: Arc<Semaphore>,
    /// Large frames being received ([`RECEIVING_BYTES`]).
    receiving: Arc<Semaphore>,
}

/// The KiB permits `bytes` take of a budget of `all_bytes`: at least one,
/// at most all.
fn kib_of(bytes: usize, all_bytes: usize) -> u32 {
    bytes.div_ceil(1024).clamp(1, all_bytes >> 10) as u32
}

/// The whole size of the frame `buffer` starts, once its length word is in
/// (`decode_frame` has checked it).
fn declared_frame_bytes(buffer: &[u8]) -> Option<usize> {
    let word = buffer.first_chunk::<4>()?;
    Some(i32::from_be_bytes(*word).unsigned_abs() as usize + 4)
}

/// Reads and answers the requests of one connection until it closes,
/// sends a bad frame, stays idle for `idle`, or takes longer than `idle`
/// to send one frame whole.
async fn serve_connection(stream: TcpStream, ns: NameServer, idle: Duration, budgets: Budgets) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_string(), |addr| addr.to_string());
    let (mut reader, mut writer) = stream.into_split();
    let (answers, mut to_write) = mpsc::channel::<Answer>(IN_FLIGHT_PER_CONNECTION);
    // Told by the writer when it ends the connection after an answer.
    let closing = Arc::new(Notify::new());
    let unwritten = Arc::new(Unwritten::default());
    let write_peer = peer.clone();
    let write_closing = Arc::clone(&closing);
    let write_unwritten = Arc::clone(&unwritten);
    let write_task = tokio::spawn(async move {
        // However the writer ends, a reader waiting for room hears of it.
        let _told = TellOnDrop(Arc::clone(&write_unwritten));
        while let Some(answer) = to_write.recv().await {
            match tokio::time::timeout(idle, writer.write_all(&answer.frame)).await {
                Ok(Ok(())) => write_unwritten.written(answer.frame.len()),
                Ok(Err(_)) => break,
                Err(_) => {
                    warn!(peer = %write_peer, ?idle, "namesrv: the peer took no answer; closing the connection");
                    break;
                }
            }
            if answer.close_after {
                debug!(peer = %write_peer, "namesrv: answered SYSTEM_BUSY; closing the connection so the client asks another name server");
                let _ = writer.shutdown().await;
                write_closing.notify_one();
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    // The large frame being received: its share of the receiving budget.
    let mut receiving: Option<tokio::sync::OwnedSemaphorePermit> = None;
    // When the frame in the buffer must be whole: `idle` after its first
    // byte, however slowly the rest arrives.
    let mut frame_deadline: Option<tokio::time::Instant> = None;
    'connection: loop {
        loop {
            match decode_frame(&buffer, DEFAULT_MAX_FRAME_BYTES) {
                Ok(Some((request, used))) => {
                    buffer.advance(used);
                    if receiving.take().is_some() && buffer.capacity() > 2 * READ_CHUNK_BYTES {
                        // The large frame is decoded: its room goes back,
                        // with what followed it.
                        buffer = BytesMut::from(&buffer[..]);
                    }
                    frame_deadline = None;
                    if !unwritten.room(idle, &write_task).await {
                        debug!(%peer, "namesrv: the peer reads no answers; closing the connection");
                        break 'connection;
                    }
                    let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                        break 'connection;
                    };
                    let kib = kib_of(used, IN_FLIGHT_BYTES);
                    let Ok(bytes) = Arc::clone(&budgets.in_flight).acquire_many_owned(kib).await
                    else {
                        break 'connection;
                    };
                    let ns = ns.clone();
                    let answers = answers.clone();
                    let unwritten = Arc::clone(&unwritten);
                    tokio::spawn(async move {
                        let frame = answer(&ns, request).await;
                        // The request is parsed and gone: its bytes go back
                        // before the answer waits for the peer to read it.
                        drop(bytes);
                        if let Some(frame) = frame {
                            unwritten.built(frame.frame.len());
                            let _ = answers.send(frame).await;
                        }
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(error) => {
                    // Escaped: a decoder's error may quote what the client sent.
                    let error = error.to_string();
                    warn!(%peer, error = %error.escape_debug(), "namesrv: bad frame; closing the connection");
                    break 'connection;
                }
            }
        }
        if write_task.is_finished() {
            // The answers can no longer be written.
            break;
        }
        if buffer.is_empty() {
            frame_deadline = None;
        } else {
            let deadline =
                *frame_deadline.get_or_insert_with(|| tokio::time::Instant::now() + idle);
            let frame_bytes = declared_frame_bytes(&buffer).unwrap_or(0);
            if frame_bytes > READ_CHUNK_BYTES && receiving.is_none() {
                let kib = kib_of(frame_bytes, RECEIVING_BYTES);
                let wait = Arc::clone(&budgets.receiving).acquire_many_owned(kib);
                match tokio::time::timeout_at(deadline, wait).await {
                    Ok(Ok(permit)) => {
                        receiving = Some(permit);
                        // Once, to the frame's size: growing by doubling
                        // would hold up to half as much again meanwhile.
                        buffer.reserve(frame_bytes - buffer.len());
                    }
                    Ok(Err(_)) => break,
                    Err(_) => {
                        warn!(%peer, frame_bytes, ?idle, "namesrv: no room to receive a large frame in time; closing the connection");
                        break;
                    }
                }
            }
        }
        // decode_frame refuses a length over the limit from its first
        // bytes, so the buffer never holds more than one frame's worth. A
        // large frame's buffer was sized to it: no read goes past its end,
        // so none makes it grow.
        let wanted = match (&receiving, declared_frame_bytes(&buffer)) {
            (Some(_), Some(frame_bytes)) => frame_bytes - buffer.len(),
            _ => READ_CHUNK_BYTES,
        };
        buffer.reserve(wanted.min(READ_CHUNK_BYTES));
        let until = frame_deadline.unwrap_or_else(|| tokio::time::Instant::now() + idle);
        let read = tokio::select! {
            read = tokio::time::timeout_at(until, reader.read_buf(&mut buffer)) => read,
            () = closing.notified() => break,
        };
        let read = match read {
            Ok(read) => read,
            Err(_) if frame_deadline.is_some() => {
                warn!(%peer, ?idle, bytes = buffer.len(), "namesrv: a frame took longer than the idle timeout to arrive; closing the connection");
                break;
            }
            // Idle only if no answer is being worked out either.
            Err(_) if in_flight.available_permits() == IN_FLIGHT_PER_CONNECTION => {
                debug!(%peer, ?idle, bytes = buffer.len(), "namesrv: idle connection closed");
                break;
            }
            Err(_) => continue,
        };
        match read {
            Ok(0) => {
                if !buffer.is_empty() {
                    warn!(%peer, bytes = buffer.len(), "namesrv: connection closed inside a frame");
                }
                break;
            }
            Ok(_) => {}
            Err(error) => {
                debug!(%peer, %error, "namesrv: read failed");
                break;
            }
        }
    }
    drop(answers);
    if buffer.is_empty() {
        // Let the answers in flight reach the peer.
        let _ = write_task.await;
    } else {
        write_task.abort();
    }
}

/// A connection's answers built and not yet written, in bytes.
#[derive(Default)]
struct Unwritten {
    bytes: AtomicUsize,
    /// Told when some were written, or the writer ended.
    written: Notify,
}

impl Unwritten {
    fn built(&self, bytes: usize) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn written(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.written.notify_waiters();
    }

    /// Waits until they are below [`UNWRITTEN_ANSWER_BYTES`]; false if the
    /// writer ended first or the peer read nothing for `idle`.
    async fn room(&self, idle: Duration, writer: &tokio::task::JoinHandle<()>) -> bool {
        loop {
            let written = self.written.notified();
            if self.bytes.load(Ordering::Relaxed) < UNWRITTEN_ANSWER_BYTES {
                return true;
            }
            if writer.is_finished() || tokio::time::timeout(idle, written).await.is_err() {
                return false;
            }
        }
    }
}

/// Wakes a reader waiting in [`Unwritten::room`] when the writer ends.
struct TellOnDrop(Arc<Unwritten>);

impl Drop for TellOnDrop {
    fn drop(&mut self) {
        self.0.written.notify_waiters();
    }
}

/// An answer frame on its way to the peer.
struct Answer {
    frame: Vec<u8>,
    /// Whether the connection ends once it is written.
    close_after: bool,
}

/// The answer frame of `request`; none for a oneway request or a stray
/// answer.
async fn answer(ns: &NameServer, request: RemotingCommand) -> Option<Answer> {
    if request.is_response() {
        debug!(
            opaque = request.opaque,
            "namesrv: ignored an answer sent to the name server"
        );
        return None;
    }
    let answer = dispatch(ns, &request).await;
    if request.is_oneway() {
        return None;
    }
    let close_after = answer.code == response_code::SYSTEM_BUSY;
    // A client reads frames of at most 16 MiB, as this listener does: a
    // larger answer would fail its decoder, not be read.
    let encoded = answer.try_encode().and_then(|frame| {
        if frame.len() > DEFAULT_MAX_FRAME_BYTES {
            return Err(FrameError::FrameTooLarge {
                frame_bytes: frame.len() as u64,
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            });
        }
        Ok(frame)
    });
    match encoded {
        Ok(frame) => Some(Answer { frame, close_after }),
        // A remark or body past the format's limits: the request still
        // gets an answer, one that says so.
        Err(error) => {
            warn!(
                code = request.code,
                opaque = request.opaque,
                %error,
                "namesrv: the answer does not fit a remoting frame"
            );
            let refusal = request.answer(
                response_code::SYSTEM_ERROR,
                Some(format!("the answer does not fit a remoting frame: {error}")),
            );
            Some(Answer {
                frame: refusal.encode(),
                close_after: false,
            })
        }
    }
}
