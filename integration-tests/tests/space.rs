//! A full disk is an alarm, not a zombie: the space quota and the
//! free-space floor raise the cluster's NOSPACE alarm; a disk another
//! process fills stops a node's writes until it has room again, without a
//! restart. Real processes; the small disks are tmpfs mounts the tests
//! make (root needed).

use std::time::{Duration, Instant};

use integration_tests::tmpfs::Tmpfs;
use integration_tests::{call, error_of, kvctl, TestCluster, TestServer};
use serde_json::{json, Value};

/// The size of the values that fill the disks.
const VALUE_BYTES: usize = 60_000;
/// The quota of the cluster that fills.
const QUOTA_BYTES: u64 = 2_000_000;
/// How far past the quota a node may be once the fill is refused: each
/// write is weighed as it comes, so one write (in the raft log and the
/// topic) and the records' framing.
const FILL_SLACK_BYTES: u64 = 3 * VALUE_BYTES as u64;
/// Puts tried at most to cross a limit.
const MAX_FILL_PUTS: usize = 300;
/// How long an alarm, a disarm or a recovery may take to show.
const SETTLE: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);

fn big_value() -> Value {
    json!("x".repeat(VALUE_BYTES))
}

/// Polls `check` until it gives `Some`, failing with `what` after [`SETTLE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {SETTLE:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// The flags that let deleted data leave the topic within seconds: small
/// segments rolled after half a second, a cleaner every 200 ms keeping no
/// tombstone. A snapshot (and the raft log's purge) comes only after 100
/// writes, more than a fill and its deletes make: were the log purged
/// during the fill, the quota could hold no longer by the time the test
/// checks that a disarm is refused while it holds.
const SHORT_RETENTION: &[&str] = &[
    "--segment-bytes",
    "262144",
    "--segment-ms",
    "500",
    "--cleaner-interval-ms",
    "200",
    "--delete-retention-ms",
    "0",
    "--min-compaction-lag-ms",
    "0",
    "--allow-short-compaction-lag",
    "--snapshot-every",
    "100",
    "--snapshot-catchup-entries",
    "0",
];

/// A node on a 32 MiB tmpfs with neither limit, so that the disk fills
/// for real; writes waiting for room give up after 2 s.
async fn node_on_a_small_disk() -> (TestServer, Tmpfs) {
    let mut server = TestServer::start_with(&[
        "--quota-bytes",
        "0",
        "--min-free-bytes",
        "0",
        "--request-timeout-ms",
        "2000",
    ])
    .await;
    let disk = Tmpfs::under(&mut server, 32 << 20).await;
    (server, disk)
}

