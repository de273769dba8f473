//! Proposes the writes that arrive together as one raft entry.
//!
//! openraft 0.9 takes one client write per turn of its core, so one entry
//! per write caps the node's writes at the core's turns per second. Here
//! every write joins one queue, and one proposer task keeps at most
//! `--max-proposals-in-flight` entries in flight (by default
//! [`IN_FLIGHT_ALONE`] while this node is the only voter,
//! [`IN_FLIGHT_REPLICATED`] while others vote): whenever one is free it
//! takes everything queued (up to [`MAX_ENTRY_COMMANDS`] commands and
//! [`MAX_ENTRY_BYTES`]) and proposes it as one entry, a lone command as
//! itself and several as an `Op::Batch`. There is no linger: a write that
//! finds a slot free is proposed at once, exactly as without the queue;
//! writes batch only while earlier entries are still in flight.
//!
//! Each waiter gets its own command's result, or the entry's error (a
//! `ForwardToLeader`, say) as every other waiter of that entry does.
//!
//! Ownership: the queue is an unbounded channel whose senders are the
//! handlers' (through `AppState`); the proposer task alone receives, and
//! ends when every sender is gone. Its memory is bounded by the write
//! budget, which every queued command holds its size of until Raft is done
//! with its entry.

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::metrics::HotHistogram;
use crate::types::{Command, CommandResult, Node, NodeId, Op, Raft};
use crate::write_budget::WritePermit;

/// Commands in one entry at most: keeps the followers' append requests and
/// one apply short.
pub const MAX_ENTRY_COMMANDS: usize = 1024;
/// Bytes of commands (as counted by the write budget) in one entry at most;
/// a larger command goes alone.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;

/// Entries in flight while this node is the only voter: one is written to
/// the raft log while the next gathers the writes that arrive meanwhile.
pub const IN_FLIGHT_ALONE: usize = 2;
/// Entries in flight while other nodes vote. An entry then waits for a
/// follower's answer, far longer than for the log's flush, and openraft
/// sends each follower one request at a time: a second entry in flight
/// mostly splits the writes that would have gone together into two entries,
/// each with its own flushes and requests (docs/performance.md).
pub const IN_FLIGHT_REPLICATED: usize = 1;

/// What a proposed write comes back with.
pub type Written = Result<CommandResult, WriteFailed>;

/// Why a proposed write has no result.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteFailed {
    /// Raft refused or failed the entry (this node does not lead, say).
    /// (Boxed: openraft's error is large, and one is cloned per waiter.)
    #[error(transparent)]
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, Node>>>),
    /// A batch entry was answered with other than one result per command.
    #[error("a batch entry of {sent} commands was answered with {answer}")]
    Unanswered {
        /// Commands in the entry.
        sent: usize,
        /// What came back.
        answer: String,
    },
}

/// A write waiting in the queue.
struct Queued {
    /// The write.
    command: Command,
    /// Its size, as the write budget counted it.
    bytes: usize,
    /// Its room in the write budget, held until Raft is done with it.
    permit: WritePermit,
    /// Where its result goes; a waiter that gave up has dropped the other end.
    reply: oneshot::Sender<Written>,
}

/// The queue of writes to propose, shared by the handlers.
#[derive(Clone, Debug)]
pub struct Batcher {
    /// The proposer's queue; the proposer ends when every clone is gone.
    queue: mpsc::UnboundedSender<Queued>,
}

/// The proposer task is gone (the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the write proposer has stopped")]
pub struct ProposerStopped;

impl Batcher {
    /// Starts the proposer of `raft`, keeping at most `in_flight` entries
    /// (at least 1) proposed and not yet applied; if `None`, as many as
    /// the membership calls for ([`IN_FLIGHT_ALONE`],
    /// [`IN_FLIGHT_REPLICATED`]).
    pub fn start(raft: Raft, in_flight: Option<usize>) -> Batcher {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, queued, in_flight.map(|slots| slots.max(1))));
        Batcher { queue }
    }

    /// Queues `command` (of `bytes`, holding `permit`); the receiver gets
    /// its result once its entry is applied here, or the entry's error.
    pub fn submit(
        &self,
        command: Command,
        bytes: usize,
        permit: WritePermit,
    ) -> Result<oneshot::Receiver<Written>, ProposerStopped> {
        let (reply, written) = oneshot::channel();
        let queued = Queued {
            command,
            bytes,
            permit,
            reply,
        };
        self.queue.send(queued).map_err(|_| ProposerStopped)?;
        Ok(written)
    }
}

