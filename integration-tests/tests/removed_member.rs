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
    let (cluster, leader, removed) = three_nodes_and_a_follower().await;

    remove_member(&cluster, leader, removed).await;
    let node = cluster.node(removed);
    wait_not_a_member(node).await;

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
    // kvctl pointed at it alone says so at once, rather than retry a node
    // that stays removed.
    let started = Instant::now();
    let run = integration_tests::kvctl(&node.url(""), &["get", "removal/a"])
        .await
        .expect_code(1);
    assert!(run.stderr.contains("not_a_member"), "{}", run.stderr);
    assert!(
        started.elapsed() < PROMPT,
        "kvctl took {:?}",
        started.elapsed()
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

/// Node `removed` is down while the cluster removes it, and stays down
/// until the leader gives up telling it. Started again, it asks for votes,
/// and the first member it asks answers with the removal: it serves nothing
/// from then on, and the others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_removed_while_it_was_down_learns_it_when_it_comes_back() {
    let (mut cluster, leader, removed) = three_nodes_and_a_follower().await;

    cluster.node_mut(removed).kill9().await;
    remove_member(&cluster, leader, removed).await;
    let (status, body) = call(cluster.node(leader), "PUT", "/v1/kv/down/b", Some(json!(2))).await;
    assert_eq!(status, 201, "{body}");

    // Back only once the leader gave up telling it (about 10 s).
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    while !cluster
        .node(leader)
        .log_contains("could not tell the removed node")
    {
        assert!(
            Instant::now() < deadline,
            "the leader did not give up telling node {removed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its data says it is a voter of three: it campaigns once back.
    cluster.node_mut(removed).spawn();
    let node = cluster.node(removed);
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    while tokio::net::TcpStream::connect(node.addr()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "node {removed} does not listen\n{}",
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_not_a_member(node).await;
    // The log is written behind the answers.
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    while !node.log_contains("answered its vote request") {
        assert!(
            Instant::now() < deadline,
            "the log says who told it\n{}",
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = call(node, "GET", "/healthz", None).await;
    assert_eq!((status, error_of(&body).0), (503, "not_a_member"), "{body}");

    // It did not add itself back when it published its addresses.
    let leader = cluster.leader_among(&[removed]).await;
    let members: Vec<u64> = cluster.members(leader).await.iter().map(|m| m.id).collect();
    assert!(!members.contains(&removed), "members {members:?}");
    let update = json!({
        "id": removed,
        "addr": node.base_url(),
        "peer_addr": node.peer_url(),
        "update_only": true,
    });
    let (status, body) = call(
        cluster.node(leader),
        "POST",
        "/v1/cluster/members",
        Some(update),
    )
    .await;
    assert_eq!(
        (status, error_of(&body).0),
        (404, "member_not_found"),
        "{body}"
    );
    let (status, body) = call(cluster.node(leader), "PUT", "/v1/kv/down/c", Some(json!(3))).await;
    assert_eq!(status, 201, "{body}");

    // Restarted, it knows it was removed: it publishes nothing, and does
    // not take its own not_a_member answer for a peer URL that does not
    // reach it.
    let node = cluster.node_mut(removed);
    node.stop().await;
    node.spawn();
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    while !node.log_contains("its addresses are not published") {
        assert!(Instant::now() < deadline, "{}", node.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_not_a_member(node).await;
    assert!(
        !node.log_contains("does not reach it from here"),
        "{}",
        node.log_tail(20)
    );
}

/// A cluster of three holding `removal/a`, caught up everywhere; its
/// leader and a follower.
/// A removal notice a member's peer port cannot trust (from no member,
/// older than the membership naming the node, or no notice at all) is
/// refused with a JSON error, and the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_from_no_member_or_older_than_the_membership_leaves_the_node_serving() {
    let (cluster, leader, follower) = three_nodes_and_a_follower().await;
    let node = cluster.node(follower);
    let members: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != follower)
        .collect();
    let url = format!("{}/raft/removed", node.peer_url());
    for (what, body, status, code) in [
        (
            "from no member",
            json!({"node_id": follower, "leader": 99, "log_index": 1_000_000, "members": members}),
            400,
            "invalid_id",
        ),
        (
            // The cluster formed with its membership at log index 0.
            "as old as the membership",
            json!({"node_id": follower, "leader": leader, "log_index": 0, "members": members}),
            409,
            "conflict",
        ),
        (
            "no notice",
            json!({"node_id": "three"}),
            400,
            "invalid_json",
        ),
    ] {
        let response = node
            .client()
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("the peer port answers");
        assert_eq!(response.status().as_u16(), status, "{what}");
        let answer: serde_json::Value = response.json().await.expect("a JSON error");
        assert_eq!(error_of(&answer).0, code, "{what}: {answer}");
    }
    let (status, body) = call(node, "GET", "/v1/kv/removal/a", None).await;
    assert_eq!(status, 200, "the node still serves: {body}");
}

async fn three_nodes_and_a_follower() -> (TestCluster, u64, u64) {
    let cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let follower = cluster
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
    (cluster, leader, follower)
}

/// Removes node `removed` through node `via`, retrying while the cluster
/// is busy with another change.
async fn remove_member(cluster: &TestCluster, via: u64, removed: u64) {
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    loop {
        let (status, body) = call(
            cluster.node(via),
            "DELETE",
            &format!("/v1/cluster/members/{removed}"),
            None,
        )
        .await;
        if status == 200 {
            return;
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
}

/// Polls `node` until a read answers 503 `not_a_member`, and at once.
async fn wait_not_a_member(node: &integration_tests::TestServer) {
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    loop {
        let started = Instant::now();
        let (status, body) = call(node, "GET", "/v1/kv/removal/a", None).await;
        let took = started.elapsed();
        if status == 503 && error_of(&body).0 == "not_a_member" {
            assert!(took < PROMPT, "the refusal took {took:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} still answers {status} {body} after its removal\n{}",
            node.node_id(),
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node removed while it ran stays removed when it is restarted: the
/// membership it applied no longer names it, so without the record of its
/// removal it served its stale view (reads, backups) as if still a member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_restarted_is_still_not_a_member() {
    let (mut cluster, leader, removed) = three_nodes_and_a_follower().await;
    remove_member(&cluster, leader, removed).await;
    wait_not_a_member(cluster.node(removed)).await;

    let node = cluster.node_mut(removed);
    node.stop().await;
    // The removal shut Raft down; the stop waits for it rather than
    // shutting it down again, which openraft warns of.
    assert_eq!(
        node.log_count("Double call to Raft::shutdown()"),
        0,
        "{}",
        node.log_tail(20)
    );
    node.spawn();
    let deadline = Instant::now() + NOTICE_TIMEOUT;
    let url = node.url("/v1/kv/removal/a?consistency=stale");
    let (status, body) = loop {
        match node.client().get(&url).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                break (
                    status,
                    response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or_default(),
                );
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "node {removed} did not answer: {error}\n{}",
                node.log_tail(20)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((status, error_of(&body).0), (503, "not_a_member"), "{body}");
}

/// A three-node cluster that took some writes, and the follower killed
/// and its data dir removed: (cluster, leader, the wiped follower).
async fn three_nodes_and_a_wiped_follower() -> (TestCluster, u64, u64) {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    // Each member has served: the membership lists its client URL.
    wait_all_published(&cluster, leader).await;
    let wiped = cluster.follower_of(leader);
    for n in 0..20 {
        let path = format!("/v1/kv/wiped/k{n}");
        let (status, body) = call(cluster.node(leader), "PUT", &path, Some(json!(n))).await;
        assert_eq!(status, 201, "{body}");
    }
    wipe(&mut cluster, wiped).await;
    (cluster, leader, wiped)
}

/// A member whose data was lost, started again with `--join` without being
/// removed first, is refused and stops, saying what to do: the cluster
/// still counts it, and its leader holds its progress (taking it back made
/// the leader's raft panic, and the leader went on claiming to be ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_joining_again_without_removal_is_refused_and_the_leader_goes_on() {
    let (cluster, leader, wiped) = three_nodes_and_a_wiped_follower().await;

    let join = cluster.node(leader).peer_url();
    let mut again = integration_tests::TestServer::unstarted(wiped, 0, 0, &["--join", &join]);
    again.spawn();
    let exit = again
        .wait_exit(Duration::from_secs(60))
        .await
        .expect("the wiped member gives up joining");
    assert!(!exit.success(), "it exits with an error: {exit}");
    assert!(
        again.log_contains("member_exists") && again.log_contains("Remove it first"),
        "{}",
        again.log_tail(20)
    );
    leader_goes_on(&cluster, leader, "panicked").await;
}

/// A member whose data was lost, started again with its usual `--peers`,
/// asks its peers first, finds itself listed as a member that served, and
/// stops saying so, as etcd refuses a member bootstrapped before. Taking
/// part with an empty log, it voted for a member that lacked an
/// acknowledged write, and that write was lost. The old leader, back,
/// leads again with the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_member_restarted_with_its_peers_stops_and_elects_no_stale_leader() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    wait_all_published(&cluster, leader).await;
    let stale = cluster.follower_of(leader);
    let wiped = cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader && *id != stale)
        .expect("three nodes");
    // The stale member misses the write; the leader and the other take it.
    cluster.node_mut(stale).pause();
    write_kept(&cluster, leader).await;
    wipe(&mut cluster, wiped).await;
    cluster.node_mut(leader).kill9().await;
    cluster.node_mut(stale).resume();

    wiped_member_stops(cluster.node_mut(wiped)).await;

    cluster.node_mut(leader).spawn();
    let (status, body) = call_until_ok(cluster.node(stale), "/v1/kv/wiped/acked").await;
    assert_eq!((status, &body["value"]), (200, &json!("kept")), "{body}");
}

/// The lowest id, which forms a `--peers` cluster on its first start,
/// whose data was lost, started again with its usual `--peers`, asks its
/// peers first and stops as the others do: it formed a cluster of its
/// own, which the others refused as foreign, and answered its clients
/// from it. The others go on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lowest_id_wiped_and_restarted_with_its_peers_stops_and_forms_no_cluster() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    wait_all_published(&cluster, leader).await;
    write_kept(&cluster, leader).await;
    wipe(&mut cluster, 1).await;

    wiped_member_stops(cluster.node_mut(1)).await;
    // Its log holds both starts: it formed the cluster at the first only.
    assert_eq!(
        cluster.node(1).log_count("formed the cluster"),
        1,
        "{}",
        cluster.node(1).log_tail(20)
    );
    let (status, body) = call_until_ok(cluster.node(2), "/v1/kv/wiped/acked").await;
    assert_eq!((status, &body["value"]), (200, &json!("kept")), "{body}");
    let (status, body) = call(cluster.node(2), "PUT", "/v1/kv/wiped/after", Some(json!(1))).await;
    assert_eq!(status, 201, "the others go on: {body}");
}

/// Writes `wiped/acked` = "kept" through `leader`, acknowledged.
async fn write_kept(cluster: &TestCluster, leader: u64) {
    let path = "/v1/kv/wiped/acked";
    let (status, body) = call(cluster.node(leader), "PUT", path, Some(json!("kept"))).await;
    assert_eq!(status, 201, "{body}");
}

/// Kills node `id` (kill -9) and removes its data directory.
async fn wipe(cluster: &mut TestCluster, id: u64) {
    cluster.node_mut(id).kill9().await;
    std::fs::remove_dir_all(cluster.node(id).data_dir()).expect("wipes the data dir");
}

/// Starts a member whose data was wiped, as it was before, and checks that
/// it stops (exit 1) saying its data was lost and how to bring it back.
async fn wiped_member_stops(node: &mut integration_tests::TestServer) {
    node.spawn();
    let exit = node
        .wait_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("the wiped member goes on running\n{}", node.log_tail(20)));
    assert_eq!(exit.code(), Some(1), "{}", node.log_tail(20));
    assert!(
        node.log_contains("its data was lost") && node.log_contains("kvctl cluster remove"),
        "{}",
        node.log_tail(20)
    );
}

/// Waits (at most 60 s) until `leader`'s membership lists every member's
/// client URL: each has published it, as a member does once it serves.
async fn wait_all_published(cluster: &TestCluster, leader: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.status(leader).await.expect("the leader answers");
        let members = status["members"].as_array().cloned().unwrap_or_default();
        if members.len() == cluster.ids().len()
            && members
                .iter()
                .all(|member| member["addr"].as_str() != Some(""))
        {
            return;
        }
        assert!(Instant::now() < deadline, "not all published: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A member started late, after the others formed the cluster, votes
/// though its log is empty: its peers say it never served. Here the
/// leader is gone before it reached it, and without its vote the other
/// member could never be elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_started_late_votes_with_its_empty_log() {
    let mut nodes = three_unstarted_peers();
    nodes[0].spawn();
    nodes[1].spawn();
    nodes[0].wait_ready().await;
    nodes[1].wait_ready().await;
    let (_, status) = call(&nodes[0], "GET", "/v1/cluster", None).await;
    let leader = status["leader"].as_u64().expect("a leader") as usize;
    let survivor = if leader == 1 { 2 } else { 1 };
    let (status, body) = call(
        &nodes[leader - 1],
        "PUT",
        "/v1/kv/late/k",
        Some(json!("kept")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    nodes[leader - 1].kill9().await;

    nodes[2].spawn();
    let (status, body) = call_until_ok(&nodes[survivor - 1], "/v1/kv/late/k").await;
    assert_eq!(
        (status, &body["value"]),
        (200, &json!("kept")),
        "{body}\n{}",
        nodes[2].log_tail(20)
    );
}

/// A member whose `--peers` name its own endpoint for another id (another
/// spelling of it) does not count its own answer as that peer's, which
/// made a majority of one node: it keeps asking.
#[tokio::test]
async fn a_member_answering_for_another_peer_keeps_asking() {
    answering_for_another_peer_keeps_asking(
        2,
        "1=http://127.0.0.1:{other},2=http://127.0.0.1:{own},3=http://localhost:{own}",
    )
    .await;
}

/// The same for the lowest id, which forms the cluster: it forms none,
/// where it led a cluster of one node alone.
#[tokio::test]
async fn the_lowest_id_answering_for_another_peer_keeps_asking_and_forms_nothing() {
    answering_for_another_peer_keeps_asking(
        1,
        "1=http://127.0.0.1:{own},2=http://localhost:{own},3=http://127.0.0.1:{other}",
    )
    .await;
}

/// Starts node `id` with `peers` (`{own}` its peer port, `{other}` one
/// where nothing listens) and checks that it keeps asking, its own
/// answers refused, and forms no cluster.
async fn answering_for_another_peer_keeps_asking(id: u64, peers: &str) {
    use integration_tests::{free_ports, TestServer};
    let ports = free_ports(3);
    let peers = peers
        .replace("{own}", &ports[1].to_string())
        .replace("{other}", &ports[2].to_string());
    let mut node = TestServer::unstarted(id, ports[0], ports[1], &["--peers", &peers]);
    node.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(node.log_contains("another node answered")
        && node.log_count("waiting for more to answer") >= 2)
    {
        assert!(Instant::now() < deadline, "{}", node.log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !node.log_contains("formed the cluster"),
        "{}",
        node.log_tail(20)
    );
    // The peer where nothing listens failed every round, logged once.
    assert_eq!(
        node.log_count("asking a peer about its cluster: no answer"),
        1,
        "{}",
        node.log_tail(20)
    );
    let (_, status) = call(&node, "GET", "/v1/cluster", None).await;
    assert!(status["leader"].is_null(), "{status}");
    assert_eq!(status["state"], "Joining", "{status}");
    let (status, body) = call(&node, "GET", "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("asks its peers"), "{body}");
}

/// A member still asking its peers about their cluster asks again as soon
/// as a leader calls it, rather than after its pause: the leader, refused
/// (503), retries at once, and made tens of thousands of calls a second,
/// flooding both logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_still_asking_its_peers_is_called_little() {
    let mut nodes = three_unstarted_peers();
    // Node 3 asks alone for a while, so that its pauses between rounds grow.
    nodes[2].spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[2].log_count("waiting for more to answer") < 4 {
        assert!(Instant::now() < deadline, "{}", nodes[2].log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes[0].spawn();
    nodes[1].spawn();
    for node in &mut nodes {
        node.wait_ready().await;
    }
    let page = nodes[2].metrics_text().await;
    let refused: f64 = page
        .lines()
        .filter(|line| {
            line.starts_with("kv_http_requests_total{")
                && line.contains("route=\"/raft/append\"")
                && line.contains("status=\"503\"")
        })
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum();
    assert!(refused < 100.0, "{refused} appends refused while it asked");
}

/// Checks that `leader` still takes writes, and that its log never says
/// `not_in_log`.
async fn leader_goes_on(cluster: &TestCluster, leader: u64, not_in_log: &str) {
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/wiped/after",
        Some(json!(1)),
    )
    .await;
    assert_eq!(status, 201, "the leader goes on: {body}");
    assert!(
        !cluster.node(leader).log_contains(not_in_log),
        "{}",
        cluster.node(leader).log_tail(20)
    );
}

/// Three nodes of one `--peers` cluster, none started yet.
fn three_unstarted_peers() -> Vec<integration_tests::TestServer> {
    let ports = integration_tests::free_ports(6);
    let peers = (1..=3)
        .map(|id| format!("{id}=http://127.0.0.1:{}", ports[2 * id - 1]))
        .collect::<Vec<_>>()
        .join(",");
    (1..=3)
        .map(|id| {
            integration_tests::TestServer::unstarted(
                id as u64,
                ports[2 * id - 2],
                ports[2 * id - 1],
                &["--peers", &peers],
            )
        })
        .collect()
}

/// GETs `path` from `node` until it answers 200 (a leader is elected), for
/// at most 60 s; the last answer.
async fn call_until_ok(
    node: &integration_tests::TestServer,
    path: &str,
) -> (u16, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = call(node, "GET", path, None).await;
        if status == 200 || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node 5, started with `--join` through an address nothing listens at, so
/// that it keeps joining; once it has said it will retry.
async fn joining_nowhere() -> integration_tests::TestServer {
    let nobody = integration_tests::closed_port_url();
    let [port, peer_port] = integration_tests::free_ports(2)[..] else {
        unreachable!("two ports were asked for")
    };
    let mut joining =
        integration_tests::TestServer::unstarted(5, port, peer_port, &["--join", &nobody]);
    joining.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !joining.log_contains("joining: will retry") {
        assert!(Instant::now() < deadline, "{}", joining.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    joining
}

/// A node joining with an empty log grants no vote until the cluster has
/// taken it: it would vote for any candidate, a stale one included.
#[tokio::test]
async fn a_node_still_joining_grants_no_vote() {
    let joining = joining_nowhere().await;
    let vote = json!({"vote": {"leader_id": {"term": 1000, "node_id": 9}, "committed": false},
                      "last_log_id": null});
    let answer = reqwest::Client::new()
        .post(format!("{}/raft/vote", joining.peer_url()))
        .header("x-kv-data-format", "6")
        .json(&vote)
        .send()
        .await
        .expect("the peer port answers");
    assert_eq!(answer.status(), 503);
    let body: serde_json::Value = answer.json().await.expect("a JSON error");
    assert_eq!(error_of(&body).0, "unavailable", "{body}");
    assert!(joining.log_contains("refused a vote: this node is still joining"));
    let (status, body) = call(&joining, "GET", "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("waits to be added"), "{body}");
    let (_, status) = call(&joining, "GET", "/v1/cluster", None).await;
    assert_eq!(status["state"], "Joining", "{status}");
}

/// A follower whose data was lost, started again with `--peers` as if
/// nothing happened, stops before the leader sends it anything: openraft
/// 0.9's leader, which keeps the follower's progress, stopped on its log
/// going back (and exited 74), or sent it entries it could not take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_restarted_with_its_peers_stops_and_the_leader_goes_on() {
    let (mut cluster, leader, wiped) = three_nodes_and_a_wiped_follower().await;
    wiped_member_stops(cluster.node_mut(wiped)).await;
    leader_goes_on(&cluster, leader, "raft stopped").await;
}

/// Removing a voter while too few of the others answer is refused up
/// front, as etcd's strict reconfiguration check does: the change would
/// wait in a joint configuration needing the down member, and the cluster
/// would take no write meanwhile. Removing the down member itself goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_that_would_leave_no_answering_quorum_is_refused() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let down = cluster.follower_of(leader);
    cluster.node_mut(down).kill9().await;

    let (status, body) = call(
        cluster.node(leader),
        "DELETE",
        &format!("/v1/cluster/members/{leader}"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_of(&body).0, "not_enough_members", "{body}");
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/still/k",
        Some(json!(1)),
    )
    .await;
    assert_eq!(status, 201, "the cluster still takes writes: {body}");

    let (status, body) = call(
        cluster.node(leader),
        "DELETE",
        &format!("/v1/cluster/members/{down}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "the down member itself can go: {body}");
    let (status, body) = call(
        cluster.node(leader),
        "PUT",
        "/v1/kv/still/k",
        Some(json!(2)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// The rebuild docs/recovery.md gives: remove a member, wipe it, start it
/// again under its id with `--join`. Catching up, it applies the log of
/// its earlier life, where it was a member and then removed: that history
/// marked it removed, and it stayed a learner, or a voter whose raft was
/// shut down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_wiped_and_joined_again_under_its_id_serves() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let rebuilt = cluster.follower_of(leader);
    // Enough entries before the removal, and between it and the new
    // addition, that the node holds a membership naming it from its first
    // entries, and applies the removal before it holds the addition.
    write_keys(cluster.node(leader), "before", 700).await;
    cluster.remove(rebuilt, leader).await;
    write_keys(cluster.node(leader), "between", 700).await;
    cluster.join(rebuilt, leader).await;
    cluster.wait_converged().await;
    let node = cluster.node(rebuilt);
    let (status, body) = call(node, "GET", "/v1/kv/between/k699?consistency=stale", None).await;
    assert_eq!((status, &body["value"]), (200, &json!(699)), "{body}");
    assert!(
        !node.log_contains("was removed from the cluster"),
        "{}",
        node.log_tail(20)
    );
    let (status, body) = call(node, "GET", "/readyz", None).await;
    assert_eq!(status, 200, "{body}");
}

/// Writes `count` keys under `prefix` through `node`, one after another.
async fn write_keys(node: &integration_tests::TestServer, prefix: &str, count: u32) {
    for n in 0..count {
        let path = format!("/v1/kv/{prefix}/k{n:03}");
        let (status, body) = call(node, "PUT", &path, Some(json!(n))).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// The same rebuild done at once, at the node's own address: the leader,
/// which could not reach the removed node, may still be telling it of its
/// removal when the new process there starts. A node still joining takes
/// no removal notice: it is of the node that had its id before.
#[tokio::test]
async fn a_node_still_joining_takes_no_removal_notice() {
    let joining = joining_nowhere().await;
    let notice = json!({"node_id": 5, "leader": 1, "log_index": 700, "members": [1, 2]});
    let response = joining
        .client()
        .post(format!("{}/raft/removed", joining.peer_url()))
        .json(&notice)
        .send()
        .await
        .expect("the peer port answers");
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(error_of(&body).0, "conflict", "{body}");
    let (status, body) = call(&joining, "GET", "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("waits to be added"), "{body}");
    assert!(!joining.log_contains("was removed from the cluster"));
}
