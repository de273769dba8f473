//! `POST /v1/txn` against a real server: which branch runs and what each
//! op answers, every compare target and operator, the refusals of bad
//! input (which write nothing), retries with an `Idempotency-Key`, the
//! change feed and replay showing a transaction whole, `--auth` checked op
//! by op, and a view rebuilt from the topic equal to the live one.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::{call, error_of, kvctl, TestCluster, TestServer};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long a token may take to reach every node.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two looks at a node.
const POLL: Duration = Duration::from_millis(50);

/// What `POST /v1/txn` answered.
struct Answer {
    status: u16,
    body: Value,
    /// `X-Kv-Revision`.
    header_revision: Option<u64>,
}

/// Sends `body` (raw text) to `POST /v1/txn` of `node`, as `token` and
/// with `idempotency_key` when given.
async fn send_txn(
    node: &TestServer,
    body: String,
    token: Option<&str>,
    idempotency_key: Option<&str>,
) -> Answer {
    let mut request = node
        .client()
        .post(node.url("/v1/txn"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = idempotency_key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("the server answers a txn");
    let status = response.status().as_u16();
    let header_revision = response
        .headers()
        .get("x-kv-revision")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let text = response.text().await.expect("the answer is readable");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        header_revision,
    }
}

/// Runs `body` on `server`, which must answer 200; returns the answer.
async fn txn(server: &TestServer, body: Value) -> Value {
    let answer = send_txn(server, body.to_string(), None, None).await;
    assert_eq!(answer.status, 200, "{body} was answered {}", answer.body);
    let revision = answer.body["revision"]
        .as_u64()
        .unwrap_or_else(|| panic!("a txn answers its revision: {}", answer.body));
    assert_eq!(
        answer.header_revision,
        Some(revision),
        "X-Kv-Revision is the txn's revision: {}",
        answer.body
    );
    answer.body
}

/// The store's revision, as `X-Kv-Revision` of a read says.
async fn store_revision(server: &TestServer) -> u64 {
    let response = server
        .client()
        .get(server.url("/v1/kv?prefix=&limit=1"))
        .send()
        .await
        .expect("a list answers");
    response.headers()["x-kv-revision"]
        .to_str()
        .expect("the header is text")
        .parse()
        .expect("the header is a number")
}

/// `GET /v1/kv/{key}`: the entry, or `None` on 404.
async fn get(server: &TestServer, key: &str) -> Option<Value> {
    let (status, entry) = call(server, "GET", &format!("/v1/kv/{key}"), None).await;
    match status {
        200 => Some(entry),
        404 => None,
        other => panic!("GET {key} answered {other}: {entry}"),
    }
}

async fn put(server: &TestServer, key: &str, value: Value) -> u64 {
    let (status, written) = call(server, "PUT", &format!("/v1/kv/{key}"), Some(value)).await;
    assert!(
        status == 200 || status == 201,
        "PUT {key}: {status} {written}"
    );
    written["revision"]
        .as_u64()
        .expect("a put answers its revision")
}

/// Every key of the store with its value, revisions and version, read
/// from `server`'s own view.
async fn every_key(server: &TestServer) -> BTreeMap<String, Value> {
    let (status, page) = call(
        server,
        "GET",
        "/v1/kv?prefix=&limit=1000&consistency=stale",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["more"], false, "the test writes fewer than 1,000 keys");
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["key"].as_str().expect("key").to_string(),
                entry.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_success_branch_runs_when_every_compare_holds_as_one_write_with_one_revision() {
    let server = TestServer::start().await;
    let created_at = put(&server, "t/a", json!(1)).await;
    for key in ["t/gone/1", "t/gone/2", "t/gone/3"] {
        put(&server, key, json!("old")).await;
    }
    let before = store_revision(&server).await;

    let answer = txn(
        &server,
        json!({
            "compare": [
                {"key": "t/a", "target": "value", "op": "=", "value": 1},
                {"key": "t/a", "target": "version", "op": "=", "value": 1}
            ],
            "success": [
                {"put": {"key": "t/a", "value": 2}},
                {"get": {"key": "t/a"}},
                {"put": {"key": "t/b", "value": "new"}},
                {"delete": {"prefix": "t/gone/"}},
                {"delete": {"key": "t/missing"}},
                {"get": {"prefix": "t/"}}
            ],
            "failure": [{"put": {"key": "t/failed", "value": true}}]
        }),
    )
    .await;
    assert_eq!(answer["succeeded"], true, "{answer}");
    // Five records (two puts, three deletes) at consecutive offsets: the
    // revision is the offset of the last one.
    let revision = answer["revision"].as_u64().unwrap();
    assert_eq!(revision, before + 5, "{answer}");
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), 6, "one result per op: {answer}");
    assert_eq!(results[0], json!({"put": {"revision": revision}}));
    assert_eq!(
        results[1]["get"]["kvs"],
        json!([{"key": "t/a", "value": 2, "create_revision": created_at, "mod_revision": revision, "version": 2}]),
        "a get sees the put before it: {answer}"
    );
    assert_eq!(results[2], json!({"put": {"revision": revision}}));
    assert_eq!(results[3], json!({"delete": {"deleted": 3}}));
    assert_eq!(results[4], json!({"delete": {"deleted": 0}}));
    let listed: Vec<&str> = results[5]["get"]["kvs"]
        .as_array()
        .expect("a prefix get answers kvs")
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["t/a", "t/b"],
        "the prefix get sees the deletes before it"
    );
    assert_eq!(results[5]["get"]["more"], false);

    let a = get(&server, "t/a").await.expect("t/a exists");
    assert_eq!(
        (&a["value"], &a["mod_revision"], &a["version"]),
        (&json!(2), &json!(revision), &json!(2))
    );
    let b = get(&server, "t/b").await.expect("t/b was created");
    assert_eq!(
        (&b["create_revision"], &b["mod_revision"], &b["version"]),
        (&json!(revision), &json!(revision), &json!(1))
    );
    for key in ["t/gone/1", "t/gone/2", "t/gone/3", "t/failed"] {
        assert!(get(&server, key).await.is_none(), "{key} exists");
    }
    assert_eq!(store_revision(&server).await, revision);
}

