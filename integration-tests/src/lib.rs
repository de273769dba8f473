//! The test harness that starts real `kv-server` processes on loopback ports
//! and talks HTTP to them. Tests live in `tests/`; they arrive with the server.
