//! Replay (`/v1/topic/records`): the compacted topic as NDJSON, whose fold
//! is exactly the store's state.

use std::collections::BTreeMap;

use integration_tests::TestServer;
use serde_json::{json, Value};

#[tokio::test]
async fn replaying_the_topic_from_zero_rebuilds_exactly_the_current_state() {
    let server = TestServer::start().await;
    let client = server.client();
    for round in 0..3 {
        for n in 0..100 {
            let key = format!("replay/k{n:03}");
            let response = if round == 2 && n % 7 == 0 {
                client
                    .delete(server.url(&format!("/v1/kv/{key}")))
                    .send()
                    .await
                    .unwrap()
            } else {
                client
                    .put(server.url(&format!("/v1/kv/{key}")))
                    .json(&json!({ "round": round, "n": n }))
                    .send()
                    .await
                    .unwrap()
            };
            assert!(
                response.status().is_success(),
                "{key}: {}",
                response.status()
            );
        }
    }

    let response = client
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = response.text().await.unwrap();
    let mut replayed: BTreeMap<String, (Value, u64, u64, u64)> = BTreeMap::new();
    let mut last_offset = 0;
    for line in body.lines() {
        let record: Value = serde_json::from_str(line).expect("each line is one JSON record");
        let offset = record["offset"].as_u64().unwrap();
        assert!(offset > last_offset, "offsets increase: {line}");
        last_offset = offset;
        let key = record["key"].as_str().unwrap().to_string();
        match &record["value"] {
            Value::Null => {
                replayed.remove(&key);
            }
            value => {
                let create = record["create_revision"].as_u64().unwrap();
                let version = record["version"].as_u64().unwrap();
                replayed.insert(key, (value.clone(), create, offset, version));
            }
        }
    }

    let page: Value = client
        .get(server.url("/v1/kv?prefix=replay/&limit=10000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let state: BTreeMap<String, (Value, u64, u64, u64)> = page["entries"]
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
        .collect();
    assert_eq!(state.len(), 100 - 15, "15 of the keys were deleted");
    assert_eq!(
        replayed, state,
        "replay from 0 folds to the live state, revisions included"
    );
}

#[tokio::test]
async fn replay_from_an_offset_starts_there() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut revisions = Vec::new();
    for n in 0..10 {
        let body: Value = client
            .put(server.url(&format!("/v1/kv/replay/k{n}")))
            .json(&json!(n))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        revisions.push(body["revision"].as_u64().unwrap());
    }
    let from = revisions[6];
    let body = client
        .get(server.url(&format!("/v1/topic/records?from={from}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let offsets: Vec<u64> = body
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, revisions[6..].to_vec());
}

/// `kv-server rebuild` on a path that holds no node's data (a mistyped
/// `--data-dir`) refuses, names the path, and makes nothing there: it used
/// to make an empty node and report it rebuilt.
#[test]
fn an_offline_rebuild_of_a_path_without_a_node_refuses_and_makes_nothing() {
    let root = tempfile::tempdir().expect("a temp dir");
    let missing = root.path().join("data-mistyped");
    let output = std::process::Command::new(integration_tests::server_binary())
        .args(["rebuild", "--data-dir"])
        .arg(&missing)
        .env("NO_COLOR", "1")
        .output()
        .expect("kv-server rebuild runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--data-dir {}: no node's data there",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(!missing.exists(), "the rebuild made {}", missing.display());
}
