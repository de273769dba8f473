//! The Rust client (`kv-client`) against real servers: typed calls, errors
//! with the server's code, failover past dead and refusing nodes, writes
//! applied once when their answer was lost, watches that resume and
//! resynchronize, and replay.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use integration_tests::{
    call, closed_port_url, silent_port_url, AnswerDroppingProxy, StubNode, TestCluster, TestServer,
};
use kv_client::{
    Client, Condition, Error, ErrorCode, KeyValue, MetadataOptions, Watch, WatchEvent, WriteOptions,
};
use schemas::{SubscriptionGroupConfig, TopicConfig};
use serde_json::{json, Value};

/// Flags that make the cleaner drop tombstones as soon as it can.
const EAGER_CLEANER: &[&str] = &[
    "--segment-bytes",
    "1024",
    "--min-compaction-lag-ms",
    "0",
    "--delete-retention-ms",
    "0",
    "--cleaner-interval-ms",
    "50",
    "--allow-short-compaction-lag",
];

fn client_of(server: &TestServer) -> Client {
    Client::new([server.url("")]).expect("a loopback URL is a valid endpoint")
}

/// The next event of a watch, within 10 s.
async fn next_event(
    events: &mut (impl futures::Stream<Item = kv_client::Result<WatchEvent>> + Unpin),
) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the watch goes on")
        .expect("no error")
}