#[tokio::test]
async fn the_failure_branch_runs_when_a_compare_fails_and_a_txn_writing_nothing_keeps_the_revision()
{
    let server = TestServer::start().await;
    put(&server, "f/a", json!("x")).await;
    let before = store_revision(&server).await;

    // One compare of two fails: the failure branch runs, and it writes.
    let answer = txn(
        &server,
        json!({
            "compare": [
                {"key": "f/a", "target": "exists", "op": "=", "value": true},
                {"key": "f/a", "target": "value", "op": "=", "value": "y"}
            ],
            "success": [{"put": {"key": "f/success", "value": 1}}],
            "failure": [
                {"put": {"key": "f/failure", "value": 1}},
                {"get": {"key": "f/failure"}}
            ]
        }),
    )
    .await;
    assert_eq!(answer["succeeded"], false, "{answer}");
    let revision = answer["revision"].as_u64().unwrap();
    assert_eq!(revision, before + 1, "{answer}");
    assert_eq!(answer["results"][0], json!({"put": {"revision": revision}}));
    assert_eq!(
        answer["results"][1]["get"]["kvs"][0]["mod_revision"],
        json!(revision)
    );
    assert!(get(&server, "f/success").await.is_none());
    assert_eq!(
        get(&server, "f/failure").await.unwrap()["mod_revision"],
        json!(revision)
    );

    // A txn whose branch only reads, or deletes what is not there, writes
    // nothing: its revision is the store's, which does not move.
    for body in [
        json!({"compare": [{"key": "f/a", "target": "value", "op": "=", "value": "x"}],
               "success": [{"get": {"key": "f/a"}}, {"get": {"prefix": "f/"}}]}),
        json!({"success": [{"delete": {"key": "f/none"}}, {"delete": {"prefix": "f/none/"}}]}),
        json!({"compare": [{"key": "f/a", "target": "version", "op": ">", "value": 5}],
               "success": [{"put": {"key": "f/a", "value": 0}}]}),
        json!({}),
    ] {
        let answer = txn(&server, body.clone()).await;
        assert_eq!(answer["revision"], json!(revision), "{body}: {answer}");
        assert_eq!(
            store_revision(&server).await,
            revision,
            "{body} moved the revision"
        );
    }
    let a = get(&server, "f/a").await.unwrap();
    assert_eq!((&a["value"], &a["version"]), (&json!("x"), &json!(1)));
}

