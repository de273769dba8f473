//! The server's wall clock.
//!
//! It stamps commands when they are proposed and names snapshots. Applying
//! an entry uses the stamp the entry carries, moved up to the apply clock
//! (`store::apply`), never this clock, so every replica computes the same
//! state.
//!
//! For tests, `KV_CLOCK_OFFSET_MS=<ms>` (signed, read once) shifts this
//! clock, so a node can lead with a clock ahead of or behind the others.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock, shifted by
/// `KV_CLOCK_OFFSET_MS`; 0 if that is before the epoch.
pub fn now_ms() -> u64 {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    wall_ms.saturating_add_signed(offset_ms())
}

/// `KV_CLOCK_OFFSET_MS`, or 0 when unset or not a number.
fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var("KV_CLOCK_OFFSET_MS")
            .ok()
            .and_then(|raw| raw.trim().parse().ok())
            .unwrap_or(0)
    })
}
