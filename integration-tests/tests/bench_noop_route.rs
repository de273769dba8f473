//! The no-op route of the HTTP ceiling benchmark: absent from a normal
//! node (404, and not in `--help`), served with `--bench-noop-route` behind
//! the same layers as `/v1/kv` (the body limit, `--auth`, the revision
//! header) and writing nothing.

use integration_tests::{error_of, TestServer};

/// The route's path for one key, shaped as a put's.
const NOOP_PATH: &str = "/v1/bench/noop/bench/k0000001";

/// A 256-byte JSON string, the body of the benchmark's puts.
fn put_body() -> String {
    format!("\"{}\"", "v".repeat(254))
}

/// Sends the benchmark's put to the no-op route of `server`; the status,
/// the `X-Kv-Revision` header and the body.
async fn noop_put(
    server: &TestServer,
    body: String,
    token: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut request = server
        .client()
        .put(server.url(NOOP_PATH))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let revision = response
        .headers()
        .get("x-kv-revision")
        .map(|value| value.to_str().expect("a visible header").to_string());
    (status, revision, response.text().await.expect("a body"))
}

#[tokio::test]
async fn the_noop_route_is_not_found_without_the_flag() {
    let server = TestServer::start().await;
    let (status, _, body) = noop_put(&server, put_body(), None).await;
    assert_eq!(status, 404, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error_of(&body).0, "not_found", "{body}");

    let help = std::process::Command::new(integration_tests::server_binary())
        .arg("--help")
        .output()
        .expect("kv-server --help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--max-value-bytes"), "{help}");
    assert!(!help.contains("bench-noop"), "the flag is listed:\n{help}");
}

#[tokio::test]
async fn the_noop_route_answers_204_behind_the_layers_of_a_put_and_writes_nothing() {
    let server = TestServer::start_with(&["--bench-noop-route", "--max-value-bytes", "1024"]).await;
    let (status, before, body) = noop_put(&server, put_body(), None).await;
    assert_eq!(status, 204, "{body}");
    let before = before.expect("the answer carries X-Kv-Revision");
    for _ in 0..10 {
        let (status, revision, body) = noop_put(&server, put_body(), None).await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(revision.as_ref(), Some(&before), "a no-op wrote");
    }

    // The body limit of the public routes applies, with the API's error.
    let (status, _, body) = noop_put(&server, "1".repeat(200_000), None).await;
    assert_eq!(status, 413, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(error_of(&body).0, "value_too_large", "{body}");
}

#[tokio::test]
async fn the_noop_route_wants_a_token_under_auth() {
    let server = TestServer::start_with(&["--bench-noop-route", "--auth"]).await;
    let (status, _, body) = noop_put(&server, put_body(), None).await;
    assert_eq!(status, 401, "{body}");

    let root = server.bootstrap_acl().await;
    let (status, _, body) = noop_put(&server, put_body(), Some(&root)).await;
    assert_eq!(status, 204, "{body}");
}
