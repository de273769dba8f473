//! RocketMQ metadata over HTTP: topic configs and subscription groups,
//! validated, in RocketMQ's own JSON; and the node's own endpoints.

use integration_tests::{call, error_of, kvctl, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn a_topic_is_stored_with_rocketmq_defaults_and_unknown_fields_kept() {
    let server = TestServer::start().await;
    let (status, written) = call(
        &server,
        "PUT",
        "/v1/topics/orders",
        Some(json!({"topicName": "orders", "readQueueNums": 8, "brokerSpecific": {"x": 1}})),
    )
    .await;
    assert_eq!(status, 201, "{written}");
    assert_eq!(written["key"], "topics/orders");

    let (status, topic) = call(&server, "GET", "/v1/topics/orders", None).await;
    assert_eq!(status, 200);
    assert_eq!(topic["topicName"], "orders");
    assert_eq!(topic["readQueueNums"], 8);
    assert_eq!(
        topic["writeQueueNums"], 16,
        "missing fields take RocketMQ's defaults"
    );
    assert_eq!(topic["perm"], 6);
    assert_eq!(topic["topicFilterType"], "SINGLE_TAG");
    assert_eq!(topic["order"], false);
    assert_eq!(
        topic["brokerSpecific"],
        json!({"x": 1}),
        "unknown fields are kept"
    );

    // Visible through the raw KV API too, at its key.
    let (status, entry) = call(&server, "GET", "/v1/kv/topics/orders", None).await;
    assert_eq!(status, 200);
    assert_eq!(entry["value"]["topicName"], "orders");

    // Update, list, delete.
    let (status, updated) = call(
        &server,
        "PUT",
        "/v1/topics/orders",
        Some(json!({"topicName": "orders", "readQueueNums": 4})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2);
    call(
        &server,
        "PUT",
        "/v1/topics/payments",
        Some(json!({"topicName": "payments"})),
    )
    .await;
    let (_, list) = call(&server, "GET", "/v1/topics", None).await;
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topicName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "payments"]);
    let (_, page) = call(&server, "GET", "/v1/topics?limit=1", None).await;
    assert_eq!(page["more"], true);
    let (status, _) = call(&server, "DELETE", "/v1/topics/orders", None).await;
    assert_eq!(status, 200);
    let (status, missing) = call(&server, "GET", "/v1/topics/orders", None).await;
    assert_eq!((status, error_of(&missing).0), (404, "topic_not_found"));
}

