//! A follower's key-value writes, passed to the leader as commands, many
//! to a request.
//!
//! A `PUT` or `DELETE` of `/v1/kv/{key}` that reaches a follower is served
//! there as on the leader: the key, the body, the headers and (with
//! `--auth`) the caller's rights are checked, and the command is built.
//! Only the proposal is the leader's: the command joins this node's relay
//! queue, and one task sends what is queued to the leader's peer port
//! (`POST /raft/relay`, postcard), a batch per request while at most
//! `--max-proposals-in-flight` ([`RELAYS_IN_FLIGHT`] unless given) batches
//! are out. The leader checks each command again against its own tokens
//! and roles (a command names the hash of its client's token: a follower's
//! copy of the ACL may lag the leader's), proposes it through its own
//! [`Batcher`](crate::api::batcher::Batcher) and answers each with its
//! result or its error. Passing the HTTP request whole (see
//! [`crate::api::forward`]) costs the leader one request per write; this
//! costs it one per batch. Other writes are still passed whole: they read
//! the state they check on the leader.
//!
//! A batch the leader surely did not take (the connection was refused, or
//! it answered that it no longer leads) goes to the next leader, up to
//! [`RELAY_ATTEMPTS`] times within the request timeout; when the next
//! leader is this node, each waiter proposes its command here. A batch that
//! may have reached the leader is never sent again: its writes answer 503,
//! saying they may or may not have taken effect, as a forwarded request
//! does. A leader without the route (404: a build without it) is
//! remembered, and writes are passed to it whole for a minute, then it is
//! asked again (a rolling upgrade restarts it with the route).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use schemas::api::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::api::auth::{check_relayed, Credential};
use crate::api::batcher::{run_batches, MAX_ENTRY_BYTES, MAX_ENTRY_COMMANDS};
use crate::api::error::ApiError;
use crate::api::kv::check_writable_key;
use crate::api::leader::{await_leader, known_leader, leader_of, Leader};
use crate::api::write::{check_json, value_too_large};
use crate::api::AppState;
use crate::metrics::HotHistogram;
use crate::peer::PeerClient;
use crate::peer_channel::{CallError, PeerChannel};
use crate::peer_codec::{Encoding, PeerReply, PeerRequest, POSTCARD};
use crate::types::{Command, CommandResult, NodeId, Op, Raft, Revision};
use crate::write_budget::WritePermit;

/// Times a batch is sent after the leader changed under it.
const RELAY_ATTEMPTS: usize = 3;
/// Time a batch is given beyond the leader's own request timeout, for the
/// hop itself.
const RELAY_SLACK: Duration = Duration::from_secs(1);
/// The leader's route for relayed commands. (Builds before the commands
/// named their token used `/raft/propose`; either side answers the other's
/// route 404, and the follower then passes writes whole.)
pub const PROPOSE_PATH: &str = "/raft/relay";

/// A relayed command as it crosses: the command, and the hash of the token
/// its client presented to the follower (none without `--auth` there, or
/// for the node's own writes).
#[derive(Debug, Serialize, Deserialize)]
pub struct Proposal<C = Command, T = String> {
    /// The command to propose.
    pub command: C,
    /// The token's hash, for the leader's own check.
    pub token: Option<T>,
}

/// What a waiter of a relayed command gets back.
#[derive(Debug)]
pub enum Relayed {
    /// The leader's answer: the command's result or its error.
    Answered(Result<CommandResult, ApiError>),
    /// This node leads now: the command comes back, to propose here.
    LeadHere(Command),
}

/// The leader's answer to one relayed command.
#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    /// The command applied (or its condition failed) with this result.
    Done(CommandResult),
    /// The command was refused: the error body, in JSON (it skips empty
    /// fields, which postcard cannot carry), and the revision it names.
    Refused {
        /// The [`ErrorBody`] as JSON.
        body: String,
        /// The revision the error names, if any.
        revision: Option<Revision>,
    },
}

impl Answer {
    fn of(result: Result<CommandResult, ApiError>) -> Answer {
        match result {
            Ok(result) => Answer::Done(result),
            Err(error) => {
                let (body, revision) = error.into_parts();
                let body = serde_json::to_string(&body).expect("an error body serializes");
                Answer::Refused { body, revision }
            }
        }
    }

