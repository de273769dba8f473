//! A follower catching up by snapshot, seen from outside: what its stale
//! reads answer while it installs, and what it comes back with after a
//! crash at each step of the install. Real `kv-server` processes on
//! loopback; the leader snapshots often and keeps few entries behind its
//! snapshot, so a follower that was down must take a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::TestCluster;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// One scenario at a time: each starts three servers.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// The prefix of every key written.
const PREFIX: &str = "ins/";
/// Puts per transaction: the API's limit.
const TXN_KEYS: usize = 128;
/// How long a leader may take to snapshot and purge its log.
const PURGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Puts per transaction in the crash rounds: small, so that each round
/// writes past a snapshot (every 50 entries).
const CRASH_ROUND_TXN_KEYS: usize = 16;
/// How long a crashed node may take to reach its crash point and exit.
const CRASH_TIMEOUT: Duration = Duration::from_secs(90);
/// Keys of one list page the readers ask for.
const PAGE: usize = 500;

/// Three nodes that snapshot every 50 entries and keep 10 behind it.
async fn cluster_with_frequent_snapshots() -> (TestCluster, u64, u64) {
    let cluster = TestCluster::start(
        3,
        &["--snapshot-every", "50", "--snapshot-catchup-entries", "10"],
    )
    .await;
    let leader = cluster.leader().await;
    let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    (cluster, leader, follower)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a plain HTTP client builds")
}

/// Writes keys `ins/<n>` for `range` through `url`, `per_txn` to a
/// transaction; gives each key's revision (that of its transaction).
async fn write_keys(
    url: &str,
    range: std::ops::Range<usize>,
    per_txn: usize,
) -> BTreeMap<String, u64> {
    let client = client();
    let mut revisions = BTreeMap::new();
    let keys: Vec<usize> = range.collect();
    for chunk in keys.chunks(per_txn) {
        let puts: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"put": {"key": format!("{PREFIX}{n:06}"), "value": n}}))
            .collect();
        let response = client
            .post(format!("{url}/v1/txn"))
            .json(&json!({ "success": puts }))
            .send()
            .await
            .expect("the leader answers a txn");
        assert_eq!(response.status(), 200, "a txn of {} puts", chunk.len());
        let answer: Value = response.json().await.expect("a txn answers JSON");
        let revision = answer["revision"].as_u64().expect("a txn's revision");
        for n in chunk {
            revisions.insert(format!("{PREFIX}{n:06}"), revision);
        }
    }
    revisions
}

/// The index of the last entry node `id`'s snapshot covers (0 for none).
async fn snapshot_index(cluster: &TestCluster, id: u64) -> u64 {
    let status = cluster.status(id).await.expect("the node answers");
    status["snapshot_index"].as_u64().expect("a snapshot index")
}

