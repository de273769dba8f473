//! Bad input gets a 4xx with a JSON body naming the problem, never a 500,
//! and costs no data.

use integration_tests::{assert_openapi_lists, call, error_of, TestServer};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

/// One bad request and what it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: Some(b"1".to_vec()).filter(|_| method == "PUT"),
        status,
        code,
    }
}

impl Case {
    fn body(mut self, body: &[u8]) -> Case {
        self.body = Some(body.to_vec());
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Case {
        self.headers.push((name, value));
        self
    }
}

/// Sends one hand-written HTTP/1.1 request and reads the status and body.
async fn raw_request(
    server: &TestServer,
    request_line: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "{request_line}\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_string())),
    )
}

#[tokio::test]
async fn every_bad_input_is_a_json_4xx_naming_it_and_loses_nothing() {
    let server = TestServer::start_with(&["--max-value-bytes", "1024"]).await;
    call(&server, "PUT", "/v1/kv/keep/a", Some(json!({"kept": true}))).await;
    let long_key = format!("/v1/kv/{}", "k".repeat(1100));
    let big_body = vec![b' '; 1100];
    // Over the limit plus the server's 64 KiB allowance for framing: refused
    // while the body is read, before the handler sees it.
    let far_too_big_body = vec![b' '; 70 * 1024];
    let cases = vec![
        case(
            "invalid JSON body",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_json",
        )
        .body(b"{\"x\":"),
        case("empty body", "PUT", "/v1/kv/keep/a", 400, "invalid_json").body(b""),
        case(
            "two JSON values",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_json",
        )
        .body(b"1 2"),
        case(
            "non-UTF-8 body",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_json",
        )
        .body(&[0xff, 0xfe]),
        case(
            "value over the limit",
            "PUT",
            "/v1/kv/keep/a",
            413,
            "value_too_large",
        )
        .body(&big_body),
        case(
            "control character in key",
            "PUT",
            "/v1/kv/keep/%01",
            400,
            "invalid_key",
        ),
        case(
            "empty segment in key",
            "PUT",
            "/v1/kv/keep//a",
            400,
            "invalid_key",
        ),
        case("key too long", "PUT", &long_key, 400, "invalid_key"),
        case(
            "trailing slash in key",
            "GET",
            "/v1/kv/keep/",
            400,
            "invalid_key",
        ),
        case(
            "If-Match not a revision",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-match", "\"abc\""),
        case(
            "If-Match with an unbalanced quote",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-match", "\"1"),
        case(
            "If-Match with a sign",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-match", "\"+1\""),
        case(
            "If-Match with If-None-Match",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "conflicting_conditions",
        )
        .header("if-match", "\"2\"")
        .header("if-none-match", "*"),
        case(
            "If-None-Match other than *",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-none-match", "\"2\""),
        case(
            "Idempotency-Key not a UUID",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("idempotency-key", "retry-1"),
        case(
            "Idempotency-Key given twice",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("idempotency-key", "6f1c3d4e-8a2b-4c5d-9e0f-1a2b3c4d5e6f")
        .header("idempotency-key", "7f1c3d4e-8a2b-4c5d-9e0f-1a2b3c4d5e6f"),
        case(
            "If-Match given twice",
            "PUT",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-match", "\"2\"")
        .header("if-match", "\"3\""),
        case(
            "unknown query parameter",
            "GET",
            "/v1/kv/keep/a?color=red",
            400,
            "unknown_parameter",
        ),
        case(
            "repeated query parameter",
            "GET",
            "/v1/kv/keep/a?index=1&index=2",
            400,
            "repeated_parameter",
        ),
        // Disarming is all or nothing: a member asked for is refused, not
        // ignored while every alarm goes.
        case(
            "a member to disarm",
            "DELETE",
            "/v1/alarms?member=1",
            400,
            "unknown_parameter",
        ),
        case(
            "a parameter of the alarms",
            "GET",
            "/v1/alarms?all=1",
            400,
            "unknown_parameter",
        ),
        case(
            "a parameter of space",
            "GET",
            "/v1/space?node=2",
            400,
            "unknown_parameter",
        ),
        case(
            "a parameter of the snapshot",
            "GET",
            "/v1/snapshot?revision=3",
            400,
            "unknown_parameter",
        ),
        // A removal is refused, not done while a `force` it does not know
        // is ignored.
        case(
            "a parameter of a member's removal",
            "DELETE",
            "/v1/cluster/members/1?force=true",
            400,
            "unknown_parameter",
        ),
        case(
            "a parameter of a member's addition",
            "POST",
            "/v1/cluster/members?learner=false",
            400,
            "unknown_parameter",
        ),
        // 2^53: a JSON client (the console) would read it as another id.
        case(
            "a member id past what JSON clients read exactly",
            "POST",
            "/v1/cluster/members",
            400,
            "invalid_field",
        )
        .body(
            br#"{"id": 9007199254740992, "addr": "http://127.0.0.1:1", "peer_addr": "http://127.0.0.1:2"}"#,
        ),
        case(
            "unknown consistency",
            "GET",
            "/v1/kv/keep/a?consistency=weird",
            400,
            "invalid_parameter",
        ),
        case(
            "limit zero",
            "GET",
            "/v1/kv?prefix=keep/&limit=0",
            400,
            "invalid_parameter",
        ),
        case(
            "limit not a number",
            "GET",
            "/v1/kv?limit=abc",
            400,
            "invalid_parameter",
        ),
        case(
            "limit too large",
            "GET",
            "/v1/kv?limit=100000",
            400,
            "invalid_parameter",
        ),
        case(
            "negative index",
            "GET",
            "/v1/kv/keep/a?index=-1",
            400,
            "invalid_parameter",
        ),
        case(
            "wait not a duration",
            "GET",
            "/v1/kv/keep/a?index=1&wait=soon",
            400,
            "invalid_parameter",
        ),
        case(
            "wait without index",
            "GET",
            "/v1/kv/keep/a?wait=1s",
            400,
            "invalid_parameter",
        ),
        case(
            "query on a PUT",
            "PUT",
            "/v1/kv/keep/a?index=1",
            400,
            "unknown_parameter",
        ),
        case(
            "change feed from not a number",
            "GET",
            "/v1/changes?from=x",
            400,
            "invalid_parameter",
        ),
        case(
            "replay from not a number",
            "GET",
            "/v1/topic/records?from=-5",
            400,
            "invalid_parameter",
        ),
        case(
            "change feed from the largest number, whose next overflows",
            "GET",
            "/v1/changes?from=18446744073709551615",
            400,
            "invalid_parameter",
        ),
        case(
            "replay from past the largest revision",
            "GET",
            "/v1/topic/records?from=18446744073709551615",
            400,
            "invalid_parameter",
        ),
        case(
            "long-poll index past the largest revision",
            "GET",
            "/v1/kv/keep/a?index=18446744073709551615&wait=1s",
            400,
            "invalid_parameter",
        ),
        case(
            "prefix long-poll index past the largest revision",
            "GET",
            "/v1/kv?prefix=keep/&index=9223372036854775808&wait=1s",
            400,
            "invalid_parameter",
        ),
        case("unknown route", "GET", "/v2/everything", 404, "not_found"),
        case(
            "wrong method",
            "POST",
            "/v1/kv/keep/a",
            405,
            "method_not_allowed",
        ),
        case(
            "raw write to typed metadata",
            "PUT",
            "/v1/kv/topics/t",
            400,
            "reserved_key",
        ),
        case(
            "value past the transport limit",
            "PUT",
            "/v1/kv/keep/a",
            413,
            "value_too_large",
        )
        .body(&far_too_big_body),
        case(
            "transaction past the transport limit",
            "POST",
            "/v1/txn",
            413,
            "value_too_large",
        )
        .body(&far_too_big_body),
        case(
            "leading slash in key",
            "PUT",
            "/v1/kv/%2Fkeep",
            400,
            "invalid_key",
        ),
        case(
            "key not UTF-8",
            "PUT",
            "/v1/kv/keep/%C3%28",
            400,
            "invalid_key",
        ),
        case(
            "If-Match not a revision on a delete",
            "DELETE",
            "/v1/kv/keep/a",
            400,
            "invalid_header",
        )
        .header("if-match", "later"),
        case(
            "index too large for a revision",
            "GET",
            "/v1/kv/keep/a?index=99999999999999999999999",
            400,
            "invalid_parameter",
        ),
        case(
            "repeated prefix on a list",
            "GET",
            "/v1/kv?prefix=keep/&prefix=other/",
            400,
            "repeated_parameter",
        ),
        case(
            "a list prefix with a control character",
            "GET",
            "/v1/kv?prefix=%00acl/",
            400,
            "invalid_key",
        ),
        case(
            "a list prefix starting with a slash",
            "GET",
            "/v1/kv?prefix=/a",
            400,
            "invalid_key",
        ),
        case(
            "a change-feed prefix longer than a key",
            "GET",
            &format!("/v1/changes?prefix={}", "p".repeat(2000)),
            400,
            "invalid_key",
        ),
        case(
            "wrong method on a list",
            "PATCH",
            "/v1/kv",
            405,
            "method_not_allowed",
        ),
    ];
    assert!(cases.len() >= 25);
    let (_, document) = call(&server, "GET", "/v1/openapi.json", None).await;
    for case in cases {
        let method: reqwest::Method = case.method.parse().unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in &case.headers {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let mut request = server
            .client()
            .request(method, server.url(&case.path))
            .headers(headers);
        if let Some(body) = case.body.clone() {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(
            response.headers().contains_key("x-kv-revision"),
            "{}: an error answer carries X-Kv-Revision",
            case.what
        );
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("{}: the body is not JSON", case.what));
        assert_eq!(status, case.status, "{}: {body}", case.what);
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{}",
            case.what
        );
        assert_eq!(error_of(&body).0, case.code, "{}: {body}", case.what);
        assert_openapi_lists(&document, case.method, &case.path, status, case.code);
    }

    // HTTP libraries resolve `.` and `..` and refuse non-ASCII header
    // values; a hand-written request sends them as they are.
    let raw_cases = [
        (
            "dot-dot segment in key",
            "PUT /v1/kv/keep/../a HTTP/1.1",
            "invalid_key",
        ),
        (
            "dot segment in key",
            "PUT /v1/kv/keep/./a HTTP/1.1",
            "invalid_key",
        ),
        (
            "Idempotency-Key not ASCII",
            "PUT /v1/kv/keep/a HTTP/1.1\r\nIdempotency-Key: caf\u{e9}",
            "invalid_header",
        ),
    ];
    for (what, request_head, code) in raw_cases {
        let (status, body) = raw_request(&server, request_head, b"1").await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(error_of(&body).0, code, "{what}: {body}");
    }
    // What HTTP itself refuses, before any route: a JSON body too.
    let many_headers: String = (0..150).map(|n| format!("\r\nX-Many-{n}: 1")).collect();
    let http_cases = [
        (
            "not HTTP",
            "NOT HTTP AT ALL".to_string(),
            400,
            "malformed_request",
        ),
        (
            "URI too long",
            format!("GET /v1/kv/{} HTTP/1.1", "k".repeat(70_000)),
            414,
            "uri_too_long",
        ),
        (
            "too many headers",
            format!("GET /v1/kv/keep/a HTTP/1.1{many_headers}"),
            431,
            "headers_too_large",
        ),
    ];
    for (what, request_head, expected, code) in http_cases {
        // No body: the node closes once it has answered, and bytes it
        // never read could reset the connection under its answer.
        let (status, body) = raw_request(&server, &request_head, b"").await;
        assert_eq!(
            (status, error_of(&body).0),
            (expected, code),
            "{what}: {body}"
        );
    }

    // Nothing was lost or changed, and the server is still healthy.
    let (status, entry) = call(&server, "GET", "/v1/kv/keep/a", None).await;
    assert_eq!(
        (status, entry["value"].clone(), entry["version"].clone()),
        (200, json!({"kept": true}), json!(1))
    );
    let (_, list) = call(&server, "GET", "/v1/kv?prefix=", None).await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 1, "{list}");
    let (status, _) = call(&server, "PUT", "/v1/kv/keep/b", None).await;
    assert_eq!(status, 400, "a PUT without a body is refused too");
    let just_under = format!("\"{}\"", "v".repeat(1000));
    let response = server
        .client()
        .put(server.url("/v1/kv/keep/big"))
        .body(just_under)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "a value under the limit is taken");
}

