//! A failed fsync of the topic is final: the node stops at once, naming the
//! file, instead of retrying a sync that could succeed over lost pages;
//! restarted on a sound disk it has every write it acknowledged.

use std::time::{Duration, Instant};

use integration_tests::{call, TestServer};
use serde_json::json;

/// The exit status of a node stopped by a failed checkpoint (`EX_IOERR`).
const EXIT_CHECKPOINT_FAILED: i32 = 74;

#[tokio::test]
async fn a_failed_topic_fsync_stops_the_node_and_a_restart_keeps_every_acknowledged_write() {
    // The fault fires once the topic holds a record, so the node first
    // starts (and stops) with an empty topic, then comes back with it.
    let mut server = TestServer::start_with(&[]).await;
    server.stop().await;
    server.set_env("KV_FAIL_FSYNC", Some("topic"));
    server.restart().await;

    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in 0..100_000 {
        if Instant::now() > deadline {
            break;
        }
        let sent = server
            .client()
            .put(server.url(&format!("/v1/kv/fsync/{n:05}")))
            .json(&json!({ "n": n }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => acknowledged.push(n),
            // Nobody listens any more: the node is gone.
            Err(error) if error.is_connect() => break,
            // Answers while the node goes down.
            Ok(_) | Err(_) => {}
        }
    }
    let status = server
        .wait_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the node kept running after its topic fsync failed\n{}",
                server.log_tail(20)
            )
        });
    assert_eq!(
        status.code(),
        Some(EXIT_CHECKPOINT_FAILED),
        "{status}\n{}",
        server.log_tail(20)
    );
    let topic_dir = server.data_dir().join("topic");
    for named in [
        "checkpoint failed",
        "injected by KV_FAIL_FSYNC",
        &topic_dir.display().to_string(),
    ] {
        assert!(
            server.log_contains(named),
            "the log names {named:?}\n{}",
            server.log_tail(20)
        );
    }
    assert!(
        !acknowledged.is_empty(),
        "the node acknowledged writes before it stopped"
    );

    server.set_env("KV_FAIL_FSYNC", None);
    server.restart().await;
    for n in acknowledged {
        let (status, entry) = call(&server, "GET", &format!("/v1/kv/fsync/{n:05}"), None).await;
        assert_eq!(
            (status, &entry["value"]),
            (200, &json!({ "n": n })),
            "acknowledged write {n}: {entry}"
        );
    }
}
