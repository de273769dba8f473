//! The Rust client library for openmessaging-kv and the `kvctl` tool.
//!
//! The client arrives after the server (see `docs/architecture.md`); it will
//! speak only the public HTTP/JSON API.