#[tokio::test]
async fn past_the_quota_every_node_refuses_growth_until_deletes_win_space_back_and_a_disarm() {
    let quota = QUOTA_BYTES.to_string();
    let mut args = vec!["--quota-bytes", &quota, "--min-free-bytes", "0"];
    args.extend(SHORT_RETENTION);
    let cluster = TestCluster::start(3, &args).await;
    let leader = cluster.leader().await;
    let (status, _) = call(cluster.node(leader), "PUT", "/v1/kv/keep/a", Some(json!(1))).await;
    assert_eq!(status, 201);

    // Fill through every node in turn until the cluster refuses.
    let mut filled = Vec::new();
    let refusal = 'fill: {
        for n in 0..MAX_FILL_PUTS {
            let node = cluster.node(1 + (n as u64 % 3));
            let key = format!("/v1/kv/big/{n:04}");
            match call(node, "PUT", &key, Some(big_value())).await {
                (201, _) => filled.push(key),
                (507, body) => break 'fill body,
                (status, body) => panic!("PUT {key}: {status} {body}"),
            }
        }
        panic!("{MAX_FILL_PUTS} puts of {VALUE_BYTES} bytes never crossed a 2 MB quota");
    };
    assert_eq!(error_of(&refusal).0, "no_space", "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains(&format!("--quota-bytes {QUOTA_BYTES}")),
        "the refusal names the limit and the figures: {refusal}"
    );

    // The alarm is on every node: writes that add data are refused there,
    // reads are served, readiness says why.
    for id in cluster.ids() {
        let node = cluster.node(id);
        let alarms: Value = eventually(&format!("node {id} shows the alarm"), || async {
            let (status, alarms) = call(node, "GET", "/v1/alarms", None).await;
            (status == 200 && alarms["alarms"][0]["alarm"] == "NOSPACE").then_some(alarms)
        })
        .await;
        assert!(alarms["alarms"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains(&format!("over --quota-bytes {QUOTA_BYTES}"))));
        let (status, body) = call(node, "PUT", "/v1/kv/more", Some(json!(1))).await;
        assert_eq!((status, error_of(&body).0), (507, "no_space"), "{body}");
        let (status, body) = call(node, "GET", "/v1/kv/keep/a", None).await;
        assert_eq!((status, &body["value"]), (200, &json!(1)));
        let (status, body) = call(node, "GET", "/readyz", None).await;
        assert_eq!((status, error_of(&body).0), (503, "not_ready"), "{body}");
        let (_, status) = call(node, "GET", "/v1/cluster", None).await;
        assert_eq!(status["alarms"][0]["alarm"], "NOSPACE");
        let raised = node.metric(r#"kv_alarms{alarm="NOSPACE"}"#).await;
        assert!(raised.is_some_and(|members| members >= 1.0), "{raised:?}");
        // Each write was weighed against the quota: the fill stopped at
        // it, not a second's writes past it.
        let (status, space) = call(node, "GET", "/v1/space", None).await;
        assert_eq!(status, 200, "{space}");
        let used = space["used_bytes"].as_u64().unwrap();
        assert!(used <= QUOTA_BYTES + FILL_SLACK_BYTES, "node {id}: {space}");
    }
    let listed = kvctl(&cluster.node(1).base_url(), &["alarm", "list"])
        .await
        .success();
    assert!(listed.stdout.contains("NOSPACE"), "{}", listed.stdout);
    let status = kvctl(&cluster.node(2).base_url(), &["cluster", "status"])
        .await
        .success();
    assert!(status.stdout.contains("NOSPACE (node"), "{}", status.stdout);
    // The answering node's disk, as the docs say the status shows it.
    let disk = status
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("disk:"))
        .unwrap_or_else(|| panic!("no disk line: {}", status.stdout));
    assert!(
        disk.contains(&format!("of a {QUOTA_BYTES} B quota")),
        "{disk}"
    );

    // Each node raised its alarm once, however many writes it refused.
    for id in cluster.ids() {
        let raised = cluster.node(id).log_count("raised the NOSPACE alarm");
        assert!(raised <= 1, "node {id} raised its alarm {raised} times");
    }

    // Disarming is refused while the limit holds.
    let (status, body) = call(cluster.node(1), "DELETE", "/v1/alarms", None).await;
    assert_eq!((status, error_of(&body).0), (409, "alarm_holds"), "{body}");

    // Deletes still work; the cleaner gives the topic's space back, and
    // the raft log's copies of the fill are under the quota on their own.
    for key in &filled {
        let (status, body) = call(cluster.node(leader), "DELETE", key, None).await;
        assert_eq!(status, 200, "DELETE {key}: {body}");
    }
    let disarmed = eventually("the alarm disarms once space is won back", || async {
        let (status, body) = call(cluster.node(2), "DELETE", "/v1/alarms", None).await;
        (status == 200).then_some(body)
    })
    .await;
    assert!(!disarmed["alarms"].as_array().unwrap().is_empty());
    for id in cluster.ids() {
        let node = cluster.node(id);
        eventually(&format!("node {id} takes writes again"), || async {
            let (status, _) =
                call(node, "PUT", &format!("/v1/kv/after/{id}"), Some(json!(id))).await;
            (status == 201).then_some(())
        })
        .await;
        let (status, _) = call(node, "GET", "/readyz", None).await;
        assert_eq!(status, 200);
    }

    // Nothing acknowledged was lost: the first key is there, every delete
    // held, on every node.
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let keys = cluster.keys(id, "").await;
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["after/1", "after/2", "after/3", "keep/a"],
            "node {id}"
        );
    }
}

