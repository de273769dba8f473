//! `/raft/*` bodies (on the peer port) are bounded and read with a
//! deadline: an oversized append batch or snapshot is refused with 413, a
//! body that stalls is refused once `--raft-body-timeout-ms` has passed,
//! and the node goes on serving.

use std::time::Duration;

use futures::FutureExt;
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

/// A relayed write is checked on the leader as the follower's handler
/// checked its request: a value that is not JSON, an invalid key, a key of
/// typed metadata, a value over `--max-value-bytes`, an op followers
/// never relay and an alarm for no member or with a long reason are
/// refused one by one and nothing of them is stored; a relay of more
/// commands than one entry holds is refused whole.
#[tokio::test]
async fn relayed_commands_are_checked_again_on_the_leader() {
    let server = TestServer::start_with(&["--max-value-bytes", "64"]).await;
    let relay = format!("{}/raft/relay", server.peer_url());
    let put = |key: &str, value: &str| {
        json!({
            "command": {
                "timestamp_ms": 1,
                "idempotency_key": null,
                "request_hash": null,
                "op": {"Put": {"key": key, "value": value, "condition": "Always", "lease": null}}
            },
            "token": null
        })
    };
    let long = format!("\"{}\"", "x".repeat(100));
    let command = |op: serde_json::Value| {
        json!({
            "command": {"timestamp_ms": 1, "idempotency_key": null, "request_hash": null, "op": op},
            "token": null
        })
    };
    let proposals = json!([
        put("relay/ok", "1"),
        put("relay/not-json", "{not json"),
        put("", "1"),
        put("\u{0}acl/roles/x", "1"),
        put(&format!("{}relay", schemas::TOPICS_PREFIX), "{}"),
        put("relay/long", &long),
        command(json!({"LeaseGrant": {"ttl_ms": 1000, "max_leases": 10}})),
        command(json!({"AlarmRaise": {"member": 99, "reason": "full"}})),
        command(json!({"AlarmRaise": {"member": 1, "reason": "x".repeat(2000)}})),
    ]);
    let http = reqwest::Client::new();
    let post = |proposals: serde_json::Value| {
        http.post(&relay)
            .json(&proposals)
            .send()
            .map(|sent| sent.expect("the peer port answers"))
    };
    let answer = post(proposals).await;
    assert_eq!(answer.status(), 200);
    let answers: serde_json::Value = answer.json().await.expect("JSON answers");
    let answers = answers.as_array().expect("one answer per command");
    assert_eq!(answers.len(), 9, "{answers:?}");
    assert!(answers[0].get("Done").is_some(), "{:?}", answers[0]);
    for (answer, code) in answers[1..].iter().zip([
        "invalid_json",
        "invalid_key",
        "invalid_key",
        "reserved_key",
        "value_too_large",
        "invalid_body",
        "invalid_body",
        "invalid_body",
    ]) {
        let body = answer["Refused"]["body"].as_str().expect("a refusal");
        let body: serde_json::Value = serde_json::from_str(body).expect("an error body");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    let (status, _) = call(&server, "GET", "/v1/kv/relay/ok", None).await;
    assert_eq!(status, 200);
    for key in ["relay/not-json", "relay/long"] {
        let (status, answer) = call(&server, "GET", &format!("/v1/kv/{key}"), None).await;
        assert_eq!(status, 404, "{key}: {answer}");
    }
    let (status, answer) = call(&server, "GET", "/v1/leases", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["leases"], json!([]), "{answer}");
    let (status, answer) = call(&server, "GET", "/v1/alarms", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alarms"], json!([]), "{answer}");

    let many: Vec<_> = (0..1025).map(|i| put(&format!("relay/{i}"), "1")).collect();
    let answer = post(json!(many)).await;
    assert_eq!(answer.status(), 400);
    let body: serde_json::Value = answer.json().await.expect("an error body");
    assert_eq!(body["error"]["code"], "invalid_body", "{body}");
    let (status, answer) = call(&server, "GET", "/v1/kv/relay/0", None).await;
    assert_eq!(status, 404, "{answer}");
    assert_serving(&server, "relay/after").await;
}
