//! A damaged end of the topic or the raft log (or a closed topic segment
//! gone), found at start: damage in
//! what was made durable stops the node naming file and byte (and the way
//! out, docs/recovery.md); damage in the topic's unsynced tail is cut and
//! rebuilt from the raft log, with no acknowledged write lost; a member
//! that stopped is rebuilt from the others as docs/recovery.md says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use integration_tests::{call, copy_tree, kvctl, TestCluster, TestServer};
use serde_json::{json, Value};

/// Snapshot after this many log entries in the snapshot test.
const SNAPSHOT_EVERY: u64 = 20;

/// The `*.log` files in `dir`, by name: by base offset.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    segments
}

/// The last `*.log` file (by name) in `dir`: the active segment.
fn last_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("a segment")
}

/// Where each frame of a segment starts and ends. Both files frame the same
/// way: a `u32` body length, a `u32` CRC, the body; zeros after the last.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let body = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if body == 0 || at + 8 + body > bytes.len() {
            break;
        }
        frames.push((at, at + 8 + body));
        at += 8 + body;
    }
    frames
}

/// Flips bits of the byte in the middle of the frame `frame` of `path`;
/// returns the file's bytes after.
fn damage_frame(path: &Path, (start, end): (usize, usize)) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[(start + end) / 2] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Damages a record in the middle of `server`'s first closed topic
/// segment (not its first or last, which opening reads); returns the file.
fn damage_the_first_closed_segment(server: &TestServer) -> PathBuf {
    let segments = segments(&server.data_dir().join("topic"));
    assert!(segments.len() > 1, "closed segments: {segments:?}");
    let closed = segments[0].clone();
    let frames = frames(&std::fs::read(&closed).unwrap());
    assert!(frames.len() > 2, "{frames:?}");
    damage_frame(&closed, frames[frames.len() / 2]);
    closed
}

