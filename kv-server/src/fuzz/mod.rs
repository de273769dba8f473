//! Fuzzing the server's decoders with damaged copies of valid data: the
//! raft log's frames and its recovery at open, snapshots and the records
//! in them, and the HTTP query and header parsers. Unit-test modules,
//! because the decoders are the crate's own; the topic's decoders are
//! fuzzed in `compaction/tests/fuzz.rs`, the RocketMQ codec in
//! `schemas/tests/fuzz.rs`. `FUZZ_CASES` sets the cases per target.

mod http;
mod raft_log;
mod snapshot;

/// Records the largest single allocation of each test thread, so a
/// decoder that trusts a length field is caught (see `fuzzkit`).
#[global_allocator]
static ALLOCATOR: fuzzkit::PeakAlloc = fuzzkit::PeakAlloc;

/// What a decoder may allocate beyond the input itself: error messages,
/// paths, maps of what it found.
const SLACK_BYTES: usize = 64 << 10;

/// A directory for one case, on a memory file system when there is one.
fn case_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().expect("a temp dir")
}
