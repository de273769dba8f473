//! Writes go through Raft: propose a command, wait until it is applied here.

use std::time::Duration;

use schemas::api::ErrorCode;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::types::{Command, CommandResult};

/// Proposes a command through Raft and waits until it is applied on this
/// node (the leader), so the answer reads its own write.
pub async fn propose(state: &AppState, command: Command) -> Result<CommandResult, ApiError> {
    let timeout = Duration::from_millis(state.config.request_timeout_ms);
    // Boxed: openraft's futures are large, and a handler's future is as
    // large as its largest await; a parked long-poll should not carry them.
    match tokio::time::timeout(timeout, Box::pin(state.raft.client_write(command))).await {
        Err(_) => Err(ApiError::unavailable("the write was not committed in time")),
        Ok(written) => match written?.data {
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
