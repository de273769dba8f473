//! The console's files as a node serves them, and the long-poll of
//! `/v1/cluster` its cluster page is drawn by. The console in a real
//! browser is `ui.rs` (`make test-ui`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use integration_tests::{call, error_of, TestServer};
use serde_json::{json, Value};

/// The modules a script imports: `from './name.js'`.
fn imports(script: &str) -> Vec<String> {
    script
        .split("from './")
        .skip(1)
        .filter_map(|rest| rest.split_once('\'').map(|(name, _)| name.to_string()))
        .collect()
}

#[tokio::test]
async fn the_console_is_served_whole_with_a_policy_that_keeps_it_on_its_node() {
    let server = TestServer::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let redirect = client
        .get(server.url("/ui"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/ui/");

    let page = client
        .get(server.url("/ui/"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ASCII")
        .to_string();
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(rule), "{rule} in {policy}");
    }
    let html = page.text().await.expect("the page");
    assert!(
        html.contains(r#"<script type="module" src="app.js">"#),
        "{html}"
    );
    assert!(html.contains(r#"href="app.css""#), "{html}");

    // Every module the script imports, and the modules they import, is there.
    let mut seen = BTreeSet::new();
    let mut next = vec!["app.js".to_string()];
    while let Some(name) = next.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let answer = client
            .get(server.url(&format!("/ui/{name}")))
            .send()
            .await
            .expect("an answer");
        assert_eq!(answer.status(), 200, "{name}");
        assert_eq!(
            answer.headers()["content-type"],
            "text/javascript; charset=utf-8",
            "{name}"
        );
        next.extend(imports(&answer.text().await.expect("a script")));
    }
    assert!(seen.len() > 5, "the script is split in modules: {seen:?}");

    // The forms check against the very schema files of `schemas/json`.
    for name in ["topic-config", "subscription-group-config"] {
        let served: Value = client
            .get(server.url(&format!("/ui/schemas/{name}.schema.json")))
            .send()
            .await
            .expect("an answer")
            .json()
            .await
            .expect("JSON");
        let path = format!(
            "{}/../schemas/json/{name}.schema.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("the schema file"))
                .expect("JSON");
        assert_eq!(served, file, "{name}");
    }

    for missing in ["/ui/missing.js", "/ui/%FF"] {
        let (status, body) = call(&server, "GET", missing, None).await;
        assert_eq!((status, error_of(&body).0), (404, "not_found"), "{missing}");
    }
}

/// `GET path`: how long it took, the status, `X-Kv-Index` and the body.
async fn timed_get(server: &TestServer, path: &str) -> (Duration, u16, u64, Value) {
    let started = Instant::now();
    let response = server
        .client()
        .get(server.url(path))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let index = response
        .headers()
        .get("x-kv-index")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .expect("an X-Kv-Index");
    let body = response.json().await.expect("JSON");
    (started.elapsed(), status, index, body)
}

/// The applied index of a `/v1/cluster` answer.
fn applied(body: &Value) -> u64 {
    body["applied_index"].as_u64().expect("an applied index")
}

/// How long a spawned long-poll may take to reach the server.
const REGISTERED_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_cluster_status_by_long_poll_waits_for_the_cluster_to_move() {
    let server = TestServer::start().await;
    let (_, status, first, _) = timed_get(&server, "/v1/cluster").await;
    assert_eq!(status, 200);

    // Nothing moves: held for the whole wait, then the same state. (A node
    // just started may still move: its addresses published, a first entry
    // applied. Then the poll answers early with another index, and is
    // asked again from there.)
    let wait = Duration::from_millis(400);
    let mut index = first;
    let mut answers = Vec::new();
    for _ in 0..20 {
        let (elapsed, status, next, _) =
            timed_get(&server, &format!("/v1/cluster?index={index}&wait=400ms")).await;
        assert_eq!(status, 200);
        answers.push((elapsed, next));
        if next == index && elapsed >= wait {
            break;
        }
        index = next;
    }
    assert!(
        answers
            .iter()
            .any(|(elapsed, next)| *next == index && *elapsed >= wait),
        "no long-poll was held for its wait on an idle node: {answers:?}"
    );
    let (_, _, same, before) = timed_get(&server, "/v1/cluster").await;
    assert_eq!(same, index, "the same state, the same index");

    // A write moves it: the poll, registered first, answers with the write.
    let poll = {
        let server_client = server.client().clone();
        let url = server.url(&format!("/v1/cluster?index={index}&wait=60s"));
        tokio::spawn(async move {
            let started = Instant::now();
            let response = server_client.get(url).send().await.expect("an answer");
            let next: u64 = response.headers()["x-kv-index"]
                .to_str()
                .expect("ASCII")
                .parse()
                .expect("a number");
            (started.elapsed(), next)
        })
    };
    server.wait_for_long_polls(1, REGISTERED_WITHIN).await;
    let (status, _) = call(&server, "PUT", "/v1/kv/console/k", Some(json!(1))).await;
    assert_eq!(status, 201);
    let (elapsed, next) = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the write ended the long-poll")
        .expect("the request task");
    assert_ne!(next, index, "a new state, a new index");
    assert!(
        elapsed < Duration::from_secs(30),
        "answered after {elapsed:?}"
    );
    let (_, _, _, after) = timed_get(&server, "/v1/cluster").await;
    assert!(applied(&after) > applied(&before), "{after} after {before}");

    // An index of a state gone by answers at once, whatever moved since;
    // a wait without an index is refused.
    let (elapsed, _, now, _) =
        timed_get(&server, &format!("/v1/cluster?index={first}&wait=60s")).await;
    assert!(
        elapsed < Duration::from_secs(30),
        "answered after {elapsed:?}"
    );
    assert_ne!(now, first);
    let (status, body) = call(&server, "GET", "/v1/cluster?wait=1s", None).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body), ("invalid_parameter", Some("wait")));
}
