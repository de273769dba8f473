//! Read-index rounds shared by concurrent linearizable reads.
//!
//! A read index costs the leader a heartbeat round to a quorum, and a
//! follower one request to the leader. A read may use any round that
//! started after it arrived: whoever asks while a round runs waits for the
//! next one, which starts as soon as the running one ends and answers
//! everyone who asked meanwhile. Under load there is one round in flight at
//! a time, whatever the number of reads: on the leader ([`ReadIndexRounds`])
//! and on each follower ([`RemoteReadIndexRounds`]) alike.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::types::{LogId, Node, NodeId, Raft};

/// What a round gives: the read log id and the applied log id then.
pub type ReadLogId =
    Result<(Option<LogId>, Option<LogId>), RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>;

/// The questions waiting for the next round, and whether a round runs.
struct Waiting<Q, A> {
    running: bool,
    waiting: Vec<(Q, oneshot::Sender<A>)>,
}

/// Rounds of one operation shared by those who ask together: each gets the
/// answer of a round that started after it asked. A round is asked the
/// latest question waiting for it.
struct SharedRounds<Q, A> {
    waiting: Arc<Mutex<Waiting<Q, A>>>,
}

impl<Q, A> Clone for SharedRounds<Q, A> {
    fn clone(&self) -> Self {
        SharedRounds {
            waiting: Arc::clone(&self.waiting),
        }
    }
}

impl<Q, A> Default for SharedRounds<Q, A> {
    fn default() -> Self {
        SharedRounds {
            waiting: Arc::new(Mutex::new(Waiting {
                running: false,
                waiting: Vec::new(),
            })),
        }
    }
}

impl<Q: Send + 'static, A: Clone + Send + 'static> SharedRounds<Q, A> {
    /// The answer of a round that started after this call, run by `round`
    /// (the one given by whoever starts the rounds running); `None` if the
    /// rounds' task ended without an answer (the runtime is shutting down).
    async fn ask<F, Fut>(&self, question: Q, round: F) -> Option<A>
    where
        F: Fn(Q) -> Fut + Send + 'static,
        Fut: Future<Output = A> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut waiting = self.waiting.lock();
            waiting.waiting.push((question, answer));
            !std::mem::replace(&mut waiting.running, true)
        };
        if start {
            tokio::spawn(run_rounds(Arc::clone(&self.waiting), round));
        }
        answered.await.ok()
    }
}

/// Runs rounds while questions wait for one.
async fn run_rounds<Q, A, F, Fut>(waiting: Arc<Mutex<Waiting<Q, A>>>, round: F)
where
    A: Clone,
    F: Fn(Q) -> Fut,
    Fut: Future<Output = A>,
{
    loop {
        let mut asked = {
            let mut waiting = waiting.lock();
            if waiting.waiting.is_empty() {
                waiting.running = false;
                return;
            }
            std::mem::take(&mut waiting.waiting)
        };
        let (question, last) = asked.pop().expect("not empty");
        let answer = round(question).await;
        for (_, waiter) in asked {
            let _ = waiter.send(answer.clone());
        }
        let _ = last.send(answer);
    }
}

/// Shares the leader's read-index rounds between the reads that arrive
/// together (its own, and the followers' requests).
#[derive(Clone, Default)]
pub struct ReadIndexRounds {
    rounds: SharedRounds<(), ReadLogId>,
}

impl ReadIndexRounds {
    /// The read log id of a round that started after this call, from
    /// `raft` (this node must lead, or the round says where the leader is).
    pub async fn read_log_id(&self, raft: &Raft) -> ReadLogId {
        let shared = raft.clone();
        let round = move |()| {
            let raft = shared.clone();
            async move { raft.get_read_log_id().await }
        };
        match self.rounds.ask((), round).await {
            Some(read) => read,
            None => raft.get_read_log_id().await,
        }
    }
}

/// The leader's answer to a follower's read-index request.
pub type RemoteReadIndex = Result<u64, RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>;

/// Why a follower got no read index from the node it asked.
#[derive(Clone, Debug)]
pub enum RemoteFailure {
    /// The node could not be reached: look for another leader.
    Unreachable(String),
    /// The request failed otherwise.
    Failed(String),
}

/// Shares a follower's read-index requests to the leader between the reads
/// that arrive together.
#[derive(Clone, Default)]
pub struct RemoteReadIndexRounds {
    rounds: SharedRounds<String, Result<RemoteReadIndex, RemoteFailure>>,
}

impl RemoteReadIndexRounds {
    /// The read index the node at `leader_addr` gives in a request sent
    /// after this call, through `peers`, each request bounded by `timeout`.
    pub async fn read_index(
        &self,
        peers: &reqwest::Client,
        leader_addr: String,
        timeout: Duration,
    ) -> Result<RemoteReadIndex, RemoteFailure> {
        let client = peers.clone();
        let round = move |addr: String| {
            let client = client.clone();
            async move { ask_read_index(&client, &addr, timeout).await }
        };
        match self.rounds.ask(leader_addr.clone(), round).await {
            Some(reply) => reply,
            None => ask_read_index(peers, &leader_addr, timeout).await,
        }
    }
}

/// One read-index request to the node at `addr`.
async fn ask_read_index(
    client: &reqwest::Client,
    addr: &str,
    timeout: Duration,
) -> Result<RemoteReadIndex, RemoteFailure> {
    let url = format!("{addr}/raft/read-index");
    match client.post(&url).timeout(timeout).send().await {
        Ok(response) => response.json::<RemoteReadIndex>().await.map_err(|error| {
            RemoteFailure::Failed(format!("unreadable read index from {addr}: {error}"))
        }),
        Err(error) if error.is_connect() => Err(RemoteFailure::Unreachable(format!(
            "cannot reach {addr}: {error}"
        ))),
        Err(error) => Err(RemoteFailure::Failed(format!(
            "the leader at {addr} gave no read index: {error}"
        ))),
    }
}
