//! Read-index rounds shared by concurrent linearizable reads.
//!
//! A read index costs the leader a heartbeat round to a quorum. A read may
//! use any round that started after it arrived: whoever asks while a round
//! runs waits for the next one, which starts as soon as the running one
//! ends and answers everyone who asked meanwhile. Under load there is one
//! round in flight at a time, whatever the number of reads.

use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use crate::types::{LogId, Node, NodeId, Raft};

/// What a round gives: the read log id and the applied log id then.
pub type ReadLogId =
    Result<(Option<LogId>, Option<LogId>), RaftError<NodeId, CheckIsLeaderError<NodeId, Node>>>;

/// The reads waiting for the next round, and whether a round runs.
#[derive(Default)]
struct Rounds {
    running: bool,
    waiting: Vec<oneshot::Sender<ReadLogId>>,
}

/// Shares read-index rounds between the reads that arrive together.
#[derive(Clone, Default)]
pub struct ReadIndexRounds {
    rounds: Arc<Mutex<Rounds>>,
}

impl ReadIndexRounds {
    /// The read log id of a round that started after this call, from
    /// `raft` (this node must lead, or the round says where the leader is).
    pub async fn read_log_id(&self, raft: &Raft) -> ReadLogId {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut rounds = self.rounds.lock().expect("not poisoned");
            rounds.waiting.push(answer);
            !std::mem::replace(&mut rounds.running, true)
        };
        if start {
            tokio::spawn(run_rounds(Arc::clone(&self.rounds), raft.clone()));
        }
        match answered.await {
            Ok(read) => read,
            // The round's task ended without an answer (runtime shutting
            // down): ask directly.
            Err(_) => raft.get_read_log_id().await,
        }
    }
}

/// Runs rounds while reads wait for one.
async fn run_rounds(rounds: Arc<Mutex<Rounds>>, raft: Raft) {
    loop {
        let waiting = {
            let mut rounds = rounds.lock().expect("not poisoned");
            if rounds.waiting.is_empty() {
                rounds.running = false;
                return;
            }
            std::mem::take(&mut rounds.waiting)
        };
        let read = raft.get_read_log_id().await;
        for answer in waiting {
            let _ = answer.send(read.clone());
        }
    }
}