/// A body with a content coding (gzip, br) is refused, not stored as the
/// bytes it arrived as; `identity` is no coding.
#[tokio::test]
async fn a_body_with_a_content_encoding_is_refused_and_nothing_is_stored() {
    let server = TestServer::start().await;
    for coding in ["br", "gzip", "identity, gzip"] {
        let response = server
            .client()
            .put(server.url("/v1/kv/coded/k"))
            .header("content-encoding", coding)
            .body("5")
            .send()
            .await
            .expect("the write answers");
        assert_eq!(response.status(), 415, "{coding}");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(
            error_of(&body).0,
            "unsupported_encoding",
            "{coding}: {body}"
        );
    }
    let (status, _) = call(&server, "GET", "/v1/kv/coded/k", None).await;
    assert_eq!(status, 404, "nothing was stored");
    let plain = server
        .client()
        .put(server.url("/v1/kv/coded/k"))
        .header("content-encoding", "identity")
        .body("5")
        .send()
        .await
        .expect("the write answers");
    assert_eq!(plain.status(), 201);
}

/// The peer port's own routes answer a wrong method as the client port's
/// do: 405 with a JSON body naming it.
#[tokio::test]
async fn the_peer_ports_raft_routes_refuse_a_wrong_method_in_json() {
    let server = TestServer::start().await;
    for path in ["/raft/vote", "/raft/append", "/raft/snapshot"] {
        let response = server
            .client()
            .get(format!("{}{path}", server.peer_url()))
            .send()
            .await
            .expect("the peer port answers");
        assert_eq!(response.status(), 405, "{path}");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(error_of(&body).0, "method_not_allowed", "{path}: {body}");
    }
}