    fn into_result(self) -> Result<CommandResult, ApiError> {
        match self {
            Answer::Done(result) => Ok(result),
            Answer::Refused { body, revision } => match serde_json::from_str::<ErrorBody>(&body) {
                Ok(body) => Err(ApiError::from_parts(body, revision)),
                Err(error) => Err(ApiError::internal(format!(
                    "the leader refused a relayed write with an unreadable error ({error}): {body}"
                ))),
            },
        }
    }
}

/// A command waiting to be relayed.
struct Pending {
    command: Command,
    /// The client's token, which the leader checks the command against.
    credential: Option<Credential>,
    /// Its size, as the write budget counted it.
    bytes: usize,
    /// Its room in this node's write budget, held until it is answered.
    permit: WritePermit,
    reply: oneshot::Sender<Relayed>,
}

/// Relay requests out at once unless `--max-proposals-in-flight` says
/// otherwise. The leader proposes relayed commands one by one through its
/// own batcher, so a relay's size does not shape the raft entries; what a
/// low limit does is keep a follower's writes waiting for a request to come
/// back while the leader's next entry could have taken them. Eight gave 15 %
/// more puts than two on three nodes at 16 connections, and within 3 % of
/// two at 64 and 256 (docs/performance.md).
pub const RELAYS_IN_FLIGHT: usize = 8;

/// This node's queue of commands for the leader, shared by the handlers.
#[derive(Clone)]
pub struct Relay {
    queue: mpsc::UnboundedSender<Pending>,
    /// Leaders (by peer URL) that answered 404, and when: they take
    /// writes whole.
    refusing: Refusing,
}

/// Leaders (by peer URL) that answered 404, and when. A leader is asked
/// again after [`ASK_AGAIN_AFTER`]: one upgraded meanwhile (a rolling
/// upgrade restarts every node) takes relayed writes again.
type Refusing = Arc<Mutex<HashMap<String, std::time::Instant>>>;

/// How long a leader that answered the relay route 404 gets writes whole.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// What the relay task needs of the node.
#[derive(Clone)]
struct Hop {
    raft: Raft,
    this: NodeId,
    peers: PeerClient,
    /// The leader's request timeout: a write's own bound.
    timeout: Duration,
    refusing: Refusing,
}

impl Relay {
    /// Starts the relay task of node `this`: at most `in_flight` batches
    /// out at once, each bounded by `timeout` and [`RELAY_SLACK`], and of
    /// commands of at most half of `max_body_bytes` (the leader's bound on
    /// a `/raft/*` body, `--max-raft-body-bytes`) unless one alone is more.
    pub fn start(
        raft: Raft,
        this: NodeId,
        peers: PeerClient,
        timeout: Duration,
        in_flight: usize,
        max_body_bytes: usize,
    ) -> Relay {
        let (queue, queued) = mpsc::unbounded_channel();
        let refusing = Arc::default();
        let hop = Hop {
            raft,
            this,
            peers,
            timeout,
            refusing: Arc::clone(&refusing),
        };
        let max_bytes = MAX_ENTRY_BYTES.min(max_body_bytes / 2);
        tokio::spawn(run(hop, queued, in_flight.max(1), max_bytes));
        Relay { queue, refusing }
    }

    /// Whether the leader at `peer_addr` takes relayed commands (as far as
    /// this node knows: it has not answered 404).
    pub fn takes(&self, peer_addr: &str) -> bool {
        let mut refusing = self.refusing.lock();
        match refusing.get(peer_addr) {
            Some(since) if since.elapsed() < ASK_AGAIN_AFTER => false,
            Some(_) => {
                refusing.remove(peer_addr);
                true
            }
            None => true,
        }
    }

    /// Queues `command` for the leader; the receiver gets its answer.
    pub fn submit(
        &self,
        command: Command,
        credential: Option<Credential>,
        bytes: usize,
        permit: WritePermit,
    ) -> Result<oneshot::Receiver<Relayed>, ApiError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            command,
            credential,
            bytes,
            permit,
            reply,
        };
        self.queue
            .send(pending)
            .map_err(|_| ApiError::internal("the write relay has stopped"))?;
        Ok(answer)
    }
}

/// The relay task: whenever a slot is free, everything queued as a batch.
async fn run(
    hop: Hop,
    queued: mpsc::UnboundedReceiver<Pending>,
    in_flight: usize,
    max_bytes: usize,
) {
    let bytes_of = |pending: &Pending| pending.bytes;
    run_batches(
        queued,
        move || in_flight,
        max_bytes,
        bytes_of,
        // Relays go at once: the leader's batcher shapes the entries, and
        // a relay waiting for company only made followers' writes slower.
        1,
        move |batch| {
            let hop = hop.clone();
            async move { hop.relay(batch).await }
        },
    )
    .await;
}