#[tokio::test]
async fn keys_are_written_read_and_deleted_with_their_revisions() {
    let server = TestServer::start().await;
    let client = client_of(&server);

    let created = client
        .put("app/config", &json!({"retention": "7d"}))
        .await
        .unwrap();
    assert!(created.created);
    assert_eq!(created.version, 1);
    let entry = client
        .get("app/config")
        .await
        .unwrap()
        .expect("just written");
    assert_eq!(entry.value, json!({"retention": "7d"}));
    assert_eq!(
        (entry.create_revision, entry.mod_revision, entry.version),
        (created.revision, created.revision, 1)
    );

    let updated = client
        .cas("app/config", created.revision, &json!({"retention": "3d"}))
        .await
        .unwrap();
    assert_eq!((updated.version, updated.created), (2, false));
    let stale = client
        .cas("app/config", created.revision, &json!({}))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    assert_eq!(stale.current_revision(), Some(updated.revision));

    let taken = client.create("app/config", &1).await.unwrap_err();
    assert!(taken.is_precondition_failed(), "{taken}");
    assert!(client.create("app/lock", &"owner-1").await.unwrap().created);

    let deleted = client
        .delete("app/lock")
        .await
        .unwrap()
        .expect("it existed");
    assert!(deleted.revision > updated.revision);
    assert_eq!(client.delete("app/lock").await.unwrap(), None);
    assert_eq!(client.get("app/lock").await.unwrap(), None);
    let refused = client
        .delete_if("app/config", created.revision)
        .await
        .unwrap_err();
    assert!(refused.is_precondition_failed(), "{refused}");
    client
        .delete_if("app/config", updated.revision)
        .await
        .unwrap();
    assert_eq!(
        client
            .get_with("app/config", kv_client::Consistency::Stale)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn errors_carry_the_server_code_message_field_request_and_endpoint() {
    let server = TestServer::start().await;
    let client = client_of(&server);

    let error = client.put("topics/raw", &1).await.unwrap_err();
    let Error::Api(answer) = &error else {
        panic!("an API error, not {error:?}");
    };
    assert_eq!((answer.status, answer.code), (400, ErrorCode::ReservedKey));
    assert_eq!(answer.field.as_deref(), Some("key"));
    assert!(answer.message.contains("topics/raw"), "{answer}");
    assert_eq!(answer.request, "PUT /v1/kv/topics/raw");
    assert!(answer.endpoint.starts_with(&server.url("")), "{answer}");
    assert!(error.to_string().contains("reserved_key"), "{error}");
    assert!(!error.is_retryable());

    // A key the server would refuse is refused before it is sent.
    let invalid = client.get("a//b").await.unwrap_err();
    assert!(
        matches!(invalid, Error::Invalid { what: "key", .. }),
        "{invalid:?}"
    );
}

#[tokio::test]
async fn a_list_streams_every_key_under_its_prefix_across_pages() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let keys: Vec<String> = (0..1_050).map(|n| format!("many/k{n:04}")).collect();
    futures::stream::iter(keys.iter())
        .map(|key| {
            let client = client.clone();
            async move { client.put(key, &json!({ "key": key })).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    client.put("other/x", &0).await.unwrap();

    let listed: Vec<KeyValue> = client.list("many/").try_collect().await.unwrap();
    let listed_keys: Vec<&str> = listed.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(
        listed_keys, keys,
        "every key once, in order, over two pages"
    );
    assert_eq!(listed[7].value, json!({"key": "many/k0007"}));

    let page = client
        .list_page("many/", Some("many/k1040"), 100)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 9);
    assert!(!page.more);
    assert!(page.revision >= listed.iter().map(|e| e.mod_revision).max().unwrap());
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped_and_the_call_succeeds() {
    let server = TestServer::start().await;
    let client = Client::new([closed_port_url(), server.url("")]).unwrap();

    let written = client.put("failover/a", &1).await.unwrap();
    assert_eq!(written.version, 1);
    assert_eq!(
        client.get("failover/a").await.unwrap().unwrap().value,
        json!(1)
    );
    let listed: Vec<KeyValue> = client.list("failover/").try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(client.cluster_status().await.unwrap().leader, Some(1));
}

/// A first endpoint that takes the connection and never answers (a
/// stopped process) does not take the whole call: each attempt gets a
/// share of the deadline, so the next endpoint answers within it. The
/// first attempt used to take all of it.
#[tokio::test]
async fn a_silent_first_endpoint_is_left_within_the_calls_deadline() {
    let server = TestServer::start().await;
    let (status, body) = call(&server, "PUT", "/v1/kv/failover/silent", Some(json!(1))).await;
    assert!(status < 300, "{status} {body}");
    let client = Client::builder([silent_port_url(), server.url("")])
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let entry = client.get("failover/silent").await.unwrap();
    assert_eq!(entry.map(|entry| entry.value), Some(json!(1)));
}

/// A backup asked of endpoints whose first takes the connection and never
/// answers comes from the next: each node is asked whether it answers at
/// all before it is given the minutes a backup may take to start. The
/// stopped node used to hold the call for those minutes.
#[tokio::test]
async fn a_backup_passes_over_a_silent_first_endpoint() {
    let server = TestServer::start().await;
    let client = Client::builder([silent_port_url(), server.url("")])
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let backup = tokio::time::timeout(Duration::from_secs(30), client.snapshot())
        .await
        .expect("the backup started within 30 s")
        .unwrap();
    assert_eq!(backup.endpoint().trim_end_matches('/'), server.url(""));
}

/// Puts 1 at `key` through node `via`.
async fn put(cluster: &TestCluster, via: u64, key: &str) {
    let path = format!("/v1/kv/{key}");
    let (status, body) = call(cluster.node(via), "PUT", &path, Some(json!(1))).await;
    assert!(status < 300, "{key}: {status} {body}");
}

/// A watch whose node stops answering (a stopped process) moves on: the
/// next poll starts past the endpoint that failed. Every poll used to
/// start at the stopped node again, until the watch gave up.
#[tokio::test]
async fn a_watch_leaves_a_node_that_stopped_answering() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    // Every node serves reads, so the watch starts on the first endpoint.
    cluster.wait_converged().await;
    let stopped = cluster.follower_of(leader);
    let mut endpoints = vec![cluster.node(stopped).url("")];
    endpoints.extend(
        cluster
            .ids()
            .into_iter()
            .filter(|id| *id != stopped)
            .map(|id| cluster.node(id).url("")),
    );
    let client = Client::builder(endpoints)
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let watch = Watch::prefix("moving/").poll_wait(Duration::from_millis(500));
    let mut events = client.watch(watch).await.unwrap();
    // One event through the first node, so that the next poll waits there.
    put(&cluster, leader, "moving/first").await;
    let first = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(WatchEvent::Put(_))))),
        "{first:?}"
    );

    cluster.node_mut(stopped).pause();
    put(&cluster, leader, "moving/next").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failed = 0;
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.next()).await {
            Ok(Some(Ok(WatchEvent::Put(entry)))) => break entry,
            Ok(Some(Ok(other))) => panic!("{other:?}"),
            // A poll at the stopped node failed; the stream goes on.
            Ok(Some(Err(_))) => failed += 1,
            Ok(None) => panic!("the watch ended after {failed} failed polls"),
            Err(_) => panic!("no event within a minute ({failed} failed polls)"),
        }
    };
    cluster.node_mut(stopped).resume();
    assert_eq!(seen.key, "moving/next");
    assert!(
        failed <= 1,
        "{failed} polls failed before the watch moved on"
    );
}

