//! Backup and restore, as etcd's `snapshot save` and `snapshot restore`:
//! a backup taken from a cluster under load lays down a new cluster that
//! holds exactly the old one's state at the backup's revision, serves
//! writes, and is a cluster of its own; a damaged backup lays down nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use integration_tests::{call, error_of, kvctl, server_binary, TestCluster, WriteLoad};
use serde_json::json;

/// Runs `command` to its end and gives its output; it is killed, and the
/// test fails, if it still runs after 30 s.
fn output_within(mut command: Command, what: &str) -> std::process::Output {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("{what} cannot run: {error}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("its output")
}

/// Starts `kv-server` on `data_dir` as member `id` of `peers`, for a start
/// that is refused: its status and its log once it exited.
fn start_on(data_dir: &Path, id: u64, peers: &str) -> (std::process::ExitStatus, String) {
    let mut command = Command::new(server_binary());
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-id", &id.to_string(), "--peers", peers])
        .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
        .args(["--namesrv-listen", "off"]);
    let what = format!("kv-server on {}", data_dir.display());
    let output = output_within(command, &what);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status, log)
}

/// Runs `kv-server restore` for node `id` of `peers` into `data_dir`.
fn restore(backup: &Path, data_dir: &Path, id: u64, peers: &str) -> std::process::Output {
    let mut command = Command::new(server_binary());
    command
        .arg("restore")
        .arg("--from")
        .arg(backup)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--node-id", &id.to_string(), "--peers", peers]);
    output_within(command, "kv-server restore")
}

