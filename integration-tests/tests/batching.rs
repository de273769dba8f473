//! Writes that arrive together share one raft entry: each still gets its
//! own revision and result, and a crash that cuts such an entry in the
//! topic loses none of it. Real `kv-server` processes on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use integration_tests::{TestCluster, TestServer};
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One scenario at a time: each drives many concurrent writers.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Writers sending at once, each its own keys.
const WRITERS: usize = 32;
/// Writes of each writer per round.
const WRITES_PER_WRITER: usize = 10;
/// Rounds at most before a scenario gives up waiting for its condition.
const MAX_ROUNDS: usize = 20;
/// The fsync delay of a disk slow enough that concurrent writes queue.
const SLOW_FSYNC_MS: &str = "10";
/// How long the writes may take to make the follower crash.
const WAIT: Duration = Duration::from_secs(60);

/// An acknowledged write: its value and the revision its answer gave.
type Acked = BTreeMap<String, (Value, u64)>;

/// Runs one round: `WRITERS` writers each put `WRITES_PER_WRITER` new keys
/// under `prefix/<round>/` at `url` concurrently; returns the writes that
/// were answered 2xx, with their revisions.
async fn write_round(client: &reqwest::Client, url: &str, prefix: &str, round: usize) -> Acked {
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let client = client.clone();
            let url = url.to_string();
            let prefix = prefix.to_string();
            tokio::spawn(async move {
                let mut acked = Acked::new();
                for n in 0..WRITES_PER_WRITER {
                    let key = format!("{prefix}/{round}/{writer}-{n}");
                    let value = json!({ "writer": writer, "n": n });
                    let answer = client
                        .put(format!("{url}/v1/kv/{key}"))
                        .json(&value)
                        .send()
                        .await;
                    let Ok(answer) = answer else { break };
                    if !answer.status().is_success() {
                        break;
                    }
                    let body: Value = answer.json().await.expect("a write's answer is JSON");
                    let revision = body["revision"].as_u64().expect("a write has a revision");
                    acked.insert(key, (value, revision));
                }
                acked
            })
        })
        .collect();
    let mut acked = Acked::new();
    for writer in writers {
        acked.extend(writer.await.expect("a writer task ends"));
    }
    acked
}

/// A client with a connection per writer, and a bound on every request.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(WRITERS)
        .build()
        .expect("a plain HTTP client builds")
}

/// Whether `server`'s histogram `name` of commands per entry (or per
/// relayed request) counted more than one at once: its sum of commands
/// passed its count of entries.
async fn went_together(server: &TestServer, name: &str) -> bool {
    let sum = server.metric(&format!("{name}_sum")).await;
    let count = server.metric(&format!("{name}_count")).await;
    matches!((sum, count), (Some(sum), Some(count)) if sum > count)
}

/// Whether `server` has proposed an entry of more than one command.
async fn proposed_a_batch(server: &TestServer) -> bool {
    went_together(server, "kv_commands_per_entry").await
}

