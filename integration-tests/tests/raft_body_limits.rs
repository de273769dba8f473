//! `/raft/*` bodies (on the peer port) are bounded and read with a
//! deadline: an oversized append batch or snapshot is refused with 413, a
//! body that stalls is refused once `--raft-body-timeout-ms` has passed,
//! and the node goes on serving.

use std::time::Duration;

use integration_tests::raw_http::{stalled_upload, upload, Framing};
use integration_tests::{call, TestServer};
use serde_json::json;

/// `--max-raft-body-bytes` of these tests.
const RAFT_BODY_BYTES: u64 = 1 << 20;
/// `--max-snapshot-bytes` of these tests.
const SNAPSHOT_BYTES: u64 = 2 << 20;
/// `--raft-body-timeout-ms` of these tests.
const BODY_TIMEOUT_MS: u64 = 300;

async fn bounded_server() -> TestServer {
    TestServer::start_with(&[
        "--max-raft-body-bytes",
        &RAFT_BODY_BYTES.to_string(),
        "--max-snapshot-bytes",
        &SNAPSHOT_BYTES.to_string(),
        "--raft-body-timeout-ms",
        &BODY_TIMEOUT_MS.to_string(),
    ])
    .await
}

/// The node still takes and serves writes.
async fn assert_serving(server: &TestServer, key: &str) {
    let (status, answer) = call(server, "PUT", &format!("/v1/kv/{key}"), Some(json!(1))).await;
    assert_eq!(status, 201, "PUT {key}: {answer}");
    let (status, answer) = call(server, "GET", &format!("/v1/kv/{key}"), None).await;
    assert_eq!(status, 200, "GET {key}: {answer}");
}

#[tokio::test]
async fn oversized_raft_bodies_are_refused_with_413_and_the_node_keeps_serving() {
    let server = bounded_server().await;
    // (route, body bytes sent): each just over its own bound.
    let cases = [
        ("/raft/append", RAFT_BODY_BYTES + 1),
        ("/raft/vote", RAFT_BODY_BYTES + 1),
        ("/raft/read-index", RAFT_BODY_BYTES + 1),
        ("/raft/snapshot", SNAPSHOT_BYTES + 1),
    ];
    for (route, bytes) in cases {
        for framing in [Framing::Length, Framing::Chunked] {
            let answer = upload(server.peer_addr(), "POST", route, bytes, framing).await;
            assert_eq!(answer.status, 413, "{route} {framing:?}: {answer:?}");
            assert!(
                answer.body.contains("value_too_large"),
                "{route} {framing:?}: {answer:?}"
            );
        }
    }
    assert_serving(&server, "after-oversized").await;
}

#[tokio::test]
async fn a_snapshot_larger_than_an_append_batch_is_read_up_to_its_own_bound() {
    let server = bounded_server().await;
    // Over the append bound but under the snapshot bound: read whole, then
    // refused as a snapshot that does not decode, not as too large.
    let answer = upload(
        server.peer_addr(),
        "POST",
        "/raft/snapshot",
        RAFT_BODY_BYTES + 1024,
        Framing::Length,
    )
    .await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("invalid_snapshot"), "{answer:?}");
}

#[tokio::test]
async fn a_raft_body_that_stalls_is_refused_after_the_deadline() {
    let server = bounded_server().await;
    for route in ["/raft/append", "/raft/snapshot"] {
        let (status, body, took) =
            stalled_upload(server.peer_addr(), "POST", route, 1000, 10).await;
        assert_eq!(status, 400, "{route}: {body}");
        assert!(body.contains("did not arrive within"), "{route}: {body}");
        assert!(
            took >= Duration::from_millis(BODY_TIMEOUT_MS) && took < Duration::from_secs(10),
            "{route}: refused after {took:?}"
        );
    }
    assert_serving(&server, "after-stalled").await;
}
