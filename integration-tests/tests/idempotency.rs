//! `Idempotency-Key`: a retried write is applied once and answers with its
//! first result, also after a restart.

use integration_tests::{call, error_of, TestServer};
use serde_json::{json, Value};

async fn put_with_key(server: &TestServer, path: &str, key: &str, value: Value) -> (u16, Value) {
    let response = server
        .client()
        .put(server.url(path))
        .header("idempotency-key", key)
        .json(&value)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_retried_put_is_applied_once_and_answers_its_first_result() {
    let mut server = TestServer::start().await;
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = put_with_key(&server, "/v1/kv/idem/k", &key, json!(1)).await;
    assert_eq!(status, 201);
    let (status, retry) = put_with_key(&server, "/v1/kv/idem/k", &key, json!(1)).await;
    assert_eq!(
        (status, &retry),
        (201, &first),
        "the retry answers the first result"
    );
    let (_, entry) = call(&server, "GET", "/v1/kv/idem/k", None).await;
    assert_eq!(entry["version"], 1, "applied once");

    // Another key is another write.
    let (_, other) = put_with_key(
        &server,
        "/v1/kv/idem/k",
        &uuid::Uuid::new_v4().to_string(),
        json!(2),
    )
    .await;
    assert_eq!(other["version"], 2);

    // The dedupe table is replicated state: it survives a restart.
    server.restart().await;
    let (_, after_restart) = put_with_key(&server, "/v1/kv/idem/k", &key, json!(1)).await;
    assert_eq!(after_restart, first);
    let (_, entry) = call(&server, "GET", "/v1/kv/idem/k", None).await;
    assert_eq!(
        (entry["version"].clone(), entry["value"].clone()),
        (json!(2), json!(2))
    );
}

#[tokio::test]
async fn a_retried_delete_answers_its_first_result() {
    let server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/idem/d", Some(json!(1))).await;
    let key = uuid::Uuid::new_v4().to_string();
    let delete = || {
        server
            .client()
            .delete(server.url("/v1/kv/idem/d"))
            .header("idempotency-key", key.as_str())
            .send()
    };
    let first = delete().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let retry = delete().await.unwrap();
    assert_eq!(
        retry.status(),
        200,
        "not 404: the retry returns the first result"
    );
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
}

/// The idempotency window: how long a write's key is remembered.
const WINDOW_MS: i64 = 10 * 60 * 1000;

/// A leader whose clock is behind the last one's dates its writes by the
/// apply clock, not its own: a retry under the next leader, with a sound
/// clock, still finds the first write inside the window. (Each restart of
/// the one node is a new leader, with the clock `KV_CLOCK_OFFSET_MS` gives.)
#[tokio::test]
async fn a_write_under_a_leader_whose_clock_is_behind_is_deduplicated_under_the_next() {
    let mut server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/idem/clock/first", Some(json!(0))).await;

    let behind = (-(WINDOW_MS + 2 * 60 * 1000)).to_string();
    server.set_env("KV_CLOCK_OFFSET_MS", Some(&behind));
    server.restart().await;
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = put_with_key(&server, "/v1/kv/idem/clock/k", &key, json!(1)).await;
    assert_eq!(status, 201, "{first}");

    server.set_env("KV_CLOCK_OFFSET_MS", None);
    server.restart().await;
    let (status, retry) = put_with_key(&server, "/v1/kv/idem/clock/k", &key, json!(1)).await;
    assert_eq!(
        (status, &retry),
        (201, &first),
        "the retry answers the first result"
    );
    let (_, entry) = call(&server, "GET", "/v1/kv/idem/clock/k", None).await;
    assert_eq!(entry["version"], 1, "applied once: {entry}");
}

/// An `Idempotency-Key` sent again with another request is a 422 naming
/// the key, never the first write's answer, and changes nothing; the hash
/// it is checked against is replicated state: it survives a restart and a
/// rebuild of the view from the topic.
#[tokio::test]
async fn a_reused_idempotency_key_with_another_request_is_refused_also_after_a_rebuild() {
    let mut server = TestServer::start().await;
    let key = uuid::Uuid::new_v4().to_string();
    let (status, first) = put_with_key(&server, "/v1/kv/idem/reused", &key, json!(1)).await;
    assert_eq!(status, 201, "{first}");

    let refused = |what: &'static str, (status, body): (u16, Value)| {
        assert_eq!(status, 422, "{what}: {body}");
        assert_eq!(
            error_of(&body),
            ("idempotency_key_reused", Some("Idempotency-Key")),
            "{what}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&key),
            "{what}: the message names the key: {body}"
        );
    };
    for round in ["before", "after a restart", "after a rebuild"] {
        match round {
            "after a restart" => server.restart().await,
            "after a rebuild" => {
                server.stop().await;
                server.rebuild_view_offline().await;
                server.restart().await;
            }
            _ => {}
        }
        refused(
            round,
            put_with_key(&server, "/v1/kv/idem/reused", &key, json!(2)).await,
        );
        refused(
            round,
            put_with_key(&server, "/v1/kv/idem/other", &key, json!(1)).await,
        );
        let response = server
            .client()
            .delete(server.url("/v1/kv/idem/reused"))
            .header("idempotency-key", key.as_str())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        refused(round, (status, response.json().await.unwrap()));
        let (status, retry) = put_with_key(&server, "/v1/kv/idem/reused", &key, json!(1)).await;
        assert_eq!(
            (status, &retry),
            (201, &first),
            "{round}: the same request is a retry"
        );
        let (_, entry) = call(&server, "GET", "/v1/kv/idem/reused", None).await;
        assert_eq!(
            (entry["version"].clone(), entry["value"].clone()),
            (json!(1), json!(1)),
            "{round}: nothing changed"
        );
        let (status, _) = call(&server, "GET", "/v1/kv/idem/other", None).await;
        assert_eq!(status, 404, "{round}: the other key was not written");
    }
}
