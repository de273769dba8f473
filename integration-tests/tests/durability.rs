//! Acknowledged writes survive `kill -9`; a lost view is rebuilt from the
//! topic; a node restarts from a snapshot plus the log tail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{call, TestServer};
use serde_json::{json, Value};

/// Every key under `prefix` with its value, create revision and version.
async fn state(server: &TestServer, prefix: &str) -> BTreeMap<String, (Value, u64, u64, u64)> {
    let (status, page) = call(
        server,
        "GET",
        &format!("/v1/kv?prefix={prefix}&limit=10000"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["more"], false);
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["key"].as_str().unwrap().to_string(),
                (
                    entry["value"].clone(),
                    entry["create_revision"].as_u64().unwrap(),
                    entry["mod_revision"].as_u64().unwrap(),
                    entry["version"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_in_the_middle_of_a_stream() {
    let mut server = TestServer::start().await;
    let acknowledged: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let writer = {
        let client = server.client().clone();
        let base = server.url("/v1/kv/durable/");
        let acknowledged = Arc::clone(&acknowledged);
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            for n in 0..5_000u64 {
                if Instant::now() > deadline {
                    break;
                }
                let key = format!("k{:05}", n % 500);
                let sent = client
                    .put(format!("{base}{key}"))
                    .json(&json!({ "n": n }))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acknowledged.lock().unwrap().push((key, n));
                    }
                    _ => break, // the server is gone
                }
            }
        })
    };
    // Let the stream run, then crash the server under it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "the writes did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill9().await;
    writer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    server.restart().await;
    let state = state(&server, "durable/").await;
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for (key, n) in &acknowledged {
        latest.insert(format!("durable/{key}"), *n);
    }
    for (key, n) in latest {
        let (value, ..) = state
            .get(&key)
            .unwrap_or_else(|| panic!("{key} was acknowledged but is lost"));
        // A write sent after the last acknowledged one may also have landed.
        assert!(
            value["n"].as_u64().unwrap() >= n,
            "{key}: {value} is older than acknowledged {n}"
        );
    }
}

#[tokio::test]
async fn a_deleted_view_is_rebuilt_from_the_topic_at_start_and_offline() {
    let mut server = TestServer::start().await;
    for round in 0..3 {
        for n in 0..50 {
            call(
                &server,
                "PUT",
                &format!("/v1/kv/rebuild/k{n}"),
                Some(json!({ "round": round })),
            )
            .await;
        }
    }
    for n in (0..50).step_by(5) {
        call(&server, "DELETE", &format!("/v1/kv/rebuild/k{n}"), None).await;
    }
    let before = state(&server, "rebuild/").await;
    assert_eq!(before.len(), 40);

    server.stop().await;
    std::fs::remove_dir_all(server.data_dir().join("view")).unwrap();
    server.restart().await;
    assert_eq!(state(&server, "rebuild/").await, before, "rebuilt at start");

    server.stop().await;
    server.rebuild_view_offline().await;
    server.restart().await;
    assert_eq!(state(&server, "rebuild/").await, before, "rebuilt offline");
    // And the store goes on: new writes, revisions above the old ones.
    let (status, written) = call(&server, "PUT", "/v1/kv/rebuild/k0", Some(json!("new"))).await;
    assert_eq!(status, 201);
    let highest = before
        .values()
        .map(|(_, _, modified, _)| *modified)
        .max()
        .unwrap();
    assert!(written["revision"].as_u64().unwrap() > highest);
}

#[tokio::test]
async fn a_node_restarts_from_a_snapshot_and_the_log_tail() {
    let mut server = TestServer::start_with(&["--snapshot-every", "100"]).await;
    for n in 0..1_000 {
        call(
            &server,
            "PUT",
            &format!("/v1/kv/snap/k{:04}", n % 400),
            Some(json!(n)),
        )
        .await;
    }
    let before = state(&server, "snap/").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, cluster) = call(&server, "GET", "/v1/cluster", None).await;
        if cluster["snapshot_index"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot was taken: {cluster}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.data_dir().join("snapshot/current.snap").is_file());

    server.kill9().await;
    server.restart().await;
    assert_eq!(state(&server, "snap/").await, before);
    let (_, cluster) = call(&server, "GET", "/v1/cluster", None).await;
    assert!(cluster["snapshot_index"].as_u64().unwrap() > 0, "{cluster}");
}