/// How one send of a batch ended, short of answers.
enum Unsent {
    /// The leader surely did not take it.
    NotDelivered(String),
    /// The leader has no relay route: it takes writes whole.
    Unsupported,
    /// It may or may not have: every command gets this error.
    Failed(ApiError),
}

impl Hop {
    /// Sends `batch` to the leader, following leader changes, and answers
    /// every waiter.
    async fn relay(&self, batch: Vec<Pending>) {
        static RELAY_COMMANDS: HotHistogram = HotHistogram::new(crate::metrics::RELAY_COMMANDS);
        RELAY_COMMANDS.record(batch.len() as f64);
        let deadline = Instant::now() + self.timeout;
        let mut tried: Option<Leader> = None;
        for attempt in 1..=RELAY_ATTEMPTS {
            let leader = match leader_of(&self.raft, self.this) {
                Some(leader) if Some(&leader) != tried.as_ref() => leader,
                _ => match await_leader(&self.raft, self.this, tried.as_ref(), deadline).await {
                    Ok(leader) => leader,
                    Err(error) => return answer_all(batch, || Err(error.clone())),
                },
            };
            let Leader::Other { id, peer_addr, .. } = &leader else {
                for pending in batch {
                    let _ = pending.reply.send(Relayed::LeadHere(pending.command));
                }
                return;
            };
            let commands: Vec<Proposal<&Command, &str>> = batch
                .iter()
                .map(|pending| Proposal {
                    command: &pending.command,
                    token: pending.credential.as_ref().map(|token| &*token.0),
                })
                .collect();
            let channel = self.peers.channel(peer_addr);
            let route = channel.route(PROPOSE_PATH);
            match send(&channel, &route, self.timeout, &commands).await {
                Ok(answers) => {
                    let mut answers = answers.into_iter();
                    return answer_all(batch, || {
                        answers
                            .next()
                            .expect("the answers were counted")
                            .into_result()
                    });
                }
                Err(Unsent::NotDelivered(why)) => {
                    debug!(leader = id, attempt, %why, "the leader did not take the relayed writes; waiting for the next one");
                }
                Err(Unsent::Unsupported) => {
                    self.refusing
                        .lock()
                        .insert(peer_addr.clone(), std::time::Instant::now());
                    let error = ApiError::not_leader(
                        format!(
                            "the leader (node {id}) takes writes only from clients; retry there"
                        ),
                        leader.hint(),
                    );
                    return answer_all(batch, || Err(error.clone()));
                }
                Err(Unsent::Failed(error)) => return answer_all(batch, || Err(error.clone())),
            }
            tried = Some(leader);
        }
        let error = ApiError::not_leader(
            "the leader changed while the write was passed to it; retry",
            tried.and_then(|leader| leader.hint()),
        );
        answer_all(batch, || Err(error.clone()));
    }
}

/// One request with `commands` to the leader's propose `route`, through
/// `channel`; the leader may take `timeout` to answer.
async fn send(
    channel: &PeerChannel,
    route: &Uri,
    timeout: Duration,
    commands: &[Proposal<&Command, &str>],
) -> Result<Vec<Answer>, Unsent> {
    let addr = channel.url();
    let body = Encoding::Postcard
        .encode(&commands)
        .map_err(|error| Unsent::Failed(ApiError::internal(error.to_string())))?;
    let reply = match channel
        .post(route, POSTCARD, body.into(), timeout + RELAY_SLACK)
        .await
    {
        Ok(reply) => reply,
        Err(error) if error.surely_unsent() => return Err(Unsent::NotDelivered(error.to_string())),
        Err(error) => return Err(Unsent::Failed(may_have_applied(&error))),
    };
    let (status, bytes) = (reply.status, reply.body);
    if status == StatusCode::NOT_FOUND {
        return Err(Unsent::Unsupported);
    }
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) if body.error.code == ErrorCode::NotLeader => {
                Unsent::NotDelivered(format!("{addr} no longer leads"))
            }
            Ok(body) => Unsent::Failed(ApiError::from_parts(body, None)),
            Err(_) => Unsent::Failed(ApiError::unavailable(format!(
                "the leader at {addr} answered the relayed writes {status}"
            ))),
        });
    }
    let answers: Vec<Answer> = Encoding::Postcard.decode(&bytes).map_err(|error| {
            Unsent::Failed(ApiError::unavailable(format!(
                "the leader at {addr} answered the relayed writes unreadably ({error}); they may or may not have taken effect"
            )))
        })?;
    if answers.len() != commands.len() {
        return Err(Unsent::Failed(ApiError::unavailable(format!(
                "the leader at {addr} answered {} of {} relayed writes; they may or may not have taken effect",
                answers.len(),
                commands.len()
            ))));
    }
    Ok(answers)
}

