//! Writes go through Raft: propose a command, wait until it is applied here.

use std::time::Duration;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::types::{Command, CommandResult};
use crate::write_budget::{serialized_len, ADMIT_WAIT};

/// Proposes a command through Raft and waits until it is applied on this
/// node (the leader), so the answer reads its own write. The command holds
/// its size of the write budget until Raft is done with it, even past a
/// timeout (see `write_budget`).
pub async fn propose(state: &AppState, command: Command) -> Result<CommandResult, ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let permit = state
        .write_budget
        .admit(serialized_len(&command), ADMIT_WAIT.min(timeout))
        .await
        .map_err(|full| ApiError::unavailable(full.to_string()))?;
    let raft = state.raft.clone();
    // A task of its own: it keeps the room until the write is done, and
    // openraft's large futures stay out of a handler's own future.
    let write = tokio::spawn(async move {
        let written = raft.client_write(command).await;
        drop(permit);
        written
    });
    match tokio::time::timeout_at(deadline, write).await {
        Err(_) => Err(ApiError::unavailable("the write was not committed in time")),
        Ok(Err(joined)) => Err(ApiError::internal(format!("the write failed: {joined}"))),
        Ok(Ok(written)) => match written?.data {
            CommandResult::IdempotencyKeyReused { key } => Err(ApiError::bad_field(
                ErrorCode::IdempotencyKeyReused,
                "Idempotency-Key",
                format!(
                    "Idempotency-Key {key} was used by another request, whose write is still \
                     remembered; a retry must repeat that request, a new write needs a new key"
                ),
            )),
            result => Ok(result),
        },
    }
}
