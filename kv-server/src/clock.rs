//! The server's clock: wall time in milliseconds since the Unix epoch.

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    compaction::now_ms()
}