#[tokio::test]
async fn a_node_answering_503_is_passed_over() {
    let server = TestServer::start().await;
    let refusing = StubNode::answering(503, "unavailable", "no leader is known yet").await;
    let client = Client::builder([refusing.url(), server.url("")])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();

    client.put("failover/b", &2).await.unwrap();
    assert_eq!(
        client.get("failover/b").await.unwrap().unwrap().value,
        json!(2)
    );
    assert!(
        refusing.requests() >= 1,
        "the refusing node was asked first"
    );
}

/// A round of attempts that failed pauses at least for the longest
/// `Retry-After` any of its answers gave, even past the client's own
/// backoff: it used to take only the last attempt's (none, from a node
/// that refused the connection) and cap it at the backoff's maximum.
#[tokio::test]
async fn a_round_of_failed_attempts_waits_out_the_servers_retry_after() {
    let busy = StubNode::answering(503, "unavailable", "no leader is known yet").await;
    let client = Client::builder([busy.url(), closed_port_url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .max_attempts(3)
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let started = Instant::now();
    client
        .get("retry/after")
        .await
        .expect_err("no node answers");
    let took = started.elapsed();
    // Two attempts, a pause, a third: the pause is the stub's Retry-After: 1.
    assert!(took >= Duration::from_millis(900), "retried after {took:?}");
    assert!(busy.requests() >= 2, "asked again after the pause");
}

#[tokio::test]
async fn a_node_out_of_space_is_passed_over_and_when_all_are_the_507_is_the_answer() {
    let server = TestServer::start().await;
    let full = StubNode::answering(
        507,
        "no_space",
        "no space left on /data/raft: this node takes no write until it has room",
    )
    .await;
    let client = Client::new([full.url(), server.url("")]).unwrap();
    assert_eq!(client.get("space/a").await.unwrap(), None);
    assert_eq!(full.requests(), 1, "the full node was asked first, once");
    client.put("space/a", &1).await.unwrap();

    let also_full = StubNode::answering(507, "no_space", "the NOSPACE alarm is raised").await;
    let client = Client::new([full.url(), also_full.url()]).unwrap();
    let error = client.put("space/b", &1).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NoSpace), "{error}");
    assert_eq!(error.status(), Some(507));
    assert!(!error.is_retryable(), "{error}");
}

