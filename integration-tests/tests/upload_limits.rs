//! Uploads larger than `--max-value-bytes` are refused while they are read:
//! a 1 GiB body, streamed and never held whole by the test, is answered 413
//! `value_too_large` long before it is all sent, on the leader and through
//! a follower that forwards writes, and the server's memory barely moves.

use integration_tests::raw_http::{upload, Framing, UploadAnswer};
use integration_tests::{call, TestCluster, TestServer};
use serde_json::json;

/// The upload: far more than any limit, and than the test's memory.
const UPLOAD_BYTES: u64 = 1 << 30;
/// Body bytes a refused upload may have sent: the limit (1 MiB and its
/// slack) plus what the socket buffers of both ends hold.
const SENT_AT_MOST: u64 = 64 << 20;
/// Growth of the server's resident memory an upload may cause.
const RSS_GROWTH_AT_MOST: u64 = 8 << 20;

/// Checks that `answer` is the refusal of an oversized value, given before
/// the body was read whole.
fn assert_refused_while_reading(answer: &UploadAnswer, what: &str) {
    assert_eq!(answer.status, 413, "{what}: {answer:?}");
    let body: serde_json::Value = serde_json::from_str(&answer.body)
        .unwrap_or_else(|error| panic!("{what}: the answer is not JSON ({error}): {answer:?}"));
    assert_eq!(body["error"]["code"], "value_too_large", "{what}: {body}");
    assert!(
        answer.sent_when_answered <= SENT_AT_MOST,
        "{what}: answered only after {} bytes were sent",
        answer.sent_when_answered
    );
}