/// The proposer: whenever a slot is free, everything queued as one entry.
async fn run(raft: Raft, queued: mpsc::UnboundedReceiver<Queued>, in_flight: Option<usize>) {
    let bytes_of = |queued: &Queued| queued.bytes;
    // The membership as last applied; read on every turn, cheaply.
    let server = raft.server_metrics();
    let slots = move || {
        in_flight.unwrap_or_else(|| {
            let voters = server
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .count();
            if voters > 1 {
                IN_FLIGHT_REPLICATED
            } else {
                IN_FLIGHT_ALONE
            }
        })
    };
    run_batches(queued, slots, MAX_ENTRY_BYTES, bytes_of, move |entry| {
        let raft = raft.clone();
        async move { propose_entry(&raft, entry).await }
    })
    .await;
}

/// Takes batches from `queue` and runs `send` on each, at most `in_flight()`
/// at a time: whenever fewer run, everything queued becomes the next batch,
/// up to [`MAX_ENTRY_COMMANDS`] items and `max_bytes` (by `bytes_of`; a
/// larger item goes alone). The batches run within this task, not on tasks
/// of their own: a task per batch cost a spawn and its wake-ups. Ends when
/// every sender of `queue` is gone and the running batches are done.
pub(crate) async fn run_batches<T, Send, Sent>(
    mut queue: mpsc::UnboundedReceiver<T>,
    in_flight: impl Fn() -> usize,
    max_bytes: usize,
    bytes_of: fn(&T) -> usize,
    send: Send,
) where
    T: std::marker::Send + 'static,
    Send: Fn(Vec<T>) -> Sent,
    Sent: std::future::Future<Output = ()> + std::marker::Send + 'static,
{
    let mut running = FuturesUnordered::new();
    // An item that did not fit the last batch opens the next.
    let mut carried: Option<T> = None;
    loop {
        if running.len() >= in_flight() {
            running.next().await;
            continue;
        }
        let first = tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => continue,
            first = async {
                match carried.take() {
                    Some(first) => Some(first),
                    None => queue.recv().await,
                }
            } => first,
        };
        let Some(first) = first else {
            break;
        };
        let mut bytes = bytes_of(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_ENTRY_COMMANDS {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            if bytes + bytes_of(&next) > max_bytes {
                carried = Some(next);
                break;
            }
            bytes += bytes_of(&next);
            batch.push(next);
        }
        running.push(send(batch));
    }
    while running.next().await.is_some() {}
}

/// Proposes `entry`'s commands as one raft entry and answers each waiter.
async fn propose_entry(raft: &Raft, entry: Vec<Queued>) {
    static ENTRY_COMMANDS: HotHistogram = HotHistogram::new(crate::metrics::ENTRY_COMMANDS);
    ENTRY_COMMANDS.record(entry.len() as f64);
    let (commands, waiters): (Vec<_>, Vec<_>) = entry
        .into_iter()
        .map(|queued| (queued.command, (queued.reply, queued.permit)))
        .unzip();
    let command = match <[Command; 1]>::try_from(commands) {
        Ok([single]) => single,
        Err(commands) => Command {
            // Each command keeps its own date; this one dates nothing.
            timestamp_ms: commands.iter().map(|c| c.timestamp_ms).max().unwrap_or(0),
            idempotency_key: None,
            request_hash: None,
            op: Op::Batch(commands),
        },
    };
    let batched = matches!(command.op, Op::Batch(_));
    let written = raft.client_write(command).await;
    let results: Vec<Written> = match written {
        Err(error) => {
            let error = WriteFailed::Raft(Box::new(error));
            waiters.iter().map(|_| Err(error.clone())).collect()
        }
        Ok(response) => match response.data {
            CommandResult::Batch(results) if batched && results.len() == waiters.len() => {
                results.into_iter().map(Ok).collect()
            }
            result if !batched => vec![Ok(result)],
            result => {
                // Apply answers a batch with one result per command; any
                // other answer is a bug, reported to every waiter.
                let error = WriteFailed::Unanswered {
                    sent: waiters.len(),
                    answer: format!("{result:?}"),
                };
                warn!(%error, "a write's result is lost");
                waiters.iter().map(|_| Err(error.clone())).collect()
            }
        },
    };
    // The permits go with the waiters: Raft is done with every command.
    for ((reply, _permit), result) in waiters.into_iter().zip(results) {
        // A waiter that timed out no longer listens.
        let _ = reply.send(result);
    }
}