/// Waits until `leader` has purged its log past `index`.
async fn wait_for_purge_past(cluster: &TestCluster, leader: u64, index: u64) -> u64 {
    let deadline = Instant::now() + PURGE_TIMEOUT;
    loop {
        let status = cluster.status(leader).await;
        let purged = status.as_ref().and_then(|s| s["purged_index"].as_u64());
        if let Some(purged) = purged.filter(|purged| *purged > index) {
            return purged;
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} did not purge past {index}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last log index node `id` holds.
async fn last_log_index(cluster: &TestCluster, id: u64) -> u64 {
    let status = cluster.status(id).await.expect("the node answers");
    status["last_log_index"].as_u64().expect("a last log index")
}

/// One stale list page a reader got: where it started, the revision it
/// says it shows, its keys with their mod revisions, and `more`.
#[derive(Debug)]
struct Page {
    start_after: Option<String>,
    revision: u64,
    entries: Vec<(String, u64)>,
    more: bool,
}

/// Checks `page` against the keys' revisions: it must hold exactly the
/// keys after its start written at or before its revision, at their
/// revisions. Gives what is wrong, if anything.
fn wrong_with(page: &Page, written: &BTreeMap<String, u64>) -> Option<String> {
    let after = page.start_after.clone().unwrap_or_default();
    let mut expected: Vec<(String, u64)> = written
        .iter()
        .filter(|(key, revision)| **key > after && **revision <= page.revision)
        .map(|(key, revision)| (key.clone(), *revision))
        .take(PAGE + 1)
        .collect();
    let more = expected.len() > PAGE;
    expected.truncate(PAGE);
    if page.entries == expected && page.more == more {
        return None;
    }
    let first_difference = page
        .entries
        .iter()
        .zip(&expected)
        .find(|(got, want)| got != want);
    Some(format!(
        "a page after {after:?} at revision {} holds {} keys (more: {}) where that revision had {} (more: {more}); first difference {first_difference:?}",
        page.revision,
        page.entries.len(),
        page.more,
        expected.len(),
    ))
}

/// Lists `ins/` on `url` with stale reads as fast as it answers until
/// `stop`, starting each page at a different place; gives every page.
async fn read_pages(url: String, stop: Arc<AtomicBool>, total: usize) -> Vec<Page> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain HTTP client builds");
    let starts: Vec<Option<String>> = [None, Some(total / 3), Some(2 * total / 3)]
        .into_iter()
        .map(|n| n.map(|n| format!("{PREFIX}{n:06}")))
        .collect();
    let mut pages = Vec::new();
    let mut turn = 0;
    while !stop.load(Ordering::Acquire) {
        let start_after = starts[turn % starts.len()].clone();
        turn += 1;
        let mut request = format!("{url}/v1/kv?prefix={PREFIX}&consistency=stale&limit={PAGE}");
        if let Some(after) = &start_after {
            request.push_str(&format!("&start_after={after}"));
        }
        let Ok(response) = client.get(request).send().await else {
            // Down or starting: nothing to check.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let revision = response
            .headers()
            .get("x-kv-revision")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .expect("a list carries X-Kv-Revision");
        let Ok(body) = response.json::<Value>().await else {
            continue;
        };
        let entries = body["entries"]
            .as_array()
            .expect("a list's entries")
            .iter()
            .map(|entry| {
                (
                    entry["key"].as_str().expect("a key").to_string(),
                    entry["mod_revision"].as_u64().expect("a mod revision"),
                )
            })
            .collect();
        pages.push(Page {
            start_after,
            revision,
            entries,
            more: body["more"].as_bool().expect("more"),
        });
    }
    pages
}

/// How long a long-poll holds (`wait`), and how soon one the install must
/// wake answers.
const LONG_POLL_WAIT: &str = "120s";
const LONG_POLL_WOKEN_WITHIN: Duration = Duration::from_secs(60);

/// A long-poll of the first key on `url` from revision `index`: how long
/// it took to answer, and the revision it answered at. Nothing writes the
/// key after `index`, so only the install's wake-up of every waiter
/// answers it before its wait runs out.
async fn long_poll(url: String, index: u64) -> (Duration, u64) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(180))
        .build()
        .expect("a plain HTTP client builds");
    let started = Instant::now();
    let response = client
        .get(format!(
            "{url}/v1/kv/{PREFIX}000000?consistency=stale&index={index}&wait={LONG_POLL_WAIT}"
        ))
        .send()
        .await
        .expect("the follower answers a long-poll");
    assert_eq!(response.status(), 200, "a long-poll");
    let revision = response
        .headers()
        .get("x-kv-revision")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a long-poll carries X-Kv-Revision");
    (started.elapsed(), revision)
}

/// While a follower installs a snapshot of many keys (held in the middle
/// of building its view by `KV_DELAY_AT`), its stale lists answer the
/// state before the install at the revision before, or the state after at
/// the revision after: every page holds exactly the keys written at or
/// before the revision it carries, and that revision never goes back. A
/// long-poll waiting from the old revision wakes at the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_lists_during_a_snapshot_install_show_only_states_some_revision_had() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let leader_url = cluster.node(leader).base_url();
    let mut written = write_keys(&leader_url, 0..1_000, TXN_KEYS).await;
    cluster.wait_converged().await;
    let follower_last = last_log_index(&cluster, follower).await;
    let before = written.values().copied().max().unwrap();
    cluster.node_mut(follower).kill9().await;

    // Enough keys that the view is built in several batches.
    let total = 25_000;
    written.extend(write_keys(&leader_url, 1_000..total, TXN_KEYS).await);
    let after = written.values().copied().max().unwrap();
    let purged = wait_for_purge_past(&cluster, leader, follower_last).await;

    let node = cluster.node_mut(follower);
    node.set_env("KV_DELAY_AT", Some("view-replay-batch:2000"));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_pages(node.base_url(), Arc::clone(&stop), total));
    // Not `restart`, which waits for `/readyz`: a node catching up is not
    // ready until its install is done, and the long-poll must start before.
    node.restart_live().await;
    let long_poll = tokio::spawn(long_poll(node.base_url(), before));
    cluster.wait_converged().await;
    stop.store(true, Ordering::Release);
    let pages = reader.await.expect("the reader does not panic");
    let (waited, woken_at) = long_poll.await.expect("the long-poll does not panic");
    assert!(
        waited < LONG_POLL_WOKEN_WITHIN && woken_at > before,
        "a long-poll from the old revision ({before}) is woken by the install: \
         it answered after {waited:?} at revision {woken_at}"
    );

    assert!(
        snapshot_index(&cluster, follower).await >= purged,
        "the follower caught up by snapshot"
    );
    let mut last_revision = 0;
    for page in &pages {
        if let Some(wrong) = wrong_with(page, &written) {
            panic!("{wrong}");
        }
        assert!(
            page.revision >= last_revision,
            "the follower's revision went back from {last_revision} to {}",
            page.revision
        );
        last_revision = page.revision;
    }
    let saw = |revision: u64| pages.iter().any(|page| page.revision == revision);
    assert!(
        saw(before) && saw(after),
        "the reader saw the state before the install ({before}) and after it ({after}); \
         it saw revisions {:?}",
        pages
            .iter()
            .map(|page| page.revision)
            .collect::<std::collections::BTreeSet<_>>()
    );
}

