//! Proposes the writes that arrive together as one raft entry.
//!
//! openraft 0.9 takes one client write per turn of its core, so one entry
//! per write caps the node's writes at the core's turns per second. Here
//! every write joins one queue, and one proposer task keeps at most
//! `--max-proposals-in-flight` entries in flight (by default
//! [`IN_FLIGHT_ALONE`] while this node is the only voter,
//! [`IN_FLIGHT_REPLICATED`] while others vote). It takes everything queued
//! (up to [`MAX_ENTRY_COMMANDS`] commands and [`MAX_ENTRY_BYTES`]) and
//! proposes it as one entry, a lone command as itself and several as an
//! `Op::Batch`: at once while no entry is in flight, and behind one only
//! once [`BEHIND_MIN_COMMANDS`] are queued (fewer wait until none is).
//! There is no linger: a write that finds no entry in flight is proposed at
//! once, exactly as without the queue; writes batch only while earlier
//! entries are still in flight.
//!
//! Each waiter gets its own command's result, or the entry's error (a
//! `ForwardToLeader`, say) as every other waiter of that entry does.
//!
//! Ownership: the queue is an unbounded channel whose senders are the
//! handlers' (through `AppState`); the proposer task alone receives, and
//! ends when every sender is gone. Its memory is bounded by the write
//! budget, which every queued command holds its size of until Raft is done
//! with its entry.

use std::collections::VecDeque;

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

/// Writes an entry needs to be proposed while another is in flight; fewer
/// wait until nothing is, then go at once. On one node the raft log's flush
/// is the bottleneck, and a second entry of a write or two took a whole
/// flush for them: waiting for four gave 5 % more puts at 16 connections,
/// and 1–4 % more at 64 and 256 (docs/performance.md).
pub const BEHIND_MIN_COMMANDS: usize = 4;

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
    run_batches(
        queued,
        slots,
        MAX_ENTRY_BYTES,
        bytes_of,
        BEHIND_MIN_COMMANDS,
        move |entry| {
            let raft = raft.clone();
            async move { propose_entry(&raft, entry).await }
        },
    )
    .await;
}

/// Takes batches from `queue` and runs `send` on each, at most `in_flight()`
/// at a time. A batch is everything queued, up to [`MAX_ENTRY_COMMANDS`]
/// items and `max_bytes` (by `bytes_of`; a larger item goes alone). While
/// nothing runs, a batch goes as soon as one item is queued: no linger.
/// Behind a running batch, one goes once `behind_min` items are queued;
/// fewer wait for a slot with nothing running. The batches run within this
/// task, not on tasks of their own: a task per batch cost a spawn and its
/// wake-ups. Ends when every sender of `queue` is gone and the running
/// batches are done.
pub(crate) async fn run_batches<T, Send, Sent>(
    mut queue: mpsc::UnboundedReceiver<T>,
    in_flight: impl Fn() -> usize,
    max_bytes: usize,
    bytes_of: fn(&T) -> usize,
    behind_min: usize,
    send: Send,
) where
    T: std::marker::Send + 'static,
    Send: Fn(Vec<T>) -> Sent,
    Sent: std::future::Future<Output = ()> + std::marker::Send + 'static,
{
    let mut running = FuturesUnordered::new();
    // Items taken off the queue and not yet sent, in arrival order.
    let mut waiting = VecDeque::new();
    let mut open = true;
    loop {
        while let Ok(item) = queue.try_recv() {
            waiting.push_back(item);
        }
        let goes = match running.len() {
            _ if waiting.is_empty() => false,
            0 => true,
            busy => busy < in_flight() && waiting.len() >= behind_min,
        };
        if goes {
            running.push(send(take_batch(&mut waiting, max_bytes, bytes_of)));
            continue;
        }
        if !open && running.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            item = queue.recv(), if open => match item {
                Some(item) => waiting.push_back(item),
                None => open = false,
            },
        }
    }
}

/// The next batch off the front of `waiting`: up to [`MAX_ENTRY_COMMANDS`]
/// items and `max_bytes` (by `bytes_of`), and at least one item.
fn take_batch<T>(waiting: &mut VecDeque<T>, max_bytes: usize, bytes_of: fn(&T) -> usize) -> Vec<T> {
    let mut bytes = 0;
    let mut count = 0;
    for item in waiting.iter().take(MAX_ENTRY_COMMANDS) {
        bytes += bytes_of(item);
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    waiting.drain(..count).collect()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    /// Lets the runner (on this current-thread runtime) take what was sent.
    async fn let_run() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_batch_behind_a_running_one_waits_for_company_and_none_lingers() {
        let (queue, queued) = mpsc::unbounded_channel::<u32>();
        let (sent_tx, mut sent) = mpsc::unbounded_channel::<Vec<u32>>();
        // A running batch ends when the test adds a permit.
        let ends = Arc::new(Semaphore::new(0));
        let send = {
            let ends = Arc::clone(&ends);
            move |batch: Vec<u32>| {
                let (sent_tx, ends) = (sent_tx.clone(), Arc::clone(&ends));
                async move {
                    sent_tx.send(batch).expect("the test listens");
                    ends.acquire().await.expect("open").forget();
                }
            }
        };
        let runner = tokio::spawn(run_batches(queued, || 2, usize::MAX, |_| 1, 3, send));

        // Nothing runs: the first item goes alone, at once.
        queue.send(1).expect("runs");
        let_run().await;
        assert_eq!(sent.try_recv().ok(), Some(vec![1]));
        // Behind it, two items are too few to go; the third makes a batch.
        queue.send(2).expect("runs");
        queue.send(3).expect("runs");
        let_run().await;
        assert!(sent.try_recv().is_err(), "two items went behind a batch");
        queue.send(4).expect("runs");
        let_run().await;
        assert_eq!(sent.try_recv().ok(), Some(vec![2, 3, 4]));
        // Both slots are taken; once one ends, a lone item still waits
        // behind the other, and goes as soon as nothing runs.
        queue.send(5).expect("runs");
        ends.add_permits(1);
        let_run().await;
        assert!(sent.try_recv().is_err(), "one item went behind a batch");
        ends.add_permits(1);
        let_run().await;
        assert_eq!(sent.try_recv().ok(), Some(vec![5]));

        // The runner ends once the queue is gone and its batches are done.
        drop(queue);
        ends.add_permits(1);
        runner.await.expect("ends");
    }

    #[test]
    fn a_batch_stops_at_its_bytes_and_a_larger_item_goes_alone() {
        let mut waiting: VecDeque<usize> = VecDeque::from([3, 3, 3, 10, 1]);
        let bytes_of = |n: &usize| *n;
        assert_eq!(take_batch(&mut waiting, 7, bytes_of), vec![3, 3]);
        assert_eq!(take_batch(&mut waiting, 7, bytes_of), vec![3]);
        assert_eq!(take_batch(&mut waiting, 7, bytes_of), vec![10]);
        assert_eq!(take_batch(&mut waiting, 7, bytes_of), vec![1]);
        assert!(waiting.is_empty());
    }
}
