//! Writes go through Raft: propose a command, wait until it is applied.

use std::time::Duration;

use schemas::api::ErrorCode;

use crate::api::alarms::{refuse_without_room, refused_at_apply};
use crate::api::auth::Credential;
use crate::api::batcher::WriteFailed;
use crate::api::error::ApiError;
use crate::api::leader::{known_leader, Leader};
use crate::api::relay::Relayed;
use crate::api::AppState;
use crate::types::{Command, CommandResult};
use crate::write_budget::{serialized_len, WritePermit, ADMIT_WAIT};

/// Proposes a command through Raft and waits until it is applied on the
/// leader, so the answer reads its own write there. On a follower the
/// command is relayed to the leader (see `relay`); on the leader it is
/// proposed here ([`propose`]). Only the key-value writes, which a
/// follower serves itself (see `forward`), come this way. `credential` is
/// the token the client presented, which the leader checks the relayed
/// command against again (none for the node's own writes), and which the
/// command names when it is proposed (see [`propose`]).
pub async fn propose_or_relay(
    state: &AppState,
    command: Command,
    credential: Option<Credential>,
) -> Result<CommandResult, ApiError> {
    let Some(Leader::Other { peer_addr, .. }) = known_leader(state) else {
        return propose(state, command, credential.as_ref()).await;
    };
    if !state.relay.takes(&peer_addr) {
        return propose(state, command, credential.as_ref()).await;
    }
    let bytes = serialized_len(&command);
    refuse_without_room(state, &command, bytes)?;
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let permit = admit(state, bytes, timeout).await?;
    let answer = state
        .relay
        .submit(command, credential.clone(), bytes, permit)?;
    match tokio::time::timeout_at(deadline, answer).await {
        Err(_) => Err(ApiError::unavailable(
            "the leader did not answer the write in time; it may or may not have taken effect",
        )),
        Ok(Err(_)) => Err(ApiError::internal(
            "the write failed: its relay dropped it unanswered",
        )),
        Ok(Ok(Relayed::Answered(result))) => result,
        // The relay let go of the command's room; it is admitted again
        // here, within what is left of the request's time.
        Ok(Ok(Relayed::LeadHere(command))) => {
            let command = command.by_token(credential.as_ref().map(Credential::hash));
            propose_by(state, command, deadline).await
        }
    }
}

/// Room in the write budget for a command `bytes` long.
async fn admit(state: &AppState, bytes: usize, timeout: Duration) -> Result<WritePermit, ApiError> {
    state
        .write_budget
        .admit(bytes, ADMIT_WAIT.min(timeout))
        .await
        .map_err(|full| ApiError::unavailable(full.to_string()))
}

/// Proposes a command through Raft on this node and waits until it is
/// applied here. Commands that arrive together share one raft entry (see
/// `batcher`), each with its own result. The command holds its size of
/// the write budget until Raft is done with it, even past a timeout (see
/// `write_budget`).
///
/// `credential` is the token the client presented, with `--auth` (none
/// for the node's own writes): the command is proposed as that token's
/// ([`crate::types::Op::ByToken`]), so it applies only if the token may
/// still make it then, and answers 401 or 403 otherwise.
pub async fn propose(
    state: &AppState,
    command: Command,
    credential: Option<&Credential>,
) -> Result<CommandResult, ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let command = command.by_token(credential.map(Credential::hash));
    propose_by(state, command, tokio::time::Instant::now() + timeout).await
}

/// [`propose`], answered by `deadline`.
async fn propose_by(
    state: &AppState,
    command: Command,
    deadline: tokio::time::Instant,
) -> Result<CommandResult, ApiError> {
    let bytes = serialized_len(&command);
    refuse_without_room(state, &command, bytes)?;
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let permit = admit(state, bytes, left).await?;
    // The proposer owns the command and its room from here (see `batcher`).
    let written = state
        .batcher
        .submit(command, bytes, permit)
        .map_err(|stopped| ApiError::internal(stopped.to_string()))?;
    match tokio::time::timeout_at(deadline, written).await {
        // Proposed, the write may still be committed and applied: the
        // answer must not say it failed (etcd's "request timed out").
        Err(_) => Err(ApiError::unavailable(format!(
            "node {}: the write's outcome is unknown: it was not applied within {timeout:?}, \
             and may still be. Retry it with the same Idempotency-Key, or read before writing \
             again",
            state.node_id
        ))),
        Ok(Err(_)) => Err(ApiError::internal(
            "the write failed: its proposer dropped it unanswered",
        )),
        Ok(Ok(Err(WriteFailed::Raft(error)))) => Err((*error).into()),
        Ok(Ok(Err(unanswered))) => Err(ApiError::internal(unanswered.to_string())),
        Ok(Ok(Ok(CommandResult::IdempotencyKeyReused { key }))) => Err(ApiError::bad_field(
            ErrorCode::IdempotencyKeyReused,
            "Idempotency-Key",
            format!(
                "Idempotency-Key {key} was used by another request, whose write is still \
                 remembered; a retry must repeat that request, a new write needs a new key"
            ),
        )),
        Ok(Ok(Ok(CommandResult::NoSpace { members }))) => Err(refused_at_apply(state, &members)),
        Ok(Ok(Ok(CommandResult::AccessRefused {
            token_known,
            reason,
        }))) => Err(ApiError::new(
            if token_known {
                ErrorCode::PermissionDenied
            } else {
                ErrorCode::Unauthenticated
            },
            reason,
        )),
        Ok(Ok(Ok(result))) => Ok(result),
    }
}
