//! Long-poll watches (Consul's blocking queries) of a key and of a prefix.

use std::time::{Duration, Instant};

use integration_tests::{call, TestServer};
use serde_json::{json, Value};

/// How long a spawned long-poll may take to register with the server.
const REGISTERED_WITHIN: Duration = Duration::from_secs(10);

fn spawn_get(
    server: &TestServer,
    path: String,
) -> tokio::task::JoinHandle<(Duration, u16, Option<u64>, Value)> {
    let client = server.client().clone();
    let url = server.url(&path);
    tokio::spawn(async move {
        let started = Instant::now();
        let response = client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-kv-index")
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let body = response.json().await.unwrap();
        (started.elapsed(), status, index, body)
    })
}

#[tokio::test]
async fn a_key_watch_is_woken_by_a_write_to_its_key() {
    let server = TestServer::start().await;
    let (_, first) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(1))).await;
    let index = first["revision"].as_u64().unwrap();
    let watch = spawn_get(&server, format!("/v1/kv/watch/k?index={index}&wait=20s"));
    server.wait_for_waiters(1, REGISTERED_WITHIN).await;
    let (_, second) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(2))).await;
    let (elapsed, status, next_index, body) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the write woke the watch")
        .unwrap();
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(status, 200);
    assert_eq!(body["value"], 2);
    assert_eq!(
        next_index,
        second["revision"].as_u64(),
        "X-Kv-Index moves to the change"
    );
}

#[tokio::test]
async fn a_key_watch_times_out_with_the_unchanged_value() {
    let server = TestServer::start().await;
    let (_, first) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(1))).await;
    let index = first["revision"].as_u64().unwrap();
    let (elapsed, status, next_index, body) =
        spawn_get(&server, format!("/v1/kv/watch/k?index={index}&wait=500ms"))
            .await
            .unwrap();
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(
        (status, body["value"].clone(), next_index),
        (200, json!(1), Some(index))
    );
}

/// A wait over `--max-wait-ms` is cut to it, as Consul cuts one to its
/// limit: the poll answers then, not with a 400.
#[tokio::test]
async fn a_wait_over_the_limit_is_cut_to_it() {
    let server = TestServer::start_with(&["--max-wait-ms", "700"]).await;
    let (_, first) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(1))).await;
    let index = first["revision"].as_u64().unwrap();
    for path in [
        format!("/v1/kv/watch/k?index={index}&wait=10m"),
        format!("/v1/kv?prefix=watch/&index={index}&wait=1h"),
    ] {
        let (elapsed, status, next_index, body) = spawn_get(&server, path.clone()).await.unwrap();
        assert_eq!((status, next_index), (200, Some(index)), "{path}: {body}");
        assert!(elapsed >= Duration::from_millis(650), "{path}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{path}: {elapsed:?}");
    }
}

#[tokio::test]
async fn a_watch_with_an_old_index_answers_at_once() {
    let server = TestServer::start().await;
    let (_, written) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(1))).await;
    let old = written["revision"].as_u64().unwrap() - 1;
    let (elapsed, status, _, body) =
        spawn_get(&server, format!("/v1/kv/watch/k?index={old}&wait=30s"))
            .await
            .unwrap();
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!((status, body["value"].clone()), (200, json!(1)));
}

#[tokio::test]
async fn a_prefix_watch_ignores_other_prefixes_and_wakes_on_its_own() {
    let server = TestServer::start().await;
    let (_, seed) = call(&server, "PUT", "/v1/kv/watch/apps/a", Some(json!(0))).await;
    let index = seed["revision"].as_u64().unwrap();
    let watch = spawn_get(
        &server,
        format!("/v1/kv?prefix=watch/apps/&index={index}&wait=20s"),
    );
    server.wait_for_waiters(1, REGISTERED_WITHIN).await;
    for key in ["watch/other/x", "watch/appsX", "watch/app"] {
        call(&server, "PUT", &format!("/v1/kv/{key}"), Some(json!(1))).await;
        // A write is answered after its waiters were woken: one still
        // registered now was not woken by it.
        assert_eq!(
            server.waiters().await,
            1,
            "a write to {key} woke the watch of watch/apps/"
        );
    }
    call(&server, "PUT", "/v1/kv/watch/apps/b", Some(json!(2))).await;
    let (_, status, _, body) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("a write under the prefix woke the watch")
        .unwrap();
    assert_eq!(status, 200);
    let keys: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["watch/apps/a", "watch/apps/b"]);
}