#[tokio::test]
async fn a_gigabyte_upload_is_refused_while_reading_without_growing_memory() {
    let server = TestServer::start().await;
    // Warm the paths a write takes, so their first allocations are not
    // counted as the upload's.
    let (status, _) = call(&server, "PUT", "/v1/kv/warm", Some(json!(1))).await;
    assert_eq!(status, 201);
    let before = server.resident_bytes();
    for framing in [Framing::Length, Framing::Chunked] {
        let answer = upload(server.addr(), "PUT", "/v1/kv/huge", UPLOAD_BYTES, framing).await;
        assert_refused_while_reading(&answer, &format!("{framing:?}"));
    }
    let grown = server.resident_bytes().saturating_sub(before);
    assert!(
        grown <= RSS_GROWTH_AT_MOST,
        "the server grew by {grown} bytes of resident memory"
    );
    // The node still serves, and nothing was written.
    let (status, _) = call(&server, "GET", "/v1/kv/huge", None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, "PUT", "/v1/kv/after", Some(json!(2))).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a_follower_refuses_an_oversized_upload_before_forwarding_it() {
    let cluster = TestCluster::start(2, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a cluster of two has a follower");
    let node = cluster.node(follower);
    let before = node.resident_bytes();
    let answer = upload(
        node.addr(),
        "PUT",
        "/v1/kv/huge",
        UPLOAD_BYTES,
        Framing::Chunked,
    )
    .await;
    assert_refused_while_reading(&answer, "through a follower");
    let grown = node.resident_bytes().saturating_sub(before);
    assert!(
        grown <= RSS_GROWTH_AT_MOST,
        "the follower grew by {grown} bytes of resident memory"
    );
    let (status, _) = call(node, "PUT", "/v1/kv/after", Some(json!(2))).await;
    assert_eq!(status, 201, "the follower still forwards writes");
}

/// A client that asks before it sends (`Expect: 100-continue`) a body
/// declared over the limit is refused at once, with the JSON error and
/// without the `100 Continue` that would ask it for the body.
#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_asked_for() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start().await;
    for path in ["/v1/kv/huge", "/v1/txn"] {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        let method = if path == "/v1/txn" { "POST" } else { "PUT" };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {UPLOAD_BYTES}\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The answer comes without a byte of the body sent.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).contains("}}") {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
                    .await
                    .expect("the server answers before the body is sent")
                    .unwrap();
            assert!(read > 0, "{path}: closed without an answer: {answer:?}");
            answer.extend_from_slice(&chunk[..read]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(!text.contains("100 Continue"), "{path}: {text}");
        let body: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "value_too_large", "{path}: {body}");
    }
    let (status, _) = call(&server, "GET", "/v1/kv/huge", None).await;
    assert_eq!(status, 404);
}

/// A client that stops part-way through its body is answered 400 after
/// `--request-timeout-ms` without a byte, not held for the hard timeout
/// long-polls need; nothing is written, and the node goes on serving.
#[tokio::test]
async fn a_body_that_stalls_is_refused_after_the_request_timeout() {
    const TIMEOUT_MS: u64 = 1_000;
    let timeout = TIMEOUT_MS.to_string();
    let server = TestServer::start_with(&["--request-timeout-ms", &timeout]).await;
    // With --auth a transaction's body is read before its handler, to check
    // its keys: the stall is named there too.
    let secured = TestServer::start_with(&["--auth", "--request-timeout-ms", &timeout]).await;
    let (status, root) = call(&secured, "POST", "/v1/acl/bootstrap", None).await;
    assert_eq!(status, 200, "{root}");
    let bearer = format!(
        "Authorization: Bearer {}\r\n",
        root["token"].as_str().expect("the root token")
    );
    for (node, headers, method, path) in [
        (&server, "", "PUT", "/v1/kv/stalled"),
        (&server, "", "POST", "/v1/txn"),
        (&secured, bearer.as_str(), "POST", "/v1/txn"),
    ] {
        let (status, body, took) = integration_tests::raw_http::stalled_upload_with(
            node.addr(),
            method,
            path,
            headers,
            1000,
            10,
        )
        .await;
        assert_eq!(status, 400, "{method} {path}: {body}");
        assert!(body.contains("no byte of the body arrived"), "{body}");
        assert!(
            took >= std::time::Duration::from_millis(TIMEOUT_MS)
                && took < std::time::Duration::from_secs(10),
            "{method} {path}: refused after {took:?}"
        );
    }
    let (status, _) = call(&server, "GET", "/v1/kv/stalled", None).await;
    assert_eq!(status, 404, "the stalled put wrote nothing");
    let (status, body) = call(&server, "PUT", "/v1/kv/after", Some(json!(1))).await;
    assert_eq!(status, 201, "{body}");
}

/// The largest value `--max-value-bytes` takes (16 MiB), made of the
/// characters its raft log entry escapes (each stored backslash written
/// twice), is acknowledged and reads back whole after a kill -9: its entry
/// fits a frame of the raft log that the restart reads back.
#[tokio::test]
async fn the_largest_value_of_escaped_characters_survives_a_crash() {
    const LARGEST: usize = 16 << 20;
    let limit = LARGEST.to_string();
    let mut server = TestServer::start_with(&["--max-value-bytes", &limit]).await;
    // A JSON string of backslashes: `"\\\\…"`, LARGEST bytes in all.
    let mut value = String::with_capacity(LARGEST);
    value.push('"');
    value.push_str(&"\\\\".repeat((LARGEST - 2) / 2));
    value.push('"');
    assert_eq!(value.len(), LARGEST);
    let answer = server
        .client()
        .put(server.url("/v1/kv/escaped"))
        .header("content-type", "application/json")
        .body(value.clone())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(answer.status().as_u16(), 201, "{:?}", answer.text().await);

    server.kill9().await;
    server.restart().await;
    let (status, body) = call(&server, "GET", "/v1/kv/escaped", None).await;
    assert_eq!(status, 200, "{}", server.log_tail(10));
    let read = serde_json::to_string(&body["value"]).expect("a JSON value");
    assert_eq!(read.len(), value.len());
    assert!(read == value, "the value read back differs");
}
