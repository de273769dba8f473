//! Why a node could not start, or stopped with an error.

use openraft::error::{Fatal, InitializeError, RaftError};

use crate::types::{Node, NodeId};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage failed to open.
    #[error(transparent)]
    Store(#[from] crate::error::StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused the raft settings derived from the configuration.
    #[error("raft: invalid settings: {0}")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    /// Raft stopped with a fatal error while starting.
    #[error("raft: {0}")]
    Raft(#[source] Box<Fatal<NodeId>>),
    /// Raft could not initialize the cluster.
    #[error("raft: cannot form the cluster: {0}")]
    Initialize(#[source] Box<RaftError<NodeId, InitializeError<NodeId, Node>>>),
    /// The HTTP client for the other nodes could not be built.
    #[error("raft: cannot build the HTTP client: {0}")]
    PeerClient(#[source] reqwest::Error),
    /// The flags or variables are not usable (the reason names the flag).
    #[error("configuration: {0}")]
    Config(String),
    /// The cleaner's thread could not be started.
    #[error("configuration: cannot start the cleaner thread: {0}")]
    CleanerThread(#[source] std::io::Error),
    /// The TLS flags or files are not usable (the reason names the flag
    /// and the file).
    #[error("TLS configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The raft log refused a write while a member was laid down
    /// (`kv-server restore`).
    #[error("raft log: cannot {step}: {source}")]
    RaftLog {
        /// What was being written.
        step: &'static str,
        /// Why it failed.
        #[source]
        source: Box<openraft::StorageError<NodeId>>,
    },
    /// The node could not join the cluster named by `--join`.
    #[error("join: {0}")]
    Join(#[from] crate::join::JoinError),
}

// openraft's errors are large; boxed, they keep every `Result` small.
impl ServerError {
    /// The exit status of a process that stops on this error: `EX_TEMPFAIL`
    /// (75, restarted by the unit) for a disk with no room, which a
    /// restart once there is room mends, and for a cluster `--join` could
    /// not reach in time, which a restart once it answers mends; 1 for the
    /// rest.
    pub fn exit_code(&self) -> i32 {
        let join_timed_out = matches!(
            self,
            ServerError::Join(crate::join::JoinError::TimedOut { .. })
        );
        if self.lacks_space() || join_timed_out {
            crate::store::EXIT_NO_SPACE
        } else {
            1
        }
    }

    /// Whether the node stopped for want of room on its disk.
    pub fn lacks_space(&self) -> bool {
        matches!(self, ServerError::Store(error) if error.lacks_space())
    }
}

impl From<openraft::ConfigError> for ServerError {
    fn from(error: openraft::ConfigError) -> Self {
        ServerError::RaftConfig(Box::new(error))
    }
}

impl From<Fatal<NodeId>> for ServerError {
    fn from(error: Fatal<NodeId>) -> Self {
        ServerError::Raft(Box::new(error))
    }
}

impl From<RaftError<NodeId, InitializeError<NodeId, Node>>> for ServerError {
    fn from(error: RaftError<NodeId, InitializeError<NodeId, Node>>) -> Self {
        ServerError::Initialize(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::JoinError;

    #[test]
    fn a_join_that_timed_out_exits_for_a_restart_and_a_refused_one_does_not() {
        let timed_out = ServerError::Join(JoinError::TimedOut {
            url: "http://127.0.0.1:7170".into(),
            timeout: std::time::Duration::from_secs(600),
            attempts: 124,
            last: "connection refused".into(),
        });
        assert_eq!(timed_out.exit_code(), crate::store::EXIT_NO_SPACE);
        let refused = ServerError::Join(JoinError::Refused {
            url: "http://127.0.0.1:7170".into(),
            node_id: 4,
            status: reqwest::StatusCode::CONFLICT,
            body: "{}".into(),
        });
        assert_eq!(refused.exit_code(), 1);
    }
}