#[tokio::test]
async fn a_key_watch_is_woken_by_a_delete_of_its_key() {
    let server = TestServer::start().await;
    let (_, first) = call(&server, "PUT", "/v1/kv/watch/k", Some(json!(1))).await;
    let index = first["revision"].as_u64().unwrap();
    let watch = spawn_get(&server, format!("/v1/kv/watch/k?index={index}&wait=20s"));
    server.wait_for_waiters(1, REGISTERED_WITHIN).await;
    let (_, deleted) = call(&server, "DELETE", "/v1/kv/watch/k", None).await;
    let (_, status, next_index, body) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("the delete woke the watch")
        .unwrap();
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("key_not_found"))
    );
    assert_eq!(next_index, deleted["revision"].as_u64());
}

#[tokio::test]
async fn a_topics_watch_is_not_woken_by_subscription_groups_but_by_a_new_topic() {
    let server = TestServer::start().await;
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/topics/orders",
        Some(json!({"topicName": "orders"})),
    )
    .await;
    assert_eq!(status, 201);
    let listed = server
        .client()
        .get(server.url("/v1/kv?prefix=topics/"))
        .send()
        .await
        .unwrap();
    let index: u64 = listed.headers()["x-kv-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let watch = spawn_get(
        &server,
        format!("/v1/kv?prefix=topics/&index={index}&wait=20s"),
    );
    server.wait_for_waiters(1, REGISTERED_WITHIN).await;
    for group in ["x", "orders-consumers"] {
        let (status, _) = call(
            &server,
            "PUT",
            &format!("/v1/subscriptions/{group}"),
            Some(json!({ "groupName": group })),
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(
            server.waiters().await,
            1,
            "subscription group {group} woke the topics watch"
        );
    }
    call(
        &server,
        "PUT",
        "/v1/topics/y",
        Some(json!({"topicName": "y"})),
    )
    .await;
    let (_, status, next_index, body) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .expect("a new topic woke the watch")
        .unwrap();
    assert_eq!(status, 200);
    assert!(next_index.unwrap() > index);
    let keys: Vec<&str> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["topics/orders", "topics/y"]);
}

/// A node stopped (SIGTERM) answers its waiting long-polls at once with
/// what it holds, as at the end of their wait: they held the graceful
/// shutdown to its 10 s grace, then lost their connection unanswered.
#[tokio::test]
async fn a_node_stopping_answers_its_waiting_long_polls_at_once() {
    let mut server = TestServer::start().await;
    let (status, written) = call(&server, "PUT", "/v1/kv/stopping/k", Some(json!(1))).await;
    assert_eq!(status, 201, "{written}");
    let index = written["revision"].as_u64().unwrap();
    let key_poll = spawn_get(&server, format!("/v1/kv/stopping/k?index={index}&wait=60s"));
    let feed_poll = spawn_get(&server, format!("/v1/changes?from={}&wait=60s", index + 1));
    let cluster = server.client().get(server.url("/v1/cluster")).send().await;
    let cluster_index = cluster.unwrap().headers()["x-kv-index"]
        .to_str()
        .unwrap()
        .to_owned();
    let cluster_poll = spawn_get(
        &server,
        format!("/v1/cluster?index={cluster_index}&wait=60s"),
    );
    server.wait_for_long_polls(3, REGISTERED_WITHIN).await;

    let started = Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        started.elapsed()
    );
    let (_, status, _, body) = key_poll.await.unwrap();
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
    let (_, status, _, body) = feed_poll.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["records"], json!([]), "{body}");
    let (_, status, _, body) = cluster_poll.await.unwrap();
    assert_eq!((status, &body["node_id"]), (200, &json!(1)), "{body}");
}
