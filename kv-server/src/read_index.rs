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
        peers: &crate::peer::PeerClient,
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
    client: &crate::peer::PeerClient,
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

#[cfg(test)]
mod tests {
    //! The rounds are driven by a scripted operation instead of Raft: each
    //! round reads a commit index when it starts and then waits until the
    //! script finishes it, so a script decides which reads arrive while a
    //! round is out.

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Waker};
    use std::time::{Duration, Instant};

    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::SharedRounds;

    /// How long a step may take to show its effect.
    const STEP_TIMEOUT: Duration = Duration::from_secs(10);

    /// What a scripted round answers.
    #[derive(Clone, Debug)]
    struct Answer {
        /// 1 for the first round, 2 for the second, …
        round: u64,
        /// The commit index when the round started.
        commit: u64,
        /// The question the round was asked.
        question: &'static str,
    }

    /// The operation the rounds run, under the script's control.
    #[derive(Default)]
    struct Scripted {
        /// Moved by the script's `write` steps.
        commit: AtomicU64,
        /// Rounds started so far.
        started: AtomicU64,
        /// The running round's gate: sending on it ends the round.
        gate: Mutex<Option<oneshot::Sender<()>>>,
    }

    impl Scripted {
        /// The round to give `SharedRounds::ask`.
        fn round(
            self: &Arc<Self>,
        ) -> impl Fn(&'static str) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + 'static
        {
            let scripted = Arc::clone(self);
            move |question| {
                // Counted and read when the round starts, not when it is
                // first polled: the start is what the invariant is about.
                let round = scripted.started.fetch_add(1, Ordering::SeqCst) + 1;
                let commit = scripted.commit.load(Ordering::SeqCst);
                let (open, opened) = oneshot::channel();
                let previous = scripted.gate.lock().unwrap().replace(open);
                assert!(previous.is_none(), "round {round} started while one runs");
                Box::pin(async move {
                    opened.await.expect("the script ends every round it starts");
                    Answer {
                        round,
                        commit,
                        question,
                    }
                })
            }
        }

        fn started(&self) -> u64 {
            self.started.load(Ordering::SeqCst)
        }

        /// Whether a round has started and not been finished.
        fn running(&self) -> bool {
            self.gate.lock().unwrap().is_some()
        }
    }

    /// One read as the script saw it.
    struct Read {
        name: &'static str,
        /// Rounds started before the read asked.
        started_before: u64,
        /// The commit index when the read asked.
        commit_before: u64,
    }

    /// Polls until `done`, failing with `what` after [`STEP_TIMEOUT`].
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs `script` (steps separated by `;`: `read NAME`, `write`,
    /// `finish`) and returns the reads with their answers.
    async fn run(script: &str) -> Vec<(Read, Answer)> {
        let rounds = SharedRounds::<&'static str, Answer>::default();
        let scripted = Arc::new(Scripted::default());
        let mut reads: Vec<(Read, JoinHandle<Option<Answer>>)> = Vec::new();
        // The reads waiting for the next round.
        let mut queued: Vec<usize> = Vec::new();
        for step in script.split(';').map(str::trim) {
            match step.split_whitespace().collect::<Vec<_>>()[..] {
                ["read", name] => {
                    let name: &'static str = name.to_string().leak();
                    let started_before = scripted.started();
                    let commit_before = scripted.commit.load(Ordering::SeqCst);
                    let mut ask = Box::pin({
                        let rounds = rounds.clone();
                        let round = scripted.round();
                        async move { rounds.ask(name, round).await }
                    });
                    // One poll runs `ask` up to its first await: the read
                    // is queued (and the rounds' task spawned) when it
                    // returns, so the next step sees it arrived.
                    let first = ask.as_mut().poll(&mut Context::from_waker(Waker::noop()));
                    assert!(first.is_pending(), "{name} was answered before any round");
                    if scripted.running() {
                        queued.push(reads.len());
                    } else {
                        until(&format!("the round started by {name}"), || {
                            scripted.started() == started_before + 1
                        })
                        .await;
                    }
                    let read = Read {
                        name,
                        started_before,
                        commit_before,
                    };
                    reads.push((read, tokio::spawn(ask)));
                }
                ["write"] => {
                    scripted.commit.fetch_add(1, Ordering::SeqCst);
                }
                ["finish"] => {
                    // With no round running (the reads were answered
                    // otherwise) there is nothing to finish: the checks
                    // after the script say what went wrong.
                    let Some(gate) = scripted.gate.lock().unwrap().take() else {
                        continue;
                    };
                    let ended = scripted.started();
                    gate.send(()).expect("the running round waits for its gate");
                    if !queued.is_empty() {
                        // The next round starts; a wrong implementation
                        // might answer the queued reads instead, which the
                        // checks after the script then report.
                        until(&format!("the round after round {ended}"), || {
                            scripted.started() == ended + 1
                                || queued.iter().all(|at| reads[*at].1.is_finished())
                        })
                        .await;
                    }
                    queued.clear();
                }
                _ => panic!("unknown step {step:?}"),
            }
        }
        assert!(
            !scripted.running(),
            "the script leaves a round running: {script}"
        );
        let mut answered = Vec::new();
        for (read, answer) in reads {
            let answer = tokio::time::timeout(STEP_TIMEOUT, answer)
                .await
                .unwrap_or_else(|_| panic!("{} got no answer", read.name))
                .expect("a read does not panic")
                .unwrap_or_else(|| panic!("{}: the rounds' task ended", read.name));
            answered.push((read, answer));
        }
        answered
    }

    #[tokio::test]
    async fn reads_share_rounds_and_never_get_one_that_started_before_them() {
        /// Each read's name and the round whose answer it gets.
        type Rounds = &'static [(&'static str, u64)];
        // (what the script shows, the script, the rounds the reads get)
        let cases: &[(&str, &str, Rounds)] = &[
            (
                "a read with no round out starts one",
                "read a; finish",
                &[("a", 1)],
            ),
            (
                "reads that arrive while a round is out share the next one",
                "read a; read b; read c; read d; finish; finish",
                &[("a", 1), ("b", 2), ("c", 2), ("d", 2)],
            ),
            (
                "a read after a round ended starts a new one",
                "read a; finish; read b; finish",
                &[("a", 1), ("b", 2)],
            ),
            (
                "a read that arrives during the shared round waits for the one after",
                "read a; read b; finish; read c; read d; finish; finish",
                &[("a", 1), ("b", 2), ("c", 3), ("d", 3)],
            ),
            (
                "a write before a read is seen by the round the read gets",
                "read a; write; read b; write; read c; finish; finish",
                &[("a", 1), ("b", 2), ("c", 2)],
            ),
            (
                "a write while the shared round is out is left to the next reads",
                "read a; read b; finish; write; read c; finish; finish",
                &[("a", 1), ("b", 2), ("c", 3)],
            ),
        ];
        for (behaviour, script, expected) in cases {
            let answered = run(script).await;
            for (read, answer) in &answered {
                assert!(
                    answer.round > read.started_before,
                    "{behaviour}: {} arrived after round {} started, yet got round {}",
                    read.name,
                    read.started_before,
                    answer.round
                );
                assert!(
                    answer.commit >= read.commit_before,
                    "{behaviour}: {} arrived at commit {} and got a round that read {}",
                    read.name,
                    read.commit_before,
                    answer.commit
                );
            }
            for (_, answer) in &answered {
                // A round is asked the latest question waiting for it.
                let last_of_round = answered
                    .iter()
                    .filter(|(_, other)| other.round == answer.round)
                    .map(|(read, _)| read.name)
                    .next_back();
                assert_eq!(
                    Some(answer.question),
                    last_of_round,
                    "{behaviour}: round {} was asked",
                    answer.round
                );
            }
            let rounds: Vec<(&str, u64)> = answered
                .iter()
                .map(|(read, answer)| (read.name, answer.round))
                .collect();
            assert_eq!(&rounds, expected, "{behaviour}: {script}");
        }
    }
}
