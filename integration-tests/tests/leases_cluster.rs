//! Leases on three nodes, over raw HTTP: a leader killed while 1,000
//! leases are kept alive loses none of them, a lease outlives its last
//! keep-alive by no more than its TTL plus the failover, and a follower
//! that caught up through a snapshot holds the same keys and leases as the
//! leader.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_tests::leases::{grant, keep_alive, lease_table, view_keys};
use integration_tests::TestCluster;
use serde_json::{json, Value};
use tokio::time::Instant;

/// The cluster tests run one at a time: each measures times that three
/// clusters sharing the machine would stretch.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Pause between two looks at a node.
const POLL: Duration = Duration::from_millis(50);
/// How long after its deadline the leader may take to end a lease.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);

/// A client for the tests' own requests: short time limits, so a request
/// to a dead or paused node gives way to another node.
fn client() -> reqwest::Client {
    client_waiting(Duration::from_secs(3))
}

/// A plain HTTP client that gives each request up to `limit`.
fn client_waiting(limit: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(limit)
        .build()
        .expect("a plain HTTP client builds")
}

/// Sends `method url` (with a JSON body if given); the status and body, or
/// the transport error as text.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.map_err(|error| error.to_string())?;
    Ok((status, body))
}

/// Puts `key` attached to `lease` through the node at `base_url`.
async fn put_with_lease(
    client: &reqwest::Client,
    base_url: &str,
    key: &str,
    value: Value,
    lease: u64,
) {
    let url = format!("{base_url}/v1/kv/{key}?lease={lease}");
    let (status, body) = send(client, reqwest::Method::PUT, url, Some(value))
        .await
        .expect("the put is answered");
    assert!(
        status == 200 || status == 201,
        "PUT {key}?lease={lease}: {status} {body}"
    );
}

/// Keeps lease `id` alive through the first of `urls` (from `start` on,
/// round) that answers, retrying 503s and transport errors until
/// `give_up`. `Ok` with when it was acknowledged; `Err` with what a node
/// answered otherwise (a 404: the lease is gone).
async fn keep_alive_anywhere(
    client: &reqwest::Client,
    urls: &[String],
    start: usize,
    id: u64,
    give_up: Instant,
) -> Result<Instant, String> {
    let mut attempt = start;
    loop {
        let url = &urls[attempt % urls.len()];
        match keep_alive(client, url, id).await {
            Ok((200, _)) => return Ok(Instant::now()),
            Ok((503, _)) | Err(_) => {}
            Ok((status, body)) => {
                return Err(format!(
                    "keep-alive of lease {id} via {url}: {status} {body}"
                ))
            }
        }
        if Instant::now() >= give_up {
            return Err(format!("no node acknowledged a keep-alive of lease {id}"));
        }
        attempt += 1;
        tokio::time::sleep(POLL).await;
    }
}

/// The nodes the harness runs now, other than `except`.
fn live_ids(cluster: &TestCluster, except: &[u64]) -> Vec<u64> {
    cluster
        .ids()
        .into_iter()
        .filter(|id| cluster.node(*id).is_running() && !except.contains(id))
        .collect()
}

const MANY_LEASES: u64 = 1_000;
const MANY_TTL: Duration = Duration::from_secs(10);
/// Tasks that grant the leases and keep them alive, each its share.
const KEEPERS: u64 = 50;
/// `--lease-expiries-per-sec`'s default.
const EXPIRY_RATE: u64 = 1_000;

