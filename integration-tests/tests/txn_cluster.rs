//! Transactions on a 3-node cluster under a leader kill: a transfer
//! between two keys, run by 8 clients at once, conserves the sum, and no
//! reader, watcher or change-feed page ever sees one half of a transfer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_tests::TestCluster;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Clients transferring at once.
const CLIENTS: usize = 8;
/// Transfers each client makes, unless the run's deadline comes first.
const TRANSFERS_PER_CLIENT: usize = 40;
/// The two accounts and what they hold together.
const A: &str = "bank/a";
const B: &str = "bank/b";
const TOTAL: i64 = 1000;
/// How long the clients may run in all.
const RUN_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the transfers may take to go on without the killed leader.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of one request of a client, reader or watcher.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed request, or between two reads of a reader.
const POLL: Duration = Duration::from_millis(20);

/// What the clients, readers and the watcher share.
struct Run {
    urls: Vec<String>,
    client: reqwest::Client,
    deadline: Instant,
    /// Set when the readers and the watcher should finish.
    stop: AtomicBool,
    /// Transfers acknowledged as applied.
    transfers: AtomicUsize,
    /// Transfers sent whose outcome the run's deadline left unknown.
    unknown: AtomicUsize,
    /// Transfer attempts sent again because a node failed or lost the answer.
    resent: AtomicUsize,
}

/// `bank/` as a list page of `url` shows it: key → (value, mod_revision).
/// `None` when the node does not answer 200.
async fn read_accounts(run: &Run, url: &str, stale: bool) -> Option<BTreeMap<String, (i64, u64)>> {
    let consistency = if stale { "&consistency=stale" } else { "" };
    let response = run
        .client
        .get(format!("{url}/v1/kv?prefix=bank/{consistency}"))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let page: Value = response.json().await.ok()?;
    let accounts = page["entries"]
        .as_array()
        .expect("a list page has entries")
        .iter()
        .map(|entry| {
            let key = entry["key"].as_str().expect("key").to_string();
            let value = entry["value"].as_i64().expect("an account holds a number");
            let revision = entry["mod_revision"].as_u64().expect("mod_revision");
            (key, (value, revision))
        })
        .collect();
    Some(accounts)
}

/// The sum of the accounts, asserting both are there.
fn sum(accounts: &BTreeMap<String, (i64, u64)>, seen_by: &str) -> i64 {
    assert_eq!(
        accounts.keys().map(String::as_str).collect::<Vec<_>>(),
        [A, B],
        "{seen_by} saw {accounts:?}"
    );
    accounts.values().map(|(value, _)| value).sum()
}