#[tokio::test]
async fn writes_go_to_the_leader_a_ready_node_names() {
    let server = TestServer::start().await;
    // A node that is ready and says the leader is `server`; it answers
    // every request so, and a write sent to it would not decode.
    let ready =
        json!({"status": "ready", "node_id": 2, "leader": 1, "leader_addr": server.url("")});
    let follower = StubNode::answering_error(200, &ready).await;
    let client = Client::new([follower.url(), server.url("")]).unwrap();

    client.put("ready/a", &1).await.unwrap();
    assert_eq!(follower.requests(), 1, "asked /readyz only");
    let (status, entry) = call(&server, "GET", "/v1/kv/ready/a", None).await;
    assert_eq!((status, &entry["value"]), (200, &json!(1)));
}

#[tokio::test]
async fn a_503_naming_the_leader_sends_the_next_attempt_there() {
    let server = TestServer::start().await;
    let not_leader = json!({"error": {
        "code": "not_leader",
        "message": "this node is not the leader",
        "leader": {"id": 1, "addr": server.url("")},
    }});
    let follower = StubNode::answering_error(503, &not_leader).await;
    // The dead node sits between the follower and the leader: a hint-less
    // rotation would try it before the leader.
    let dead = closed_port_url();
    let client = Client::builder([follower.url(), dead, server.url("")])
        .max_attempts(2)
        .build()
        .unwrap();

    let entry = client.get("anything").await.unwrap();
    assert_eq!(entry, None, "answered by the leader on the second attempt");
}

#[tokio::test]
async fn the_servers_own_504_is_its_answer_and_not_retried() {
    let server = TestServer::start().await;
    let slow = StubNode::answering(504, "not_caught_up", "node 9 did not catch up").await;
    let client = Client::new([slow.url(), server.url("")]).unwrap();

    let error = client.get("anything").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotCaughtUp), "{error}");
    assert_eq!(error.status(), Some(504));
    assert_eq!(slow.requests(), 1, "asked once, not passed on");
}