#[tokio::test]
async fn a_backup_taken_under_load_restores_a_new_cluster_with_the_same_state() {
    let old = TestCluster::start(3, &[]).await;
    let load = WriteLoad::start(old.urls(), "load", 5_000, Duration::from_secs(60));
    load.wait_acked(200, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("cluster.snap");
    let saved = kvctl(
        &old.urls().join(","),
        &[
            "--output",
            "json",
            "snapshot",
            "save",
            backup.to_str().unwrap(),
        ],
    )
    .await
    .success()
    .json();
    let report = load.finish().await;
    assert!(
        report.acked.len() >= 200,
        "{} acknowledged",
        report.acked.len()
    );
    let revision = saved["revision"].as_u64().expect("a revision");
    assert!(revision > 0, "{saved}");
    assert_eq!(
        std::fs::metadata(&backup).unwrap().len(),
        saved["bytes"].as_u64().unwrap()
    );

    let mut laid_down = Vec::new();
    let elsewhere = tempfile::tempdir().unwrap();
    let new = TestCluster::start_prepared(3, &[], &mut |id, data_dir, peers| {
        let mut target = data_dir.to_path_buf();
        match id {
            1 => {
                // A restore already laying down the same member holds its
                // data dir: a second one is refused and clears nothing.
                std::fs::create_dir_all(data_dir).unwrap();
                let held = std::fs::File::create(data_dir.join("lock")).unwrap();
                held.try_lock().unwrap();
                std::fs::write(data_dir.join("theirs"), b"x").unwrap();
                let output = restore(&backup, data_dir, id, peers);
                let log = String::from_utf8_lossy(&output.stderr);
                assert!(!output.status.success(), "{log}");
                assert!(log.contains("in use by another process"), "{log}");
                assert!(data_dir.join("theirs").exists(), "{log}");
                drop(held);
                // Then it is cut short, leaving its marker: no node starts
                // there, and a restore run again clears it.
                std::fs::write(data_dir.join("restore-in-progress"), b"").unwrap();
                let (status, log) = start_on(data_dir, id, peers);
                assert!(!status.success(), "{log}");
                assert!(log.contains("a restore into it was cut short"), "{log}");
            }
            // The data dir is a link to an empty dir (as systemd's
            // DynamicUser makes /var/lib/kv-server).
            2 => {
                let real = elsewhere.path().join("node-2");
                std::fs::create_dir_all(&real).unwrap();
                std::os::unix::fs::symlink(&real, data_dir).unwrap();
            }
            // An empty dir, named with a trailing slash, holding only the
            // `lost+found` of the ext4 volume it would be the mount point of.
            _ => {
                std::fs::create_dir_all(data_dir.join("lost+found")).unwrap();
                let mut slashed = data_dir.as_os_str().to_owned();
                slashed.push("/");
                target = slashed.into();
            }
        }
        let output = restore(&backup, &target, id, peers);
        assert!(
            output.status.success(),
            "restore of node {id}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!data_dir.join("restore-in-progress").exists());
        if id == 3 {
            assert!(data_dir.join("lost+found").is_dir(), "lost+found stays");
        }
        laid_down.push(id);
    })
    .await;
    assert_eq!(laid_down, [1, 2, 3]);

    // Every key, value and revision up to the backup's revision, on every
    // node of the new cluster, as the old cluster had them then.
    let expected = old.replayed_state_at(old.leader().await, revision).await;
    assert!(!expected.is_empty());
    new.wait_converged().await;
    for id in new.ids() {
        assert_eq!(new.replayed_state(id).await, expected, "node {id}");
        // The members publish their addresses as the restored cluster
        // starts: one change waits for the last, with no error logged.
        assert!(
            !new.node(id).log_contains(" ERROR "),
            "{}",
            new.node(id).log_tail(40)
        );
    }

    // It is a cluster of its own, and it takes writes.
    let (_, old_status) = call(old.node(1), "GET", "/v1/cluster", None).await;
    let (_, new_status) = call(new.node(1), "GET", "/v1/cluster", None).await;
    assert_ne!(old_status["cluster_id"], new_status["cluster_id"]);
    assert_eq!(new_status["members"].as_array().unwrap().len(), 3);
    let leader = new.leader().await;
    let (status, written) = call(new.node(leader), "PUT", "/v1/kv/after", Some(json!(1))).await;
    assert_eq!(status, 201, "{written}");
    assert!(written["revision"].as_u64().unwrap() > revision);
}

/// A backup gets minutes for the node to make its snapshot, but only once
/// a node answers: against nodes that cannot be reached, `--timeout`
/// holds, where the call went on retrying for about 11 s.
#[tokio::test]
async fn a_backup_from_no_reachable_node_gives_up_at_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("never.snap");
    let started = std::time::Instant::now();
    let refused = kvctl(
        &integration_tests::closed_port_url(),
        &[
            "--timeout",
            "1s",
            "snapshot",
            "save",
            backup.to_str().unwrap(),
        ],
    )
    .await;
    let took = started.elapsed();
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        took < std::time::Duration::from_secs(6),
        "gave up after {took:?}: {}",
        refused.stderr
    );
    assert!(!backup.exists());
}

/// A node that answers but has no quorum refuses the backup (503): that
/// earns the call no time to make a snapshot, so `--timeout` holds (it went
/// on retrying for 74 s), and the refusal says how to back up the node's
/// own data, which `--stale` then does.
#[tokio::test]
async fn a_backup_without_a_quorum_gives_up_at_its_timeout_and_names_stale() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let (status, written) = call(cluster.node(leader), "PUT", "/v1/kv/kept", Some(json!(1))).await;
    assert_eq!(status, 201, "{written}");
    cluster.wait_converged().await;
    let mut ids = cluster.ids().into_iter();
    let survivor = ids.next().expect("a node");
    for id in ids {
        cluster.node_mut(id).kill9().await;
    }
    let url = cluster.node(survivor).base_url();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("quorum.snap");
    let path = backup.to_str().unwrap();
    let started = std::time::Instant::now();
    let refused = kvctl(&url, &["--timeout", "3s", "snapshot", "save", path])
        .await
        .expect_code(1);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "gave up after {took:?}: {}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--stale"), "{}", refused.stderr);
    assert!(!backup.exists());
    kvctl(&url, &["snapshot", "save", "--stale", path])
        .await
        .success();
    assert!(backup.exists());
}

