//! The server's wall clock.
//!
//! It stamps commands when they are proposed and names snapshots. Applying
//! an entry uses the stamp the entry carries, never this clock, so every
//! replica computes the same state.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock; 0 if the clock is
/// set before the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