#[tokio::test]
async fn a_call_with_no_reachable_endpoint_gives_up_within_its_deadline() {
    let client = Client::builder([closed_port_url(), closed_port_url()])
        .deadline(Duration::from_secs(2))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .build()
        .unwrap();

    let started = Instant::now();
    let error = client.put("nowhere/a", &1).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    let Error::Unavailable { attempts, last, .. } = &error else {
        panic!("gave up as unavailable, not {error:?}");
    };
    assert!(*attempts >= 2, "both endpoints were tried: {error}");
    assert!(matches!(**last, Error::Transport { .. }), "{last:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_retried_with_its_key_and_applied_once() {
    let server = TestServer::start().await;
    let proxy = AnswerDroppingProxy::start(server.addr(), "PUT", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();

    let written = client.put("retry/a", &json!({"n": 1})).await.unwrap();
    assert_eq!(proxy.dropped(), 1, "the first answer was lost");
    let entry = client_of(&server).get("retry/a").await.unwrap().unwrap();
    assert_eq!(entry.version, 1, "applied once, not once per attempt");
    assert_eq!(
        entry.mod_revision, written.revision,
        "the retry answered the first result"
    );
    assert!(written.created);

    // A conditional write too: the retry is not refused by its own success.
    let proxy = AnswerDroppingProxy::start(server.addr(), "PUT", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let created = client.create("retry/lock", &"owner-1").await.unwrap();
    assert_eq!(proxy.dropped(), 1);
    let updated = client
        .cas("retry/a", written.revision, &json!({"n": 2}))
        .await;
    assert_eq!(updated.unwrap().version, 2);
    let lock = client_of(&server).get("retry/lock").await.unwrap().unwrap();
    assert_eq!((lock.version, lock.mod_revision), (1, created.revision));
}

#[tokio::test]
async fn a_delete_whose_answer_was_lost_answers_its_first_result() {
    let server = TestServer::start().await;
    client_of(&server).put("retry/d", &1).await.unwrap();
    let proxy = AnswerDroppingProxy::start(server.addr(), "DELETE", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();

    let deleted = client.delete("retry/d").await.unwrap();
    assert_eq!(proxy.dropped(), 1);
    assert!(
        deleted.is_some(),
        "not 'no such key': the retry got the first result"
    );
}

#[tokio::test]
async fn the_same_idempotency_key_twice_returns_the_first_result() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let options = WriteOptions::new().idempotency_key(uuid::Uuid::new_v4());

    let first = client.put_with("idem/k", &1, options).await.unwrap();
    let again = client.put_with("idem/k", &1, options).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(client.get("idem/k").await.unwrap().unwrap().version, 1);
    let other = client.put("idem/k", &2).await.unwrap();
    assert_eq!(other.version, 2);
}

#[tokio::test]
async fn topics_are_typed_validated_and_written_with_conditions() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let mut orders = TopicConfig::new("orders");
    orders.write_queue_nums = 8;
    orders.read_queue_nums = 8;
    orders
        .attributes
        .insert("message.type".into(), "FIFO".into());

    let created = client.create_topic(&orders).await.unwrap();
    assert!(created.created);
    let stored = client.get_topic("orders").await.unwrap().unwrap();
    assert_eq!(stored.value, orders);
    assert_eq!(stored.mod_revision, created.revision);
    let again = client.create_topic(&orders).await.unwrap_err();
    assert!(again.is_precondition_failed(), "{again}");

    let mut read_only = orders.clone();
    read_only.perm = 4;
    let options = MetadataOptions::new().condition(Condition::ModRevision(stored.mod_revision));
    client.put_topic_with(&read_only, options).await.unwrap();
    let lost_race = client.put_topic_with(&orders, options).await.unwrap_err();
    assert!(lost_race.is_precondition_failed(), "{lost_race}");

    let invalid = client
        .put_topic(&TopicConfig {
            write_queue_nums: 0,
            ..TopicConfig::new("empty")
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Some(ErrorCode::OutOfRange));
    assert!(
        matches!(&invalid, Error::Api(answer) if answer.field.as_deref() == Some("writeQueueNums")),
        "{invalid}"
    );

    let system = TopicConfig::new("TBW102");
    let refused = client.put_topic(&system).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::SystemName), "{refused}");
    let options = MetadataOptions::new().allow_system(true);
    client.put_topic_with(&system, options).await.unwrap();

    let names: Vec<String> = client
        .list_topics()
        .map_ok(|topic| topic.topic_name)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(names, ["TBW102", "orders"]);
    assert!(client.delete_topic("orders").await.unwrap().is_some());
    assert!(client.delete_topic("orders").await.unwrap().is_none());
    assert!(client.get_topic("orders").await.unwrap().is_none());
}

#[tokio::test]
async fn subscription_groups_are_typed_and_listed() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let mut group = SubscriptionGroupConfig::new("order-consumers");
    group.retry_max_times = 3;
    group.consume_message_orderly = true;

    client.create_subscription(&group).await.unwrap();
    let stored = client
        .get_subscription("order-consumers")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, group);
    let tools = SubscriptionGroupConfig::new("TOOLS_CONSUMER");
    let refused = client.put_subscription(&tools).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::SystemName));
    client
        .put_subscription_with(&tools, MetadataOptions::new().allow_system(true))
        .await
        .unwrap();
    group.retry_max_times = 5;
    client.put_subscription(&group).await.unwrap();

    let groups: Vec<SubscriptionGroupConfig> =
        client.list_subscriptions().try_collect().await.unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1].retry_max_times, 5);
    // A system group is deleted only when the call says it means one.
    let refused = client
        .delete_subscription("TOOLS_CONSUMER")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::SystemName));
    assert!(client
        .delete_subscription_with("TOOLS_CONSUMER", true)
        .await
        .unwrap()
        .is_some());
    assert!(client
        .get_subscription("TOOLS_CONSUMER")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn cluster_status_shows_the_single_node_leading_and_bogus_changes_fail_cleanly() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let written = client.put("cluster/a", &1).await.unwrap();

    // The status shows openraft's metrics, which follow the apply that
    // answered the write by a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status = client.cluster_status().await.unwrap();
        if status.revision >= written.revision || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((status.node_id, status.leader), (1, Some(1)));
    assert!(status.term >= 1);
    assert!(
        status.revision >= written.revision,
        "revision {} < the write's revision {}",
        status.revision,
        written.revision
    );
    let leader = status.leader_member().expect("the leader is a member");
    assert_eq!(leader.addr, server.url(""));
    assert!(leader.voter);

    // An address with a path is no node's address.
    let added = client
        .add_member(99, "http://127.0.0.1:1/not-a-node", "http://127.0.0.1:2")
        .await
        .unwrap_err();
    assert!(matches!(added.status(), Some(400..=599)), "{added}");
    assert!(
        added.code().is_some() && added.server_message().is_some(),
        "{added}"
    );
    let removed = client.remove_member(99).await.unwrap_err();
    assert!(matches!(removed.status(), Some(400..=599)), "{removed}");
}

