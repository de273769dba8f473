//! A node removed from the cluster stops serving: every client route and
//! `/healthz` answer 503 `not_a_member` at once, instead of reads that wait
//! out their timeout on a node left alone.

use std::time::{Duration, Instant};

use integration_tests::{call, error_of, TestCluster};
use serde_json::json;

/// How long the removal may take to reach the removed node.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(30);
/// How fast a removed node must answer: well under a read's timeout.
const PROMPT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_answers_not_a_member_at_once_on_every_route_and_in_healthz() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let removed = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a cluster of 3 has followers");
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/removal/a",
        Some(json!(1)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    cluster.wait_converged().await;

    let deadline = Instant::now() + NOTICE_TIMEOUT;
    loop {
        let (status, body) = call(
            cluster.node(leader),
            "DELETE",
            &format!("/v1/cluster/members/{removed}"),
            None,
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            matches!(status, 409 | 503),
            "removing node {removed}: {status} {body}"
        );
        assert!(
            Instant::now() < deadline,
            "node {removed} was not removed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let node = cluster.node(removed);
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    loop {
        let started = Instant::now();
        let (status, body) = call(node, "GET", "/v1/kv/removal/a", None).await;
        let took = started.elapsed();
        if status == 503 && error_of(&body).0 == "not_a_member" {
            assert!(took < PROMPT, "the refusal took {took:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {removed} still answers {status} {body} after its removal\n{}",
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (method, path, body) in [
        ("GET", "/healthz", None),
        ("GET", "/v1/kv/removal/a?consistency=stale", None),
        ("GET", "/v1/kv?prefix=removal/", None),
        ("PUT", "/v1/kv/removal/b", Some(json!(2))),
        ("GET", "/v1/changes?from=0", None),
        ("GET", "/v1/cluster", None),
    ] {
        let started = Instant::now();
        let (status, answer) = call(node, method, path, body).await;
        assert_eq!(
            (status, error_of(&answer).0),
            (503, "not_a_member"),
            "{method} {path}: {answer}"
        );
        assert!(
            started.elapsed() < PROMPT,
            "{method} {path} took {:?}",
            started.elapsed()
        );
    }
    assert!(
        node.log_contains("removed from the cluster"),
        "the log says why\n{}",
        node.log_tail(20)
    );

    // The others go on without it.
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/removal/c",
        Some(json!(3)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}