/// A member of `cluster` other than `leader`.
fn a_follower(cluster: &TestCluster, leader: u64) -> u64 {
    cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_raft_entries_and_each_gets_its_own_revision() {
    let _serial = SERIAL.lock().await;
    let mut server = TestServer::start_with(&["--max-proposals-in-flight", "1"]).await;
    // A slow disk: writes arriving while an entry is being made durable
    // must wait, so they go together, however fast the machine is.
    server.set_env("KV_FSYNC_DELAY_MS", Some(SLOW_FSYNC_MS));
    server.restart().await;
    let client = client();
    let mut acked = Acked::new();
    for round in 0..MAX_ROUNDS {
        acked.extend(write_round(&client, &server.base_url(), "shared", round).await);
        if proposed_a_batch(&server).await {
            break;
        }
    }
    assert!(
        proposed_a_batch(&server).await,
        "{MAX_ROUNDS} rounds of {WRITERS} concurrent writers never shared an entry"
    );
    let revisions: BTreeSet<u64> = acked.values().map(|(_, revision)| *revision).collect();
    assert_eq!(
        revisions.len(),
        acked.len(),
        "every write has its own revision"
    );
    for (key, (value, revision)) in &acked {
        let answer = client
            .get(server.url(&format!("/v1/kv/{key}")))
            .send()
            .await
            .expect("a read answers");
        assert_eq!(answer.status(), 200, "{key}");
        let etag = answer.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(etag, format!("\"{revision}\""), "{key}");
        let body: Value = answer.json().await.expect("a read is JSON");
        assert_eq!(&body["value"], value, "{key}");
    }
}

/// A follower crashes after the first command's records of a batch entry
/// reached its topic, and loses its view: rebuilt from the topic, the view
/// must stop before that entry (its tail is a whole unit, not the whole
/// entry), so that the entry is applied again from the raft log. Else the
/// rest of the entry, acknowledged by the leader, would be missing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_inside_a_batch_entry_applies_the_rest_of_it_again() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &["--max-proposals-in-flight", "1"]).await;
    let leader = cluster.leader().await;
    let follower = a_follower(&cluster, leader);
    let node = cluster.node_mut(follower);
    node.stop().await;
    node.set_env("KV_CRASH_AT", Some("batch-entry-part-appended"));
    node.restart().await;
    cluster.wait_converged().await;

    let client = client();
    let leader_url = cluster.node(leader).base_url();
    let mut acked = Acked::new();
    let deadline = Instant::now() + WAIT;
    for round in 0..MAX_ROUNDS {
        acked.extend(write_round(&client, &leader_url, "cut", round).await);
        if cluster
            .node_mut(follower)
            .wait_exit(Duration::from_millis(1))
            .await
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the follower never crashed");
    }
    let node = cluster.node_mut(follower);
    assert!(
        !node.is_running(),
        "{MAX_ROUNDS} rounds never cut a batch entry on node {follower}"
    );
    assert!(node.log_contains("KV_CRASH_AT reached"), "it crashed there");
    // Its view is lost too (a damaged view is removed and rebuilt alike).
    std::fs::remove_dir_all(node.data_dir().join("view")).expect("removes the view");
    node.set_env("KV_CRASH_AT", None);
    node.restart().await;
    cluster.wait_converged().await;

    let stale = cluster.keys(follower, "cut/").await;
    let missing: Vec<&String> = acked
        .keys()
        .filter(|key| !stale.contains_key(*key))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes are missing on node {follower}, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let replayed = cluster.replayed_state(follower).await;
    for (key, (value, revision)) in &acked {
        assert_eq!(
            replayed.get(key),
            Some(&(value.clone(), *revision)),
            "{key} in node {follower}'s topic"
        );
    }
    assert!(
        replayed == cluster.replayed_state(leader).await,
        "the follower's topic replays to the leader's state"
    );
    let view: BTreeMap<String, Value> = replayed
        .into_iter()
        .filter(|(key, _)| key.starts_with("cut/"))
        .map(|(key, (value, _))| (key, value))
        .collect();
    assert_eq!(stale, view, "the follower's view equals its topic's replay");
}

/// Whether `server` has relayed a request of more than one write.
async fn relayed_a_batch(server: &TestServer) -> bool {
    went_together(server, "kv_commands_per_relay").await
}

/// Key-value writes sent to a follower are checked there and reach the
/// leader as commands, many to a request: the leader serves no `PUT` of
/// its own, yet every write is applied once with its own revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followers_writes_reach_the_leader_as_commands_many_to_a_request() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &["--max-proposals-in-flight", "1"]).await;
    // A slow disk on the leader: relayed writes queue behind the entry
    // being made durable, so the follower sends them together. (Should
    // another node lead after the restart, one request out per follower
    // still makes the writes queue.)
    let leader = cluster.leader().await;
    let node = cluster.node_mut(leader);
    node.stop().await;
    node.set_env("KV_FSYNC_DELAY_MS", Some(SLOW_FSYNC_MS));
    node.restart().await;
    cluster.wait_converged().await;
    let leader = cluster.leader().await;
    let follower = a_follower(&cluster, leader);

    let client = client();
    let follower_url = cluster.node(follower).base_url();
    let mut acked = Acked::new();
    for round in 0..MAX_ROUNDS {
        acked.extend(write_round(&client, &follower_url, "relayed", round).await);
        if relayed_a_batch(cluster.node(follower)).await {
            break;
        }
    }
    assert!(
        relayed_a_batch(cluster.node(follower)).await,
        "{MAX_ROUNDS} rounds of {WRITERS} writers never shared a relayed request"
    );
    assert!(!acked.is_empty(), "the follower acknowledged writes");
    let leader_page = cluster
        .node(leader)
        .client()
        .get(cluster.node(leader).url("/metrics"))
        .send()
        .await
        .expect("the leader's metrics answer")
        .text()
        .await
        .expect("the metrics are text");
    assert!(
        !leader_page.contains(r#"route="/v1/kv/{*key}",method="PUT""#),
        "the leader served the follower's writes as HTTP requests"
    );
    assert!(
        leader_page.contains(r#"route="/raft/relay",method="POST",status="200""#),
        "the leader took relayed commands"
    );
    let revisions: BTreeSet<u64> = acked.values().map(|(_, revision)| *revision).collect();
    assert_eq!(
        revisions.len(),
        acked.len(),
        "every write has its own revision"
    );
    cluster.wait_converged().await;
    let replayed = cluster.replayed_state(leader).await;
    for (key, (value, revision)) in &acked {
        assert_eq!(
            replayed.get(key),
            Some(&(value.clone(), *revision)),
            "{key} in the leader's topic"
        );
    }
}