#[tokio::test]
async fn a_key_watch_reports_puts_and_deletes_of_its_key_in_order() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let mut events = client
        .watch(Watch::key("watch/k").poll_wait(Duration::from_secs(5)))
        .await
        .unwrap();
    let first = client.put("watch/k", &1).await.unwrap();
    client.put("watch/k2", &"not this key").await.unwrap();
    client.put("other", &0).await.unwrap();

    let event = next_event(&mut events).await;
    let WatchEvent::Put(entry) = &event else {
        panic!("a put, not {event:?}");
    };
    assert_eq!((entry.key.as_str(), &entry.value), ("watch/k", &json!(1)));
    assert_eq!(event.revision(), first.revision);

    let deleted = client.delete("watch/k").await.unwrap().unwrap();
    assert_eq!(
        next_event(&mut events).await,
        WatchEvent::Delete {
            key: "watch/k".into(),
            revision: deleted.revision
        }
    );
}

#[tokio::test]
async fn a_prefix_watch_from_a_revision_delivers_every_change_after_it() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let start = client.put("app/a", &1).await.unwrap().revision;
    client.put("app/b", &2).await.unwrap();
    client.put("elsewhere", &3).await.unwrap();
    // A put of JSON null is a put, not a delete.
    client.put("app/c", &Value::Null).await.unwrap();

    let mut events = client
        .watch(Watch::prefix("app/").after(start))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(next_event(&mut events).await);
    }
    let keys: Vec<(String, Value)> = seen
        .iter()
        .map(|event| match event {
            WatchEvent::Put(entry) => (entry.key.clone(), entry.value.clone()),
            other => panic!("puts only: {other:?}"),
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("app/b".to_string(), json!(2)),
            ("app/c".to_string(), Value::Null)
        ]
    );
}