/// `(applied_index, snapshot_index)` of `server`.
async fn indexes(server: &TestServer) -> (u64, u64) {
    let (_, cluster) = call(server, "GET", "/v1/cluster", None).await;
    let index = |name: &str| {
        cluster[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{cluster}"))
    };
    (index("applied_index"), index("snapshot_index"))
}

/// Starts the server again, expects it to stop by itself with an error,
/// and returns its log.
async fn start_expecting_refusal(server: &mut TestServer) -> String {
    server.spawn();
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("a node with damaged data stops by itself");
    assert!(!status.success(), "it exits with an error: {status}");
    server.log_tail(40)
}

/// Starts the server again and expects it to refuse, saying `named` and
/// pointing to docs/recovery.md.
async fn assert_refused_naming(server: &mut TestServer, named: &str) {
    let log = start_expecting_refusal(server).await;
    assert!(server.log_contains(named), "{named}\n{log}");
    assert!(server.log_contains("docs/recovery.md"), "{log}");
}

/// A single node that snapshots every [`SNAPSHOT_EVERY`] entries and
/// keeps 5 entries behind its snapshot, purging the rest.
async fn purging_server() -> TestServer {
    let every = SNAPSHOT_EVERY.to_string();
    TestServer::start_with(&[
        "--snapshot-every",
        &every,
        "--snapshot-catchup-entries",
        "5",
    ])
    .await
}

/// Panics unless every key of `acknowledged` reads back with its value.
async fn assert_all_present(server: &TestServer, acknowledged: &[(String, Value)]) {
    for (key, value) in acknowledged {
        let (status, body) = call(server, "GET", &format!("/v1/kv/{key}"), None).await;
        assert_eq!(status, 200, "{key} was acknowledged but is lost: {body}");
        assert_eq!(&body["value"], value, "{key}");
    }
}

/// Writes keys `{prefix}/k{n}` (value n) to `server` until a snapshot
/// covers the last write (at least one); returns how many were written.
async fn write_until_a_snapshot_covers_the_last(server: &TestServer, prefix: &str) -> u64 {
    let mut written = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (applied, snapshot) = indexes(server).await;
        if written > 0 && snapshot == applied {
            return written;
        }
        assert!(Instant::now() < deadline, "no snapshot caught up");
        let missing = (snapshot + SNAPSHOT_EVERY).saturating_sub(applied).max(1);
        for _ in 0..missing {
            let (status, body) = call(
                server,
                "PUT",
                &format!("/v1/kv/{prefix}/k{written}"),
                Some(json!(written)),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            written += 1;
        }
        let (applied, _) = indexes(server).await;
        let wait_until = Instant::now() + Duration::from_secs(10);
        while indexes(server).await.1 < applied && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_damaged_last_topic_record_under_a_snapshot_stops_the_node_naming_file_and_byte() {
    let every = SNAPSHOT_EVERY.to_string();
    let mut server = TestServer::start_with(&["--snapshot-every", &every]).await;
    // A checkpoint made the topic durable before the snapshot that covers
    // the last write, so the last record is durable.
    write_until_a_snapshot_covers_the_last(&server, "snapped").await;
    server.kill9().await;

    let segment = last_segment(&server.data_dir().join("topic"));
    let last = *frames(&std::fs::read(&segment).unwrap())
        .last()
        .expect("the active segment holds the last record");
    let damaged = damage_frame(&segment, last);

    let log = start_expecting_refusal(&mut server).await;
    let named = format!("corrupt record in {} at byte {}", segment.display(), last.0);
    assert!(server.log_contains(&named), "{named}\n{log}");
    assert!(server.log_contains("docs/recovery.md"), "{log}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        damaged,
        "nothing is cut off a durable record"
    );
}

#[tokio::test]
async fn damage_in_the_unsynced_topic_tail_is_rebuilt_from_the_raft_log() {
    let mut server = TestServer::start().await;
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let (key, value) = (format!("tail/a{n}"), json!({ "a": n }));
        let (status, body) = call(
            &server,
            "PUT",
            &format!("/v1/kv/{key}"),
            Some(value.clone()),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        acknowledged.push((key, value));
    }
    // A graceful stop checkpoints: these records are durable.
    server.stop().await;

    // Write until the first checkpoint with new records crashes the node:
    // these records reach the topic file but no checkpoint covers them.
    // Each write is a transaction of ten puts, so even one applied write
    // leaves whole records after the one damaged below.
    server.set_env("KV_CRASH_AT", Some("checkpoint-of-new-records"));
    server.restart().await;
    let records_before =
        frames(&std::fs::read(last_segment(&server.data_dir().join("topic"))).unwrap()).len();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..10_000 {
        assert!(Instant::now() < deadline, "the crash point was not reached");
        let puts: Vec<(String, Value)> = (0..10)
            .map(|i| (format!("tail/b{n}-{i}"), json!({ "b": n, "i": i })))
            .collect();
        let ops: Vec<Value> = puts
            .iter()
            .map(|(key, value)| json!({ "put": { "key": key, "value": value } }))
            .collect();
        let sent = server
            .client()
            .post(server.url("/v1/txn"))
            .json(&json!({ "success": ops }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => acknowledged.extend(puts),
            _ => break,
        }
    }
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("the crash point stops the node");
    assert!(!status.success(), "{status}");
    assert!(
        server.log_contains("KV_CRASH_AT reached"),
        "{}",
        server.log_tail(20)
    );
    server.set_env("KV_CRASH_AT", None);

    // Damage a record of the unsynced tail with whole records after it.
    let segment = last_segment(&server.data_dir().join("topic"));
    let frames = frames(&std::fs::read(&segment).unwrap());
    assert!(
        frames.len() >= records_before + 10,
        "the crash came before a transaction was applied"
    );
    damage_frame(&segment, frames[frames.len() - 3]);

    server.restart().await;
    assert!(
        server.log_contains("truncating the unwritten tail of the active segment"),
        "{}",
        server.log_tail(40)
    );
    assert_all_present(&server, &acknowledged).await;
}

#[tokio::test]
async fn a_damaged_last_raft_log_frame_stops_the_node_naming_file_and_byte() {
    let mut server = TestServer::start().await;
    for n in 0..20 {
        call(&server, "PUT", &format!("/v1/kv/raft/k{n}"), Some(json!(n))).await;
    }
    server.kill9().await;

    let segment = last_segment(&server.data_dir().join("raft"));
    let last = *frames(&std::fs::read(&segment).unwrap())
        .last()
        .expect("the raft log holds frames");
    let damaged = damage_frame(&segment, last);

    let log = start_expecting_refusal(&mut server).await;
    let named = format!(
        "raft log segment {} is damaged at byte {}",
        segment.display(),
        last.0
    );
    assert!(server.log_contains(&named), "{named}\n{log}");
    assert!(server.log_contains("docs/recovery.md"), "{log}");
    assert_eq!(
        std::fs::read(&segment).unwrap(),
        damaged,
        "nothing is cut off a damaged segment"
    );
}

/// A node started with `args` that took `count` new keys under
/// `prefix/`, then stopped cleanly.
async fn stopped_after_puts(args: &[&str], prefix: &str, count: u64) -> TestServer {
    let mut server = TestServer::start_with(args).await;
    for n in 0..count {
        let path = format!("/v1/kv/{prefix}/k{n}");
        let (status, body) = call(&server, "PUT", &path, Some(json!(n))).await;
        assert_eq!(status, 201, "{body}");
    }
    server.stop().await;
    server
}

/// A closed topic segment damaged while the node was stopped is found when
/// a snapshot reads it (closed segments are checked on read, not at
/// open): Raft stops, and the node exits 1, as damage found at open does
/// (not 74, which a service manager restarts), naming the file and saying
/// to rebuild the member.
#[tokio::test]
async fn damage_in_a_closed_topic_segment_found_by_a_snapshot_stops_the_node_saying_so() {
    let mut server = stopped_after_puts(&["--segment-bytes", "16384"], "closed", 400).await;
    let closed = damage_the_first_closed_segment(&server);
    server.spawn();
    server.wait_ready().await;

    // A backup builds a snapshot from the whole topic.
    let _ = server
        .client()
        .get(server.url("/v1/snapshot"))
        .send()
        .await
        .map(|response| response.status());
    let status = server
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the node stops on the damage");
    assert_eq!(status.code(), Some(1), "{}", server.log_tail(20));
    let log = server.log_tail(20);
    assert!(
        server.log_contains("raft stopped, and this node met damaged data: "),
        "{log}"
    );
    assert!(
        server.log_contains(&format!("{}", closed.display())),
        "{log}"
    );
    assert!(server.log_contains("rebuild this member"), "{log}");
}

/// The topic's last segment removed under a snapshot that covers its
/// records, with the view kept or gone too, or rebuilt offline: the
/// snapshot holds them (it was built from the topic once durable) and is
/// laid down again, the raft log re-applies what came after, and every
/// acknowledged write reads back. The offline rebuild leaves no view
/// directory behind but the one in use.
#[tokio::test]
async fn a_last_topic_segment_lost_under_a_snapshot_is_laid_down_again_from_it() {
    for (view_too, offline) in [(false, false), (true, false), (false, true)] {
        let mut server = purging_server().await;
        let covered = write_until_a_snapshot_covers_the_last(&server, "snapped").await;
        let mut acknowledged: BTreeMap<String, Value> = (0..covered)
            .map(|n| (format!("snapped/k{n}"), json!(n)))
            .collect();
        // Overwrites after the snapshot, in the raft log only once the
        // segment is gone.
        for n in 0..5u64 {
            let key = format!("snapped/k{n}");
            let value = json!(format!("after-{n}"));
            let (status, body) = call(
                &server,
                "PUT",
                &format!("/v1/kv/{key}"),
                Some(value.clone()),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            acknowledged.insert(key, value);
        }
        server.stop().await;

        let topic = server.data_dir().join("topic");
        let active = last_segment(&topic);
        std::fs::remove_file(&active).unwrap();
        if view_too {
            std::fs::remove_dir_all(server.data_dir().join("view")).unwrap();
        }
        if offline {
            server.rebuild_view_offline().await;
            let mut views: Vec<String> = std::fs::read_dir(server.data_dir())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("view"))
                .collect();
            views.sort();
            assert_eq!(views, ["view-1", "view.current"], "one view, named");
        }
        server.spawn();
        server.wait_ready().await;
        assert!(
            server.log_contains("laying the snapshot down again"),
            "{}",
            server.log_tail(40)
        );
        let all = |acknowledged: &BTreeMap<String, Value>| -> Vec<(String, Value)> {
            acknowledged.clone().into_iter().collect()
        };
        assert_all_present(&server, &all(&acknowledged)).await;
        let installing = server.data_dir().join("snapshot").join("installing.snap");
        assert!(!installing.exists(), "the lay-down is finished");

        // Later snapshots and purges go on from it, and a plain restart
        // installs nothing again.
        let more = write_until_a_snapshot_covers_the_last(&server, "more").await;
        acknowledged.extend((0..more).map(|n| (format!("more/k{n}"), json!(n))));
        server.restart().await;
        assert_all_present(&server, &all(&acknowledged)).await;
    }
}

/// A node whose view must be rebuilt, whose raft log was purged, and whose
/// current snapshot is gone stops naming it: the purged entries (the
/// membership among them) are nowhere else.
#[tokio::test]
async fn a_view_rebuilt_without_the_snapshot_that_covers_the_purged_log_stops_the_node() {
    let mut server = purging_server().await;
    write_until_a_snapshot_covers_the_last(&server, "one").await;
    write_until_a_snapshot_covers_the_last(&server, "two").await;
    server.stop().await;
    let snapshot = server.data_dir().join("snapshot").join("current.snap");
    std::fs::remove_file(&snapshot).expect("a snapshot was taken");
    std::fs::remove_dir_all(server.data_dir().join("view")).unwrap();

    let named = format!(
        "{} is missing, though the raft log was purged",
        snapshot.display()
    );
    assert_refused_naming(&mut server, &named).await;
}

/// An offline rebuild that cannot be done (the snapshot that covers the
/// purged log is gone) fails naming what is missing and leaves the view
/// in use as it was: the node still starts and serves every key. The
/// rebuild used to remove the view first, and the node could not start.
#[tokio::test]
async fn an_offline_rebuild_that_fails_leaves_the_node_as_it_was() {
    let mut server = purging_server().await;
    let one = write_until_a_snapshot_covers_the_last(&server, "one").await;
    let two = write_until_a_snapshot_covers_the_last(&server, "two").await;
    server.stop().await;
    let snapshot = server.data_dir().join("snapshot").join("current.snap");
    std::fs::remove_file(&snapshot).expect("a snapshot was taken");

    let status = server.try_rebuild_view_offline().await;
    assert_eq!(status.code(), Some(1), "{}", server.log_tail(20));
    let named = format!(
        "{} is missing, though the raft log was purged",
        snapshot.display()
    );
    assert!(server.log_contains(&named), "{}", server.log_tail(20));
    // It names the view in use, and leaves none of what it built.
    let views: Vec<String> = std::fs::read_dir(server.data_dir())
        .expect("the data dir")
        .map(|entry| entry.expect("an entry"))
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("view"))
        .collect();
    assert_eq!(views.len(), 1, "{views:?}");
    let in_use = server.data_dir().join(&views[0]);
    assert!(
        server.log_contains(&format!("view={}", in_use.display())),
        "{}",
        server.log_tail(20)
    );

    server.spawn();
    server.wait_ready().await;
    let acknowledged: Vec<(String, Value)> = (0..one)
        .map(|n| (format!("one/k{n}"), json!(n)))
        .chain((0..two).map(|n| (format!("two/k{n}"), json!(n))))
        .collect();
    assert_all_present(&server, &acknowledged).await;
    assert!(
        !server.log_contains("rebuilding it from the topic"),
        "{}",
        server.log_tail(40)
    );
}

/// A view that went back to before what the raft log purged (as sled reads
/// a view whose file was cut short: an earlier state, whole) is rebuilt
/// from the topic. The log can no longer apply what came between, and the
/// node used to stop blaming the raft log.
#[tokio::test]
async fn a_view_from_before_the_purged_log_is_rebuilt_from_the_topic() {
    let mut server = purging_server().await;
    let one = write_until_a_snapshot_covers_the_last(&server, "one").await;
    server.stop().await;
    let view = server.data_dir().join("view");
    let earlier = server.data_dir().join("view-copied-earlier");
    copy_tree(&view, &earlier);
    server.spawn();
    server.wait_ready().await;
    let two = write_until_a_snapshot_covers_the_last(&server, "two").await;
    server.stop().await;
    std::fs::remove_dir_all(&view).unwrap();
    std::fs::rename(&earlier, &view).unwrap();

    server.spawn();
    server.wait_ready().await;
    assert!(
        server.log_contains("rebuilding it from the topic"),
        "{}",
        server.log_tail(40)
    );
    let acknowledged: Vec<(String, Value)> = (0..one)
        .map(|n| (format!("one/k{n}"), json!(n)))
        .chain((0..two).map(|n| (format!("two/k{n}"), json!(n))))
        .collect();
    assert_all_present(&server, &acknowledged).await;
}

/// A bit changed in the current snapshot's header (the revision the next
/// build goes on from) stops the node naming the file: read as written, it
/// would leave records out of every later snapshot and backup.
#[tokio::test]
async fn a_changed_bit_in_the_snapshot_header_stops_the_node() {
    let mut server = purging_server().await;
    write_until_a_snapshot_covers_the_last(&server, "one").await;
    server.stop().await;
    let snapshot = server.data_dir().join("snapshot").join("current.snap");
    let mut bytes = std::fs::read(&snapshot).expect("a snapshot was taken");
    let revision = bytes
        .windows(b"\"revision\":".len())
        .position(|window| window == b"\"revision\":")
        .expect("the header names its revision")
        + b"\"revision\":".len();
    bytes[revision] ^= 0x01;
    std::fs::write(&snapshot, bytes).unwrap();

    let log = start_expecting_refusal(&mut server).await;
    let named = format!("snapshot {} is corrupt", snapshot.display());
    assert!(server.log_contains(&named), "{log}");
    assert!(server.log_contains("fails its checksum"), "{log}");
}

/// An older `current.snap` put back after the log purged past it is
/// refused naming it: the entries between are nowhere.
#[tokio::test]
async fn an_older_snapshot_put_back_behind_the_purged_log_stops_the_node() {
    let mut server = purging_server().await;
    write_until_a_snapshot_covers_the_last(&server, "old").await;
    let snapshot = server.data_dir().join("snapshot").join("current.snap");
    let old = std::fs::read(&snapshot).unwrap();
    write_until_a_snapshot_covers_the_last(&server, "new").await;
    server.stop().await;
    std::fs::write(&snapshot, old).unwrap();

    let named = format!("{} covers the raft log up to index", snapshot.display());
    assert_refused_naming(&mut server, &named).await;
}

/// A raft log cut in the middle of what the node applied (a file cut
/// short, its end then read as a torn tail) is refused: nothing is applied
/// before the log holds it on disk, so the entries cut were durable.
#[tokio::test]
async fn a_raft_log_ending_before_what_was_applied_stops_the_node() {
    let mut server = stopped_after_puts(&[], "cut", 60).await;

    let segment = last_segment(&server.data_dir().join("raft"));
    let bytes = std::fs::read(&segment).unwrap();
    let frames = frames(&bytes);
    let (start, end) = frames[frames.len() / 2];
    // Cut inside a frame halfway along: the frame reads as cut short by
    // the end of the file, as a crash leaves a tail.
    let damaged = &bytes[..(start + end) / 2];
    std::fs::write(&segment, damaged).unwrap();

    let log = start_expecting_refusal(&mut server).await;
    let dir = server.data_dir().join("raft");
    assert!(
        server.log_contains(&format!("the raft log in {} ends at index", dir.display())),
        "{log}"
    );
    assert!(server.log_contains("before index"), "{log}");
    assert!(server.log_contains("docs/recovery.md"), "{log}");
    // The node stopped on the file: it cut nothing from it.
    assert!(
        std::fs::read(&segment).unwrap() == damaged,
        "the refused segment was changed: {log}"
    );
}

/// A raft log whose `meta.json` (the vote, the purged id) is gone while
/// it holds entries is refused: the vote was saved before them, and a node
/// that forgot it could vote twice in a term.
#[tokio::test]
async fn a_raft_log_without_its_vote_stops_the_node() {
    let mut server = stopped_after_puts(&[], "vote", 5).await;
    let meta = server.data_dir().join("raft").join("meta.json");
    std::fs::remove_file(&meta).expect("the log holds a meta.json");

    let log = start_expecting_refusal(&mut server).await;
    assert!(
        server.log_contains(&format!("{} is missing", meta.display())),
        "{log}"
    );
    assert!(server.log_contains("docs/recovery.md"), "{log}");
}

/// A data directory whose `cluster-id` is gone while its raft log holds
/// entries is refused: the node would otherwise take the id of whichever
/// node called it first, another cluster's as well.
#[tokio::test]
async fn a_raft_log_without_its_cluster_id_stops_the_node() {
    let mut server = stopped_after_puts(&[], "id", 5).await;
    let id = server.data_dir().join("cluster-id");
    std::fs::remove_file(&id).expect("a node that formed its cluster names it");

    let named = format!("{} is missing, though the raft log reaches", id.display());
    assert_refused_naming(&mut server, &named).await;
}

/// A closed topic segment removed, or emptied, stops the node naming it:
/// offsets leave gaps between segments, so only the topic's manifest of
/// closed segments can tell, and a node that went on would serve older
/// values for acknowledged writes once its view is rebuilt.
#[tokio::test]
async fn a_closed_topic_segment_removed_or_emptied_stops_the_node_naming_it() {
    for removed in [true, false] {
        let mut server = stopped_after_puts(&["--segment-bytes", "1024"], "gone", 40).await;
        let mut closed = segments(&server.data_dir().join("topic"));
        closed.pop();
        assert!(closed.len() >= 2, "small segments rolled: {closed:?}");
        let victim = &closed[1];
        if removed {
            std::fs::remove_file(victim).unwrap();
        } else {
            std::fs::write(victim, []).unwrap();
        }

        let says = if removed {
            "it is missing"
        } else {
            "it holds 0 bytes"
        };
        let named = format!(
            "segment {} disagrees with the topic's manifest: {says}",
            victim.display()
        );
        assert_refused_naming(&mut server, &named).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_stopped_by_damage_is_rebuilt_by_remove_wipe_and_join() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let mut written = BTreeMap::new();
    for n in 0..30 {
        let key = format!("rebuilt/k{n}");
        let (status, body) = call(
            cluster.node(1),
            "PUT",
            &format!("/v1/kv/{key}"),
            Some(json!(n)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        written.insert(key, json!(n));
    }
    cluster.wait_converged().await;

    let node = cluster.node_mut(3);
    node.kill9().await;
    let segment = last_segment(&node.data_dir().join("raft"));
    let last = *frames(&std::fs::read(&segment).unwrap())
        .last()
        .expect("the raft log holds frames");
    damage_frame(&segment, last);
    let log = start_expecting_refusal(node).await;
    assert!(node.log_contains("docs/recovery.md"), "{log}");

    // docs/recovery.md: remove the member, wipe its data, join it again.
    kvctl(&cluster.node(1).base_url(), &["cluster", "remove", "3"])
        .await
        .success();
    cluster.remove(3, 1).await;
    cluster.join(3, 1).await;
    cluster.wait_converged().await;
    assert_eq!(cluster.keys(3, "rebuilt/").await, written);
}

/// A record of the current snapshot damaged while the node was stopped is
/// found when the snapshot is read whole, before any of it is sent or
/// saved: the node builds a new one from the topic, and a backup taken then
/// restores. The damaged file was saved as a backup that no restore takes,
/// and sent to followers that refused each copy.
#[tokio::test]
async fn a_damaged_record_of_the_current_snapshot_is_replaced_from_the_topic_before_it_is_read_out()
{
    let mut server = TestServer::start().await;
    for n in 0..200 {
        let path = format!("/v1/kv/snapped/k{n}");
        let (status, body) = call(&server, "PUT", &path, Some(json!(n))).await;
        assert_eq!(status, 201, "{body}");
    }
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("");
    let save = |name: &str| {
        let file = dir.path().join(name);
        let url = url.clone();
        async move {
            kvctl(&url, &["snapshot", "save", file.to_str().unwrap()])
                .await
                .success();
            file
        }
    };
    // A backup leaves a snapshot that covers every write.
    save("first.snap").await;
    server.stop().await;
    let snapshot = server.data_dir().join("snapshot").join("current.snap");
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&snapshot, &bytes).unwrap();

    server.spawn();
    server.wait_ready().await;
    let second = save("second.snap").await;
    assert!(
        server.log_contains("the current snapshot is damaged"),
        "{}",
        server.log_tail(20)
    );
    let restored = std::process::Command::new(integration_tests::server_binary())
        .arg("restore")
        .arg("--from")
        .arg(&second)
        .arg("--data-dir")
        .arg(dir.path().join("restored"))
        .args(["--node-id", "1", "--peers", "1=http://127.0.0.1:1"])
        .env("NO_COLOR", "1")
        .output()
        .expect("kv-server restore runs");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let (status, body) = call(&server, "GET", "/v1/kv/snapped/k199", None).await;
    assert_eq!((status, &body["value"]), (200, &json!(199)), "{body}");
}

/// `/readyz` of `server`: its status and body.
async fn readiness(server: &TestServer) -> (u16, String) {
    let response = server
        .client()
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a readable body"))
}

/// Panics unless `server` says, on `/readyz` and in `/metrics`, that it met
/// damaged data in `file`, and names the way out.
async fn assert_unready_naming(server: &TestServer, file: &Path) {
    let (status, body) = readiness(server).await;
    assert_eq!(status, 503, "{body}");
    let file = file.display().to_string();
    assert!(body.contains("damaged data was met"), "{body}");
    assert!(body.contains(&file), "{file}: {body}");
    assert!(body.contains("rebuild this member"), "{body}");
    let (_, metrics) = call(server, "GET", "/metrics", None).await;
    let metrics = metrics.as_str().expect("metrics are text").to_string();
    assert!(
        metrics.lines().any(|line| line == "kv_damaged_data 1"),
        "{metrics}"
    );
}

/// A closed topic segment damaged while the node runs is found by the first
/// read that reaches it: the replay is cut, the change feed answers 500,
/// each naming the file, and from then on the node says it is not ready
/// (naming the damage and the way out; `kv_damaged_data` 1) so that load
/// balancers leave it, while it goes on serving its view.
#[tokio::test]
async fn damage_a_read_meets_while_the_node_runs_makes_it_unready() {
    for read in ["/v1/topic/records?from=0", "/v1/changes?from=0&limit=10000"] {
        let mut server = stopped_after_puts(&["--segment-bytes", "16384"], "met", 400).await;
        server.spawn();
        server.wait_ready().await;
        let (_, metrics) = call(&server, "GET", "/metrics", None).await;
        assert!(
            metrics
                .as_str()
                .is_some_and(|text| text.lines().any(|line| line == "kv_damaged_data 0")),
            "{metrics}"
        );
        let closed = damage_the_first_closed_segment(&server);
        assert_eq!(readiness(&server).await.0, 200, "nothing has read it yet");

        let response = server
            .client()
            .get(server.url(read))
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let body = response.text().await;
        let body = body.expect("a readable body");
        // The replay's answer began before the damage was read: it ends
        // with a line saying why.
        let expected = if read.starts_with("/v1/topic/records") {
            200
        } else {
            500
        };
        assert_eq!(status, expected, "{read}: {body}");
        assert!(body.contains(&closed.display().to_string()), "{body}");
        assert!(
            server.log_contains(&closed.display().to_string()),
            "{}",
            server.log_tail(20)
        );
        assert_unready_naming(&server, &closed).await;
        let (status, body) = call(&server, "GET", "/v1/kv/met/k1?consistency=stale", None).await;
        assert_eq!(status, 200, "the view still answers: {body}");
        server.stop().await;
    }
}

/// A replay that meets damaged data sends the records read before it, then
/// ends with a line holding the error's body, naming the file; `kvctl
/// replay --out` fails with that error and leaves the dump an earlier
/// replay wrote as it was.
#[tokio::test]
async fn a_replay_cut_by_damage_names_it_and_an_earlier_dump_stays_whole() {
    let mut server = stopped_after_puts(&["--segment-bytes", "16384"], "cut", 400).await;
    server.spawn();
    server.wait_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.ndjson");
    let dump_arg = dump.display().to_string();
    kvctl(&server.base_url(), &["replay", "--out", &dump_arg])
        .await
        .success();
    let whole = std::fs::read(&dump).expect("the dump");
    let closed = damage_the_first_closed_segment(&server);

    let answer = server
        .client()
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), 200);
    let text = answer
        .text()
        .await
        .expect("the answer ends with its last line");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() > 1,
        "no record before the damage was sent: {text}"
    );
    let last: Value = serde_json::from_str(lines[lines.len() - 1]).expect("a JSON last line");
    assert_eq!(last["error"]["code"], "internal", "{last}");
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&closed.display().to_string()), "{last}");

    // kvctl writes every record read before the damage (single puts:
    // each a whole write), then fails naming it.
    let run = kvctl(&server.base_url(), &["replay"]).await.expect_code(1);
    assert_eq!(
        run.stdout.lines().count(),
        lines.len() - 1,
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&closed.display().to_string()),
        "{}",
        run.stderr
    );
    let run = kvctl(&server.base_url(), &["replay", "--out", &dump_arg])
        .await
        .expect_code(1);
    assert!(
        run.stderr.contains(&closed.display().to_string()),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(&dump).expect("the dump"),
        whole,
        "the earlier dump changed"
    );
    assert!(!dir.path().join("dump.ndjson.part").exists());
    server.stop().await;
}

/// The same damage met by the cleaner's pass, which no client waits on:
/// the node says it is not ready, naming it, until it is rebuilt.
#[tokio::test]
async fn damage_the_cleaner_meets_makes_the_node_unready() {
    let mut server = TestServer::start_with(&[
        "--segment-bytes",
        "16384",
        "--min-compaction-lag-ms",
        "0",
        "--allow-short-compaction-lag",
    ])
    .await;
    // Every key written many times: the closed segments are dirty, and the
    // cleaner reads them (from the restart on, every 200 ms).
    for n in 0..400u64 {
        let path = format!("/v1/kv/cleaned/k{}", n % 20);
        let (status, body) = call(&server, "PUT", &path, Some(json!(n))).await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    server.stop().await;
    let closed = damage_the_first_closed_segment(&server);
    server.set_env("KV_CLEANER_INTERVAL_MS", Some("200"));
    server.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = server.client().get(server.url("/readyz")).send().await;
        if let Ok(answer) = answer {
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            if status == 503 && body.contains("damaged data was met") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the cleaner's pass never made the node unready: {}",
            server.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.log_contains("cleaner pass failed"),
        "{}",
        server.log_tail(20)
    );
    assert_unready_naming(&server, &closed).await;
}
