//! The server keeps the contract in `schemas::api`: every answer reads as
//! its declared type with nothing left over, every error's status is the one
//! its code declares, and the OpenAPI document it serves is the checked-in one.

use integration_tests::raw_http::{upload, Framing};
use integration_tests::{assert_openapi_lists, call, TestServer};
use schemas::api::{
    AlarmList, ChangesPage, ClusterStatus, ErrorBody, ErrorCode, Health, KeyList, KeyValue,
    NodeSpace, SubscriptionList, TopicList, WriteResult,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// `body` read as a `T` and written back is `body` again: the type names
/// every field the server sent, and no field it did not.
fn assert_reads_as<T: DeserializeOwned + Serialize>(what: &str, body: &Value) {
    let typed: T = serde_json::from_value(body.clone())
        .unwrap_or_else(|error| panic!("{what} does not read as its type: {error}\n{body}"));
    let again = serde_json::to_value(&typed).expect("a contract type serializes");
    assert_eq!(&again, body, "{what} has fields its type does not know");
}

#[tokio::test]
async fn every_answer_reads_as_its_contract_type() {
    let server = TestServer::start().await;
    let (status, written) = call(&server, "PUT", "/v1/kv/app/a", Some(json!({"x": 1}))).await;
    assert_eq!(status, 201);
    assert_reads_as::<WriteResult>("a write", &written);
    call(&server, "PUT", "/v1/kv/app/b", Some(json!(null))).await;
    call(&server, "DELETE", "/v1/kv/app/b", None).await;
    let (status, topic) = call(
        &server,
        "PUT",
        "/v1/topics/orders",
        Some(json!({"topicName": "orders"})),
    )
    .await;
    assert_eq!(status, 201, "{topic}");
    let group = json!({"groupName": "billing"});
    assert_eq!(
        call(&server, "PUT", "/v1/subscriptions/billing", Some(group))
            .await
            .0,
        201
    );

    let answers = [
        ("/v1/kv/app/a", "a key"),
        ("/v1/kv?prefix=app/", "a list of keys"),
        ("/v1/changes?from=0", "a page of the change feed"),
        ("/v1/cluster", "the cluster's status"),
        ("/healthz", "the health check"),
        ("/readyz", "the readiness check"),
        ("/v1/space", "the node's disk"),
        ("/v1/alarms", "the alarms"),
        ("/v1/topics", "a list of topics"),
        ("/v1/subscriptions", "a list of groups"),
    ];
    for (path, what) in answers {
        let (status, body) = call(&server, "GET", path, None).await;
        assert_eq!(status, 200, "{what}: {body}");
        match path {
            "/v1/kv/app/a" => assert_reads_as::<KeyValue>(what, &body),
            "/v1/kv?prefix=app/" => assert_reads_as::<KeyList>(what, &body),
            "/v1/changes?from=0" => {
                assert_reads_as::<ChangesPage>(what, &body);
                let page: ChangesPage = serde_json::from_value(body).unwrap();
                let deleted: Vec<_> = page.records.iter().filter(|r| r.deleted).collect();
                assert_eq!(deleted.len(), 1, "the delete of app/b is marked");
            }
            "/v1/cluster" => assert_reads_as::<ClusterStatus>(what, &body),
            "/healthz" | "/readyz" => assert_reads_as::<Health>(what, &body),
            "/v1/space" => assert_reads_as::<NodeSpace>(what, &body),
            "/v1/alarms" => assert_reads_as::<AlarmList>(what, &body),
            "/v1/topics" => assert_reads_as::<TopicList>(what, &body),
            _ => assert_reads_as::<SubscriptionList>(what, &body),
        }
    }
}

#[tokio::test]
async fn every_error_has_the_status_its_code_declares() {
    let server = TestServer::start().await;
    // Over the 1 MiB value limit, within the body limit: read, then refused.
    let big = json!("x".repeat(1024 * 1024 + 16));
    call(&server, "PUT", "/v1/kv/app/a", Some(json!(1))).await;
    let cases: Vec<(&str, &str, Option<Value>, ErrorCode)> = vec![
        ("GET", "/v1/kv/app//a", None, ErrorCode::InvalidKey),
        (
            "GET",
            "/v1/kv/app/a?colour=red",
            None,
            ErrorCode::UnknownParameter,
        ),
        (
            "GET",
            "/v1/kv/app/a?consistency=eventual",
            None,
            ErrorCode::InvalidParameter,
        ),
        ("GET", "/v1/kv/app/missing", None, ErrorCode::KeyNotFound),
        ("GET", "/v1/topics/missing", None, ErrorCode::TopicNotFound),
        (
            "GET",
            "/v1/subscriptions/missing",
            None,
            ErrorCode::SubscriptionNotFound,
        ),
        (
            "PUT",
            "/v1/kv/topics/raw",
            Some(json!(1)),
            ErrorCode::ReservedKey,
        ),
        ("PUT", "/v1/kv/app/big", Some(big), ErrorCode::ValueTooLarge),
        (
            "PUT",
            "/v1/topics/orders",
            Some(json!({"topicName": "other"})),
            ErrorCode::NameMismatch,
        ),
        (
            "PUT",
            "/v1/topics/TBW102",
            Some(json!({"topicName": "TBW102"})),
            ErrorCode::SystemName,
        ),
        (
            "POST",
            "/v1/cluster/members",
            Some(json!({"id": 9, "addr": "http://a b c:9", "peer_addr": "http://127.0.0.1:9"})),
            ErrorCode::InvalidAddr,
        ),
        (
            "POST",
            "/v1/cluster/members",
            Some(
                json!({"id": 9, "addr": "http://127.0.0.1:9", "peer_addr": "http://u:p@127.0.0.1:9"}),
            ),
            ErrorCode::InvalidAddr,
        ),
        (
            "POST",
            "/v1/leases",
            Some(json!([30])),
            ErrorCode::InvalidJson,
        ),
        (
            "POST",
            "/v1/leases",
            Some(json!({"ttl_s": 30, "tll_s": 40})),
            ErrorCode::InvalidField,
        ),
        (
            "POST",
            "/v1/cluster/members",
            Some(json!({})),
            ErrorCode::MissingField,
        ),
        (
            "DELETE",
            "/v1/cluster/members/9",
            None,
            ErrorCode::MemberNotFound,
        ),
        (
            "DELETE",
            "/v1/cluster/members/1",
            None,
            ErrorCode::LastVoter,
        ),
        ("DELETE", "/v1/topics/TBW102", None, ErrorCode::SystemName),
        (
            "DELETE",
            "/v1/subscriptions/TOOLS_CONSUMER",
            None,
            ErrorCode::SystemName,
        ),
        ("GET", "/v1/topics/a.b", None, ErrorCode::IllegalCharacter),
        ("GET", "/v1/leases?x=1", None, ErrorCode::UnknownParameter),
        ("POST", "/v1/kv/app/a", None, ErrorCode::MethodNotAllowed),
        ("PUT", "/v1/alarms", None, ErrorCode::MethodNotAllowed),
        ("GET", "/v2/nothing", None, ErrorCode::NotFound),
    ];
    let (_, document) = call(&server, "GET", "/v1/openapi.json", None).await;
    for (method, path, body, expected) in cases {
        let (status, answer) = call(&server, method, path, body).await;
        let error: ErrorBody = serde_json::from_value(answer.clone()).unwrap_or_else(|error| {
            panic!("{method} {path}: not an error body ({error}): {answer}")
        });
        assert_eq!(error.error.code, expected, "{method} {path}: {answer}");
        assert_eq!(status, expected.status(), "{method} {path}: {answer}");
        assert_openapi_lists(&document, method, path, status, expected.as_str());
    }
    // A body over the limit is refused before it is read, and the
    // connection closed: sent on a raw connection that reads the answer
    // while it writes (a client that writes first may meet the closed
    // socket before it reads the answer).
    let answer = upload(
        server.addr(),
        "POST",
        "/v1/leases",
        2 << 20,
        Framing::Length,
    )
    .await;
    let error: ErrorBody = serde_json::from_str(&answer.body)
        .unwrap_or_else(|error| panic!("not an error body ({error}): {answer:?}"));
    assert_eq!(error.error.code, ErrorCode::ValueTooLarge, "{answer:?}");
    assert_eq!(
        answer.status,
        ErrorCode::ValueTooLarge.status(),
        "{answer:?}"
    );
    assert_openapi_lists(
        &document,
        "POST",
        "/v1/leases",
        answer.status,
        ErrorCode::ValueTooLarge.as_str(),
    );
    // A field given twice, which a JSON value cannot hold: sent as text.
    for (method, path) in [
        ("POST", "/v1/txn"),
        ("POST", "/v1/leases"),
        ("POST", "/v1/cluster/members"),
        ("PUT", "/v1/topics/orders"),
    ] {
        let body = match path {
            "/v1/txn" => r#"{"success": [], "success": []}"#,
            "/v1/topics/orders" => r#"{"topicName": "orders", "topicName": "orders"}"#,
            "/v1/leases" => r#"{"ttl_s": 5, "ttl_s": 6}"#,
            _ => r#"{"id": 9, "id": 9}"#,
        };
        let method_of: reqwest::Method = method.parse().expect("a method");
        let response = server
            .client()
            .request(method_of, server.url(path))
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("a JSON answer");
        assert_eq!(
            (status, &answer["error"]["code"]),
            (400, &json!("duplicate")),
            "{method} {path}: {answer}"
        );
        assert_openapi_lists(&document, method, path, status, "duplicate");
    }
    // A body in an encoding the node does not read, on any route.
    let response = server
        .client()
        .put(server.url("/v1/kv/app/a"))
        .header("Content-Encoding", "br")
        .body("1")
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("a JSON answer");
    assert_eq!(
        (status, &answer["error"]["code"]),
        (415, &json!("unsupported_encoding")),
        "{answer}"
    );
    assert_openapi_lists(
        &document,
        "PUT",
        "/v1/kv/app/a",
        status,
        "unsupported_encoding",
    );
}

/// Every body is read as JSON whatever its `Content-Type`, or without
/// one, as `curl -d` sends it: the membership and lease routes too.
#[tokio::test]
async fn bodies_are_read_as_json_without_a_content_type() {
    let server = TestServer::start().await;
    for (path, body, status) in [
        ("/v1/leases", r#"{"ttl_s": 30}"#, 201),
        (
            "/v1/cluster/members",
            r#"{"id": 9, "addr": "http://127.0.0.1:9", "peer_addr": "http://127.0.0.1:9", "update_only": true}"#,
            404,
        ),
    ] {
        let response = server
            .client()
            .post(server.url(path))
            .body(body)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_served_is_the_checked_in_one() {
    let server = TestServer::start().await;
    let (status, served) = call(&server, "GET", "/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/openapi.json exists"))
            .expect("docs/openapi.json is JSON");
    assert_eq!(served, checked_in);
    assert_eq!(served["openapi"], "3.1.0");
}