/// Sends one transfer attempt, resending it with the same
/// `Idempotency-Key` through the next node while the answer is lost or a
/// node cannot serve it. `Some(succeeded)`, or `None` past the deadline.
async fn send_transfer(run: &Run, body: &Value, first_node: usize) -> Option<bool> {
    let key = uuid::Uuid::new_v4().to_string();
    for attempt in first_node.. {
        if attempt > first_node {
            run.resent.fetch_add(1, Ordering::SeqCst);
        }
        if Instant::now() >= run.deadline {
            return None;
        }
        let url = &run.urls[attempt % run.urls.len()];
        let response = run
            .client
            .post(format!("{url}/v1/txn"))
            .header("idempotency-key", key.as_str())
            .json(body)
            .send()
            .await;
        let response = match response {
            Ok(response) if response.status().is_server_error() => continue,
            Ok(response) => response,
            Err(_) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let status = response.status();
        let Ok(answer) = response.json::<Value>().await else {
            continue;
        };
        assert_eq!(status, 200, "a transfer was refused: {answer}");
        return Some(answer["succeeded"].as_bool().expect("succeeded"));
    }
    unreachable!("the loop ends by returning")
}

/// One client: reads both accounts, then moves an amount from one to the
/// other if neither changed since; again on a failed compare.
async fn transfer_loop(run: Arc<Run>, client: usize) {
    let mut attempt = client;
    for n in 0..TRANSFERS_PER_CLIENT {
        let amount = ((client * 7 + n * 13) % 50 + 1) as i64;
        let amount = if (client + n).is_multiple_of(2) {
            amount
        } else {
            -amount
        };
        loop {
            if Instant::now() >= run.deadline {
                return;
            }
            attempt += 1;
            let url = &run.urls[attempt % run.urls.len()];
            let Some(accounts) = read_accounts(&run, url, false).await else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            sum(&accounts, &format!("client {client}"));
            let (a, a_revision) = accounts[A];
            let (b, b_revision) = accounts[B];
            let body = json!({
                "compare": [
                    {"key": A, "target": "mod_revision", "op": "=", "value": a_revision},
                    {"key": B, "target": "mod_revision", "op": "=", "value": b_revision}
                ],
                "success": [
                    {"put": {"key": A, "value": a - amount}},
                    {"put": {"key": B, "value": b + amount}}
                ]
            });
            match send_transfer(&run, &body, attempt).await {
                Some(true) => {
                    run.transfers.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Some(false) => continue,
                None => {
                    run.unknown.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Lists `bank/` on node `url` until told to stop, from its own view and
/// linearizably in turn, asserting the sum of every page; returns how
/// many pages it checked.
async fn read_loop(run: Arc<Run>, url: String) -> usize {
    let mut checked = 0;
    while !run.stop.load(Ordering::SeqCst) {
        match read_accounts(&run, &url, checked % 2 == 0).await {
            Some(accounts) => {
                assert_eq!(
                    sum(&accounts, &url),
                    TOTAL,
                    "a reader of {url} saw {accounts:?}"
                );
                checked += 1;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
    checked
}

/// Folds the change feed of `bank/` (long-polling, through any node) until
/// told to stop and then to its end, asserting after each page that every
/// write in it holds both accounts and that the sum holds; returns the
/// folded accounts and the number of pages.
async fn watch_loop(run: Arc<Run>) -> (BTreeMap<String, i64>, usize) {
    let mut state = BTreeMap::new();
    let mut from = 0;
    let mut pages = 0;
    let mut node = 0;
    loop {
        let stopping = run.stop.load(Ordering::SeqCst);
        let wait = if stopping { "" } else { "&wait=1s" };
        let url = format!(
            "{}/v1/changes?prefix=bank/&from={from}{wait}",
            run.urls[node]
        );
        let page = match run.client.get(url).send().await {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.ok(),
            _ => None,
        };
        let Some(page) = page else {
            node = (node + 1) % run.urls.len();
            tokio::time::sleep(POLL).await;
            continue;
        };
        let records = page["records"].as_array().expect("records");
        let mut writes: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for record in records {
            let revision = record["revision"].as_u64().expect("revision");
            let key = record["key"].as_str().expect("key");
            writes.entry(revision).or_default().push(key);
            state.insert(key.to_string(), record["value"].as_i64().expect("a number"));
        }
        for (revision, keys) in &writes {
            assert_eq!(
                keys,
                &[A, B],
                "a page holds half of write {revision}: {page}"
            );
        }
        if !records.is_empty() {
            pages += 1;
            assert_eq!(
                state.values().sum::<i64>(),
                TOTAL,
                "the feed folds to {state:?} after {page}"
            );
        }
        from = from.max(page["next"].as_u64().expect("next"));
        if stopping && records.is_empty() && page["more"] != true {
            return (state, pages);
        }
    }
}

#[tokio::test]
async fn concurrent_transfers_through_a_leader_kill_conserve_the_sum_and_are_never_seen_by_halves()
{
    let mut cluster = TestCluster::start(3, &[]).await;
    let ids = cluster.ids();
    let urls: Vec<String> = ids.iter().map(|id| cluster.node(*id).base_url()).collect();
    let leader = cluster.leader().await;
    let opened = cluster
        .node(leader)
        .client()
        .post(cluster.node(leader).url("/v1/txn"))
        .json(&json!({"success": [
            {"put": {"key": A, "value": TOTAL / 2}},
            {"put": {"key": B, "value": TOTAL / 2}}
        ]}))
        .send()
        .await
        .expect("the leader answers");
    assert_eq!(opened.status(), 200, "the accounts open");
    // Readers look at each node's own view: every node must hold the
    // accounts before they start.
    cluster.wait_converged().await;

    let run = Arc::new(Run {
        urls: urls.clone(),
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds"),
        deadline: Instant::now() + RUN_TIMEOUT,
        stop: AtomicBool::new(false),
        transfers: AtomicUsize::new(0),
        unknown: AtomicUsize::new(0),
        resent: AtomicUsize::new(0),
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| tokio::spawn(transfer_loop(Arc::clone(&run), client)))
        .collect();
    let readers: Vec<_> = urls
        .iter()
        .map(|url| tokio::spawn(read_loop(Arc::clone(&run), url.clone())))
        .collect();
    let watcher = tokio::spawn(watch_loop(Arc::clone(&run)));

    // Kill the leader a third of the way in; the transfers must go on
    // without it before it comes back.
    let planned = CLIENTS * TRANSFERS_PER_CLIENT;
    wait_for_transfers(&run, planned / 3, RUN_TIMEOUT).await;
    let killed = cluster.leader().await;
    cluster.node_mut(killed).kill9().await;
    let at_kill = run.transfers.load(Ordering::SeqCst);
    wait_for_transfers(&run, at_kill + 10, FAILOVER_TIMEOUT).await;
    cluster.node_mut(killed).restart().await;

    for client in clients {
        client.await.expect("a client panicked");
    }
    let transfers = run.transfers.load(Ordering::SeqCst);
    let unknown = run.unknown.load(Ordering::SeqCst);
    assert!(
        transfers > at_kill + 10,
        "{transfers} transfers in all, {at_kill} at the kill"
    );
    cluster.wait_converged().await;
    run.stop.store(true, Ordering::SeqCst);
    let mut read_pages = Vec::new();
    for (reader, url) in readers.into_iter().zip(&urls) {
        let checked = reader.await.expect("a reader panicked");
        assert!(checked > 0, "the reader of {url} never read");
        read_pages.push(checked);
    }
    let (watched, pages) = watcher.await.expect("the watcher panicked");
    assert!(pages > 1, "the watcher saw {pages} pages");
    eprintln!(
        "{transfers} transfers ({at_kill} before node {killed} was killed, {unknown} unknown, {} resent), \
         reader pages {read_pages:?}, watcher pages {pages}",
        run.resent.load(Ordering::SeqCst)
    );

    // Every node holds the same accounts, summing to the total, and its
    // replay folds to them; the watcher folded to them too.
    let mut first: Option<BTreeMap<String, Value>> = None;
    for id in &ids {
        let accounts = cluster.keys(*id, "bank/").await;
        let values: BTreeMap<String, i64> = accounts
            .iter()
            .map(|(key, value)| (key.clone(), value.as_i64().expect("a number")))
            .collect();
        assert_eq!(values.values().sum::<i64>(), TOTAL, "node {id}: {values:?}");
        assert_eq!(values, watched, "node {id} and the watcher differ");
        let replayed: BTreeMap<String, Value> = cluster
            .replayed_state(*id)
            .await
            .into_iter()
            .filter(|(key, _)| key.starts_with("bank/"))
            .map(|(key, (value, _))| (key, value))
            .collect();
        assert_eq!(replayed, accounts, "node {id}'s replay folds elsewhere");
        if let Some(first) = &first {
            assert_eq!(&accounts, first, "node {id} differs from node {}", ids[0]);
        }
        first.get_or_insert(accounts);
    }

    // Read a page of one record at a time, each node's feed still
    // answers each transfer whole.
    for id in &ids {
        let writes = feed_writes_one_record_at_a_time(&cluster, *id).await;
        assert_eq!(writes, transfers + 1, "node {id}'s feed");
    }

    // In the topic, each transfer is one write of both accounts at two
    // consecutive offsets with one revision, and every acknowledged
    // transfer is there once.
    let units = transfer_units(&cluster, ids[0]).await;
    let moved = units - 1; // the opening write
    assert!(
        (transfers..=transfers + unknown).contains(&moved),
        "the topic holds {moved} transfers; {transfers} were acknowledged, {unknown} unknown"
    );
}

/// Waits until `count` transfers were acknowledged.
async fn wait_for_transfers(run: &Run, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while run.transfers.load(Ordering::SeqCst) < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} transfers within {limit:?}",
            run.transfers.load(Ordering::SeqCst)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The writes of `bank/` in node `id`'s topic, each checked to be both
/// accounts at consecutive offsets sharing the revision of the last.
async fn transfer_units(cluster: &TestCluster, id: u64) -> usize {
    let node = cluster.node(id);
    let replay = node
        .client()
        .get(node.url("/v1/topic/records?from=0"))
        .send()
        .await
        .expect("replay answers")
        .text()
        .await
        .expect("replay reads");
    let mut units: BTreeMap<u64, Vec<(u64, String)>> = BTreeMap::new();
    for line in replay.lines() {
        let record: Value = serde_json::from_str(line).expect("one JSON record per line");
        let key = record["key"].as_str().expect("key");
        if !key.starts_with("bank/") {
            continue;
        }
        let revision = record["revision"].as_u64().expect("revision");
        let offset = record["offset"].as_u64().expect("offset");
        units
            .entry(revision)
            .or_default()
            .push((offset, key.to_string()));
    }
    for (revision, records) in &units {
        let expected = vec![(revision - 1, A.to_string()), (*revision, B.to_string())];
        assert_eq!(records, &expected, "write {revision} in node {id}'s topic");
    }
    units.len()
}

/// Reads node `id`'s change feed of `bank/` from 0 with `limit=1`, checking
/// that every page holds exactly one write, both accounts, and that `next`
/// is its revision; returns how many writes it read.
async fn feed_writes_one_record_at_a_time(cluster: &TestCluster, id: u64) -> usize {
    let node = cluster.node(id);
    let mut from = 0;
    let mut writes = 0;
    loop {
        let url = node.url(&format!("/v1/changes?prefix=bank/&from={from}&limit=1"));
        let page: Value = node
            .client()
            .get(url)
            .send()
            .await
            .expect("the feed answers")
            .json()
            .await
            .expect("a feed page is JSON");
        let records = page["records"].as_array().expect("records");
        if records.is_empty() {
            assert_eq!(page["more"], false, "node {id}: {page}");
            return writes;
        }
        let revision = records[0]["revision"].as_u64().expect("revision");
        let keys: Vec<&str> = records
            .iter()
            .inspect(|record| assert_eq!(record["revision"], revision, "node {id}: {page}"))
            .map(|record| record["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, [A, B], "node {id}'s page holds half a write: {page}");
        assert_eq!(page["next"], revision, "node {id}: {page}");
        from = revision;
        writes += 1;
    }
}