/// How long a follower held in its install may take to become ready.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(90);

/// A follower catching up by snapshot is not ready (`/readyz` 503, naming
/// the read index it has not applied) while it knows the leader, and once
/// it answers ready, its stale reads hold every write acknowledged before:
/// a load balancer that follows `/readyz` never sends a read to a node far
/// behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catching_up_is_not_ready_until_it_has_applied_the_leaders_commits() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let leader_url = cluster.node(leader).base_url();
    write_keys(&leader_url, 0..1_000, TXN_KEYS).await;
    cluster.wait_converged().await;
    let follower_last = last_log_index(&cluster, follower).await;
    cluster.node_mut(follower).kill9().await;
    let total = 25_000;
    let written = write_keys(&leader_url, 1_000..total, TXN_KEYS).await;
    let (last_key, last_revision) = written
        .last_key_value()
        .map(|(key, revision)| (key.clone(), *revision))
        .expect("keys were written");
    wait_for_purge_past(&cluster, leader, follower_last).await;

    let node = cluster.node_mut(follower);
    node.set_env("KV_DELAY_AT", Some("view-replay-batch:1500"));
    node.spawn();
    let client = client();
    let ready_url = node.url("/readyz");
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut behind = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the follower was not ready within {CATCH_UP_TIMEOUT:?}; it said {:?}",
            behind.last()
        );
        let Ok(response) = client.get(&ready_url).send().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503, "/readyz is 200 or 503");
        let body: Value = response.json().await.expect("a 503 from /readyz is JSON");
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        behind.push(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let read = client
        .get(format!(
            "{}/v1/kv/{last_key}?consistency=stale",
            node.base_url()
        ))
        .send()
        .await
        .expect("the ready follower answers a stale read");
    assert_eq!(
        read.status(),
        200,
        "once ready, the follower's stale read finds {last_key}, written before it started"
    );
    let value: Value = read.json().await.expect("a read is JSON");
    assert_eq!(value["mod_revision"], last_revision, "{value}");
    assert!(
        behind
            .iter()
            .any(|reason| reason.contains("did not apply up to the read index")),
        "while it installed, /readyz named the read index it had not applied; it said {behind:?}"
    );
}

/// The crash points of a snapshot install, one after each step, in order.
const INSTALL_POINTS: [&str; 5] = [
    "install-snapshot-saved",
    "snapshot-topic-replaced",
    "install-view-built",
    "install-view-switched",
    "install-snapshot-current",
];

/// Every key under `ins/` node `url` holds, with its mod revision, read
/// page by page with stale reads.
async fn all_keys(url: &str) -> BTreeMap<String, u64> {
    let client = client();
    let mut keys = BTreeMap::new();
    let mut start_after: Option<String> = None;
    loop {
        let mut request = format!("{url}/v1/kv?prefix={PREFIX}&consistency=stale&limit=10000");
        if let Some(after) = &start_after {
            request.push_str(&format!("&start_after={after}"));
        }
        let body: Value = client
            .get(request)
            .send()
            .await
            .expect("the node answers a list")
            .json()
            .await
            .expect("a list is JSON");
        let entries = body["entries"].as_array().expect("a list's entries");
        for entry in entries {
            let key = entry["key"].as_str().expect("a key").to_string();
            keys.insert(key, entry["mod_revision"].as_u64().expect("a revision"));
        }
        if !body["more"].as_bool().expect("more") {
            return keys;
        }
        start_after = keys.keys().next_back().cloned();
    }
}

/// The names in node `id`'s data dir that hold a view, and whether a
/// snapshot install is marked as under way there.
fn view_dirs_and_install_marker(cluster: &TestCluster, id: u64) -> (Vec<String>, bool) {
    let data = cluster.node(id).data_dir();
    let mut views: Vec<String> = std::fs::read_dir(&data)
        .expect("the data dir")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name == "view" || name.starts_with("view-"))
        .collect();
    views.sort();
    let installing = data.join("snapshot").join("installing.snap").exists();
    (views, installing)
}