/// Any token is an HTTP method. Each answered request is counted under its
/// method in `/metrics`, which answers before `--auth`: a label per method
/// seen would let anyone grow the node's memory and its metrics without
/// bound.
#[tokio::test]
async fn made_up_methods_are_refused_and_counted_under_one_label() {
    let server = TestServer::start().await;
    for round in 0..40 {
        let method = format!("MADEUP{round:03}{}", "X".repeat(100));
        let (status, body) =
            raw_request(&server, &format!("{method} /v1/kv/a HTTP/1.1"), b"").await;
        assert_eq!(status, 405, "{method}: {body}");
        assert_eq!(error_of(&body).0, "method_not_allowed", "{body}");
    }
    let exposition = server.metrics_text().await;
    assert!(
        !exposition.contains("MADEUP"),
        "a made-up method became a label"
    );
    let counted = exposition
        .lines()
        .find(|line| {
            line.starts_with("kv_http_requests_total{")
                && line.contains("method=\"OTHER\"")
                && line.contains("status=\"405\"")
        })
        .unwrap_or_else(|| panic!("no OTHER counter in:\n{exposition}"));
    assert!(counted.ends_with(" 40"), "{counted}");
}

#[tokio::test]
async fn a_node_refuses_to_start_with_flags_that_contradict_each_other_naming_them() {
    // (what, flags, what the node's error must name)
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "a new cluster and an existing one at once",
            &[
                "--peers",
                "1=http://127.0.0.1:1",
                "--join",
                "http://127.0.0.1:2",
            ],
            &["--peers", "--join"],
        ),
        (
            "peers without this node",
            &["--peers", "2=http://127.0.0.1:1"],
            &["--peers", "--node-id 1"],
        ),
        (
            "a compaction lag shorter than the idempotency window",
            &["--min-compaction-lag-ms", "1000"],
            &["--min-compaction-lag-ms 1000", "600000 ms"],
        ),
        (
            "a join URL that is not a node's",
            &["--join", "https://127.0.0.1:2"],
            &["--join", "https://127.0.0.1:2"],
        ),
    ];
    for (what, flags, named) in cases {
        let mut node = TestServer::unstarted(1, 0, 0, flags);
        node.spawn();
        let status = node
            .wait_exit(std::time::Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{what}: the node kept running"));
        assert!(
            !status.success(),
            "{what}: it exits with an error: {status}"
        );
        for name in *named {
            // The refusal shows only in the node's own output.
            assert!(
                node.log_contains(name),
                "{what}: the error names {name}\n{}",
                node.log_tail(5)
            );
        }
    }
}
