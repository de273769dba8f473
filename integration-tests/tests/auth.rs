//! `--auth` against a real 3-node cluster: bootstrap, roles and tokens
//! through kvctl, every route checked with no token, a wrong token, a
//! read-only token, a token for another prefix and root; the ACL keys
//! hidden from every read; change-feed long-polls filtered; membership
//! changes kept for admins; a follower checking before it forwards; a
//! revoked token refused on every node.

use std::time::Duration;

use integration_tests::{error_of, kvctl, KvctlRun, TestCluster, TestServer};
use serde_json::{json, Value};
use tokio::time::Instant;

/// How long a change (a token, a revocation) may take to reach every node.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two looks at a node.
const POLL: Duration = Duration::from_millis(50);
/// A well-formed token no cluster made.
const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Sends `method path` as `token` (none: no Authorization header).
async fn send(
    node: &TestServer,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method: reqwest::Method = method.parse().expect("a valid HTTP method");
    let mut request = node.client().request(method, node.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the body is readable");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// kvctl against every node of `cluster`, as `token`.
async fn ctl(cluster: &TestCluster, token: &str, args: &[&str]) -> KvctlRun {
    let mut full = vec!["--token", token, "-o", "json"];
    full.extend_from_slice(args);
    kvctl(&cluster.urls().join(","), &full).await
}

/// Waits until every node takes `token` (`GET /v1/cluster` answers 200).
async fn wait_known_everywhere(cluster: &TestCluster, token: &str) {
    for id in cluster.ids() {
        let deadline = Instant::now() + SPREAD_TIMEOUT;
        loop {
            let (status, _) = send(cluster.node(id), Some(token), "GET", "/v1/cluster", None).await;
            if status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not take the token within {SPREAD_TIMEOUT:?} (last {status})"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The tokens of the scenario, each a secret.
struct Tokens {
    root: String,
    /// read on `app/` and `topics/`.
    reader: String,
    /// readwrite on `app/`.
    writer: String,
    /// readwrite on `other/` only.
    other: String,
}

/// Grants a lease of `ttl_s` on `node` with `token`; its id.
async fn grant_lease(node: &TestServer, token: Option<&str>, ttl_s: u64) -> u64 {
    let (status, lease) = send(
        node,
        token,
        "POST",
        "/v1/leases",
        Some(json!({"ttl_s": ttl_s})),
    )
    .await;
    assert_eq!(status, 201, "{lease}");
    lease["id"].as_u64().expect("a lease id")
}

/// Bootstraps through kvctl and makes the roles and tokens of [`Tokens`].
async fn set_up(cluster: &TestCluster) -> Tokens {
    let urls = cluster.urls().join(",");
    let root = kvctl(&urls, &["-o", "json", "acl", "bootstrap"])
        .await
        .success()
        .json();
    assert_eq!(root["name"], "root");
    let root = root["token"].as_str().expect("a root token").to_string();
    assert_eq!(root.len(), 64, "256 bits in hex: {root}");
    let again = kvctl(&urls, &["acl", "bootstrap"]).await.expect_code(1);
    assert!(
        again.stderr.contains("acl_already_bootstrapped"),
        "{}",
        again.stderr
    );

    let role = |name: &'static str, args: &'static [&'static str]| {
        let root = root.clone();
        async move {
            let mut full = vec!["acl", "role", "create", name];
            full.extend_from_slice(args);
            ctl(cluster, &root, &full).await.success();
        }
    };
    role("reader", &["--read", "app/", "--read", "topics/"]).await;
    role("writer", &["--readwrite", "app/"]).await;
    role("other", &["--readwrite", "other/"]).await;
    let mut secrets = Vec::new();
    for name in ["reader", "writer", "other"] {
        let made = ctl(
            cluster,
            &root,
            &["acl", "token", "create", name, "--role", name],
        )
        .await
        .success()
        .json();
        assert_eq!(made["name"], name);
        secrets.push(made["token"].as_str().expect("a secret").to_string());
    }
    let tokens = Tokens {
        root,
        reader: secrets[0].clone(),
        writer: secrets[1].clone(),
        other: secrets[2].clone(),
    };
    for token in [&tokens.root, &tokens.reader, &tokens.writer, &tokens.other] {
        wait_known_everywhere(cluster, token).await;
    }
    tokens
}

/// A follower passes on no request whose path reads otherwise once sent:
/// `/v1/kv/app/%2e%2e/%2e%2e/%2e%2e/v1/txn`, checked as a write under
/// `app/`, reached the leader's peer port as `/v1/txn` (or `/raft/*`),
/// which serves passed-on requests without a token. And the peer port
/// takes no passed-on request for a node-to-node route.
#[tokio::test]
async fn a_follower_passes_on_no_path_that_reads_otherwise_once_sent() {
    let cluster = TestCluster::start(3, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.leader().await;
    let root = Some(tokens.root.as_str());
    let (status, body) = send(
        cluster.node(leader),
        root,
        "PUT",
        "/v1/kv/other/secret",
        Some(json!("hidden")),
    )
    .await;
    assert!(status < 300, "{status} {body}");
    let follower = cluster.node(cluster.follower_of(leader));
    let bearer = format!("Bearer {}", tokens.writer);
    let auth = [("Authorization", bearer.as_str())];
    let escape = "/v1/kv/app/%2e%2e/%2e%2e/%2e%2e";
    for (path, body) in [
        (
            format!("{escape}/v1/txn"),
            r#"{"success":[{"get":{"prefix":"other/"}}]}"#,
        ),
        (format!("{escape}/raft/read-index"), "{}"),
        ("/v1/kv/app/%2E%2e/%2e%2E/%2e%2e/v1/txn".to_string(), "{}"),
    ] {
        for method in ["POST", "PATCH", "PUT"] {
            let (status, answer) =
                integration_tests::raw_http::exchange(follower.addr(), method, &path, &auth, body)
                    .await;
            assert!(
                (400..500).contains(&status),
                "{method} {path}: {status} {answer}"
            );
            assert!(!answer.contains("hidden"), "{method} {path}: {answer}");
        }
    }

    // The leader's peer port, as a node passing a request on would call it.
    let peer: std::net::SocketAddr = cluster
        .node(leader)
        .peer_url()
        .trim_start_matches("http://")
        .parse()
        .expect("the peer URL is an address");
    let (status, answer) = integration_tests::raw_http::exchange(
        peer,
        "POST",
        "/raft/read-index",
        &[("X-Kv-Forwarded-By", "2")],
        "{}",
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("permission_denied"), "{answer}");

    // A `\` is passed on encoded, so the leader reads the same name; `..`
    // is no name, as a URL would drop it.
    let root_auth = format!("Bearer {}", tokens.root);
    let root_auth = [("Authorization", root_auth.as_str())];
    let role = r#"{"name":"x\\y","permissions":[]}"#;
    let (status, answer) = integration_tests::raw_http::exchange(
        follower.addr(),
        "PUT",
        "/v1/acl/roles/x\\y",
        &root_auth,
        role,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, listed) = send(follower, root, "GET", "/v1/acl/roles", None).await;
    assert_eq!(status, 200, "{listed}");
    assert!(
        strings_of(&listed, "roles", "name").contains(&"x\\y"),
        "{listed}"
    );
    let (status, answer) = integration_tests::raw_http::exchange(
        follower.addr(),
        "PUT",
        "/v1/acl/roles/%2E%2E",
        &root_auth,
        r#"{"name":"..","permissions":[]}"#,
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("invalid_name"), "{answer}");
}

/// A request a follower passes on is checked again by the leader, against
/// its own data: a lease revoke (or read) through a follower that had not
/// yet seen a key attached was allowed by the follower's copy of the lease
/// (no keys), and the leader revoked the key the token may not write.
#[tokio::test]
async fn a_request_passed_on_is_checked_against_the_leaders_data() {
    const SLOW: u64 = 3;
    let (cluster, proxy, leader) =
        TestCluster::start_with_a_follower_behind_a_proxy(&["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.node(leader);
    let root = Some(tokens.root.as_str());
    let id = grant_lease(leader, root, 300).await;

    // The slow node hears nothing more from the leader.
    proxy.slow_to(1);
    let path = format!("/v1/kv/other/secret?lease={id}");
    let (status, body) = send(leader, root, "PUT", &path, Some(json!("kept"))).await;
    assert!(status < 300, "{status} {body}");
    let slow = cluster.node(SLOW);
    let writer = Some(tokens.writer.as_str());
    for method in ["GET", "DELETE"] {
        let (status, body) = send(slow, writer, method, &format!("/v1/leases/{id}"), None).await;
        assert_eq!(
            (status, error_of(&body).0),
            (403, "permission_denied"),
            "{method} of a lease holding other/secret: {body}"
        );
    }
    proxy.slow_to(0);
    let (status, body) = send(leader, root, "GET", "/v1/kv/other/secret", None).await;
    assert_eq!((status, &body["value"]), (200, &json!("kept")), "{body}");
}

/// A key-value write a follower relays to the leader (as a command, not
/// as the request) is checked again by the leader, against its own tokens
/// and roles: a token revoked, or a grant withdrawn, on the leader writes
/// nothing through a follower that has not yet applied the change.
#[tokio::test]
async fn a_write_relayed_by_a_lagging_follower_is_checked_by_the_leader() {
    const SLOW: u64 = 3;
    let (cluster, proxy, leader) =
        TestCluster::start_with_a_follower_behind_a_proxy(&["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.node(leader);
    let slow = cluster.node(SLOW);
    let root = Some(tokens.root.as_str());
    let writer = Some(tokens.writer.as_str());
    let other = Some(tokens.other.as_str());
    for (token, key) in [(writer, "app/before"), (other, "other/before")] {
        let path = format!("/v1/kv/{key}");
        let (status, body) = send(slow, token, "PUT", &path, Some(json!(1))).await;
        assert!(status < 300, "{key} through the follower: {status} {body}");
    }

    // The slow node hears nothing more from the leader.
    proxy.slow_to(1);
    let (status, body) = send(leader, root, "DELETE", "/v1/acl/tokens/writer", None).await;
    assert!(status < 300, "{status} {body}");
    let narrowed =
        json!({"name": "other", "permissions": [{"prefix": "elsewhere/", "access": "readwrite"}]});
    let (status, body) = send(leader, root, "PUT", "/v1/acl/roles/other", Some(narrowed)).await;
    assert!(status < 300, "{status} {body}");
    let (status, body) = send(slow, writer, "PUT", "/v1/kv/app/after", Some(json!(2))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "a revoked token's write through the lagging follower: {body}"
    );
    let (status, body) = send(slow, other, "DELETE", "/v1/kv/other/before", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("permission_denied")),
        "a withdrawn grant's delete through the lagging follower: {body}"
    );
    proxy.slow_to(0);
    let (status, body) = send(leader, root, "GET", "/v1/kv/app/after", None).await;
    assert_eq!(status, 404, "the refused put wrote nothing: {body}");
    let (status, body) = send(leader, root, "GET", "/v1/kv/other/before", None).await;
    assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
}

/// `kvctl lease keepalive` keeps a lease alive for any valid token, as a
/// single keep-alive does: it used to read the lease first, which needs
/// read on every key attached, and refused a token without it.
#[tokio::test]
async fn kvctl_keeps_alive_a_lease_whose_keys_the_token_may_not_read() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    let writer = token_with_role(&node, &root, "writer", "app/", "readwrite").await;
    let id = grant_lease(&node, Some(&root), kv_client::MIN_LEASE_TTL_S)
        .await
        .to_string();
    let path = format!("/v1/kv/other/secret?lease={id}");
    let (status, body) = send(&node, Some(&root), "PUT", &path, Some(json!(1))).await;
    assert!(status < 300, "{status} {body}");

    let url = node.url("");
    let args = [
        "--token",
        writer.as_str(),
        "lease",
        "keepalive",
        id.as_str(),
    ];
    let keeping = kvctl(&url, &args);
    let revoking = async {
        // Past the second renewal: the first at once, the next a third of
        // the TTL later.
        tokio::time::sleep(Duration::from_secs(kv_client::MIN_LEASE_TTL_S) * 3 / 4).await;
        let path = format!("/v1/leases/{id}");
        let (status, body) = send(&node, Some(&root), "DELETE", &path, None).await;
        assert!(status < 300, "{status} {body}");
    };
    let (kept, ()) = tokio::join!(keeping, revoking);
    let kept = kept.expect_code(1);
    let renewals = kept.lines_with("kept alive");
    assert!(renewals >= 2, "{}\n{}", kept.stdout, kept.stderr);
    assert!(kept.stderr.contains("lease_not_found"), "{}", kept.stderr);
}

/// An expected status; `OK` stands for any 2xx, `SKIP` for "not tried".
const OK: u16 = 200;
const SKIP: u16 = 0;

#[tokio::test]
async fn with_auth_every_route_is_checked_and_acl_keys_stay_hidden() {
    let cluster = TestCluster::start(3, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader);
    let root = Some(tokens.root.as_str());
    for (path, body) in [
        ("/v1/kv/app/k1", json!(1)),
        ("/v1/kv/other/k1", json!(2)),
        (
            "/v1/topics/T",
            serde_json::to_value(schemas::TopicConfig::new("T")).unwrap(),
        ),
    ] {
        let (status, answer) = send(node, root, "PUT", path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }
    // The scheme's name is case-insensitive; what follows is not.
    for (scheme, secret, wanted) in [
        ("bearer", tokens.root.clone(), 200),
        ("BEARER", tokens.root.clone(), 200),
        ("Bearer", tokens.root.to_uppercase(), 401),
        ("Basic", tokens.root.clone(), 401),
    ] {
        let answer = node
            .client()
            .get(node.url("/v1/kv/app/k1"))
            .header("authorization", format!("{scheme} {secret}"))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(answer.status().as_u16(), wanted, "{scheme} …");
    }

    // (method, path, body, [no token, wrong token, reader, other, root])
    let topic = serde_json::to_value(schemas::TopicConfig::new("T2")).unwrap();
    let member = json!({"id": 9, "addr": "http://127.0.0.1:9", "peer_addr": "http://127.0.0.1:9"});
    let role = json!({"name": "x", "permissions": [], "admin": false});
    let table: Vec<(&str, &str, Option<Value>, [u16; 5])> = vec![
        ("GET", "/healthz", None, [OK, OK, OK, OK, OK]),
        ("GET", "/readyz", None, [OK, OK, OK, OK, OK]),
        ("GET", "/metrics", None, [OK, OK, OK, OK, OK]),
        ("GET", "/ui/", None, [OK, OK, OK, OK, OK]),
        ("GET", "/ui/app.js", None, [OK, OK, OK, OK, OK]),
        ("GET", "/v1/space", None, [401, 401, OK, OK, OK]),
        ("GET", "/v1/alarms", None, [401, 401, 403, 403, OK]),
        ("DELETE", "/v1/alarms", None, [401, 401, 403, 403, OK]),
        ("GET", "/v1/kv/app/k1", None, [401, 401, OK, 403, OK]),
        (
            "PUT",
            "/v1/kv/app/k2",
            Some(json!(2)),
            [401, 401, 403, 403, OK],
        ),
        ("GET", "/v1/kv?prefix=app/", None, [401, 401, OK, 403, OK]),
        (
            "GET",
            "/v1/kv?prefix=app/&index=1&wait=1ms",
            None,
            [401, 401, OK, 403, OK],
        ),
        ("GET", "/v1/kv", None, [401, 401, 403, 403, OK]),
        ("GET", "/v1/kv?prefix=other/", None, [401, 401, 403, OK, OK]),
        (
            "DELETE",
            "/v1/kv/other/k1",
            None,
            [401, 401, 403, SKIP, SKIP],
        ),
        ("GET", "/v1/topics", None, [401, 401, OK, 403, OK]),
        ("GET", "/v1/topics/T", None, [401, 401, OK, 403, OK]),
        (
            "PUT",
            "/v1/topics/T2",
            Some(topic),
            [401, 401, 403, 403, OK],
        ),
        ("DELETE", "/v1/topics/T2", None, [401, 401, 403, 403, OK]),
        ("GET", "/v1/subscriptions", None, [401, 401, 403, 403, OK]),
        (
            "GET",
            "/v1/subscriptions/G",
            None,
            [401, 401, 403, 403, 404],
        ),
        ("GET", "/v1/changes", None, [401, 401, OK, OK, OK]),
        ("GET", "/v1/topic/records", None, [401, 401, OK, OK, OK]),
        ("GET", "/v1/cluster", None, [401, 401, OK, OK, OK]),
        ("GET", "/v1/openapi.json", None, [401, 401, OK, OK, OK]),
        (
            "POST",
            "/v1/cluster/members",
            Some(member),
            [401, 401, 403, 403, SKIP],
        ),
        (
            "DELETE",
            "/v1/cluster/members/9",
            None,
            [401, 401, 403, 403, 404],
        ),
        ("GET", "/v1/acl/roles", None, [401, 401, 403, 403, OK]),
        (
            "PUT",
            "/v1/acl/roles/x",
            Some(role),
            [401, 401, 403, 403, OK],
        ),
        ("DELETE", "/v1/acl/roles/x", None, [401, 401, 403, 403, OK]),
        ("GET", "/v1/acl/tokens", None, [401, 401, 403, 403, OK]),
        (
            "POST",
            "/v1/acl/tokens",
            Some(json!({"name": "t"})),
            [401, 401, 403, 403, SKIP],
        ),
        (
            "DELETE",
            "/v1/acl/tokens/nobody",
            None,
            [401, 401, 403, 403, 404],
        ),
        ("POST", "/v1/acl/bootstrap", None, [409, 409, 409, 409, 409]),
        ("GET", "/v1/no-such-route", None, [401, 401, 404, 404, 404]),
    ];
    let callers = [
        ("no token", None),
        ("a wrong token", Some(WRONG)),
        ("reader", Some(tokens.reader.as_str())),
        ("other", Some(tokens.other.as_str())),
        ("root", root),
    ];
    for (method, path, body, expected) in &table {
        for ((who, token), expected) in callers.iter().zip(expected) {
            if *expected == SKIP {
                continue;
            }
            let (status, answer) = send(node, *token, method, path, body.clone()).await;
            let matches = if *expected == OK {
                (200..300).contains(&status)
            } else {
                status == *expected
            };
            assert!(
                matches,
                "{method} {path} as {who}: {status}, expected {expected}: {answer}"
            );
            match status {
                401 => assert_eq!(error_of(&answer).0, "unauthenticated", "{answer}"),
                403 => assert_eq!(error_of(&answer).0, "permission_denied", "{answer}"),
                _ => {}
            }
        }
    }
    // A role whose prefix begins no key (the ACL keys' own, hidden) is
    // refused, naming it.
    let hidden = json!({"name": "y", "permissions": [{"prefix": "\u{0}acl/", "access": "read"}]});
    let (status, refusal) = send(node, root, "PUT", "/v1/acl/roles/y", Some(hidden)).await;
    assert_eq!(status, 400, "{refusal}");
    assert_eq!(
        refusal["error"]["field"], "permissions[0].prefix",
        "{refusal}"
    );

    // A lease's keys are named only to a caller who may read every one of
    // them (etcd's rule for a lease's time to live with its keys).
    let mut leases = Vec::new();
    for key in ["app/leased", "other/leased"] {
        let (status, lease) =
            send(node, root, "POST", "/v1/leases", Some(json!({"ttl_s": 60}))).await;
        assert_eq!(status, 201, "{lease}");
        let id = lease["id"].as_u64().expect("a lease id");
        let path = format!("/v1/kv/{key}?lease={id}");
        let (status, put) = send(node, root, "PUT", &path, Some(json!(1))).await;
        assert!((200..300).contains(&status), "{put}");
        leases.push(id);
    }
    for (id, expected) in leases.iter().zip([[OK, 403, OK], [403, OK, OK]]) {
        let path = format!("/v1/leases/{id}");
        for ((who, token), expected) in callers[2..].iter().zip(expected) {
            let (status, answer) = send(node, *token, "GET", &path, None).await;
            assert_eq!(status, expected, "GET {path} as {who}: {answer}");
            if status == 403 {
                // The refusal names the lease, not the keys it may not read.
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains(&format!("lease {id}")) && !message.contains("leased"),
                    "{message}"
                );
            } else {
                assert_eq!(answer["keys"].as_array().map(Vec::len), Some(1), "{answer}");
            }
        }
    }

    let (_, refusal) = send(
        node,
        Some(&tokens.other),
        "PUT",
        "/v1/kv/app/b",
        Some(json!(1)),
    )
    .await;
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'other'") && message.contains("app/b") && message.contains("other/"),
        "a refusal names the token, the key and what it may do: {message}"
    );

    // The ACL keys: never listed, fed or replayed, even to root; not writable.
    let (_, all) = send(node, root, "GET", "/v1/kv?limit=10000", None).await;
    let keys: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"app/k1"), "{keys:?}");
    assert!(keys.iter().all(|key| !key.starts_with('\0')), "{keys:?}");
    // A prefix that begins no key (as the ACL's begin) is refused.
    let (status, hidden) = send(node, root, "GET", "/v1/kv?prefix=%00acl/", None).await;
    assert_eq!(
        (status, &hidden["error"]["code"]),
        (400, &json!("invalid_key")),
        "{hidden}"
    );
    let (_, feed) = send(node, root, "GET", "/v1/changes?limit=10000", None).await;
    let fed = feed["records"].as_array().unwrap();
    assert!(!fed.is_empty());
    assert!(fed
        .iter()
        .all(|record| !record["key"].as_str().unwrap().starts_with('\0')));
    let (_, replay) = send(node, root, "GET", "/v1/topic/records", None).await;
    let replay = replay.as_str().expect("NDJSON").to_string();
    assert!(replay.contains("app/k1"), "{replay}");
    assert!(!replay.contains("\\u0000"), "{replay}");
    for method in ["PUT", "DELETE", "GET"] {
        let (status, answer) = send(node, root, method, "/v1/kv/%00acl/root", Some(json!(1))).await;
        assert_eq!(status, 400, "{method}: {answer}");
    }

    // A follower checks, then forwards what it allows.
    let follower_id = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let follower = cluster.node(follower_id);
    let (status, answer) = send(
        follower,
        Some(&tokens.writer),
        "PUT",
        "/v1/kv/app/via-follower",
        Some(json!(7)),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {answer}");
    let (status, answer) = send(
        follower,
        Some(&tokens.reader),
        "PUT",
        "/v1/kv/app/via-follower",
        Some(json!(8)),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (_, stored) = send(node, root, "GET", "/v1/kv/app/via-follower", None).await;
    assert_eq!(stored["value"], 7, "{stored}");

    // Membership stays as it was without admin.
    // Who is a member, and a voter: what the refused requests would change
    // (addresses and progress move on their own as the nodes publish
    // theirs and apply).
    let membership = |members: Vec<schemas::api::Member>| -> Vec<(u64, bool)> {
        members
            .into_iter()
            .map(|member| (member.id, member.voter))
            .collect()
    };
    let members_before = membership(cluster.members(leader).await);
    let (status, _) = send(
        follower,
        Some(&tokens.writer),
        "POST",
        "/v1/cluster/members",
        Some(json!({"id": 9, "addr": "http://127.0.0.1:9", "peer_addr": "http://127.0.0.1:9"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(
        follower,
        Some(&tokens.writer),
        "DELETE",
        &format!("/v1/cluster/members/{follower_id}"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(membership(cluster.members(leader).await), members_before);
    assert_eq!(cluster.leader().await, leader);

    // A capture that is not UTF-8 once decoded names nothing to check: the
    // handler's 400 for a token, 401 without one, as without --auth.
    let node = cluster.node(cluster.ids()[0]);
    for (path, code) in [
        ("/v1/kv/%FF", "invalid_key"),
        ("/v1/kv/app/%C3", "invalid_key"),
        ("/v1/topics/%FF", "invalid_name"),
        ("/v1/leases/%FF", "invalid_lease_id"),
    ] {
        let (status, body) = send(node, Some(&tokens.writer), "GET", path, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{path}: {body}"
        );
        let (status, body) = send(node, None, "GET", path, None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }

    // Revoked: refused by every node once it applied the revocation.
    ctl(
        &cluster,
        &tokens.root,
        &["acl", "token", "revoke", "reader"],
    )
    .await
    .success();
    for id in cluster.ids() {
        let deadline = Instant::now() + SPREAD_TIMEOUT;
        loop {
            let (status, _) = send(
                cluster.node(id),
                Some(&tokens.reader),
                "GET",
                "/v1/kv/app/k1",
                None,
            )
            .await;
            if status == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} still takes a revoked token ({status})"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The `field` of each object in `value`'s array `list` (the names of the
/// tokens listed, the keys of a page).
fn strings_of<'a>(value: &'a Value, list: &str, field: &str) -> Vec<&'a str> {
    value[list]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|item| item[field].as_str())
        .collect()
}

/// The change feed's `next` at its end now, as `root` reads it.
async fn feed_end(node: &TestServer, root: &str) -> u64 {
    let (_, start) = send(node, Some(root), "GET", "/v1/changes?limit=10000", None).await;
    start["next"].as_u64().expect("a next offset")
}

#[tokio::test]
async fn a_prefix_limited_change_feed_long_poll_sees_only_its_keys() {
    let cluster = TestCluster::start(3, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.leader().await;
    let node = cluster.node(leader);
    let follower_id = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let follower = cluster.node(follower_id);
    let mut from = feed_end(node, &tokens.root).await;

    let writer = {
        let root = tokens.root.clone();
        let url = node.url("");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..20 {
                for prefix in ["other", "app"] {
                    let response = client
                        .put(format!("{url}/v1/kv/{prefix}/w{i}"))
                        .bearer_auth(&root)
                        .json(&i)
                        .send()
                        .await
                        .expect("the leader answers");
                    assert!(response.status().is_success(), "{}", response.status());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The reader asks a follower (watches are served where they arrive)
    // and waits at the end of the feed until the last write shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.contains(&"app/w19".to_string()) {
        assert!(Instant::now() < deadline, "the reader saw only {seen:?}");
        let path = format!("/v1/changes?from={from}&wait=2s");
        let (status, page) = send(follower, Some(&tokens.reader), "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        for record in page["records"].as_array().unwrap() {
            let key = record["key"].as_str().unwrap().to_string();
            assert!(
                key.starts_with("app/") || key.starts_with("topics/"),
                "the reader was shown {key:?}"
            );
            seen.push(key);
        }
        let next = page["next"].as_u64().unwrap();
        assert!(next >= from, "next went back: {from} -> {next}");
        from = next;
    }
    writer.await.expect("the writer finishes");
    assert!(seen.iter().any(|key| key == "app/w0"), "{seen:?}");

    // kvctl's role and token round trip.
    let roles = ctl(&cluster, &tokens.root, &["acl", "role", "list"])
        .await
        .success()
        .json();
    let names: Vec<&str> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other", "reader", "writer"]);
    assert_eq!(
        roles[1]["permissions"][0],
        json!({"prefix": "app/", "access": "read"})
    );
    let listed = ctl(&cluster, &tokens.root, &["acl", "token", "list"])
        .await
        .success();
    assert!(
        !listed.stdout.contains(&tokens.reader),
        "no secret is listed"
    );
    let names: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["other", "reader", "root", "writer"]);
    let refused = ctl(
        &cluster,
        &tokens.root,
        &["acl", "token", "create", "x", "--role", "nope"],
    )
    .await
    .expect_code(1);
    assert!(refused.stderr.contains("nope"), "{}", refused.stderr);
    let taken = ctl(
        &cluster,
        &tokens.root,
        &["acl", "token", "create", "other", "--role", "other"],
    )
    .await
    .expect_code(1);
    assert!(taken.stderr.contains("token_exists"), "{}", taken.stderr);
    ctl(&cluster, &tokens.root, &["acl", "token", "revoke", "other"])
        .await
        .success();
    ctl(&cluster, &tokens.root, &["acl", "role", "delete", "other"])
        .await
        .success();
    let roles = ctl(&cluster, &tokens.root, &["acl", "role", "list"])
        .await
        .success()
        .json();
    assert_eq!(roles.as_array().unwrap().len(), 2, "{roles}");
    let tokens_left = ctl(&cluster, &tokens.root, &["acl", "token", "list"])
        .await
        .success()
        .json();
    assert_eq!(tokens_left.as_array().unwrap().len(), 3, "{tokens_left}");
    let not_admin = ctl(&cluster, &tokens.writer, &["acl", "token", "list"])
        .await
        .expect_code(1);
    assert!(
        not_admin.stderr.contains("permission_denied"),
        "{}",
        not_admin.stderr
    );
}

/// A long-poll of the whole feed by a token that may read only `app/`
/// is not woken by writes of other keys: it goes on waiting past them and
/// answers with the first record it may read, as an etcd watch sends no
/// event for a key its user may not read.
#[tokio::test]
async fn a_change_feed_long_poll_waits_on_past_writes_it_may_not_read() {
    let cluster = TestCluster::start(1, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let node = cluster.node(1);
    let from = feed_end(node, &tokens.root).await;
    let writer = {
        let root = tokens.root.clone();
        let url = node.url("");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for key in ["other/0", "other/1", "other/2", "other/3", "app/seen"] {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let response = client
                    .put(format!("{url}/v1/kv/{key}"))
                    .bearer_auth(&root)
                    .json(&1)
                    .send()
                    .await
                    .expect("the node answers");
                assert!(response.status().is_success(), "{}", response.status());
            }
        })
    };
    let path = format!("/v1/changes?from={from}&wait=20s");
    let (status, page) = send(node, Some(&tokens.reader), "GET", &path, None).await;
    assert_eq!(status, 200, "{page}");
    let keys: Vec<&str> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["key"].as_str().expect("a key"))
        .collect();
    assert_eq!(keys, ["app/seen"], "{page}");
    writer.await.expect("the writer finishes");
}

#[tokio::test]
async fn without_auth_no_token_is_needed_and_the_acl_api_says_auth_is_off() {
    let server = TestServer::start().await;
    let (status, _) = send(&server, None, "PUT", "/v1/kv/app/x", Some(json!(1))).await;
    assert!((200..300).contains(&status));
    let (status, answer) = send(&server, None, "POST", "/v1/acl/bootstrap", None).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&answer).0, "auth_disabled");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--auth"));
}

/// A token named `name` holding a role of the same name, which grants
/// `access` on `prefix`, made as `root` through the API; its secret.
async fn token_with_role(
    node: &TestServer,
    root: &str,
    name: &str,
    prefix: &str,
    access: &str,
) -> String {
    let role = json!({"name": name, "permissions": [{"prefix": prefix, "access": access}]});
    let path = format!("/v1/acl/roles/{name}");
    let (status, answer) = send(node, Some(root), "PUT", &path, Some(role)).await;
    assert_eq!(status, 200, "{answer}");
    let token = json!({"name": name, "roles": [name]});
    let (status, made) = send(node, Some(root), "POST", "/v1/acl/tokens", Some(token)).await;
    assert_eq!(status, 201, "{made}");
    made["token"].as_str().expect("a secret").to_string()
}

/// The number of long-polls `node` holds, from its metrics.
async fn long_polls_waiting(node: &TestServer, root: &str) -> u64 {
    let (_, metrics) = send(node, Some(root), "GET", "/metrics", None).await;
    let text = metrics.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix("kv_long_polls "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// A long-poll on a key and one on the change feed, waiting when their
/// token is revoked, answer 401 when the key is then written: not the
/// value the token may no longer read.
#[tokio::test]
async fn long_polls_of_a_token_revoked_while_they_wait_answer_401() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    let watcher = token_with_role(&node, &root, "watcher", "wr/", "read").await;
    let (status, first) = send(&node, Some(&root), "PUT", "/v1/kv/wr/x", Some(json!(1))).await;
    assert!(status == 200 || status == 201, "{first}");
    let revision = first["revision"].as_u64().expect("a revision");
    let (_, feed) = send(
        &node,
        Some(&watcher),
        "GET",
        "/v1/changes?limit=10000",
        None,
    )
    .await;
    let from = feed["next"].as_u64().expect("a next offset");

    let polls = [
        format!("/v1/kv/wr/x?index={revision}&wait=20s"),
        format!("/v1/changes?from={from}&wait=20s"),
    ]
    .map(|path| {
        let url = node.url(&path);
        let (client, watcher) = (node.client().clone(), watcher.clone());
        tokio::spawn(async move {
            let response = client
                .get(url)
                .bearer_auth(watcher)
                .send()
                .await
                .expect("the node answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    });
    let deadline = Instant::now() + SPREAD_TIMEOUT;
    while long_polls_waiting(&node, &root).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the two long-polls are not waiting"
        );
        tokio::time::sleep(POLL).await;
    }

    let (status, answer) = send(&node, Some(&root), "DELETE", "/v1/acl/tokens/watcher", None).await;
    assert!(status == 200 || status == 204, "{answer}");
    let (status, answer) = send(
        &node,
        Some(&root),
        "PUT",
        "/v1/kv/wr/x",
        Some(json!("secret")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    for poll in polls {
        let (status, body) = poll.await.expect("the long-poll task does not panic");
        assert_eq!(
            status, 401,
            "a revoked token's long-poll answered {status}: {body}"
        );
        assert!(!body.contains("secret"), "{body}");
    }
}

/// A token refused a lease's details (or its revoke) for the keys attached
/// to it is not told those keys' names.
#[tokio::test]
async fn a_lease_refusal_names_no_key_the_token_may_not_read() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    let limited = token_with_role(&node, &root, "topics", "topics/o", "readwrite").await;
    let id = grant_lease(&node, Some(&root), 60).await;
    let path = format!("/v1/kv/hidden/secret-name?lease={id}");
    let (status, answer) = send(&node, Some(&root), "PUT", &path, Some(json!(1))).await;
    assert_eq!(status, 201, "{answer}");

    for method in ["GET", "DELETE"] {
        let (status, answer) = send(
            &node,
            Some(&limited),
            method,
            &format!("/v1/leases/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 403, "{method}: {answer}");
        assert!(
            !answer.to_string().contains("secret-name"),
            "{method} named the key: {answer}"
        );
    }
}

/// A role or token body with a field the API does not have (a misspelling)
/// is refused naming it, not stored without what it meant to say.
#[tokio::test]
async fn role_and_token_bodies_with_unknown_fields_are_refused() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    let misspelt = json!({"name": "r1", "permisions": [{"prefix": "", "access": "read"}]});
    let nested = json!({"name": "r1", "permissions": [{"prefix": "", "acess": "read"}]});
    for (path, body, field) in [
        ("/v1/acl/roles/r1", misspelt, "permisions"),
        ("/v1/acl/roles/r1", nested, "acess"),
    ] {
        let (status, answer) = send(&node, Some(&root), "PUT", path, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(answer.to_string().contains(field), "{answer}");
    }
    let token = json!({"name": "t1", "role": ["admin"]});
    let (status, answer) = send(&node, Some(&root), "POST", "/v1/acl/tokens", Some(token)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("role"), "{answer}");
    let (status, roles) = send(&node, Some(&root), "GET", "/v1/acl/roles", None).await;
    assert_eq!(status, 200, "{roles}");
    assert!(
        !roles.to_string().contains("r1"),
        "nothing was stored: {roles}"
    );
}

/// A replay streaming to a token that is revoked while it runs is cut: the
/// records after the revocation are not sent.
#[tokio::test]
async fn a_replay_of_a_token_revoked_while_it_streams_is_cut() {
    use futures::StreamExt;
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    let reader = token_with_role(&node, &root, "replayer", "rp/", "read").await;
    let value = "v".repeat(1000);
    let keys = 8_000;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let puts: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"put": {"key": format!("rp/{n:05}"), "value": value}}))
            .collect();
        let (status, answer) = send(
            &node,
            Some(&root),
            "POST",
            "/v1/txn",
            Some(json!({"success": puts})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }

    let response = node
        .client()
        .get(node.url("/v1/topic/records"))
        .bearer_auth(&reader)
        .send()
        .await
        .expect("the node answers");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut received = body
        .next()
        .await
        .expect("a first chunk")
        .expect("the first chunk arrives")
        .to_vec();
    let (status, answer) = send(
        &node,
        Some(&root),
        "DELETE",
        "/v1/acl/tokens/replayer",
        None,
    )
    .await;
    assert!(status == 200 || status == 204, "{answer}");
    let mut cut = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    let records = received.iter().filter(|byte| **byte == b'\n').count();
    assert!(
        cut && records < keys,
        "the replay went on after the revocation: {records} of {keys} records, cut: {cut}"
    );
}

/// A bootstrap or a token creation that names its secret, retried after
/// its answer was lost, is answered the same token instead of refused with
/// the only copy of the secret gone; another secret is still refused.
#[tokio::test]
async fn a_retried_bootstrap_or_token_creation_with_its_secret_gets_the_same_token() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = "ab".repeat(32);
    for _ in 0..2 {
        let body = json!({ "token": root });
        let (status, made) = send(&node, None, "POST", "/v1/acl/bootstrap", Some(body)).await;
        assert_eq!((status, &made["token"]), (200, &json!(root)), "{made}");
    }
    let log_end = || async {
        let (status, cluster) = send(&node, Some(&root), "GET", "/v1/cluster", None).await;
        assert_eq!(status, 200, "{cluster}");
        cluster["last_log_index"].as_u64().expect("a log index")
    };
    let before = log_end().await;
    for body in [Some(json!({ "token": "cd".repeat(32) })), None] {
        let (status, refused) = send(&node, None, "POST", "/v1/acl/bootstrap", body).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(error_of(&refused).0, "acl_already_bootstrapped");
    }
    // Refused, and the retry of the one that wrote, without a write: a
    // bootstrap needs no token.
    let body = Some(json!({ "token": root }));
    let (status, _) = send(&node, None, "POST", "/v1/acl/bootstrap", body).await;
    assert_eq!(status, 200);
    assert_eq!(log_end().await, before, "a bootstrap after the first wrote");
    let short = Some(json!({ "token": "short" }));
    let (status, refused) = send(&node, None, "POST", "/v1/acl/bootstrap", short).await;
    assert_eq!(
        (status, error_of(&refused).1),
        (400, Some("token")),
        "{refused}"
    );

    let role = json!({"name": "readers", "permissions": [{"prefix": "app/", "access": "read"}]});
    let (status, answer) = send(
        &node,
        Some(&root),
        "PUT",
        "/v1/acl/roles/readers",
        Some(role),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let secret = "ef".repeat(32);
    for _ in 0..2 {
        let body = json!({"name": "reader", "roles": ["readers"], "token": secret});
        let (status, made) = send(&node, Some(&root), "POST", "/v1/acl/tokens", Some(body)).await;
        assert_eq!((status, &made["token"]), (201, &json!(secret)), "{made}");
    }
    let other = json!({"name": "reader", "roles": ["readers"], "token": "12".repeat(32)});
    let (status, refused) = send(&node, Some(&root), "POST", "/v1/acl/tokens", Some(other)).await;
    assert_eq!(
        (status, error_of(&refused).0),
        (409, "token_exists"),
        "{refused}"
    );
    let (_, listed) = send(&node, Some(&root), "GET", "/v1/acl/tokens", None).await;
    let names = strings_of(&listed, "tokens", "name");
    assert_eq!(names, ["reader", "root"], "{listed}");
    let (status, _) = send(&node, Some(&secret), "GET", "/v1/kv?prefix=app/", None).await;
    assert_eq!(status, 200);
}

/// The last index of node `id`'s raft log.
async fn last_log_index(cluster: &TestCluster, id: u64) -> u64 {
    let status = cluster.status(id).await.expect("the node answers");
    status["last_log_index"].as_u64().expect("an index")
}

/// Waits until node `id`'s raft log reaches `index`.
async fn wait_for_log_index(cluster: &TestCluster, id: u64, index: u64) {
    let deadline = Instant::now() + SPREAD_TIMEOUT;
    while last_log_index(cluster, id).await < index {
        assert!(
            Instant::now() < deadline,
            "node {id}'s log never reached {index}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A write checked before its token's revocation applied, and proposed
/// behind that revocation, is refused when it applies (etcd checks at apply
/// too): the node that took it checked its own copy of the ACL, which
/// could not hold a revocation still on its way through the log. The
/// followers are paused, so the leader holds the revocation and the writes
/// proposed after it uncommitted until they resume; each was restarted
/// first with an election timeout longer than the test, so none calls an
/// election when it resumes.
#[tokio::test]
async fn writes_proposed_behind_their_tokens_revocation_are_refused_when_they_apply() {
    // A second entry in flight once four writes wait (see `batcher`): the
    // writes are proposed while the revocation is still uncommitted.
    let mut cluster = TestCluster::start(3, &["--auth", "--max-proposals-in-flight", "2"]).await;
    let tokens = set_up(&cluster).await;
    let leader = cluster.leader().await;
    let followers = cluster.ids_but(leader);
    for id in &followers {
        let node = cluster.node_mut(*id);
        node.stop().await;
        node.set_env("KV_ELECTION_TIMEOUT_MS", Some("600000"));
        node.restart().await;
    }
    assert_eq!(cluster.leader().await, leader, "the leader stayed");
    let writer = tokens.writer.clone();
    let (status, body) = send(
        cluster.node(leader),
        Some(&writer),
        "PUT",
        "/v1/kv/app/before",
        Some(json!(1)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    cluster.wait_converged().await;

    for id in &followers {
        cluster.node_mut(*id).pause();
    }
    let before = last_log_index(&cluster, leader).await;
    let client = cluster.node(leader).client().clone();
    let base = cluster.node(leader).base_url();
    let spawn_send = |token: &str, method: &str, path: &str, body: Option<Value>| {
        let mut request = client
            .request(method.parse().expect("a method"), format!("{base}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        tokio::spawn(async move {
            let response = request.send().await.expect("the leader answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        })
    };
    let revoke = spawn_send(&tokens.root, "DELETE", "/v1/acl/tokens/writer", None);
    wait_for_log_index(&cluster, leader, before + 1).await;
    // The leader has not applied the revocation: it lets the writes through.
    let writes: Vec<_> = (0..4)
        .map(|n| {
            let path = format!("/v1/kv/app/after{n}");
            spawn_send(&writer, "PUT", &path, Some(json!(n)))
        })
        .collect();
    wait_for_log_index(&cluster, leader, before + 2).await;
    for id in &followers {
        cluster.node_mut(*id).resume();
    }

    let (status, body) = revoke.await.expect("the revoke's task");
    assert_eq!(status, 204, "{body}");
    for write in writes {
        let (status, body) = write.await.expect("a write's task");
        assert_eq!(
            status, 401,
            "a write applied behind its token's revocation: {body}"
        );
        assert_eq!(error_of(&body).0, "unauthenticated", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("revoked before the write applied")),
            "{body}"
        );
    }
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let (status, body) = send(
            cluster.node(id),
            Some(&tokens.root),
            "GET",
            "/v1/kv?prefix=app/&consistency=stale",
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let keys = strings_of(&body, "entries", "key");
        assert_eq!(keys, ["app/before"], "node {id}: {body}");
    }
}

/// Sends `request` (whole, or a head whose body is not sent) on a new
/// connection to `node` and gives the answer's head, lowercased.
async fn answer_head(node: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(node.addr())
        .await
        .expect("the node accepts");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("the request is sent");
    let mut answer = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answer.windows(4).any(|window| window == b"\r\n\r\n") {
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer))
            .await
            .expect("the node answers")
            .expect("the connection reads");
        assert!(read > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// A request refused before its body was read (no token, or a route that
/// does not exist) is answered with `Connection: close`: the server reads
/// nothing more on that connection, and a client that sent its next
/// request there got a broken pipe, or no answer to a write. A write that
/// was read whole keeps its connection.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_says_the_connection_closes() {
    let node = TestServer::start_with(&["--auth"]).await;
    let root = node.bootstrap_acl().await;
    for (what, head) in [
        (
            "no token",
            "PUT /v1/kv/app/x HTTP/1.1\r\nhost: kv\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n".to_string(),
        ),
        (
            "no such route",
            format!("PUT /v1/nowhere HTTP/1.1\r\nhost: kv\r\nauthorization: Bearer {root}\r\ncontent-length: 10\r\n\r\n"),
        ),
    ] {
        let answer = answer_head(&node, &head).await;
        assert!(answer.starts_with("http/1.1 4"), "{what}: {answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{what}: {answer}");
    }
    let whole = format!(
        "PUT /v1/kv/app/kept HTTP/1.1\r\nhost: kv\r\nauthorization: Bearer {root}\r\ncontent-length: 1\r\n\r\n1"
    );
    let answer = answer_head(&node, &whole).await;
    assert!(answer.starts_with("http/1.1 201"), "{answer}");
    assert!(!answer.contains("connection: close"), "{answer}");
}

/// A token created with a secret another token holds (root's, or any
/// other's) is refused 409 `token_exists` naming `token`, and that token
/// keeps its roles: the new record used to be written over the old one,
/// so root's secret became a reader's and no admin was left. A retry of
/// the same name and secret still answers 201.
#[tokio::test]
async fn a_token_cannot_take_another_tokens_secret() {
    let cluster = TestCluster::start(1, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let node = cluster.node(1);
    let root = Some(tokens.root.as_str());
    for (taken, whose) in [(&tokens.root, "root"), (&tokens.reader, "reader")] {
        let body = json!({"name": "thief", "roles": ["reader"], "token": taken});
        let (status, answer) = send(node, root, "POST", "/v1/acl/tokens", Some(body)).await;
        assert_eq!(
            (status, error_of(&answer)),
            (409, ("token_exists", Some("token"))),
            "{whose}'s secret: {answer}"
        );
    }
    let (status, listed) = send(node, root, "GET", "/v1/acl/tokens", None).await;
    assert_eq!(status, 200, "root is still an admin: {listed}");
    let names = strings_of(&listed, "tokens", "name");
    assert!(!names.contains(&"thief"), "{names:?}");
    let (status, body) = send(node, Some(&tokens.reader), "GET", "/v1/kv/app/x", None).await;
    assert_eq!(status, 404, "the reader still reads app/: {body}");

    let secret = "b".repeat(64);
    let body = json!({"name": "own", "roles": ["reader"], "token": secret});
    for attempt in ["first", "retry"] {
        let (status, answer) = send(node, root, "POST", "/v1/acl/tokens", Some(body.clone())).await;
        assert_eq!(status, 201, "{attempt}: {answer}");
    }
}

/// A deleted role is taken from every token holding it, as etcd's role
/// delete takes it from its users: a role made again under the same name,
/// with more rights, grants nothing to them. Their other roles stay.
#[tokio::test]
async fn a_role_made_again_under_a_deleted_ones_name_grants_nothing_to_its_old_tokens() {
    let cluster = TestCluster::start(1, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let node = cluster.node(1);
    let root = Some(tokens.root.as_str());
    let old = token_with_role(node, &tokens.root, "old", "app/", "read").await;
    let both = json!({"name": "both", "roles": ["old", "reader"]});
    let (status, made) = send(node, root, "POST", "/v1/acl/tokens", Some(both)).await;
    assert_eq!(status, 201, "{made}");
    let both = made["token"].as_str().expect("a secret").to_string();

    let (status, body) = send(node, root, "DELETE", "/v1/acl/roles/old", None).await;
    assert_eq!(status, 204, "{body}");
    let (status, listed) = send(node, root, "GET", "/v1/acl/tokens", None).await;
    assert_eq!(status, 200, "{listed}");
    let roles_of = |name: &str| -> Vec<String> {
        listed["tokens"]
            .as_array()
            .expect("a token list")
            .iter()
            .find(|token| token["name"] == name)
            .and_then(|token| token["roles"].as_array())
            .map(|roles| {
                roles
                    .iter()
                    .filter_map(|role| role.as_str())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_else(|| panic!("token {name} is listed: {listed}"))
    };
    assert_eq!(roles_of("old"), Vec::<String>::new(), "{listed}");
    assert_eq!(roles_of("both"), ["reader"], "{listed}");

    let again = json!({"name": "old", "permissions": [{"prefix": "", "access": "readwrite"}]});
    let (status, body) = send(node, root, "PUT", "/v1/acl/roles/old", Some(again)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(node, Some(&old), "PUT", "/v1/kv/zzz", Some(json!(1))).await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, "permission_denied"),
        "the old token writes through the new role: {body}"
    );
    let (status, body) = send(node, Some(&both), "PUT", "/v1/kv/app/x", Some(json!(1))).await;
    assert_eq!(status, 403, "the reader role does not write: {body}");
    let (status, body) = send(node, Some(&both), "GET", "/v1/kv/app/none", None).await;
    assert_eq!(status, 404, "the reader role still reads app/: {body}");
    let (status, body) = send(node, root, "DELETE", "/v1/acl/roles/never", None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (404, "role_not_found"),
        "{body}"
    );
}

/// A token may not attach a key to a lease that holds keys it may not
/// write (etcd's rule for a put with a lease): the lease's owner could no
/// longer revoke it. The owner's revoke goes through.
#[tokio::test]
async fn a_key_cannot_be_attached_to_a_lease_holding_keys_the_token_may_not_write() {
    let cluster = TestCluster::start(1, &["--auth"]).await;
    let tokens = set_up(&cluster).await;
    let node = cluster.node(1);
    let owner = Some(tokens.writer.as_str());
    let id = grant_lease(node, owner, 60).await;
    let path = format!("/v1/kv/app/leased?lease={id}");
    let (status, body) = send(node, owner, "PUT", &path, Some(json!(1))).await;
    assert_eq!(status, 201, "{body}");

    let stranger = Some(tokens.other.as_str());
    let path = format!("/v1/kv/other/z?lease={id}");
    let (status, body) = send(node, stranger, "PUT", &path, Some(json!(1))).await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, "permission_denied"),
        "{body}"
    );
    let txn = json!({"success": [{"put": {"key": "other/t", "value": 1, "lease": id}}]});
    let (status, body) = send(node, stranger, "POST", "/v1/txn", Some(txn)).await;
    assert_eq!(
        (status, error_of(&body).0),
        (403, "permission_denied"),
        "{body}"
    );

    let (status, body) = send(node, owner, "DELETE", &format!("/v1/leases/{id}"), None).await;
    assert_eq!(status, 200, "the owner revokes its lease: {body}");
}

/// A bootstrap, a role and a token made through a follower work on that
/// follower as soon as the answer arrives: it answers once it has applied
/// them, as an etcd member does. They used to answer 401 there for the
/// follower's replication lag ("the token is not known here").
#[tokio::test]
async fn acl_changes_made_through_a_follower_work_there_at_once() {
    let cluster = TestCluster::start(3, &["--auth"]).await;
    let leader = cluster.leader().await;
    let follower = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let node = cluster.node(follower);
    let (status, root) = send(node, None, "POST", "/v1/acl/bootstrap", None).await;
    assert_eq!(status, 200, "{root}");
    let root = root["token"].as_str().expect("a root token").to_string();
    let (status, body) = send(node, Some(&root), "GET", "/v1/kv/app/none", None).await;
    assert_eq!(status, 404, "root at once on the follower: {body}");
    let role = json!({"name": "reader", "permissions": [{"prefix": "app/", "access": "read"}]});
    let (status, body) = send(node, Some(&root), "PUT", "/v1/acl/roles/reader", Some(role)).await;
    assert!(status < 300, "{status} {body}");
    for n in 0..5 {
        let name = format!("reader-{n}");
        let made = json!({"name": name, "roles": ["reader"]});
        let (status, made) = send(node, Some(&root), "POST", "/v1/acl/tokens", Some(made)).await;
        assert_eq!(status, 201, "{made}");
        let token = made["token"].as_str().expect("a secret");
        let (status, body) = send(node, Some(token), "GET", "/v1/kv/app/none", None).await;
        assert_eq!(status, 404, "{name} at once on the follower: {body}");
    }
}