#[tokio::test]
async fn a_watch_far_behind_reads_on_without_waiting_on_pages_of_other_keys() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let start = client.put("quiet/a", &0).await.unwrap().revision;
    futures::stream::iter(0..1_100)
        .map(|n| {
            let client = client.clone();
            async move { client.put(&format!("busy/k{n}"), &n).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let written = client.put("quiet/b", &1).await.unwrap();

    // More than one page of other keys lies between `start` and the change.
    let mut events = client
        .watch(
            Watch::prefix("quiet/")
                .after(start)
                .poll_wait(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let event = next_event(&mut events).await;
    assert_eq!(event.revision(), written.revision);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "caught up in {:?}, not after a whole wait",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_watch_over_http2_shares_the_connection_and_works_alike() {
    let server = TestServer::start().await;
    let client = Client::builder([server.url("")])
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    let start = client.put("h2/a", &1).await.unwrap().revision;
    let mut first = client.watch(Watch::key("h2/a").after(start)).await.unwrap();
    let mut second = client
        .watch(Watch::prefix("h2/").after(start))
        .await
        .unwrap();
    let written = client.put("h2/a", &2).await.unwrap();
    assert_eq!(next_event(&mut first).await.revision(), written.revision);
    assert_eq!(next_event(&mut second).await.revision(), written.revision);
}

#[tokio::test]
async fn a_watch_resumes_from_its_index_after_the_server_restarts() {
    let mut server = TestServer::start().await;
    let client = Client::builder([server.url("")])
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .unwrap();
    let start = client.put("resume/a", &1).await.unwrap().revision;
    let mut events = client
        .watch(
            Watch::prefix("resume/")
                .after(start)
                .poll_wait(Duration::from_secs(2))
                .max_failures(20),
        )
        .await
        .unwrap();
    let before = client.put("resume/b", &2).await.unwrap();
    assert_eq!(next_event(&mut events).await.revision(), before.revision);

    server.restart().await;
    let after = client.put("resume/c", &3).await.unwrap();

    // Errors while the server was down may come first; then the change,
    // once, and nothing from before the restart again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        assert!(Instant::now() < deadline, "no event after the restart");
        match tokio::time::timeout(Duration::from_secs(20), events.next()).await {
            Ok(Some(Ok(event))) => break event,
            Ok(Some(Err(error))) => assert!(error.is_retryable(), "{error}"),
            Ok(None) => panic!("the watch ended"),
            Err(_) => panic!("no event after the restart"),
        }
    };
    let WatchEvent::Put(entry) = event else {
        panic!("a put: {event:?}");
    };
    assert_eq!(
        (entry.key.as_str(), entry.mod_revision),
        ("resume/c", after.revision)
    );
}

#[tokio::test]
async fn a_watch_below_the_tombstone_floor_resynchronizes_with_a_listing() {
    let server = TestServer::start_with(EAGER_CLEANER).await;
    let client = client_of(&server);
    let start = client.put("floor/a", &1).await.unwrap().revision;
    client.put("floor/b", &2).await.unwrap();
    client.delete("floor/a").await.unwrap();

    // Fill until the cleaner dropped the tombstone: the feed then refuses
    // to serve changes after `start`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut writes = 0u64;
    loop {
        assert!(
            Instant::now() < deadline && writes < 5_000,
            "the tombstone was never compacted away"
        );
        client
            .put(
                "filler/x",
                &json!({ "padding": "p".repeat(200), "n": writes }),
            )
            .await
            .unwrap();
        writes += 1;
        let answer = reqwest::get(server.url(&format!("/v1/changes?from={start}")))
            .await
            .unwrap();
        if answer.status() == 410 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut events = client
        .watch(Watch::prefix("floor/").after(start))
        .await
        .unwrap();
    let event = next_event(&mut events).await;
    let WatchEvent::Resync { revision, entries } = event else {
        panic!("a resync, not {event:?}");
    };
    let keys: Vec<&str> = entries.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys, ["floor/b"], "the current state, the deleted key gone");
    assert!(revision > start);

    // After the resync the watch goes on from the listing's revision.
    let written = client.put("floor/c", &3).await.unwrap();
    let event = next_event(&mut events).await;
    assert_eq!(event.revision(), written.revision, "{event:?}");
}

#[tokio::test]
async fn replay_from_zero_folds_into_exactly_the_listed_state() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    for n in 0..50 {
        client
            .put(&format!("replay/k{n:02}"), &json!({ "n": n }))
            .await
            .unwrap();
    }
    for n in (0..50).step_by(5) {
        client.delete(&format!("replay/k{n:02}")).await.unwrap();
    }
    client.put("replay/k01", &json!("changed")).await.unwrap();

    let mut replay = client.replay(0).await.unwrap();
    let end = replay.end_revision();
    let mut state = BTreeMap::new();
    let mut last_offset = 0;
    while let Some(record) = replay.try_next().await.unwrap() {
        assert!(record.offset > last_offset, "offsets increase");
        last_offset = record.offset;
        match record.value {
            Some(value) => state.insert(record.key, value),
            None => state.remove(&record.key),
        };
    }
    assert!(
        last_offset >= end - 1,
        "the replay reached the end: {last_offset} of {end}"
    );
    let listed: BTreeMap<String, Value> = client
        .list("")
        .map_ok(|entry| (entry.key, entry.value))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(state, listed);
    assert_eq!(state.len(), 40);

    // From an offset: only what changed at or after it.
    let tail: Vec<kv_client::Record> = client
        .replay(end)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].value, Some(json!("changed")));
}

/// A replay whose node dies mid-stream goes on at another endpoint; one
/// that is behind the revision the replay promised (`end_revision`) would
/// end the stream short of it without a word, so the replay asks again and
/// then fails, naming it. The second node here is a store of its own,
/// forever behind.
#[tokio::test]
async fn a_replay_resumed_on_a_node_behind_it_fails_rather_than_ending_short() {
    let mut ahead = TestServer::start().await;
    let behind = TestServer::start().await;
    // Far more than the sockets between them hold: the replay is mid-way
    // when its node dies.
    let value = json!("v".repeat(100_000));
    let writer = client_of(&ahead);
    for n in 0..200 {
        writer.put(&format!("r/k{n:03}"), &value).await.unwrap();
    }
    let other = client_of(&behind);
    for n in 0..10 {
        other.put(&format!("r/k{n:03}"), &json!(n)).await.unwrap();
    }
    let client = Client::new([ahead.url(""), behind.url("")]).expect("valid endpoints");
    let mut replay = client.replay(0).await.unwrap();
    let end = replay.end_revision();
    assert_eq!(end, 200);
    replay.try_next().await.unwrap().expect("a first record");
    ahead.kill9().await;
    let mut records = 1;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(30), replay.next())
            .await
            .expect("the replay ends within 30 s")
        {
            Some(Ok(_)) => records += 1,
            Some(Err(error)) => break error,
            None => panic!("the replay ended without error after {records} of {end} records"),
        }
    };
    assert!(
        error
            .to_string()
            .contains(&format!("short of the replay's {end}")),
        "{error}"
    );
}

