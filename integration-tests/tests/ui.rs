//! The web console (`/ui`) in headless Chromium against real nodes: a
//! 3-node cluster with a broker registered through the name server, and a
//! node with `--auth`. The browser is driven by `ui-tests/console.mjs`
//! (playwright-core); this test starts the nodes, hands it their URLs and
//! tokens, and fails when it does.
//!
//! It needs Chromium and `npm ci` in `ui-tests/`, which `make test-ui`
//! installs, so plain `cargo test` skips it. `KV_UI_SCREENSHOTS=docs/ui`
//! (a path from the workspace root) renews the README's screenshots.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use integration_tests::remoting::{connect, register_captured};
use integration_tests::{TestCluster, TestServer};
use serde_json::{json, Value};

/// The browser run's limit: every step in it has its own, far shorter one.
const BROWSER_RUN_LIMIT: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .to_path_buf()
}

/// `method path` on `node` as `token`, with `body` if any, answered with
/// 2xx; its JSON.
async fn send_ok(
    node: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let method: reqwest::Method = method.parse().expect("a valid method");
    let mut request = node.client().request(method, node.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the node answers");
    let status = response.status();
    let text = response.text().await.expect("a readable body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("a JSON answer")
}

/// A node with `--auth`, its root token, and a token that may only read `app/`.
async fn auth_node() -> (TestServer, String, String) {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = send_ok(&node, None, "POST", "/v1/acl/bootstrap", None).await["token"]
        .as_str()
        .expect("a root token")
        .to_string();
    let role = json!({"name": "app-reader", "permissions": [{"prefix": "app/", "access": "read"}]});
    send_ok(
        &node,
        Some(&root),
        "PUT",
        "/v1/acl/roles/app-reader",
        Some(role),
    )
    .await;
    let reader = send_ok(
        &node,
        Some(&root),
        "POST",
        "/v1/acl/tokens",
        Some(json!({"name": "console-reader", "roles": ["app-reader"]})),
    )
    .await["token"]
        .as_str()
        .expect("a reader token")
        .to_string();
    (node, root, reader)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and playwright-core: make test-ui"]
async fn the_console_works_in_a_real_browser_against_a_three_node_cluster() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    // The page is served by a follower, so its writes go through the
    // follower to the leader, as a user's would.
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a 3-node cluster has followers");
    let mut order = vec![follower];
    order.extend(cluster.ids().into_iter().filter(|id| *id != follower));
    let nodes: Vec<String> = order
        .iter()
        .map(|id| cluster.node(*id).base_url())
        .collect();

    let answer = register_captured(&mut connect(cluster.node(follower)).await).await;
    assert_eq!(answer.code, 0, "the broker registers: {:?}", answer.remark);
    let routes = send_ok(cluster.node(leader), None, "GET", "/v1/brokers", None).await;
    let broker = routes["brokerAddrTable"]
        .as_object()
        .and_then(|table| table.keys().next().cloned())
        .expect("the registered broker is listed");
    // A topic of the captured registration, whose route names the broker.
    let topic = "TBW102";
    send_ok(
        cluster.node(leader),
        None,
        "GET",
        &format!("/v1/routes/{topic}"),
        None,
    )
    .await;

    let (auth, root, reader) = auth_node().await;
    let root_dir = workspace_root();
    let mut browser = tokio::process::Command::new("node");
    browser
        .arg(root_dir.join("ui-tests/console.mjs"))
        .current_dir(&root_dir)
        .env("KV_UI_NODES", nodes.join(","))
        .env("KV_UI_BROKER", &broker)
        .env("KV_UI_TOPIC", topic)
        .env("KV_UI_AUTH_URL", auth.base_url())
        .env("KV_UI_ROOT_TOKEN", &root)
        .env("KV_UI_READ_TOKEN", &reader)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let status = tokio::time::timeout(BROWSER_RUN_LIMIT, browser.status())
        .await
        .unwrap_or_else(|_| panic!("the browser run took over {BROWSER_RUN_LIMIT:?}"))
        .expect("node runs (make test-ui installs it and the browser)");
    assert!(status.success(), "the console test failed: {status}");
}
