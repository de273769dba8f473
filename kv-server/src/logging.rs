//! The server's logs: to stderr, as etcd's, through `tracing`, with a
//! default filter that leaves out openraft's lines about peers it cannot
//! reach, which the network logs once itself (`network::PeerReach`).
//!
//! openraft 0.9 logs such a peer at every attempt: its replication an
//! ERROR and four WARNs per retry to a stopped follower (every two seconds
//! or so), its core an ERROR per linearizable read whose leadership check
//! cannot reach it, and per vote a candidate cannot send. A follower down
//! for a rolling restart under a read load wrote thousands of ERROR lines
//! a second. Replication has its own modules, which the filter turns off;
//! the core's lines share theirs with its other errors, so
//! [`RoutineRaftLines`] leaves out those few by their message. `RUST_LOG`
//! replaces the default filter and brings all of them back.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,openraft::replication=off,\
     openraft::engine::handler::replication_handler=error,sled=warn";

/// The module of openraft's core, whose routine lines are left out.
const RAFT_CORE: &str = "openraft::core::raft_core";

/// The messages of openraft's core that repeat while a peer is unreachable
/// or an election runs, each matched at its start. The network logs the
/// first failed append or vote request to each peer, and its recovery
/// (`network::PeerReach`); a vote request that times out is still logged
/// by openraft, once per election round.
const ROUTINE_CORE_MESSAGES: &[&str] = &[
    // A linearizable read's heartbeat to a peer that did not answer.
    "timeout while confirming leadership for read request",
    // A vote request a candidate could not send.
    "while requesting vote",
    // A vote answer that came after this node's vote moved on.
    "A message will be ignored because vote changed",
];

/// Sends the logs to stderr, in colour only at a terminal without
/// `NO_COLOR`: `RUST_LOG`'s filter if it is set, else [`DEFAULT_FILTER`]
/// without [`RoutineRaftLines`].
pub fn init() {
    let from_env = EnvFilter::try_from_default_env().ok();
    let quiet = from_env.is_none().then_some(RoutineRaftLines);
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::registry()
        .with(filter)
        .with(quiet)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi),
        )
        .init();
}

/// Leaves out openraft's core lines of [`ROUTINE_CORE_MESSAGES`] for every
/// layer.
#[derive(Clone, Copy, Debug)]
pub struct RoutineRaftLines;

impl<S: Subscriber> Layer<S> for RoutineRaftLines {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if metadata.target() != RAFT_CORE || *metadata.level() > Level::WARN {
            return true;
        }
        let mut message = Message(None);
        event.record(&mut message);
        !message.0.is_some_and(|text| {
            ROUTINE_CORE_MESSAGES
                .iter()
                .any(|routine| text.starts_with(routine))
        })
    }
}

/// An event's message, as a visitor reads it.
struct Message(Option<String>);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Keeps the message of every event it sees.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut message = Message(None);
            event.record(&mut message);
            self.0
                .lock()
                .expect("not poisoned")
                .push(message.0.unwrap_or_default());
        }
    }

    #[test]
    fn openraft_cores_lines_about_unreachable_peers_are_left_out_and_no_others() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(RoutineRaftLines)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let error = "Unreachable node: cannot connect to http://127.0.0.1:7173";
            tracing::error!(target: "openraft::core::raft_core", target = 3, error, "timeout while confirming leadership for read request");
            tracing::error!(target: "openraft::core::raft_core", error, target = 3, "while requesting vote");
            tracing::warn!(target: "openraft::core::raft_core", "A message will be ignored because vote changed: msg sent by vote: {}; current my vote: {}", "T1-N1", "None");
            // Kept: the core's other errors, the same words elsewhere, and
            // the core's lines below WARN.
            tracing::error!(target: "openraft::core::raft_core", error = "disk", "quit RaftCore::main on error");
            tracing::error!(target: "kv_server::network", "timeout while confirming leadership for read request");
            tracing::error!(target: "openraft::core::raft_core", error, target = 3, "timeout");
        });
        let seen = seen.0.lock().expect("not poisoned").clone();
        assert_eq!(
            seen,
            [
                "quit RaftCore::main on error",
                "timeout while confirming leadership for read request",
                "timeout",
            ]
        );
    }
}
