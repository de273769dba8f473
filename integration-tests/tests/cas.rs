//! Compare-and-set: `If-Match` on the revision, `If-None-Match: *`, and
//! many writers racing where exactly one wins each round.

use std::collections::BTreeSet;

use integration_tests::{call, error_of, TestCluster, TestServer};
use serde_json::json;

#[tokio::test]
async fn create_only_succeeds_once() {
    let server = TestServer::start().await;
    let create = |value| {
        server
            .client()
            .put(server.url("/v1/kv/cas/lock"))
            .header("if-none-match", "*")
            .json(&json!(value))
            .send()
    };
    assert_eq!(create("first").await.unwrap().status(), 201);
    let second = create("second").await.unwrap();
    assert_eq!(second.status(), 412);
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        error_of(&body),
        ("precondition_failed", Some("If-None-Match")),
        "the refusal names the header whose condition failed"
    );
    let (_, entry) = call(&server, "GET", "/v1/kv/cas/lock", None).await;
    assert_eq!(entry["value"], "first");
}

#[tokio::test]
async fn if_match_applies_on_the_current_revision_only() {
    let server = TestServer::start().await;
    let (_, first) = call(&server, "PUT", "/v1/kv/cas/k", Some(json!(1))).await;
    let revision = first["revision"].as_u64().unwrap();
    let put_if = |revision: u64, value| {
        server
            .client()
            .put(server.url("/v1/kv/cas/k"))
            .header("if-match", format!("\"{revision}\""))
            .json(&json!(value))
            .send()
    };
    let ok = put_if(revision, 2).await.unwrap();
    assert_eq!(ok.status(), 200);
    let current = ok.headers()["etag"].to_str().unwrap().to_string();
    let stale = put_if(revision, 3).await.unwrap();
    assert_eq!(stale.status(), 412);
    assert_eq!(
        stale.headers()["etag"].to_str().unwrap(),
        current,
        "the answer names the current revision"
    );
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(error_of(&body), ("precondition_failed", Some("If-Match")));
    // A conditional delete on a stale revision changes nothing either.
    let response = server
        .client()
        .delete(server.url("/v1/kv/cas/k"))
        .header("if-match", format!("\"{revision}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 412);
    let (_, entry) = call(&server, "GET", "/v1/kv/cas/k", None).await;
    assert_eq!(entry["value"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_have_exactly_one_winner_per_round() {
    const WRITERS: usize = 8;
    const ROUNDS: usize = 20;
    let server = TestServer::start().await;
    call(&server, "PUT", "/v1/kv/cas/counter", Some(json!(0))).await;
    let mut winning_revisions = BTreeSet::new();
    for round in 0..ROUNDS {
        let (_, entry) = call(&server, "GET", "/v1/kv/cas/counter", None).await;
        let seen = entry["mod_revision"].as_u64().unwrap();
        let attempts = (0..WRITERS).map(|writer| {
            let request = server
                .client()
                .put(server.url("/v1/kv/cas/counter"))
                .header("if-match", format!("\"{seen}\""))
                .json(&json!({ "round": round, "writer": writer }));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, body)
            })
        });
        let outcomes = futures_join(attempts.collect()).await;
        let winners: Vec<_> = outcomes
            .iter()
            .filter(|(status, _)| *status == 200)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|(status, _)| *status == 200 || *status == 412));
        assert!(winning_revisions.insert(winners[0].1["revision"].as_u64().unwrap()));
    }
    let (_, entry) = call(&server, "GET", "/v1/kv/cas/counter", None).await;
    assert_eq!(
        entry["version"],
        json!(ROUNDS as u64 + 1),
        "one write per round, plus the first"
    );
}

async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// A conditional write relayed by a follower behind the leader, refused
/// (412) for a revision the follower has not applied yet, carries an
/// `X-Kv-Revision` no lower than the revision its `ETag` names: the
/// follower stamped its own, lower one.
#[tokio::test]
async fn a_refused_write_through_a_lagging_follower_names_no_revision_below_its_etag() {
    const SLOW: u64 = 3;
    let (cluster, proxy, leader) = TestCluster::start_with_a_follower_behind_a_proxy(&[]).await;
    let leader = cluster.node(leader);
    let (status, _) = call(leader, "PUT", "/v1/kv/cas/k", Some(json!(1))).await;
    assert_eq!(status, 201);
    cluster.wait_converged().await;

    // The slow node hears nothing more from the leader.
    proxy.slow_to(1);
    let (status, _) = call(leader, "PUT", "/v1/kv/cas/k", Some(json!(2))).await;
    assert_eq!(status, 200);
    let slow = cluster.node(SLOW);
    let answer = slow
        .client()
        .put(slow.url("/v1/kv/cas/k"))
        .header("if-match", "\"1\"")
        .json(&json!(3))
        .send()
        .await
        .expect("the follower answers");
    assert_eq!(answer.status(), 412);
    let header = |name: &str| -> u64 {
        answer.headers()[name]
            .to_str()
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap()
    };
    let (etag, revision) = (header("etag"), header("x-kv-revision"));
    assert!(
        revision >= etag,
        "X-Kv-Revision {revision} below ETag {etag}"
    );
    proxy.slow_to(0);
}