/// The issue's specification: "On 3 nodes, the leader is killed while
/// 1,000 leases are kept alive: none expires, and each one stays alive
/// while its keep-alives continue." Once they stop, all 1,000 keys go
/// within TTL + 1 s + 1,000 / the expiry rate, on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_while_1000_leases_are_kept_alive_loses_none_and_they_expire_once_keep_alives_stop(
) {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let urls = Arc::new(cluster.urls());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));

    let mut keepers = Vec::new();
    for keeper in 0..KEEPERS {
        let (urls, stop, acked, failures) =
            (urls.clone(), stop.clone(), acked.clone(), failures.clone());
        keepers.push(tokio::spawn(async move {
            let client = client();
            // Grant and attach this keeper's share, then keep each alive
            // every third of its TTL; returns when each was last acknowledged.
            let mut leases = Vec::new();
            for n in (keeper..MANY_LEASES).step_by(KEEPERS as usize) {
                let base = &urls[n as usize % urls.len()];
                let id = grant(&client, base, MANY_TTL.as_secs()).await;
                put_with_lease(&client, base, &format!("many/{n:04}"), json!(n), id).await;
                leases.push((id, Instant::now()));
            }
            while !stop.load(Ordering::SeqCst) {
                let round = Instant::now();
                for (index, (id, last_ack)) in leases.iter_mut().enumerate() {
                    let give_up = *last_ack + 3 * MANY_TTL;
                    match keep_alive_anywhere(&client, &urls, keeper as usize + index, *id, give_up)
                        .await
                    {
                        Ok(at) => {
                            *last_ack = at;
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(failure) => failures.lock().unwrap().push(failure),
                    }
                }
                tokio::time::sleep_until(round + MANY_TTL / 3).await;
            }
            leases
        }));
    }
    // Every lease granted and kept alive at least once before the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(Ordering::SeqCst) < MANY_LEASES {
        assert!(
            Instant::now() < deadline,
            "the leases were not all granted and kept alive within 60 s"
        );
        assert!(
            failures.lock().unwrap().is_empty(),
            "{:?}",
            failures.lock().unwrap()
        );
        tokio::time::sleep(POLL).await;
    }

    cluster.node_mut(leader).kill9().await;
    let new_leader = cluster.leader().await;
    let elected = Instant::now();
    assert_ne!(new_leader, leader);
    while elected.elapsed() < 2 * MANY_TTL {
        assert!(
            failures.lock().unwrap().is_empty(),
            "a lease was lost: {:?}",
            failures.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in live_ids(&cluster, &[]) {
        let keys = cluster.keys(id, "many/").await;
        assert_eq!(
            keys.len() as u64,
            MANY_LEASES,
            "node {id} lost kept-alive keys"
        );
    }

    stop.store(true, Ordering::SeqCst);
    let mut last_ack = elected;
    for keeper in keepers {
        for (_, at) in keeper.await.expect("a keeper does not panic") {
            last_ack = last_ack.max(at);
        }
    }
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap()
    );
    let bound = MANY_TTL + EXPIRY_SLACK + Duration::from_millis(1_000 * MANY_LEASES / EXPIRY_RATE);
    eprintln!(
        "{MANY_LEASES} leases kept alive through the failover; the last keep-alive {:?} after the election",
        last_ack - elected
    );
    for id in live_ids(&cluster, &[]) {
        loop {
            let left = cluster.keys(id, "many/").await.len();
            if left == 0 {
                eprintln!(
                    "node {id}: all keys gone {:?} after the last keep-alive",
                    last_ack.elapsed()
                );
                break;
            }
            assert!(
                last_ack.elapsed() < bound,
                "node {id} still holds {left} keys {:?} after the last keep-alive (bound {bound:?})",
                last_ack.elapsed()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The extension bound: a lease outlives its last keep-alive by at least
/// its TTL, and by at most its TTL + the failover (the time from the
/// leader's death until a new leader answers for the leases) + 1 s. The
/// new leader gives every lease a full TTL from when it starts keeping
/// them, since it cannot know the old leader's deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_kept_alive_just_before_the_leader_dies_lives_its_ttl_and_at_most_the_failover_more(
) {
    const TTL: Duration = Duration::from_secs(5);
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let client = client();
    let leader_url = cluster.node(leader).base_url();
    let id = grant(&client, &leader_url, TTL.as_secs()).await;
    put_with_lease(&client, &leader_url, "bound/k", json!("b"), id).await;
    cluster.wait_converged().await;

    let sent = Instant::now();
    let (status, body) = keep_alive(&client, &leader_url, id).await.unwrap();
    let acked = Instant::now();
    assert_eq!(status, 200, "{body}");
    cluster.node_mut(leader).kill9().await;
    let killed = Instant::now();
    let survivors: Vec<String> = cluster.urls();

    // The failover: until a node answers for the lease again.
    let failover = {
        let (client, survivors) = (client.clone(), survivors.clone());
        tokio::spawn(async move {
            for attempt in 0usize.. {
                let url = format!("{}/v1/leases/{id}", survivors[attempt % survivors.len()]);
                if let Ok((200, _)) = send(&client, reqwest::Method::GET, url, None).await {
                    return killed.elapsed();
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(30),
                    "no new leader answered for the lease"
                );
                tokio::time::sleep(POLL).await;
            }
            unreachable!("the loop returns or panics")
        })
    };
    // Each survivor's own view, until the key is gone from both.
    let mut gone_at = BTreeMap::new();
    while gone_at.len() < survivors.len() {
        for url in &survivors {
            if gone_at.contains_key(url) {
                continue;
            }
            let key_url = format!("{url}/v1/kv/bound/k?consistency=stale");
            let (status, body) = send(&client, reqwest::Method::GET, key_url, None)
                .await
                .expect("a survivor answers");
            match status {
                404 => {
                    gone_at.insert(url.clone(), Instant::now());
                }
                200 => assert!(
                    killed.elapsed() < Duration::from_secs(60),
                    "the key never went"
                ),
                _ => panic!("GET bound/k on {url}: {status} {body}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let failover = failover.await.expect("the failover is measured");
    let bound = TTL + failover + EXPIRY_SLACK;
    eprintln!(
        "failover {failover:?}; the key went {:?} after the last keep-alive",
        gone_at.values().map(|at| *at - acked).collect::<Vec<_>>()
    );
    for (url, at) in gone_at {
        assert!(
            at >= sent + TTL,
            "{url}: the key went {:?} after its last keep-alive, before its TTL",
            at - sent
        );
        assert!(
            at <= acked + bound,
            "{url}: the key went {:?} after its last keep-alive, past TTL + failover ({failover:?}) + 1 s",
            at - acked
        );
    }
}

/// A keep-alive passed on by a follower to a leader elected moments ago,
/// which has yet to load the leases' deadlines, is answered at once with
/// 503 `unavailable` saying so, not held for the 5 s a follower waits for
/// another leader (which a `not_leader` answer made it do); once the
/// leader has loaded them, the same keep-alive succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_through_a_follower_while_a_new_leader_loads_the_leases_is_answered_at_once() {
    /// How long each node's keeper waits, once it leads, before it loads
    /// the deadlines (`KV_DELAY_AT`).
    const LOAD_DELAY_MS: u64 = 4_000;
    /// Well under `LOAD_DELAY_MS` and the 5 s wait for a leader.
    const PROMPT: Duration = Duration::from_millis(2_500);
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let client = client();
    let id = grant(&client, &cluster.node(leader).base_url(), 60).await;
    cluster.wait_converged().await;
    // The delay on the followers only, restarted one at a time: the next
    // leader is one of them.
    let delay = format!("lease-keeper-promote:{LOAD_DELAY_MS}");
    for follower in cluster.ids_but(leader) {
        let node = cluster.node_mut(follower);
        node.set_env("KV_DELAY_AT", Some(&delay));
        node.restart().await;
    }
    cluster.wait_converged().await;
    cluster.node_mut(leader).kill9().await;
    let new_leader = cluster.leader_among(&[leader]).await;
    let elected = Instant::now();
    let follower = cluster
        .ids_but(leader)
        .into_iter()
        .find(|id| *id != new_leader)
        .expect("two nodes survive");
    let follower_url = cluster.node(follower).base_url();

    // Patient enough to see a refusal held for the 5 s wait for a leader.
    let patient = client_waiting(Duration::from_secs(10));
    let sent = Instant::now();
    let (status, body) = keep_alive(&patient, &follower_url, id)
        .await
        .expect("the keep-alive is answered");
    let took = sent.elapsed();
    assert!(
        sent.duration_since(elected) < Duration::from_millis(LOAD_DELAY_MS) - PROMPT,
        "the keep-alive was sent {:?} after the election, too late to find the leases unloaded",
        sent.duration_since(elected)
    );
    assert!(
        took < PROMPT,
        "the keep-alive took {took:?}: {status} {body}"
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("node {new_leader} has just become the leader")),
        "{body}"
    );

    // Once the deadlines are loaded, the keep-alive goes through the same
    // follower.
    let give_up = Instant::now() + Duration::from_millis(LOAD_DELAY_MS) + Duration::from_secs(10);
    if let Err(error) = keep_alive_anywhere(&client, &[follower_url], 0, id, give_up).await {
        panic!("{error}");
    }
}

/// How long a leader may take to snapshot and purge its log.
const PURGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until `leader` has purged its log past `index`; returns the purged index.
async fn wait_for_purge_past(cluster: &TestCluster, leader: u64, index: u64) -> u64 {
    let deadline = Instant::now() + PURGE_TIMEOUT;
    loop {
        let status = cluster.status(leader).await;
        let purged = status
            .as_ref()
            .and_then(|status| status["purged_index"].as_u64());
        if let Some(purged) = purged.filter(|purged| *purged > index) {
            return purged;
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} did not purge its log past {index}: {status:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `key` is gone from the view of node `id`.
async fn wait_gone_on(cluster: &TestCluster, id: u64, key: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let client = client();
    loop {
        let url = cluster
            .node(id)
            .url(&format!("/v1/kv/{key}?consistency=stale"));
        let (status, body) = send(&client, reqwest::Method::GET, url, None)
            .await
            .expect("the node answers");
        if status == 404 {
            return;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "{key} is still on node {id} after {within:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts every running node's view holds the same keys, whole entries
/// (value, revisions, version, lease) compared.
async fn assert_same_keys(cluster: &TestCluster) -> BTreeMap<String, Value> {
    cluster.wait_converged().await;
    let client = client();
    let ids = live_ids(cluster, &[]);
    let first = view_keys(&client, &cluster.node(ids[0]).base_url()).await;
    for id in &ids[1..] {
        let other = view_keys(&client, &cluster.node(*id).base_url()).await;
        assert_eq!(
            other, first,
            "node {id} and node {} hold different keys",
            ids[0]
        );
    }
    first
}

/// A follower down while leases expire, are revoked and granted, and the
/// log is purged, catches up through a snapshot: its keys (with their
/// leases) equal the leader's, and the leases it learnt from the snapshot
/// end on it as on the leader (their attachments came with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_installed_a_snapshot_holds_the_leaders_keys_and_leases_after_expiries() {
    let _serial = SERIAL.lock().await;
    let mut cluster = TestCluster::start(
        3,
        &[
            "--snapshot-every",
            "200",
            "--snapshot-catchup-entries",
            "10",
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let follower = live_ids(&cluster, &[leader])[0];
    let client = client();
    let base = cluster.node(leader).base_url();
    let expiring = grant(&client, &base, 5).await;
    let revoked = grant(&client, &base, 60).await;
    let later = grant(&client, &base, 5).await;
    put_with_lease(&client, &base, "snap/expiring", json!(1), expiring).await;
    put_with_lease(&client, &base, "snap/revoked", json!(2), revoked).await;
    put_with_lease(&client, &base, "snap/later", json!(3), later).await;
    put_with_lease(&client, &base, "snap/later2", json!(4), later).await;
    cluster.wait_converged().await;
    // `later` lives while the follower is away.
    let keep_later = {
        let (client, base) = (client.clone(), base.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::SeqCst) {
                let (status, body) = keep_alive(&client, &base, later)
                    .await
                    .expect("the leader answers");
                assert_eq!(status, 200, "{body}");
                tokio::time::sleep(Duration::from_millis(1_000)).await;
            }
        });
        (stop, task)
    };

    let follower_last = cluster.status(follower).await.unwrap()["last_log_index"]
        .as_u64()
        .unwrap();
    cluster.node_mut(follower).kill9().await;
    let granted_meanwhile = grant(&client, &base, 60).await;
    put_with_lease(&client, &base, "snap/new", json!(5), granted_meanwhile).await;
    put_with_lease(&client, &base, "snap/later2", json!(44), granted_meanwhile).await;
    let (status, _) = send(
        &client,
        reqwest::Method::DELETE,
        format!("{base}/v1/leases/{revoked}"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    wait_gone_on(&cluster, leader, "snap/expiring", Duration::from_secs(10)).await;
    for n in 0..300 {
        let url = format!("{base}/v1/kv/snap/fill/{n:04}");
        let (status, _) = send(&client, reqwest::Method::PUT, url, Some(json!(n)))
            .await
            .unwrap();
        assert!(status == 200 || status == 201);
    }
    let purged = wait_for_purge_past(&cluster, leader, follower_last).await;

    cluster.node_mut(follower).restart().await;
    let keys = assert_same_keys(&cluster).await;
    let snapshot = cluster.status(follower).await.unwrap()["snapshot_index"]
        .as_u64()
        .unwrap();
    assert!(
        snapshot >= purged,
        "node {follower} caught up without the snapshot: {snapshot} < {purged}"
    );
    for key in ["snap/expiring", "snap/revoked"] {
        assert!(!keys.contains_key(key), "{key} ended with its lease");
    }
    assert_eq!(keys["snap/later"]["lease"], json!(later));
    assert_eq!(keys["snap/later2"]["lease"], json!(granted_meanwhile));
    assert_eq!(keys["snap/new"]["lease"], json!(granted_meanwhile));

    // `later` ends now: every node, the one that learnt it from the
    // snapshot too, deletes the key still attached to it, and only it.
    let (stop, task) = keep_later;
    stop.store(true, Ordering::SeqCst);
    task.await.expect("the keep-alive task does not panic");
    for id in live_ids(&cluster, &[]) {
        wait_gone_on(
            &cluster,
            id,
            "snap/later",
            Duration::from_secs(5) + 2 * EXPIRY_SLACK,
        )
        .await;
    }
    let keys = assert_same_keys(&cluster).await;
    assert!(
        keys.contains_key("snap/later2"),
        "a key moved to another lease stays"
    );

    // The leases as the leader keeps them; then as the next leader does,
    // which may be the follower that installed the snapshot.
    let leases = lease_table(&client, &base).await;
    assert_eq!(
        leases,
        BTreeMap::from([(
            granted_meanwhile,
            (60, vec!["snap/later2".to_string(), "snap/new".to_string()])
        )])
    );
    cluster.node_mut(leader).kill9().await;
    let next = cluster.leader().await;
    let next_url = cluster.node(next).base_url();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(
        send(
            &client,
            reqwest::Method::GET,
            format!("{next_url}/v1/leases"),
            None
        )
        .await,
        Ok((200, _))
    ) {
        assert!(
            Instant::now() < deadline,
            "node {next} did not keep the leases"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        lease_table(&client, &next_url).await,
        leases,
        "node {next} (the snapshot's follower is {follower}) holds other leases"
    );
    assert_same_keys(&cluster).await;
}

/// A leader cut off from its quorum proposes each due lease's expiry once
/// and waits for it: its raft log does not grow while it waits. It used to
/// propose every due lease again after each request timeout (its log grew
/// by the leases every two seconds here, without end, as openraft 0.9
/// keeps a leader that lost its quorum leading). Once the others are back,
/// the leases end on every node.
#[tokio::test]
async fn a_leader_without_its_quorum_proposes_each_due_expiry_once() {
    const LEASES: u64 = 20;
    let mut cluster = TestCluster::start(3, &["--request-timeout-ms", "1000"]).await;
    let leader = cluster.leader().await;
    let url = cluster.node(leader).base_url();
    let client = client();
    for _ in 0..LEASES {
        grant(&client, &url, 5).await;
    }
    let followers = cluster.ids_but(leader);
    for id in &followers {
        cluster.node_mut(*id).pause();
    }
    let node = cluster.node(leader);
    let index = || async {
        node.metric("kv_raft_last_log_index")
            .await
            .expect("the node reports its last log index") as u64
    };
    let before = index().await;
    // Each lease comes due once its TTL passes with no keep-alive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while index().await < before + LEASES {
        assert!(
            Instant::now() < deadline,
            "the expiries were never proposed"
        );
        tokio::time::sleep(POLL).await;
    }
    // A window to count proposals in, not a wait for a condition: two
    // request timeouts and their retry pauses.
    let proposed = index().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = index().await - proposed;
    assert!(
        again == 0,
        "{again} more entries while the expiries of {LEASES} leases waited for a quorum"
    );
    assert!(
        proposed - before <= LEASES + 1,
        "{} entries",
        proposed - before
    );

    for id in &followers {
        cluster.node_mut(*id).resume();
    }
    // The list alone: a lease listed may end before its own read.
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in cluster.ids() {
        let url = format!("{}/v1/leases", cluster.node(id).base_url());
        loop {
            let listed: Value = match client.get(&url).send().await {
                Ok(answer) => answer.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            if listed["leases"].as_array().is_some_and(Vec::is_empty) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} still lists leases: {listed}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}