#[tokio::test]
async fn a_damaged_or_truncated_backup_is_refused_naming_the_byte_and_nothing_is_written() {
    let old = TestCluster::start(1, &[]).await;
    for n in 0..20 {
        let (status, _) = call(old.node(1), "PUT", &format!("/v1/kv/k/{n}"), Some(json!(n))).await;
        assert_eq!(status, 201);
    }
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("good.snap");
    kvctl(
        &old.urls()[0],
        &["snapshot", "save", backup.to_str().unwrap()],
    )
    .await
    .success();
    let good = std::fs::read(&backup).unwrap();
    // A directory is refused at once, leaving nothing behind (it was
    // downloaded to FILE.part, and the rename failed).
    let refused = kvctl(
        &old.urls()[0],
        &["snapshot", "save", dir.path().to_str().unwrap()],
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is a directory"),
        "{}",
        refused.stderr
    );
    let mut part = dir.path().as_os_str().to_owned();
    part.push(".part");
    assert!(!std::path::Path::new(&part).exists());
    // `-` is no file: refused as a usage error, no file named `-` made.
    let refused = kvctl(&old.urls()[0], &["snapshot", "save", "-"])
        .await
        .expect_code(2);
    assert!(refused.stderr.contains("name one"), "{}", refused.stderr);
    assert!(!Path::new("-").exists());

    let truncated = dir.path().join("truncated.snap");
    std::fs::write(&truncated, &good[..good.len() - 7]).unwrap();
    let damaged = dir.path().join("damaged.snap");
    let mut bytes = good.clone();
    let at = bytes.len() - 40;
    bytes[at] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    // Cut between two frames: after the header (8 bytes of magic, 4 of
    // length, then the header), and after the last frame (the 28-byte end
    // marker gone).
    let header_len = u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
    let no_records = dir.path().join("no-records.snap");
    std::fs::write(&no_records, &good[..12 + header_len]).unwrap();
    let no_end = dir.path().join("no-end.snap");
    std::fs::write(&no_end, &good[..good.len() - 28]).unwrap();

    for bad in [&truncated, &damaged, &no_records, &no_end] {
        let data_dir = dir.path().join("restored");
        let output = restore(bad, &data_dir, 1, "1=http://127.0.0.1:1");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{} was taken", bad.display());
        assert!(
            stderr.contains(&bad.display().to_string()),
            "names the file: {stderr}"
        );
        assert!(stderr.contains("byte"), "names the byte: {stderr}");
        assert!(
            !data_dir.exists(),
            "nothing was written for {}",
            bad.display()
        );
    }
    // A dir that holds something is refused and left as it was found.
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("notes.txt"), b"mine").unwrap();
    let output = restore(&backup, &occupied, 1, "1=http://127.0.0.1:1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("is not empty"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&occupied)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "the refused dir changed");
    // A pipe is not taken for an empty, corrupt backup: it is refused as
    // what it is.
    let fifo = dir.path().join("backup.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let data_dir = dir.path().join("restored");
    let output = restore(&fifo, &data_dir, 1, "1=http://127.0.0.1:1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not a regular file"), "{stderr}");
    assert!(!data_dir.exists());

    // A backup is an admin's, with --auth.
    let secured = TestCluster::start(1, &["--auth"]).await;
    let (status, body) = call(secured.node(1), "GET", "/v1/snapshot", None).await;
    assert_eq!((status, error_of(&body).0), (401, "unauthenticated"));
}

