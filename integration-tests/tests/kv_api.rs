//! The raw KV API: writes, reads, deletes, lists, and the revision headers.

use integration_tests::{call, error_of, TestServer};
use serde_json::{json, Value};

#[tokio::test]
async fn a_put_creates_then_updates_with_etcd_revisions_and_headers() {
    let server = TestServer::start().await;
    let response = server
        .client()
        .put(server.url("/v1/kv/app/a"))
        .json(&json!({"x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created_at = response.headers()["x-kv-revision"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        response.headers()["etag"],
        format!("\"{created_at}\"").as_str()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["created"], true);
    assert_eq!(body["version"], 1);

    let (status, updated) = call(&server, "PUT", "/v1/kv/app/a", Some(json!({"x": 2}))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (updated["created"].clone(), updated["version"].clone()),
        (json!(false), json!(2))
    );

    let response = server
        .client()
        .get(server.url("/v1/kv/app/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revision = updated["revision"].as_u64().unwrap();
    assert_eq!(
        response.headers()["etag"],
        format!("\"{revision}\"").as_str()
    );
    assert!(response.headers().contains_key("x-kv-revision"));
    let entry: Value = response.json().await.unwrap();
    assert_eq!(entry["value"], json!({"x": 2}));
    assert_eq!(
        entry["create_revision"].as_u64().unwrap().to_string(),
        created_at
    );
    assert_eq!(entry["mod_revision"], json!(revision));
    assert_eq!(entry["version"], 2);
}

#[tokio::test]
async fn any_json_value_is_stored_as_given() {
    let server = TestServer::start().await;
    for (n, value) in [
        json!({"a": [1, 2]}),
        json!([1, "two", null]),
        json!("text"),
        json!(42.5),
        json!(true),
        json!(null),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/v1/kv/values/v{n}");
        let (status, _) = call(&server, "PUT", &path, Some(value.clone())).await;
        assert_eq!(status, 201, "{value}");
        let (_, entry) = call(&server, "GET", &format!("{path}?consistency=stale"), None).await;
        assert_eq!(entry["value"], value);
    }
}

#[tokio::test]
async fn a_deleted_key_is_gone_and_deleting_it_again_is_404() {
    let server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/app/gone", Some(json!(1))).await;
    let (status, deleted) = call(&server, "DELETE", "/v1/kv/app/gone", None).await;
    assert_eq!((status, deleted["version"].clone()), (200, json!(0)));
    let (status, missing) = call(&server, "GET", "/v1/kv/app/gone", None).await;
    assert_eq!((status, error_of(&missing).0), (404, "key_not_found"));
    let (status, again) = call(&server, "DELETE", "/v1/kv/app/gone", None).await;
    assert_eq!((status, error_of(&again).0), (404, "key_not_found"));
    // A new key at the same name starts over at version 1.
    let (_, recreated) = call(&server, "PUT", "/v1/kv/app/gone", Some(json!(2))).await;
    assert_eq!(recreated["version"], 1);
}

#[tokio::test]
async fn a_list_pages_through_one_prefix_only() {
    let server = TestServer::start().await;
    for n in 0..7 {
        call(&server, "PUT", &format!("/v1/kv/list/k{n}"), Some(json!(n))).await;
    }
    call(&server, "PUT", "/v1/kv/listx/other", Some(json!(0))).await;
    call(&server, "PUT", "/v1/kv/another/k", Some(json!(0))).await;
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for _page in 0..10 {
        let query = match &after {
            Some(key) => format!("/v1/kv?prefix=list/&limit=3&start_after={key}"),
            None => "/v1/kv?prefix=list/&limit=3".to_string(),
        };
        let (status, page) = call(&server, "GET", &query, None).await;
        assert_eq!(status, 200);
        let entries = page["entries"].as_array().unwrap();
        keys.extend(
            entries
                .iter()
                .map(|entry| entry["key"].as_str().unwrap().to_string()),
        );
        if page["more"] == false {
            break;
        }
        after = keys.last().cloned();
    }
    let expected: Vec<String> = (0..7).map(|n| format!("list/k{n}")).collect();
    assert_eq!(keys, expected);
}

#[tokio::test]
async fn revisions_increase_and_every_answer_carries_one() {
    let server = TestServer::start().await;
    let mut last = 0;
    for n in 0..5 {
        let (_, written) = call(&server, "PUT", "/v1/kv/rev/k", Some(json!(n))).await;
        let revision = written["revision"].as_u64().unwrap();
        assert!(revision > last);
        last = revision;
    }
    for path in [
        "/v1/kv/rev/k",
        "/v1/kv/rev/missing",
        "/v1/kv?prefix=rev/",
        "/no/such/route",
        "/v1/cluster",
    ] {
        let response = server.client().get(server.url(path)).send().await.unwrap();
        let revision: u64 = response.headers()["x-kv-revision"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(revision, last, "{path}");
    }
}

#[tokio::test]
async fn a_stale_read_answers_from_the_node_s_view() {
    let server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/stale/k", Some(json!("v"))).await;
    let (status, entry) = call(&server, "GET", "/v1/kv/stale/k?consistency=stale", None).await;
    assert_eq!((status, entry["value"].clone()), (200, json!("v")));
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_on_the_same_port() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .put(server.url("/v1/kv/h2/k"))
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 201);
}
