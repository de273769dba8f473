//! `kv-server`: one node of openmessaging-kv.
//!
//! The server (Raft, the materialized view and the HTTP API) is being built on
//! top of the `compaction` crate; until it lands this binary only says so.

fn main() {
    eprintln!(
        "kv-server: the server is not built yet; the storage engine (crate `compaction`) is. \
         See README.md."
    );
    std::process::exit(2);
}