#[tokio::test]
async fn every_compare_target_and_operator_holds_as_specified_and_a_missing_key_has_zeroes() {
    let server = TestServer::start().await;
    let created = put(&server, "c/n", json!(10)).await;
    let modified = put(&server, "c/n", json!(10)).await;
    put(&server, "c/s", json!("abc")).await;
    // (key, target, op, value, holds)
    let cases: Vec<(&str, &str, &str, Value, bool)> = vec![
        ("c/n", "value", "=", json!(10), true),
        ("c/n", "value", "=", json!("10"), false),
        ("c/n", "value", "!=", json!(10), false),
        ("c/n", "value", "!=", json!(11), true),
        ("c/n", "value", "<", json!(11), true),
        ("c/n", "value", "<", json!(10), false),
        ("c/n", "value", ">", json!(9.5), true),
        ("c/n", "value", ">", json!(10), false),
        ("c/s", "value", "<", json!("abd"), true),
        ("c/s", "value", ">", json!("abc"), false),
        ("c/s", "value", "=", json!("abc"), true),
        ("c/n", "version", "=", json!(2), true),
        ("c/n", "version", "!=", json!(2), false),
        ("c/n", "version", "<", json!(3), true),
        ("c/n", "version", ">", json!(2), false),
        ("c/n", "create_revision", "=", json!(created), true),
        ("c/n", "create_revision", "<", json!(modified), true),
        ("c/n", "create_revision", ">", json!(created), false),
        ("c/n", "mod_revision", "=", json!(modified), true),
        ("c/n", "mod_revision", "!=", json!(modified), false),
        ("c/n", "mod_revision", ">", json!(created), true),
        ("c/n", "mod_revision", "<", json!(modified), false),
        ("c/n", "lease", "=", json!(0), true),
        ("c/n", "lease", "!=", json!(0), false),
        ("c/n", "exists", "=", json!(true), true),
        ("c/n", "exists", "!=", json!(true), false),
        ("c/n", "exists", "=", json!(false), false),
        // A missing key: zeroes, no lease, and no value to compare.
        ("c/none", "version", "=", json!(0), true),
        ("c/none", "version", ">", json!(0), false),
        ("c/none", "create_revision", "=", json!(0), true),
        ("c/none", "mod_revision", "=", json!(0), true),
        ("c/none", "lease", "=", json!(0), true),
        ("c/none", "value", "=", json!(null), false),
        ("c/none", "value", "!=", json!(10), false),
        ("c/none", "value", "<", json!(10), false),
        ("c/none", "exists", "=", json!(false), true),
        ("c/none", "exists", "=", json!(true), false),
        ("c/none", "exists", "!=", json!(true), true),
    ];
    for (key, target, op, value, holds) in cases {
        let body = json!({
            "compare": [{"key": key, "target": target, "op": op, "value": value}],
            "success": [{"get": {"key": key}}],
            "failure": []
        });
        let answer = txn(&server, body.clone()).await;
        assert_eq!(answer["succeeded"], json!(holds), "{body}: {answer}");
        let results = answer["results"].as_array().unwrap().len();
        assert_eq!(
            results,
            usize::from(holds),
            "only the branch that ran answers: {answer}"
        );
    }

    // Every compare must hold.
    let before = store_revision(&server).await;
    let answer = txn(
        &server,
        json!({"compare": [
            {"key": "c/n", "target": "version", "op": "=", "value": 2},
            {"key": "c/none", "target": "exists", "op": "=", "value": true}
        ]}),
    )
    .await;
    assert_eq!(answer["succeeded"], false, "{answer}");
    assert_eq!(store_revision(&server).await, before, "no compare wrote");
    assert_eq!(
        get(&server, "c/n").await.unwrap()["version"],
        2,
        "no compare wrote"
    );
}

/// A bad request: (what it is, its body, its Idempotency-Key, and the
/// status, code and field it is refused with).
type Refused = (
    &'static str,
    String,
    Option<&'static str>,
    u16,
    &'static str,
    Option<&'static str>,
);