/// The error for a batch whose answer did not arrive.
fn may_have_applied(error: &CallError) -> ApiError {
    ApiError::unavailable(format!(
        "{error}; the write may or may not have taken effect"
    ))
}

/// Answers every waiter of `batch`, in order, with what `answer` gives
/// next, its permit released with it.
fn answer_all(batch: Vec<Pending>, mut answer: impl FnMut() -> Result<CommandResult, ApiError>) {
    for pending in batch {
        let result = answer();
        // A waiter that timed out no longer listens.
        let _ = pending.reply.send(Relayed::Answered(result));
        drop(pending.permit);
    }
}

/// `POST /raft/relay` on the leader: each command of a follower's batch
/// checked against the token it names, proposed here, and answered in
/// order; 503 `not_leader` for the whole batch when this node does not
/// lead (then none was proposed).
pub async fn propose(
    State(state): State<AppState>,
    PeerRequest(encoding, proposals): PeerRequest<Vec<Proposal>>,
) -> Response {
    match known_leader(&state) {
        Some(Leader::This) => {}
        other => {
            return ApiError::not_leader(
                "this node does not lead; relayed writes go to the leader",
                other.and_then(|leader| leader.hint()),
            )
            .into_response()
        }
    }
    if proposals.len() > MAX_ENTRY_COMMANDS {
        return ApiError::new(
            ErrorCode::InvalidBody,
            format!(
                "a relay carries at most {MAX_ENTRY_COMMANDS} commands; this one carries {}",
                proposals.len()
            ),
        )
        .into_response();
    }
    let state = &state;
    let proposals = proposals.into_iter().map(|proposal| async move {
        check_command(state, &proposal.command)?;
        check_relayed(state, proposal.token.as_deref(), &proposal.command)?;
        // Without `--auth` here, the token is neither checked nor named:
        // this node's view may hold no tokens to check it by.
        let credential = proposal
            .token
            .filter(|_| state.config.auth)
            .map(|token| Credential(token.into()));
        crate::api::propose::propose(state, proposal.command, credential.as_ref()).await
    });
    let answers: Vec<Answer> = futures::future::join_all(proposals)
        .await
        .into_iter()
        .map(Answer::of)
        .collect();
    PeerReply(encoding, answers).into_response()
}

/// The longest reason a relayed alarm may give: a node's own reasons are a
/// line naming a limit and two figures.
const MAX_ALARM_REASON_BYTES: usize = 1024;