#[tokio::test]
async fn under_the_free_space_floor_the_alarm_rises_and_freeing_the_disk_lets_it_be_disarmed() {
    let mut server =
        TestServer::start_with(&["--quota-bytes", "0", "--min-free-bytes", "16000000"]).await;
    let disk = Tmpfs::under(&mut server, 48 << 20).await;
    let (status, _) = call(&server, "PUT", "/v1/kv/keep/a", Some(json!(1))).await;
    assert_eq!(status, 201);

    disk.leave_free(8 << 20);
    let refusal = eventually("a write is refused under the floor", || async {
        let (status, body) = call(&server, "PUT", "/v1/kv/more", Some(json!(1))).await;
        (status == 507).then_some(body)
    })
    .await;
    assert_eq!(error_of(&refusal).0, "no_space");
    let alarms = eventually("the alarm is raised", || async {
        let (_, alarms) = call(&server, "GET", "/v1/alarms", None).await;
        (alarms["alarms"][0]["alarm"] == "NOSPACE").then_some(alarms)
    })
    .await;
    let reason = alarms["alarms"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("under --min-free-bytes 16000000"),
        "{alarms}"
    );
    let (status, body) = call(&server, "DELETE", "/v1/kv/keep/a", None).await;
    assert_eq!(status, 200, "deletes still work: {body}");
    let (status, body) = call(&server, "DELETE", "/v1/alarms", None).await;
    assert_eq!((status, error_of(&body).0), (409, "alarm_holds"), "{body}");

    disk.empty();
    let disarmed = kvctl(&server.base_url(), &["alarm", "disarm"])
        .await
        .success();
    assert!(disarmed.stdout.contains("NOSPACE"), "{}", disarmed.stdout);
    let (status, _) = call(&server, "PUT", "/v1/kv/after", Some(json!(2))).await;
    assert_eq!(status, 201);
    let (status, _) = call(&server, "GET", "/readyz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_disk_filled_by_another_process_stops_writes_and_growing_it_resumes_them_without_a_restart(
) {
    let (server, disk) = node_on_a_small_disk().await;
    let pid = server.pid();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let key = format!("/v1/kv/before/{n}");
        let (status, _) = call(&server, "PUT", &key, Some(big_value())).await;
        assert_eq!(status, 201);
        acknowledged.push(key);
    }

    disk.fill();
    let refusal = 'write: {
        for n in 0..MAX_FILL_PUTS {
            let key = format!("/v1/kv/during/{n}");
            match call(&server, "PUT", &key, Some(big_value())).await {
                (201, _) => acknowledged.push(key),
                (507, body) => break 'write body,
                // A write that waited for room in vain: it may or may not
                // take effect later, so it is not counted either way.
                (503, _) => {}
                (status, body) => panic!("PUT {key}: {status} {body}"),
            }
        }
        panic!("{MAX_FILL_PUTS} puts on a full disk were never refused");
    };
    assert_eq!(error_of(&refusal).0, "no_space", "{refusal}");
    assert!(
        refusal.to_string().contains("no space left on"),
        "{refusal}"
    );
    let (status, ready) = call(&server, "GET", "/readyz", None).await;
    assert_eq!(status, 503);
    assert!(ready.to_string().contains("no space left on"), "{ready}");
    let (_, space) = call(&server, "GET", "/v1/space", None).await;
    assert!(space["disk_full"].as_str().is_some(), "{space}");
    let (status, body) = call(
        &server,
        "GET",
        &format!("{}?consistency=stale", acknowledged[0]),
        None,
    )
    .await;
    assert_eq!(status, 200, "stale reads are served: {body}");

    disk.resize(64 << 20);
    eventually("writes resume once the disk has room", || async {
        let (status, _) = call(&server, "PUT", "/v1/kv/after", Some(json!(1))).await;
        (status == 201).then_some(())
    })
    .await;
    eventually("the node is ready again", || async {
        let (status, _) = call(&server, "GET", "/readyz", None).await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(server.pid(), pid, "the node was not restarted");
    assert!(server.is_running());
    assert!(
        server.log_contains(r#"waiting for room writer="apply""#),
        "a write of the topic failed and waited for room:\n{}",
        server.log_tail(40)
    );
    for key in &acknowledged {
        let (status, body) = call(&server, "GET", key, None).await;
        assert_eq!(status, 200, "{key} was acknowledged: {body}");
    }
}

#[tokio::test]
async fn a_followers_full_disk_leaves_the_cluster_committing_and_it_catches_up_with_room() {
    let mut cluster = TestCluster::start(3, &["--quota-bytes", "0", "--min-free-bytes", "0"]).await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let disk = Tmpfs::under(cluster.node_mut(follower), 32 << 20).await;
    cluster.wait_converged().await;
    let leader = cluster.leader().await;

    disk.fill();
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let key = format!("/v1/kv/k/{n:02}");
        let (status, body) = call(cluster.node(leader), "PUT", &key, Some(big_value())).await;
        assert_eq!(status, 201, "the other two commit: {body}");
        acknowledged.push(key);
    }
    eventually("the follower says its disk is full", || async {
        let (status, body) = call(cluster.node(follower), "GET", "/readyz", None).await;
        (status == 503 && body.to_string().contains("no space left on")).then_some(())
    })
    .await;

    disk.resize(96 << 20);
    let node = cluster.node(follower);
    for key in &acknowledged {
        let stale = format!("{key}?consistency=stale");
        eventually(&format!("the follower has {key}"), || async {
            let (status, _) = call(node, "GET", &stale, None).await;
            (status == 200).then_some(())
        })
        .await;
    }
    eventually("the follower is ready again", || async {
        let (status, _) = call(node, "GET", "/readyz", None).await;
        (status == 200).then_some(())
    })
    .await;
    let follower = cluster.node(follower);
    assert!(follower.is_running(), "it was not restarted");
    assert!(
        follower.log_contains(r#"waiting for room writer="raft log""#),
        "the follower's raft log waited for room:\n{}",
        follower.log_tail(40)
    );
}

#[tokio::test]
async fn a_node_stopped_while_its_disk_is_full_stops_and_starts_again_with_every_write() {
    let (mut server, disk) = node_on_a_small_disk().await;
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let key = format!("/v1/kv/before/{n}");
        let (status, _) = call(&server, "PUT", &key, Some(big_value())).await;
        assert_eq!(status, 201);
        acknowledged.push(key);
    }
    disk.fill();
    let refused = eventually("a write is refused for space", || async {
        let (status, body) = call(&server, "PUT", "/v1/kv/during", Some(big_value())).await;
        match status {
            201 => panic!("a write was taken on a full disk: {body}"),
            507 => Some(body),
            _ => None,
        }
    })
    .await;
    assert_eq!(error_of(&refused).0, "no_space");

    // A graceful stop does not wait for room (the harness kills a process
    // that takes more than 10 s, and would fail the status check below).
    let stopped = Instant::now();
    server.stop().await;
    assert!(
        stopped.elapsed() < Duration::from_secs(8),
        "the stop took {:?}",
        stopped.elapsed()
    );
    disk.resize(64 << 20);
    server.restart().await;
    for key in &acknowledged {
        let (status, body) = call(&server, "GET", key, None).await;
        assert_eq!(status, 200, "{key} was acknowledged: {body}");
    }
    let (status, _) = call(&server, "PUT", "/v1/kv/after", Some(json!(1))).await;
    assert_eq!(status, 201);
}

/// A node that stopped for want of room (its snapshot could not be
/// written) and is started again on the still full disk, where sled cannot
/// open the view, exits 75 to be restarted, keeping its view; with room it
/// starts with every write. It took the view for damaged, removed it, and
/// exited 1 (not restarted) when the rebuild found no room either.
#[tokio::test]
async fn a_node_started_on_a_full_disk_keeps_its_view_and_waits_for_room() {
    // The data dir on a small disk from the start, as sled lays out its
    // files there.
    let mut disks = Vec::new();
    let mut cluster = TestCluster::start_prepared(
        1,
        &["--quota-bytes", "0", "--min-free-bytes", "0"],
        &mut |_, data_dir, _| {
            std::fs::create_dir_all(data_dir).unwrap();
            disks.push(Tmpfs::mount(data_dir, 8 << 20));
        },
    )
    .await;
    let disk = disks.pop().expect("the disk was mounted");
    let server = cluster.node_mut(1);
    let value = json!("x".repeat(1000));
    for n in 0..300 {
        let key = format!("/v1/kv/before/{n}");
        let (status, body) = call(server, "PUT", &key, Some(value.clone())).await;
        assert_eq!(status, 201, "{body}");
    }
    disk.fill();
    // What little room is left (a file system keeps some), a write takes.
    let _ = call(server, "PUT", "/v1/kv/after", Some(json!(1))).await;
    // A snapshot needs room the disk does not have: the node exits 75.
    let _ = server
        .client()
        .get(server.url("/v1/snapshot"))
        .timeout(SETTLE)
        .send()
        .await;
    let status = server.wait_exit(SETTLE).await.expect("the node exits");
    assert_eq!(status.code(), Some(75), "{}", server.log_tail(20));

    // Whatever the failed snapshot gave back, taken too.
    disk.fill();
    server.spawn();
    match server.wait_exit(SETTLE).await {
        Some(status) => assert_eq!(status.code(), Some(75), "{}", server.log_tail(20)),
        // Waiting for room while it opens, before it takes signals.
        None => server.kill9().await,
    }
    assert!(
        !server.log_contains("the view is damaged"),
        "{}",
        server.log_tail(20)
    );
    disk.empty();
    server.restart().await;
    for n in [0, 299] {
        let (status, body) = call(server, "GET", &format!("/v1/kv/before/{n}"), None).await;
        assert_eq!((status, &body["value"]), (200, &value), "{body}");
    }
}

#[tokio::test]
async fn a_leader_whose_disk_stays_full_exits_and_another_node_leads() {
    let mut cluster = TestCluster::start(3, &["--quota-bytes", "0", "--min-free-bytes", "0"]).await;
    let mut disks = std::collections::BTreeMap::new();
    for id in cluster.ids() {
        disks.insert(id, Tmpfs::under(cluster.node_mut(id), 32 << 20).await);
    }
    cluster.wait_converged().await;
    let leader = cluster.leader().await;
    let (status, _) = call(cluster.node(leader), "PUT", "/v1/kv/before", Some(json!(1))).await;
    assert_eq!(status, 201);

    disks[&leader].fill();
    // A write the full leader takes waits for room, until the leader exits
    // under it: no answer, or a 503, or a 507.
    let node = cluster.node(leader);
    let _ = node
        .client()
        .put(node.url("/v1/kv/during"))
        .json(&big_value())
        .send()
        .await;
    let status = cluster
        .node_mut(leader)
        .wait_exit(SETTLE)
        .await
        .expect("the full leader exits");
    assert_eq!(status.code(), Some(75), "EX_TEMPFAIL, for a supervisor");
    assert!(cluster
        .node(leader)
        .log_contains("cannot write; exiting so that another voter leads"));

    let new_leader = cluster.leader_among(&[leader]).await;
    assert_ne!(new_leader, leader);
    let (status, body) = call(
        cluster.node(new_leader),
        "PUT",
        "/v1/kv/after",
        Some(json!(2)),
    )
    .await;
    assert_eq!(status, 201, "the others go on: {body}");

    disks[&leader].resize(64 << 20);
    cluster.node_mut(leader).restart().await;
    cluster.wait_converged().await;
    let keys = cluster.keys(leader, "").await;
    assert_eq!(keys.get("before"), Some(&json!(1)));
    assert_eq!(keys.get("after"), Some(&json!(2)));
}