/// Method, path, body, expected status, error code and field.
type BadCase = (
    &'static str,
    &'static str,
    Value,
    u16,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn invalid_topics_and_groups_are_refused_naming_the_field_and_nothing_is_written() {
    let server = TestServer::start().await;
    let cases: &[BadCase] = &[
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t2"}),
            400,
            "name_mismatch",
            Some("topicName"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t1", "perm": 9}),
            400,
            "out_of_range",
            Some("perm"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t1", "readQueueNums": 0}),
            400,
            "out_of_range",
            Some("readQueueNums"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t1", "readQueueNums": "eight"}),
            400,
            "invalid_field",
            Some("readQueueNums"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t1", "topicFilterType": "ALL_TAGS"}),
            400,
            "invalid_field",
            Some("topicFilterType"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"readQueueNums": 8}),
            400,
            "missing_field",
            Some("topicName"),
        ),
        (
            "PUT",
            "/v1/topics/t1",
            json!({"topicName": "t1", "attributes": {"message.type": "SOMETIMES"}}),
            400,
            "not_allowed_value",
            Some("attributes.message.type"),
        ),
        (
            "PUT",
            "/v1/topics/TBW102",
            json!({"topicName": "TBW102"}),
            400,
            "system_name",
            Some("topicName"),
        ),
        (
            "PUT",
            "/v1/topics/bad%20name",
            json!({"topicName": "bad name"}),
            400,
            "illegal_character",
            Some("topicName"),
        ),
        (
            "PUT",
            "/v1/subscriptions/g1",
            json!({"groupName": "g2"}),
            400,
            "name_mismatch",
            Some("groupName"),
        ),
        (
            "PUT",
            "/v1/subscriptions/g1",
            json!({"groupName": "g1", "retryMaxTimes": -1}),
            400,
            "out_of_range",
            Some("retryMaxTimes"),
        ),
        (
            "PUT",
            "/v1/subscriptions/TOOLS_CONSUMER",
            json!({"groupName": "TOOLS_CONSUMER"}),
            400,
            "system_name",
            Some("groupName"),
        ),
        (
            "PUT",
            "/v1/topics/t1?system=maybe",
            json!({"topicName": "t1"}),
            400,
            "invalid_parameter",
            Some("system"),
        ),
        (
            "DELETE",
            "/v1/subscriptions/never",
            Value::Null,
            404,
            "subscription_not_found",
            None,
        ),
        (
            "PUT",
            "/v1/kv/topics/t1",
            json!({"topicName": "t1"}),
            400,
            "reserved_key",
            Some("key"),
        ),
    ];
    for (method, path, body, status, code, field) in cases {
        let body = (!body.is_null()).then(|| body.clone());
        let (got, answer) = call(&server, method, path, body).await;
        assert_eq!(got, *status, "{method} {path}: {answer}");
        assert_eq!(
            error_of(&answer),
            (*code, *field),
            "{method} {path}: {answer}"
        );
    }
    let (_, topics) = call(&server, "GET", "/v1/topics", None).await;
    assert_eq!(topics["topics"], json!([]), "nothing was written");
    let (_, groups) = call(&server, "GET", "/v1/subscriptions", None).await;
    assert_eq!(groups["subscriptions"], json!([]));
}

/// A system topic or group (brokers need TBW102 to create topics) is
/// created and deleted only with `?system=true` (kvctl `--system`), as
/// RocketMQ's broker refuses to delete one. Deletes used to need nothing.
#[tokio::test]
async fn system_topics_and_groups_need_the_explicit_flag() {
    let server = TestServer::start().await;
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/topics/TBW102?system=true",
        Some(json!({"topicName": "TBW102"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/subscriptions/TOOLS_CONSUMER?system=true",
        Some(json!({"groupName": "TOOLS_CONSUMER"})),
    )
    .await;
    assert_eq!(status, 201);
    for (path, kind) in [
        ("/v1/topics/TBW102", "topic"),
        ("/v1/subscriptions/TOOLS_CONSUMER", "group"),
    ] {
        let (status, body) = call(&server, "DELETE", path, None).await;
        assert_eq!((status, error_of(&body).0), (400, "system_name"), "{body}");
        let (status, body) = call(&server, "GET", path, None).await;
        assert_eq!(status, 200, "the {kind} is still there: {body}");
    }
    let url = server.url("");
    let refused = kvctl(&url, &["topic", "delete", "TBW102"])
        .await
        .expect_code(1);
    assert!(refused.stderr.contains("system_name"), "{}", refused.stderr);
    kvctl(&url, &["topic", "delete", "TBW102", "--system"])
        .await
        .success();
    kvctl(&url, &["group", "delete", "TOOLS_CONSUMER", "--system"])
        .await
        .success();
    for path in ["/v1/topics/TBW102", "/v1/subscriptions/TOOLS_CONSUMER"] {
        let (status, body) = call(&server, "GET", path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_subscription_group_round_trips_with_defaults() {
    let server = TestServer::start().await;
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/subscriptions/order-consumers",
        Some(json!({"groupName": "order-consumers", "consumeMessageOrderly": true})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, group) = call(&server, "GET", "/v1/subscriptions/order-consumers", None).await;
    assert_eq!(group["consumeMessageOrderly"], true);
    assert_eq!(group["consumeEnable"], true);
    assert_eq!(group["retryMaxTimes"], 16);
    assert_eq!(group["consumeTimeoutMinute"], 15);
    let (_, list) = call(&server, "GET", "/v1/subscriptions", None).await;
    assert_eq!(list["subscriptions"][0]["groupName"], "order-consumers");
}

#[tokio::test]
async fn fields_fixed_at_creation_cannot_change() {
    let server = TestServer::start().await;
    let topic =
        |policy: &str| json!({"topicName": "compacted", "attributes": {"cleanup.policy": policy}});
    let (status, _) = call(
        &server,
        "PUT",
        "/v1/topics/compacted",
        Some(topic("COMPACTION")),
    )
    .await;
    assert_eq!(status, 201);
    let (status, answer) = call(
        &server,
        "PUT",
        "/v1/topics/compacted",
        Some(topic("DELETE")),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_of(&answer).0, "unchangeable");
}

#[tokio::test]
async fn the_node_reports_health_cluster_state_and_metrics() {
    let server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/m/a", Some(json!(1))).await;
    let (status, health) = call(&server, "GET", "/healthz", None).await;
    assert_eq!(
        (status, &health["status"], &health["leader"]),
        (200, &json!("ok"), &json!(1))
    );
    let (status, ready) = call(&server, "GET", "/readyz", None).await;
    assert_eq!((status, &ready["status"]), (200, &json!("ready")));
    let (_, cluster) = call(&server, "GET", "/v1/cluster", None).await;
    assert_eq!(cluster["leader"], 1);
    assert_eq!(cluster["alarms"], json!([]));
    let version = cluster["version"].as_str().unwrap_or_default();
    assert!(
        version.starts_with(concat!(env!("CARGO_PKG_VERSION"), " (")) && version.ends_with(')'),
        "the version and the commit: {version}"
    );
    assert_eq!(cluster["space"]["quota_bytes"], json!(2u64 << 30));
    assert_eq!(cluster["space"]["min_free_bytes"], json!(64u64 << 20));
    assert_eq!(cluster["members"][0]["id"], 1);
    assert!(cluster["term"].as_u64().unwrap() >= 1);
    assert!(cluster["applied_index"].as_u64().unwrap() >= 2);
    assert!(cluster["committed_index"].as_u64().unwrap() >= 2);

    let metrics = server
        .client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "kv_http_requests_total{",
        "kv_http_request_duration_seconds_bucket{",
        "kv_raft_term ",
        "kv_raft_committed_index ",
        "kv_raft_applied_index ",
        "kv_topic_segments ",
        "kv_topic_bytes ",
        "kv_topic_dirty_ratio ",
        "kv_cleaner_runs ",
        "kv_cleaner_failures ",
        "kv_cleaner_last_success_timestamp_seconds ",
        "kv_watch_waiters ",
        "kv_alarms{alarm=\"NOSPACE\"} 0",
        "kv_space_quota_bytes ",
        "kv_space_used_bytes ",
        "kv_space_free_bytes ",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(
        metrics.contains(r#"route="/v1/kv/{*key}",method="PUT",status="201""#),
        "requests are counted by route, method and status"
    );
}

#[tokio::test]
async fn a_retried_create_only_topic_write_returns_its_first_result() {
    let server = TestServer::start().await;
    let token = "0f8e7a52-3c1d-4b9e-9f21-6a5d4c3b2a10";
    let send = || {
        server
            .client()
            .put(server.url("/v1/topics/retried"))
            .header("If-None-Match", "*")
            .header("Idempotency-Key", token)
            .json(&json!({"topicName": "retried", "readQueueNums": 4, "writeQueueNums": 4}))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), 201, "a retry answers the first result");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["revision"], first["revision"]);

    // Without the token, create-only on an existing topic still fails.
    let other = server
        .client()
        .put(server.url("/v1/topics/retried"))
        .header("If-None-Match", "*")
        .json(&json!({"topicName": "retried", "readQueueNums": 4, "writeQueueNums": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 412);
}