/// Checks a relayed command as a follower's handler checked the request
/// it came from: the leader does not store what a peer sends unchecked (a
/// value that is not JSON would fail every read of it). Followers relay
/// only key puts and deletes, and their own NOSPACE alarm.
fn check_command(state: &AppState, command: &Command) -> Result<(), ApiError> {
    match &command.op {
        Op::Put { key, value, .. } => {
            check_writable_key(key)?;
            if value.len() > state.config.max_value_bytes {
                return Err(value_too_large(state, value.len()));
            }
            check_json(value)
        }
        Op::Delete { key, .. } => check_writable_key(key),
        // A node raises its own alarm, with a line saying which limit.
        Op::AlarmRaise { member, reason } => {
            let is_member = state
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(member)
                .is_some();
            if !is_member || reason.len() > MAX_ALARM_REASON_BYTES {
                return Err(ApiError::new(
                    ErrorCode::InvalidBody,
                    format!(
                        "an alarm is raised by a member, with a reason of at most \
                         {MAX_ALARM_REASON_BYTES} bytes: node {member} is not one, or the \
                         reason has {} bytes",
                        reason.len()
                    ),
                ));
            }
            Ok(())
        }
        _ => Err(ApiError::new(
            ErrorCode::InvalidBody,
            "followers relay key puts and deletes only; this command is none",
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::post;
    use axum::Router;
    use tokio::net::TcpListener;

    use super::*;
    use crate::api::test_peers::{closed_port, peer_client, silent_peer};

    /// A leader on a loopback port that answers every relayed batch with
    /// `status` and `body`.
    async fn leader(status: StatusCode, body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().route(PROPOSE_PATH, post(move || async move { (status, body) }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    async fn relay_to(addr: &str, timeout: Duration) -> Result<Vec<Answer>, Unsent> {
        let dir = tempfile::tempdir().unwrap();
        let command = Command {
            timestamp_ms: 1,
            idempotency_key: None,
            request_hash: None,
            op: crate::types::Op::Delete {
                key: "a".into(),
                condition: crate::types::Condition::Always,
            },
        };
        let channel = peer_client(&dir).channel(addr);
        let route = channel.route(PROPOSE_PATH);
        let proposal = Proposal {
            command: &command,
            token: None,
        };
        send(&channel, &route, timeout, &[proposal]).await
    }

    #[tokio::test]
    async fn a_batch_is_sent_again_only_when_the_leader_surely_did_not_take_it() {
        let not_leader = r#"{"error":{"code":"not_leader","message":"no"}}"#;
        let too_large = r#"{"error":{"code":"value_too_large","message":"big"}}"#;
        let timeout = Duration::from_secs(5);
        let outcome = relay_to(&closed_port().await, timeout).await;
        assert!(
            matches!(outcome, Err(Unsent::NotDelivered(_))),
            "a closed port"
        );
        let answer = leader(StatusCode::SERVICE_UNAVAILABLE, not_leader).await;
        let outcome = relay_to(&answer, timeout).await;
        assert!(
            matches!(outcome, Err(Unsent::NotDelivered(_))),
            "not_leader"
        );
        let answer = leader(StatusCode::NOT_FOUND, "").await;
        let outcome = relay_to(&answer, timeout).await;
        assert!(
            matches!(outcome, Err(Unsent::Unsupported)),
            "a build without the route"
        );
        let answer = leader(StatusCode::PAYLOAD_TOO_LARGE, too_large).await;
        match relay_to(&answer, timeout).await {
            Err(Unsent::Failed(error)) => assert_eq!(error.code(), ErrorCode::ValueTooLarge),
            _ => panic!("the leader's own refusal is every write's answer"),
        }
        // An answer of the wrong length, or none at all, may hide applied
        // writes: they are not sent again.
        let answer = leader(StatusCode::OK, "").await;
        match relay_to(&answer, timeout).await {
            Err(Unsent::Failed(error)) => assert_eq!(error.code(), ErrorCode::Unavailable),
            _ => panic!("an empty answer to one write"),
        }
        let (silent, holder) = silent_peer().await;
        let outcome = relay_to(&silent, Duration::from_millis(200)).await;
        holder.abort();
        match outcome {
            Err(Unsent::Failed(error)) => assert_eq!(error.code(), ErrorCode::Unavailable),
            _ => panic!("a leader that took the batch and never answered"),
        }
    }

    #[test]
    fn answers_cross_in_postcard_with_their_errors_whole() {
        let refusal = ApiError::not_leader(
            "gone",
            Some(schemas::api::LeaderHint {
                id: 3,
                addr: "http://127.0.0.1:1".into(),
            }),
        )
        .with_field("key")
        .with_revision(9);
        let answers = vec![
            Answer::of(Ok(CommandResult::Written {
                revision: 7,
                version: 2,
                created: false,
            })),
            Answer::of(Ok(CommandResult::PreconditionFailed {
                current_mod_revision: Some(5),
            })),
            Answer::of(Ok(CommandResult::NotFound)),
            Answer::of(Err(refusal.clone())),
        ];
        let bytes = Encoding::Postcard.encode(&answers).unwrap();
        let back: Vec<Answer> = Encoding::Postcard.decode(&bytes).unwrap();
        let results: Vec<_> = back.into_iter().map(Answer::into_result).collect();
        assert!(matches!(
            results[0],
            Ok(CommandResult::Written {
                revision: 7,
                version: 2,
                created: false
            })
        ));
        assert!(matches!(
            results[1],
            Ok(CommandResult::PreconditionFailed {
                current_mod_revision: Some(5)
            })
        ));
        assert!(matches!(results[2], Ok(CommandResult::NotFound)));
        let Err(error) = &results[3] else {
            panic!("{:?}", results[3]);
        };
        assert_eq!(error.clone().into_parts(), refusal.into_parts());
    }
}