/// A value is stored as the JSON text written, and some JSON text is no
/// `serde_json::Value` (a number past f64, a lone surrogate, nesting past
/// serde's depth). A transaction reading such values answers them as
/// written, as a GET does, not a 500 after its writes were applied.
#[tokio::test]
async fn a_txn_reads_any_stored_json_text_as_written_beside_its_write() {
    let server = TestServer::start().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let stored = [
        ("raw/big", "1e400".to_string()),
        ("raw/surrogate", r#""\ud800""#.to_string()),
        ("raw/deep", deep),
    ];
    for (key, text) in &stored {
        let response = server
            .client()
            .put(server.url(&format!("/v1/kv/{key}")))
            .header("content-type", "application/json")
            .body(text.clone())
            .send()
            .await
            .expect("the server answers a put");
        assert_eq!(response.status().as_u16(), 201, "PUT {key} {text}");
    }
    let body = json!({"success": [
        {"put": {"key": "raw/written", "value": 1}},
        {"get": {"key": "raw/big"}},
        {"get": {"prefix": "raw/"}},
    ]});
    let answer = send_txn(&server, body.to_string(), None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // 1e400 is no serde_json::Value: the answer came back as text.
    let text = answer.body.as_str().expect("the answer, as text");
    for (key, stored) in &stored {
        assert!(
            text.contains(&format!(r#""key":"{key}","value":{stored},"#)),
            "{key} answered as written: {text}"
        );
    }
    assert_eq!(
        get(&server, "raw/written").await.expect("written")["value"],
        1
    );
}

/// A transaction's put stores its value as the JSON text sent, as a PUT
/// stores its body: an integer past 64 bits, a number past f64 and the
/// spelling of a float come back as written, not as `serde_json::Value`
/// would read them (a float, a refusal, `100.0`).
#[tokio::test]
async fn a_txn_put_stores_its_value_as_written_as_a_put_does() {
    let server = TestServer::start().await;
    let texts = [
        "123456789012345678901234567890",
        "1e400",
        r#"{"a": 1E2, "b": [-0.0, 1.50]}"#,
    ];
    let puts: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, text)| format!(r#"{{"put": {{"key": "txn/{i}", "value": {text}}}}}"#))
        .collect();
    let body = format!(r#"{{"success": [{}]}}"#, puts.join(","));
    let answer = send_txn(&server, body, None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for (i, text) in texts.iter().enumerate() {
        let response = server
            .client()
            .put(server.url(&format!("/v1/kv/put/{i}")))
            .body(text.to_string())
            .send()
            .await
            .expect("the server answers a put");
        assert_eq!(response.status().as_u16(), 201, "PUT {text}");
        for key in [format!("txn/{i}"), format!("put/{i}")] {
            let read = server
                .client()
                .get(server.url(&format!("/v1/kv/{key}")))
                .send()
                .await
                .expect("the server answers a get");
            assert_eq!(read.status().as_u16(), 200, "GET {key}");
            let read = read.text().await.expect("a body");
            assert!(
                read.contains(&format!(r#""value":{text},"#)),
                "{key} answered as written ({text}): {read}"
            );
        }
    }
}

/// A compare of a value is exact: numbers by their decimal value, however
/// long (a compare-and-set with the neighbouring integer must fail, as
/// etcd's byte compare would), at any depth; and a stored value that
/// `serde_json` cannot hold is unequal to any other.
#[tokio::test]
async fn a_value_compare_is_exact_for_any_number_and_any_stored_text() {
    let server = TestServer::start().await;
    let stored = [
        ("exact/id", "1234567890123456789"),
        ("exact/big", "12345678901234567890123"),
        ("exact/nested", r#"{"n": 1, "m": [0.5]}"#),
        ("exact/huge", "1e400"),
    ];
    for (key, text) in stored {
        let response = server
            .client()
            .put(server.url(&format!("/v1/kv/{key}")))
            .body(text)
            .send()
            .await
            .expect("the server answers a put");
        assert_eq!(response.status().as_u16(), 201, "PUT {key} {text}");
    }
    let cases = [
        ("exact/id", "=", "1234567890123456788", false),
        ("exact/id", "=", "1234567890123456789", true),
        ("exact/id", "!=", "1234567890123456788", true),
        ("exact/big", "=", "12345678901234567890124", false),
        ("exact/big", ">", "12345678901234567890122", true),
        ("exact/big", "=", "1.2345678901234567890123e22", true),
        ("exact/nested", "=", r#"{"m": [5e-1], "n": 1.0}"#, true),
        ("exact/nested", "=", r#"{"m": [0.5], "n": 2}"#, false),
        ("exact/huge", "!=", "1", true),
        ("exact/huge", "=", "1e400", true),
        ("exact/huge", ">", "1e399", true),
    ];
    for (key, op, operand, expected) in cases {
        let body = format!(
            r#"{{"compare": [{{"key": "{key}", "target": "value", "op": "{op}", "value": {operand}}}],
                "success": [{{"put": {{"key": "exact/ran", "value": 1}}}}]}}"#
        );
        let answer = send_txn(&server, body, None, None).await;
        assert_eq!(answer.status, 200, "{key} {op} {operand}: {}", answer.body);
        assert_eq!(
            answer.body["succeeded"], expected,
            "{key} {op} {operand}: {}",
            answer.body
        );
    }
}

/// The gets of one transaction answer at most 4 MiB of values together,
/// however many ask for a large prefix: the rest say `more`.
#[tokio::test]
async fn a_txns_gets_answer_a_bounded_body_and_say_more_past_it() {
    let server = TestServer::start().await;
    let value = json!("v".repeat(900_000));
    for i in 0..6 {
        put(&server, &format!("large/{i}"), value.clone()).await;
    }
    let gets: Vec<Value> = (0..128)
        .map(|_| json!({"get": {"prefix": "large/"}}))
        .collect();
    let answer = send_txn(&server, json!({"success": gets}).to_string(), None, None).await;
    assert_eq!(answer.status, 200);
    let results = answer.body["results"].as_array().expect("results");
    let read: Vec<(usize, bool)> = results
        .iter()
        .map(|result| {
            let get = &result["get"];
            (
                get["kvs"].as_array().expect("kvs").len(),
                get["more"].as_bool().expect("more"),
            )
        })
        .collect();
    assert_eq!(read[0], (4, true), "four of 900,000 bytes fit in 4 MiB");
    assert!(read[1..].iter().all(|get| *get == (0, true)), "{read:?}");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_naming_the_field_and_writes_nothing() {
    let server = TestServer::start().await;
    put(&server, "bad/seed", json!(0)).await;
    let before = store_revision(&server).await;
    let put_a = json!({"put": {"key": "bad/a", "value": 1}});
    let too_many: Vec<Value> = (0..129)
        .map(|i| json!({"put": {"key": format!("bad/{i}"), "value": i}}))
        .collect();
    let valid = json!({"success": [put_a]}).to_string();
    let cases: Vec<Refused> = vec![
        (
            "an unknown compare target",
            json!({"compare": [{"key": "bad/a", "target": "size", "op": "=", "value": 1}], "success": [put_a]}).to_string(),
            None, 400, "invalid_field", Some("compare[0].target"),
        ),
        (
            "an unknown kind of op",
            json!({"success": [put_a, {"patch": {"key": "bad/b", "value": 1}}]}).to_string(),
            None, 400, "invalid_field", Some("success[1]"),
        ),
        (
            "a put on a reserved prefix",
            json!({"success": [put_a, {"put": {"key": "topics/orders", "value": {}}}]}).to_string(),
            None, 400, "reserved_key", Some("success[1].put.key"),
        ),
        (
            "a prefix delete reaching reserved keys",
            json!({"failure": [{"delete": {"prefix": "topics/"}}]}).to_string(),
            None, 400, "reserved_key", Some("failure[0].delete.prefix"),
        ),
        (
            "129 ops",
            json!({"success": too_many}).to_string(),
            None, 400, "too_many_ops", Some("success"),
        ),
        (
            "a key written twice",
            json!({"success": [put_a, {"delete": {"key": "bad/a"}}]}).to_string(),
            None, 400, "duplicate_key", Some("success[1].delete.key"),
        ),
        (
            "a lease id that is not a number",
            json!({"success": [{"put": {"key": "bad/a", "value": 1, "lease": "ten"}}]}).to_string(),
            None, 400, "invalid_field", Some("success[0].put.lease"),
        ),
        (
            "a lease no server has",
            json!({"success": [{"put": {"key": "bad/a", "value": 1, "lease": 7}}]}).to_string(),
            None, 404, "lease_not_found", Some("success[0].put.lease"),
        ),
        (
            "a body that is not JSON",
            "{\"success\": [".to_string(),
            None, 400, "invalid_json", None,
        ),
        (
            "an Idempotency-Key that is not a UUID",
            valid.clone(),
            Some("not-a-uuid"), 400, "invalid_header", Some("Idempotency-Key"),
        ),
    ];
    for (what, body, idempotency_key, status, code, field) in cases {
        let answer = send_txn(&server, body, None, idempotency_key).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        let (got_code, got_field) = error_of(&answer.body);
        assert_eq!(got_code, code, "{what}: {}", answer.body);
        if let Some(field) = field {
            let got_field =
                got_field.unwrap_or_else(|| panic!("{what} names no field: {}", answer.body));
            assert!(
                got_field.starts_with(field),
                "{what}: field {got_field}, expected {field}"
            );
        }
        assert_eq!(
            store_revision(&server).await,
            before,
            "{what} wrote something"
        );
    }
    // A lease both branches name: which one ran is not told (it was said
    // to be the success branch's, though the failure branch ran).
    let both = json!({
        "compare": [{"key": "bad/none", "target": "exists", "op": "=", "value": true}],
        "success": [{"put": {"key": "bad/a", "value": 1, "lease": 7}}],
        "failure": [{"put": {"key": "bad/b", "value": 1, "lease": 7}}],
    });
    let answer = send_txn(&server, both.to_string(), None, None).await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(
        error_of(&answer.body),
        ("lease_not_found", None),
        "{}",
        answer.body
    );
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("success[0].put.lease or failure[0].put.lease"),
        "{message}"
    );
    assert!(get(&server, "bad/a").await.is_none());
    // The same body with a good key is taken: the refusals were for the
    // reason each case names.
    let answer = send_txn(
        &server,
        valid,
        None,
        Some(&uuid::Uuid::new_v4().to_string()),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(store_revision(&server).await, before + 1);
}

#[tokio::test]
async fn a_txn_sent_twice_with_one_idempotency_key_applies_once_and_answers_its_first_revision() {
    let server = TestServer::start().await;
    let body = json!({
        "compare": [{"key": "idem/a", "target": "exists", "op": "=", "value": false}],
        "success": [
            {"put": {"key": "idem/a", "value": 1}},
            {"put": {"key": "idem/b", "value": 2}}
        ],
        "failure": [{"put": {"key": "idem/failed", "value": 1}}]
    })
    .to_string();
    let key = uuid::Uuid::new_v4().to_string();
    let first = send_txn(&server, body.clone(), None, Some(&key)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["succeeded"], true);
    assert!(
        first.body.get("deduplicated").is_none_or(|d| d == false),
        "{}",
        first.body
    );
    let revision = first.body["revision"].as_u64().unwrap();

    let retry = send_txn(&server, body.clone(), None, Some(&key)).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["deduplicated"], true, "{}", retry.body);
    assert_eq!(retry.body["succeeded"], true, "{}", retry.body);
    assert_eq!(retry.body["revision"], json!(revision), "{}", retry.body);
    assert_eq!(store_revision(&server).await, revision, "the retry wrote");
    assert!(
        get(&server, "idem/failed").await.is_none(),
        "the retry ran the failure branch"
    );
    assert_eq!(get(&server, "idem/a").await.unwrap()["version"], 1);

    // Another key is another transaction: now its compare fails.
    let other = send_txn(&server, body, None, Some(&uuid::Uuid::new_v4().to_string())).await;
    assert_eq!(other.body["succeeded"], false, "{}", other.body);
    assert!(get(&server, "idem/failed").await.is_some());
}

/// `GET /v1/changes?{query}`, which must answer 200.
async fn changes(server: &TestServer, query: &str) -> Value {
    let (status, page) = call(server, "GET", &format!("/v1/changes?{query}"), None).await;
    assert_eq!(status, 200, "{query}: {page}");
    page
}

/// The `(key, revision)` of every record of a change-feed page.
fn keys_and_revisions(page: &Value) -> Vec<(String, u64)> {
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| {
            (
                record["key"].as_str().expect("key").to_string(),
                record["revision"].as_u64().expect("revision"),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_change_feed_and_replay_show_a_five_key_txn_whole_with_one_revision() {
    let server = TestServer::start().await;
    put(&server, "five/seed", json!(0)).await;
    let from = store_revision(&server).await;
    let waiting = {
        let client = server.client().clone();
        let url = server.url(&format!("/v1/changes?from={from}&prefix=five/&wait=10s"));
        tokio::spawn(async move { client.get(url).send().await?.json::<Value>().await })
    };
    server.wait_for_waiters(1, Duration::from_secs(10)).await;

    let puts: Vec<Value> = (0..5)
        .map(|i| json!({"put": {"key": format!("five/{i}"), "value": i}}))
        .collect();
    let answer = txn(&server, json!({"success": puts})).await;
    let revision = answer["revision"].as_u64().unwrap();
    let whole: Vec<(String, u64)> = (0..5).map(|i| (format!("five/{i}"), revision)).collect();

    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the long-poll answered after the txn")
        .expect("the long-poll task ran")
        .expect("the long-poll answered JSON");
    assert_eq!(
        keys_and_revisions(&woken),
        whole,
        "the long-poll woke with the whole txn: {woken}"
    );
    assert_eq!(woken["next"], json!(revision));
    assert_eq!(server.waiters().await, 0, "the long-poll was answered once");

    let page = changes(&server, &format!("from={from}&prefix=five/&limit=1")).await;
    assert_eq!(
        keys_and_revisions(&page),
        whole,
        "limit=1 still holds the whole txn: {page}"
    );
    assert_eq!(page["next"], json!(revision), "{page}");
    let offsets: Vec<u64> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(
        offsets,
        (revision - 4..=revision).collect::<Vec<_>>(),
        "{page}"
    );
    let after = changes(&server, &format!("from={revision}&prefix=five/&limit=1")).await;
    assert_eq!(after["records"], json!([]), "{after}");

    let replay = server
        .client()
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .expect("replay answers")
        .text()
        .await
        .expect("replay reads");
    let replayed: Vec<(String, u64, u64)> = replay
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON record per line"))
        .filter(|record| record["key"].as_str().unwrap().starts_with("five/"))
        .filter(|record| record["key"] != "five/seed")
        .map(|record| {
            (
                record["key"].as_str().unwrap().to_string(),
                record["offset"].as_u64().unwrap(),
                record["revision"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64, u64)> = (0..5)
        .map(|i| (format!("five/{i}"), revision - 4 + i, revision))
        .collect();
    assert_eq!(
        replayed, expected,
        "replay shows the txn's records with one revision"
    );
}

/// Bootstraps `--auth` on `cluster` and makes a token that may write
/// `a/` only; returns (root, the `a/` writer's token).
async fn root_and_a_writer(cluster: &TestCluster) -> (String, String) {
    let urls = cluster.urls().join(",");
    let root = kvctl(&urls, &["-o", "json", "acl", "bootstrap"])
        .await
        .success()
        .json();
    let root = root["token"].as_str().expect("a root token").to_string();
    let as_root = |args: &'static [&'static str]| {
        let mut full = vec!["--token", root.as_str(), "-o", "json"];
        full.extend_from_slice(args);
        let urls = urls.clone();
        async move { kvctl(&urls, &full).await.success() }
    };
    as_root(&["acl", "role", "create", "a-writer", "--readwrite", "a/"]).await;
    let made = as_root(&["acl", "token", "create", "a-writer", "--role", "a-writer"])
        .await
        .json();
    let writer = made["token"].as_str().expect("a secret").to_string();
    for token in [&root, &writer] {
        for id in cluster.ids() {
            let node = cluster.node(id);
            let deadline = Instant::now() + SPREAD_TIMEOUT;
            loop {
                let response = node
                    .client()
                    .get(node.url("/v1/cluster"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("the node answers");
                if response.status() == 200 {
                    break;
                }
                assert!(Instant::now() < deadline, "node {id} did not take a token");
                tokio::time::sleep(POLL).await;
            }
        }
    }
    (root, writer)
}

#[tokio::test]
async fn with_auth_a_txn_reaching_keys_outside_the_tokens_prefix_is_refused_on_every_node_and_writes_nothing(
) {
    let cluster = TestCluster::start(3, &["--auth"]).await;
    let (root, writer) = root_and_a_writer(&cluster).await;
    let leader = cluster.leader().await;
    let revision_of = |node: &TestServer| {
        let url = node.url("/v1/kv/a/x");
        let client = node.client().clone();
        let root = root.clone();
        async move {
            let response = client.get(url).bearer_auth(root).send().await.unwrap();
            let revision: u64 = response.headers()["x-kv-revision"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (response.status().as_u16(), revision)
        }
    };
    let (status, before) = revision_of(cluster.node(leader)).await;
    assert_eq!(status, 404);

    let put_a = json!({"put": {"key": "a/x", "value": 1}});
    let refused = [
        (
            "a put of b/x",
            json!({"success": [put_a, {"put": {"key": "b/x", "value": 1}}]}),
        ),
        (
            "a read of b/",
            json!({"success": [put_a, {"get": {"prefix": "b/"}}]}),
        ),
        (
            "a compare of b/y",
            json!({"compare": [{"key": "b/y", "target": "exists", "op": "=", "value": false}], "success": [put_a]}),
        ),
        (
            "a put of b/x in the failure branch",
            json!({"success": [put_a], "failure": [{"put": {"key": "b/x", "value": 1}}]}),
        ),
        (
            "a prefix delete wider than a/",
            json!({"success": [{"delete": {"prefix": "a"}}]}),
        ),
    ];
    for id in cluster.ids() {
        for (what, body) in &refused {
            let answer = send_txn(cluster.node(id), body.to_string(), Some(&writer), None).await;
            assert_eq!(
                answer.status, 403,
                "{what} through node {id}: {}",
                answer.body
            );
            assert_eq!(
                error_of(&answer.body).0,
                "permission_denied",
                "{what}: {}",
                answer.body
            );
        }
    }
    let (status, after) = revision_of(cluster.node(leader)).await;
    assert_eq!((status, after), (404, before), "a refused txn wrote");

    // The token may run the same txn inside its prefix, through a follower.
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let body = json!({"success": [put_a, {"get": {"prefix": "a/"}}]}).to_string();
    let answer = send_txn(cluster.node(follower), body, Some(&writer), None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["succeeded"], true);
}

#[tokio::test]
async fn a_view_rebuilt_from_the_topic_equals_the_live_one_after_transactions() {
    let mut server = TestServer::start().await;
    for i in 0..8 {
        put(&server, &format!("v/{i}"), json!({"n": i})).await;
    }
    txn(
        &server,
        json!({"success": [
            {"put": {"key": "v/0", "value": "changed"}},
            {"delete": {"key": "v/1"}},
            {"delete": {"prefix": "v/2"}},
            {"put": {"key": "v/new", "value": [1, 2]}}
        ]}),
    )
    .await;
    let failed = txn(
        &server,
        json!({
            "compare": [{"key": "v/0", "target": "version", "op": "=", "value": 1}],
            "success": [{"put": {"key": "v/never", "value": 0}}],
            "failure": [
                {"delete": {"prefix": "v/3"}},
                {"put": {"key": "v/4", "value": null}},
                {"put": {"key": "v/1", "value": "recreated"}}
            ]
        }),
    )
    .await;
    assert_eq!(failed["succeeded"], false);
    put(&server, "v/5", json!("plain")).await;
    call(&server, "DELETE", "/v1/kv/v/6", None).await;
    txn(
        &server,
        json!({"success": [
            {"put": {"key": "v/6", "value": 6}},
            {"put": {"key": "v/0", "value": "again"}},
            {"get": {"prefix": "v/"}}
        ]}),
    )
    .await;

    let live = every_key(&server).await;
    let live_revision = store_revision(&server).await;
    assert!(live.contains_key("v/1") && !live.contains_key("v/2") && !live.contains_key("v/never"));
    assert_eq!(live["v/0"]["version"], 3, "{:?}", live["v/0"]);

    server.stop().await;
    let view = server.data_dir().join("view");
    assert!(
        view.is_dir(),
        "the data dir holds view/ at {}",
        view.display()
    );
    std::fs::remove_dir_all(&view).expect("the view can be removed");
    server.restart().await;

    assert_eq!(every_key(&server).await, live, "the rebuilt view differs");
    assert_eq!(store_revision(&server).await, live_revision);
}

#[tokio::test]
async fn the_internal_header_from_a_client_or_a_caller_naming_no_cluster_keeps_the_128_op_limit() {
    let server = TestServer::start().await;
    let before = store_revision(&server).await;
    let ops: Vec<Value> = (0..129)
        .map(|i| json!({"put": {"key": format!("internal/{i}"), "value": i}}))
        .collect();
    let body = json!({ "success": ops });
    let peer = format!("{}/v1/txn", server.peer_url());
    for (port, url) in [("client", server.url("/v1/txn")), ("peer", peer)] {
        let response = server
            .client()
            .post(url)
            .header("x-kv-internal", "1")
            .json(&body)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 400, "{port} port");
        let answer: Value = response.json().await.expect("JSON");
        assert_eq!(
            answer["error"]["code"], "too_many_ops",
            "{port} port: {answer}"
        );
    }
    assert_eq!(store_revision(&server).await, before, "a refused txn wrote");
}
