//! The node-to-node routes live on a port of their own: the client port
//! answers `/raft/*` with 404, so what a client can reach cannot forge
//! votes, entries or snapshots; the members know each other's client and
//! peer URLs.

use std::time::{Duration, Instant};

use integration_tests::{TestCluster, TestServer};
use schemas::api::ClusterStatus;
use serde_json::json;

/// How long the members may take to publish their client URLs and learn
/// the cluster's id.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Polls `holds` until it is true, failing after [`PUBLISH_TIMEOUT`] with
/// `what` and what `holds` last saw.
async fn eventually<F, Fut>(what: &str, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, String)>,
{
    let deadline = Instant::now() + PUBLISH_TIMEOUT;
    loop {
        let (held, seen) = holds().await;
        if held {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {PUBLISH_TIMEOUT:?}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(cluster: &TestCluster, id: u64) -> ClusterStatus {
    let status = cluster.status(id).await.expect("the node answers");
    serde_json::from_value(status).expect("/v1/cluster answers a ClusterStatus")
}

#[tokio::test]
async fn raft_routes_on_the_client_port_are_not_found_and_change_nothing() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let before = status(&cluster, leader).await;
    let client = reqwest::Client::new();
    // What an attacker on the client port would send: a vote with a term
    // far ahead, entries from a forged leader, a snapshot, a read index.
    let forged_vote = json!({"vote": {"leader_id": {"term": 1000, "node_id": 9}, "committed": false},
                             "last_log_id": null});
    let attacks = [
        ("/raft/vote", forged_vote.to_string()),
        ("/raft/append", "{}".to_string()),
        ("/raft/snapshot", "not a snapshot".to_string()),
        ("/raft/read-index", String::new()),
    ];
    for id in cluster.ids() {
        for (path, body) in &attacks {
            let answer = client
                .post(cluster.node(id).url(path))
                .body(body.clone())
                .send()
                .await
                .expect("the client port answers");
            assert_eq!(answer.status(), 404, "node {id} {path}");
        }
    }
    let after = status(&cluster, leader).await;
    assert_eq!(
        (after.leader, after.term),
        (before.leader, before.term),
        "the leader and its term are unchanged"
    );
}

/// `x-kv-forwarded-by` tells the leader that another node passed the
/// request on; sent by a client to a follower's client port, it means
/// nothing: the follower still passes its writes and lease reads to the
/// leader.
#[tokio::test]
async fn a_client_saying_its_request_was_passed_on_is_still_passed_to_the_leader() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.follower_of(leader);
    let node = cluster.node(follower);
    let client = reqwest::Client::new();
    let forged =
        |request: reqwest::RequestBuilder| request.header("x-kv-forwarded-by", leader.to_string());
    let topic = forged(client.put(node.url("/v1/topics/forged")))
        .body(r#"{"topicName":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(topic.status(), 201, "{}", topic.text().await.unwrap());
    let txn = forged(client.post(node.url("/v1/txn")))
        .body(r#"{"success":[{"put":{"key":"forged","value":1}}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(txn.status(), 200, "{}", txn.text().await.unwrap());
    let lease: serde_json::Value = forged(client.post(node.url("/v1/leases")))
        .body(r#"{"ttl_s":30}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = lease["id"].as_u64().unwrap_or_else(|| panic!("{lease}"));
    let read = forged(client.get(node.url(&format!("/v1/leases/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "{}", read.text().await.unwrap());
}

#[tokio::test]
async fn every_member_is_listed_with_its_client_and_peer_urls() {
    let cluster = TestCluster::start(3, &[]).await;
    eventually("the members publish their URLs", || async {
        let leader = cluster.leader().await;
        let members = status(&cluster, leader).await.members;
        let published = cluster.ids().into_iter().all(|id| {
            members.iter().any(|member| {
                member.id == id
                    && member.addr == cluster.node(id).base_url()
                    && member.peer_addr == cluster.node(id).peer_url()
            })
        });
        (published, format!("{members:?}"))
    })
    .await;
}

#[tokio::test]
async fn every_member_knows_the_cluster_id_made_when_the_cluster_formed() {
    let cluster = TestCluster::start(3, &[]).await;
    eventually("the members agree on one cluster id", || async {
        let mut ids = Vec::new();
        for id in cluster.ids() {
            ids.push(status(&cluster, id).await.cluster_id);
        }
        let agreed = ids[0].is_some() && ids.iter().all(|id| *id == ids[0]);
        (agreed, format!("{ids:?}"))
    })
    .await;
}

#[tokio::test]
async fn a_node_of_another_cluster_joins_nothing_and_says_why() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let members_before = status(&cluster, leader).await.members.len();
    let mut stranger =
        TestServer::unstarted(4, 0, 0, &["--join", &cluster.node(leader).peer_url()]);
    std::fs::create_dir_all(stranger.data_dir()).unwrap();
    let foreign = "2f1d8b3e-6c1a-4c55-9a57-0d3c3f2a9b10";
    std::fs::write(stranger.data_dir().join("cluster-id"), foreign).unwrap();
    stranger.spawn();
    let exit = stranger
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the stranger gives up joining");
    assert!(!exit.success(), "it exits with an error: {exit}");
    assert!(
        stranger.log_contains("foreign_cluster") && stranger.log_contains(foreign),
        "it says the cluster refused it for its id: {}",
        stranger.log_tail(20)
    );
    let after = status(&cluster, leader).await;
    assert_eq!(
        after.members.len(),
        members_before,
        "the cluster took no member"
    );
    assert!(after.members.iter().all(|member| member.id != 4));
}

/// A node of another cluster added by hand refuses every call (403
/// `foreign_cluster`): the leader backs off from it as from a node it
/// cannot reach, rather than calling it again at once, thousands of times
/// a second, each refusal a warning in the other node's log.
#[tokio::test]
async fn a_member_of_another_cluster_added_by_hand_is_called_with_backoff() {
    let ours = TestServer::start().await;
    // Added before it runs (a node answering as another cluster's member is
    // refused at the add), then started as a cluster of its own.
    let [port, peer_port] = integration_tests::free_ports(2)[..] else {
        unreachable!("two ports were asked for")
    };
    let mut theirs = TestServer::unstarted(1, port, peer_port, &[]);
    let added = ours
        .client()
        .post(ours.url("/v1/cluster/members"))
        .json(&json!({"id": 2, "addr": theirs.base_url(), "peer_addr": theirs.peer_url(), "voter": false}))
        .send()
        .await
        .expect("the leader answers");
    assert_eq!(added.status().as_u16(), 200, "the learner is added");
    theirs.spawn();
    theirs.wait_ready().await;
    let refusals = || theirs.log_count("refused a request from a node of another cluster");
    let started = Instant::now();
    while refusals() == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = refusals();
    assert!(first > 0, "the leader calls the stranger");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let in_three_seconds = refusals() - first;
    assert!(
        in_three_seconds < 60,
        "{in_three_seconds} calls refused in 3 s: no backoff"
    );
}

/// Nodes that write different data formats would give the same log
/// different offsets: a node's request naming another format, or none,
/// is refused before it reaches raft, and the cluster is unchanged.
#[tokio::test]
async fn a_node_of_another_data_format_is_refused_and_changes_nothing() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    eventually("the leader knows the cluster id", || async {
        let id = status(&cluster, leader).await.cluster_id;
        (id.is_some(), format!("{id:?}"))
    })
    .await;
    let cluster_id = status(&cluster, leader)
        .await
        .cluster_id
        .expect("polled until known");
    let before = status(&cluster, leader).await;
    let forged_vote = json!({"vote": {"leader_id": {"term": 1000, "node_id": 9}, "committed": false},
                             "last_log_id": null});
    let client = reqwest::Client::new();
    for format in [
        Some("1"),
        Some("2"),
        Some("3"),
        Some("4"),
        Some("5"),
        Some("7"),
        None,
    ] {
        let mut request = client
            .post(format!("{}/raft/vote", cluster.node(leader).peer_url()))
            .header("x-kv-cluster-id", &cluster_id)
            .json(&forged_vote);
        if let Some(format) = format {
            request = request.header("x-kv-data-format", format);
        }
        let answer = request.send().await.expect("the peer port answers");
        assert_eq!(answer.status(), 403, "format {format:?}");
        let body: serde_json::Value = answer.json().await.expect("a JSON error");
        assert_eq!(
            body["error"]["code"], "incompatible_peer",
            "format {format:?}"
        );
    }
    let after = status(&cluster, leader).await;
    assert_eq!(
        (after.leader, after.term),
        (before.leader, before.term),
        "the leader and its term are unchanged"
    );
}

/// Votes and entries travel in postcard; a node also reads JSON (a peer
/// that speaks no postcard) and answers each in the encoding it was asked
/// in. A body of another type is refused with 415, a body that does not
/// decode with 400, and neither moves the node's term.
#[tokio::test]
async fn the_peer_port_answers_postcard_and_json_in_kind_and_refuses_other_bodies() {
    let cluster = TestCluster::start(1, &[]).await;
    let leader = cluster.leader().await;
    let before = status(&cluster, leader).await;
    let cluster_id = before
        .cluster_id
        .clone()
        .expect("a formed cluster has an id");
    let client = reqwest::Client::new();
    let url = format!("{}/raft/vote", cluster.node(leader).peer_url());
    // A vote of term 1 for node 9 (behind the leader's own): postcard
    // writes the term, the node id, `committed` and "no last log id".
    let postcard_vote = vec![1u8, 9, 0, 0];
    let json_vote = json!({"vote": {"leader_id": {"term": 1, "node_id": 9}, "committed": false},
                           "last_log_id": null})
    .to_string();
    let cases = [
        (
            "application/x-postcard",
            postcard_vote,
            200,
            "application/x-postcard",
        ),
        (
            "application/json",
            json_vote.into_bytes(),
            200,
            "application/json",
        ),
        (
            "application/x-postcard",
            vec![0xff; 3],
            400,
            "application/json",
        ),
        ("text/plain", b"vote".to_vec(), 415, "application/json"),
    ];
    for (content_type, body, expected, answered_in) in cases {
        let answer = client
            .post(&url)
            .header("x-kv-cluster-id", &cluster_id)
            .header("x-kv-data-format", "6")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the peer port answers");
        let status = answer.status().as_u16();
        let media = answer
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = answer.bytes().await.expect("a body");
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, expected, "{content_type}: {text}");
        assert_eq!(media, answered_in, "{content_type}: {text}");
        match expected {
            200 if answered_in == "application/json" => {
                let reply: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                assert_eq!(reply["Ok"]["vote_granted"], false, "{text}");
            }
            // `Ok` (0), then the node's own vote: its term first.
            200 => assert_eq!(&bytes[..2], &[0, before.term as u8], "{bytes:?}"),
            _ => {
                let error: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                assert_eq!(error["error"]["code"], "invalid_body", "{text}");
            }
        }
    }
    let after = status(&cluster, leader).await;
    assert_eq!((after.leader, after.term), (before.leader, before.term));
}

/// An answer a follower passes back from the leader carries none of the
/// peer port's own headers (the cluster id, the data format), which are
/// for nodes; they used to reach the client.
#[tokio::test]
async fn an_answer_passed_back_by_a_follower_keeps_the_peer_headers_to_itself() {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster.node(cluster.follower_of(leader));
    let topic = json!({"topicName": "orders"});
    let answers = [
        follower
            .client()
            .put(follower.url("/v1/topics/orders"))
            .json(&topic)
            .send()
            .await
            .expect("the follower answers"),
        follower
            .client()
            .get(follower.url("/v1/leases"))
            .send()
            .await
            .expect("the follower answers"),
    ];
    for answer in answers {
        assert!(answer.status().is_success(), "{answer:?}");
        for peers_own in [
            schemas::api::header::CLUSTER_ID,
            schemas::api::header::DATA_FORMAT,
        ] {
            assert!(
                !answer.headers().contains_key(peers_own),
                "{peers_own}: {:?}",
                answer.headers()
            );
        }
    }
}