/// A bootstrap whose answer was lost is retried with the secret the client
/// made, and answered the same root token: before, the retry was refused
/// (409) and the only copy of the secret was gone.
#[tokio::test]
async fn a_bootstrap_whose_answer_was_lost_gets_the_same_root_token() {
    let server = TestServer::start_with(&["--auth"]).await;
    let proxy = AnswerDroppingProxy::start(server.addr(), "POST", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    let root = client.acl_bootstrap().await.expect("the retry is answered");
    assert_eq!(proxy.dropped(), 1, "the first answer was lost");
    let as_root = Client::builder([server.url("")])
        .token(&root.token)
        .build()
        .unwrap();
    let tokens = as_root.tokens().await.expect("the root token works");
    assert_eq!(tokens.len(), 1);
}

/// A removal whose answer was lost finds the node gone when retried: the
/// call succeeds, where it said the node was not a member.
#[tokio::test]
async fn a_member_removal_whose_answer_was_lost_succeeds() {
    let cluster = integration_tests::TestCluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let gone = cluster.follower_of(leader);
    let proxy = AnswerDroppingProxy::start(cluster.node(leader).addr(), "DELETE", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    client
        .remove_member(gone)
        .await
        .expect("the removal is done");
    assert_eq!(proxy.dropped(), 1, "the first answer was lost");
    let members = cluster.members(leader).await;
    assert!(
        members.iter().all(|member| member.id != gone),
        "{members:?}"
    );
    let refused = client
        .remove_member(99)
        .await
        .expect_err("99 never was a member");
    assert_eq!(refused.code(), Some(kv_client::ErrorCode::MemberNotFound));
}