/// A backup whose node stops sending mid-way (its process stopped) ends
/// in an error after the client's request timeout, where it waited for as
/// long as the connection stayed open.
#[tokio::test]
async fn a_backup_whose_node_stops_sending_ends_at_the_request_timeout() {
    let mut server = integration_tests::TestServer::start().await;
    let value = json!("v".repeat(10_000));
    for n in 0..2_000 {
        let (status, _) = call(
            &server,
            "PUT",
            &format!("/v1/kv/b/{n:04}"),
            Some(value.clone()),
        )
        .await;
        assert_eq!(status, 201);
    }
    let client = kv_client::ClientBuilder::new([server.url("")])
        .request_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("a client");
    let mut backup = client.snapshot().await.expect("the backup starts");
    backup.chunk().await.expect("a first chunk").expect("bytes");
    server.pause();
    let mut received = 0usize;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match backup.chunk().await {
                Ok(Some(bytes)) => received += bytes.len(),
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .expect("the backup ends within 20 s of its node stopping");
    server.resume();
    let error = ended.expect_err("a backup cut short is an error");
    assert!(error.to_string().contains("GET /v1/snapshot"), "{error}");
    assert!(
        received < 20_000_000,
        "the whole store was not sent: {received} bytes"
    );
}

/// The `X-Kv-Revision` of a backup `node` answers, with `query`, and the
/// status: the body is read whole.
async fn backup_revision(node: &integration_tests::TestServer, query: &str) -> (u16, String) {
    let answer = node
        .client()
        .get(node.url(&format!("/v1/snapshot{query}")))
        .send()
        .await
        .expect("the node answers");
    let status = answer.status().as_u16();
    let revision = answer
        .headers()
        .get("x-kv-revision")
        .map(|value| value.to_str().unwrap().to_string());
    let body = answer.bytes().await.expect("the body is read whole");
    let said = revision.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    (status, said)
}

/// A backup asked of a follower that hears nothing from the leader holds
/// every write acknowledged before it was asked for, or is refused: the
/// follower confirms with the leader first, as a linearizable read does,
/// and once it hears the leader again its backup holds the write. With
/// `consistency=stale` (kvctl `--stale`) it gives what it has at once,
/// without the write, as a cluster with no quorum still can.
#[tokio::test]
async fn a_backup_from_a_lagging_follower_holds_every_acknowledged_write_or_is_refused() {
    const SLOW: u64 = 3;
    let (cluster, proxy, leader) =
        TestCluster::start_with_a_follower_behind_a_proxy(&["--request-timeout-ms", "2000"]).await;
    let leader = cluster.node(leader);
    let (status, _) = call(leader, "PUT", "/v1/kv/backup/early", Some(json!(1))).await;
    assert_eq!(status, 201);
    cluster.wait_converged().await;

    // The slow node hears nothing more from the leader.
    proxy.slow_to(1);
    let (status, late) = call(leader, "PUT", "/v1/kv/backup/late", Some(json!(2))).await;
    assert_eq!(status, 201, "{late}");
    let late = late["revision"].as_u64().expect("a revision");
    let slow = cluster.node(SLOW);

    let (status, said) = backup_revision(slow, "?consistency=stale").await;
    assert_eq!(status, 200, "{said}");
    let stale: u64 = said.parse().expect("a revision");
    assert!(
        stale < late,
        "the stale backup ({stale}) has the write ({late})"
    );

    // kvctl's --stale asks for the same.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.snap");
    let saved = kvctl(
        &slow.base_url(),
        &[
            "--output",
            "json",
            "snapshot",
            "save",
            path.to_str().unwrap(),
            "--stale",
        ],
    )
    .await
    .success()
    .json();
    assert_eq!(saved["revision"].as_u64(), Some(stale), "{saved}");

    // Linearizable: refused, or after the follower got the write.
    let (status, said) = backup_revision(slow, "").await;
    match status {
        200 => {
            let revision: u64 = said.parse().expect("a revision");
            assert!(
                revision >= late,
                "the backup ({revision}) lacks the write ({late})"
            );
        }
        status => assert_eq!(status, 503, "{said}"),
    }

    proxy.slow_to(0);
    cluster.wait_converged().await;
    let (status, said) = backup_revision(slow, "").await;
    assert_eq!(status, 200, "{said}");
    let revision: u64 = said.parse().expect("a revision");
    assert!(
        revision >= late,
        "the backup ({revision}) lacks the write ({late})"
    );
}