#[tokio::test]
async fn the_committed_index_survives_a_restart() {
    let mut server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/committed/k", Some(json!(1))).await;
    server.restart().await;
    let (_, cluster) = call(&server, "GET", "/v1/cluster", None).await;
    let applied = cluster["applied_index"].as_u64().unwrap();
    let committed = cluster["committed_index"].as_u64().unwrap();
    assert!(applied > 0, "{cluster}");
    assert!(
        committed >= applied,
        "a node cannot have applied more than was committed: {cluster}"
    );
}

#[tokio::test]
async fn a_damaged_raft_log_stops_the_node_and_names_the_file() {
    let mut server = TestServer::start().await;
    for n in 0..20 {
        call(
            &server,
            "PUT",
            &format!("/v1/kv/damaged/k{n}"),
            Some(json!(n)),
        )
        .await;
    }
    server.kill9().await;

    // Flip a byte inside the first frame; intact frames follow it, so this
    // is damage, not the torn tail of a write cut short.
    let raft_dir = server.data_dir().join("raft");
    let mut segments: Vec<_> = std::fs::read_dir(&raft_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    segments.sort();
    let segment = segments.first().expect("the raft log has a segment");
    let mut bytes = std::fs::read(segment).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(segment, &bytes).unwrap();

    server.spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("a node with a damaged raft log stops by itself");
    assert!(!status.success(), "it exits with an error: {status}");
    let named = format!(
        "raft log segment {} is damaged at byte 0",
        segment.display()
    );
    assert!(server.log_contains(&named), "{}", server.log_tail(20));
    assert_eq!(
        std::fs::read(segment).unwrap(),
        bytes,
        "nothing is cut off a damaged segment"
    );
}

#[tokio::test]
async fn a_data_dir_without_a_format_marker_is_refused_and_left_as_it_was() {
    let mut server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/old/k", Some(json!(1))).await;
    server.stop().await;
    let marker = server.data_dir().join("format");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "6");

    // A data dir as servers wrote them before the marker: a raft log and
    // no format file.
    std::fs::remove_file(&marker).unwrap();
    server.spawn();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("a node with an unmarked data dir stops by itself");
    assert!(!status.success(), "it exits with an error: {status}");
    let named = format!(
        "data directory {} was written by an earlier server",
        server.data_dir().display()
    );
    assert!(server.log_contains(&named), "{}", server.log_tail(20));
    assert!(
        server.log_contains("start the node afresh"),
        "{}",
        server.log_tail(20)
    );
    assert!(!marker.exists(), "a refused data dir is not marked");
}

/// A second process pointed at a running node's data directory (a server,
/// or `kv-server rebuild`) is refused, naming the lock, and touches
/// nothing: it used to take the view sled held for damaged, rebuild it
/// under the running node, and serve beside it from the same raft log.
#[tokio::test]
async fn a_second_process_on_a_running_nodes_data_dir_is_refused() {
    let server = TestServer::start().await;
    for n in 0..100 {
        call(&server, "PUT", &format!("/v1/kv/held/k{n}"), Some(json!(n))).await;
    }
    let before = state(&server, "held/").await;
    let [port, peer_port] = integration_tests::free_ports(2)[..] else {
        unreachable!("two ports were asked for")
    };
    let data_dir = server.data_dir();
    let second_server = [
        "--node-id".to_string(),
        "1".to_string(),
        "--listen".to_string(),
        format!("127.0.0.1:{port}"),
        "--peer-listen".to_string(),
        format!("127.0.0.1:{peer_port}"),
        "--namesrv-listen".to_string(),
        "off".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    let rebuild = [
        "rebuild".to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    for args in [&second_server[..], &rebuild[..]] {
        let output = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(integration_tests::server_binary())
                .args(args)
                .env("NO_COLOR", "1")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the second process stops by itself")
        .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {log}");
        assert!(
            log.contains("is in use by another process") && log.contains("lock"),
            "{args:?}: {log}"
        );
        assert!(!log.contains("rebuilding"), "{args:?}: {log}");
    }
    // The running node goes on as it was.
    assert_eq!(state(&server, "held/").await, before);
    let (status, _) = call(&server, "PUT", "/v1/kv/held/after", Some(json!(1))).await;
    assert_eq!(status, 201);
}