/// A follower killed (by `KV_CRASH_AT`) right after each step of a
/// snapshot install in turn, then restarted, comes back with every
/// acknowledged key at its revision, the leader's revision, one view
/// directory and no install left under way; and the replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_crashed_after_any_step_of_a_snapshot_install_comes_back_whole() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let leader_url = cluster.node(leader).base_url();
    let mut written = write_keys(&leader_url, 0..500, CRASH_ROUND_TXN_KEYS).await;
    cluster.wait_converged().await;
    let batch = 1_500;
    for (round, point) in INSTALL_POINTS.into_iter().enumerate() {
        let follower_last = last_log_index(&cluster, follower).await;
        cluster.node_mut(follower).kill9().await;
        let from = 500 + round * batch;
        written.extend(write_keys(&leader_url, from..from + batch, CRASH_ROUND_TXN_KEYS).await);
        wait_for_purge_past(&cluster, leader, follower_last).await;

        let node = cluster.node_mut(follower);
        node.set_env("KV_CRASH_AT", Some(point));
        node.spawn();
        let exit = node.wait_exit(CRASH_TIMEOUT).await;
        assert!(
            exit.is_some_and(|status| !status.success()),
            "node {follower} crashed at {point}: {exit:?}\n{}",
            node.log_tail(30)
        );
        assert!(node.log_contains(point), "{point} was reached");
        node.set_env("KV_CRASH_AT", None);
        node.restart().await;
        cluster.wait_converged().await;

        let keys = all_keys(&cluster.node(follower).base_url()).await;
        assert_eq!(
            keys.len(),
            written.len(),
            "after a crash at {point}: every acknowledged key"
        );
        assert!(
            keys == written,
            "after a crash at {point}: every key at the revision it was written at"
        );
        assert_eq!(
            cluster.status(follower).await.expect("answers")["revision"],
            cluster.status(leader).await.expect("answers")["revision"],
            "after a crash at {point}: the leader's revision"
        );
        let (views, installing) = view_dirs_and_install_marker(&cluster, follower);
        assert_eq!(
            views.len(),
            1,
            "after a crash at {point}: one view, not {views:?}"
        );
        assert!(
            !installing,
            "after a crash at {point}: no install under way"
        );
    }
    let reference = cluster.replayed_state(leader).await;
    for id in cluster.ids() {
        assert!(
            cluster.replayed_state(id).await == reference,
            "node {id} replays to the leader's state"
        );
    }
}

/// The index `raft/meta.json` of node `id` says was purged, 0 for none.
/// The file is JSON followed by its checksum line.
fn saved_purge(cluster: &TestCluster, id: u64) -> u64 {
    let path = cluster.node(id).data_dir().join("raft").join("meta.json");
    std::fs::read(&path)
        .ok()
        .and_then(|bytes| {
            serde_json::Deserializer::from_slice(&bytes)
                .into_iter::<Value>()
                .next()?
                .ok()
        })
        .and_then(|meta| meta["purged"]["index"].as_u64())
        .unwrap_or(0)
}

/// A follower killed the moment its raft log saved the purge of a snapshot
/// install comes back whole: openraft purges as the install starts, and
/// the purge waits until the snapshot is on disk, so a restart finds one
/// that covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_as_its_log_saves_an_install_purge_comes_back_whole() {
    let _serial = SERIAL.lock().await;
    let (mut cluster, leader, follower) = cluster_with_frequent_snapshots().await;
    let leader_url = cluster.node(leader).base_url();
    let mut written = write_keys(&leader_url, 0..500, CRASH_ROUND_TXN_KEYS).await;
    cluster.wait_converged().await;
    let follower_last = last_log_index(&cluster, follower).await;
    let purged_before = saved_purge(&cluster, follower);
    cluster.node_mut(follower).kill9().await;
    written.extend(write_keys(&leader_url, 500..2_000, CRASH_ROUND_TXN_KEYS).await);
    wait_for_purge_past(&cluster, leader, follower_last).await;

    cluster.node_mut(follower).spawn();
    let deadline = Instant::now() + CRASH_TIMEOUT;
    while saved_purge(&cluster, follower) <= purged_before {
        assert!(
            Instant::now() < deadline,
            "node {follower} saved no purge\n{}",
            cluster.node(follower).log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let node = cluster.node_mut(follower);
    node.kill9().await;
    node.restart().await;
    cluster.wait_converged().await;
    let keys = all_keys(&cluster.node(follower).base_url()).await;
    assert!(keys == written, "every acknowledged key at its revision");
}
