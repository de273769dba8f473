//! Writes go through Raft: propose a command, wait until it is applied here.

use std::time::Duration;

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
        Ok(written) => Ok(written?.data),
    }
}
