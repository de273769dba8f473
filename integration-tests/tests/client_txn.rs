//! Transactions through the Rust client and kvctl against real servers:
//! the builder's branches and reads, a refusal with the server's code and
//! field, a retry applied once, replays and watches that see a transaction
//! whole and with one revision, and `kvctl txn` from a file and from stdin.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use integration_tests::kvctl::kvctl_binary;
use integration_tests::{kvctl, AnswerDroppingProxy, TestServer};
use kv_client::{
    Client, Compare, CompareOp, Error, ErrorCode, Record, TxnOp, TxnOpResult, Watch, WatchEvent,
};
use serde_json::{json, Value};

fn client_of(server: &TestServer) -> Client {
    Client::new([server.url("")]).expect("a loopback URL is a valid endpoint")
}

/// The keys and values a get of a transaction read.
fn read_values(result: &TxnOpResult) -> Vec<(String, Value)> {
    match result {
        TxnOpResult::Get { kvs, .. } => kvs
            .iter()
            .map(|entry| (entry.key.clone(), entry.value.clone()))
            .collect(),
        other => panic!("not a get's result: {other:?}"),
    }
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
async fn the_success_branch_runs_when_the_compares_hold_and_the_failure_branch_otherwise() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let a = client.put("bank/a", &100).await.unwrap();

    let moved = client
        .txn()
        .when(Compare::mod_revision(
            "bank/a",
            CompareOp::Equal,
            a.revision,
        ))
        .when(Compare::missing("bank/b"))
        .and_then([
            TxnOp::put("bank/a", &90).unwrap(),
            TxnOp::put("bank/b", &10).unwrap(),
            TxnOp::get_prefix("bank/"),
        ])
        .or_else(TxnOp::get("bank/a"))
        .commit()
        .await
        .unwrap();
    assert!(moved.succeeded, "{moved:?}");
    let revision = moved.revision;
    assert!(revision > a.revision);
    assert_eq!(moved.results[0], TxnOpResult::Put { revision });
    assert_eq!(moved.results[1], TxnOpResult::Put { revision });
    assert_eq!(
        read_values(&moved.results[2]),
        [("bank/a".into(), json!(90)), ("bank/b".into(), json!(10))],
        "a get sees the writes of the ops before it"
    );
    for key in ["bank/a", "bank/b"] {
        let entry = client.get(key).await.unwrap().expect("written");
        assert_eq!(
            entry.mod_revision, revision,
            "{key}: one revision for the whole write"
        );
    }

    // The same compares again: bank/a has moved on, so the failure ops run.
    let stale = client
        .txn()
        .when(Compare::mod_revision(
            "bank/a",
            CompareOp::Equal,
            a.revision,
        ))
        .and_then(TxnOp::delete("bank/a"))
        .or_else([TxnOp::get("bank/a"), TxnOp::get("bank/none")])
        .commit()
        .await
        .unwrap();
    assert!(!stale.succeeded);
    assert_eq!(
        read_values(&stale.results[0]),
        [("bank/a".into(), json!(90))]
    );
    assert_eq!(read_values(&stale.results[1]), []);
    assert_eq!(
        stale.revision, revision,
        "a read-only branch writes nothing"
    );
    assert!(client.get("bank/a").await.unwrap().is_some(), "not deleted");

    // Value and version compares, and a prefix delete.
    let cleared = client
        .txn()
        .when([
            Compare::value("bank/b", CompareOp::Less, &11).unwrap(),
            Compare::version("bank/a", CompareOp::Equal, 2),
            Compare::exists("bank/a"),
        ])
        .and_then(TxnOp::delete_prefix("bank/"))
        .commit()
        .await
        .unwrap();
    assert!(cleared.succeeded);
    assert_eq!(cleared.results, [TxnOpResult::Delete { deleted: 2 }]);
    assert_eq!(
        client.list("bank/").try_collect::<Vec<_>>().await.unwrap(),
        []
    );
}

#[tokio::test]
async fn a_refused_transaction_is_an_api_error_with_the_code_and_field() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let error = client
        .txn()
        .and_then([
            TxnOp::put("dup/a", &1).unwrap(),
            TxnOp::put("dup/a", &2).unwrap(),
        ])
        .commit()
        .await
        .unwrap_err();
    let Error::Api(answer) = &error else {
        panic!("not the server's answer: {error:?}");
    };
    assert_eq!((answer.status, answer.code), (400, ErrorCode::DuplicateKey));
    assert_eq!(answer.field.as_deref(), Some("success[1].put.key"));
    assert!(error.to_string().contains("POST /v1/txn"), "{error}");
    assert!(
        client.get("dup/a").await.unwrap().is_none(),
        "nothing applied"
    );
}

#[tokio::test]
async fn a_transaction_whose_answer_was_lost_is_retried_with_its_key_and_applied_once() {
    let server = TestServer::start().await;
    let proxy = AnswerDroppingProxy::start(server.addr(), "POST", 1).await;
    let client = Client::builder([proxy.url()])
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();

    let answer = client
        .txn()
        .when(Compare::missing("once/a"))
        .and_then([
            TxnOp::put("once/a", &1).unwrap(),
            TxnOp::put("once/b", &1).unwrap(),
        ])
        .commit()
        .await
        .unwrap();
    assert_eq!(proxy.dropped(), 1, "the first answer was lost");
    assert!(
        answer.succeeded,
        "the retry answers the first outcome: {answer:?}"
    );
    assert!(answer.deduplicated, "{answer:?}");
    for key in ["once/a", "once/b"] {
        let entry = client_of(&server).get(key).await.unwrap().expect("written");
        assert_eq!(
            entry.version, 1,
            "{key}: applied once, not once per attempt"
        );
        assert_eq!(entry.mod_revision, answer.revision);
    }
}

#[tokio::test]
async fn a_replay_of_transactions_folds_to_the_listed_state_with_each_write_whole() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    for n in 0..10 {
        client.put(&format!("mix/k{n}"), &n).await.unwrap();
        client
            .txn()
            .and_then([
                TxnOp::put(format!("mix/t{n}/a"), &n).unwrap(),
                TxnOp::put(format!("mix/t{n}/b"), &n).unwrap(),
                TxnOp::put(format!("mix/k{}", (n + 1) % 10), &json!({"by": n})).unwrap(),
            ])
            .commit()
            .await
            .unwrap();
    }
    client
        .txn()
        .and_then([
            TxnOp::delete_prefix("mix/t3/"),
            TxnOp::put("mix/last", &true).unwrap(),
        ])
        .commit()
        .await
        .unwrap();

    let records: Vec<Record> = client.replay(0).await.unwrap().try_collect().await.unwrap();
    let mut state = BTreeMap::new();
    let mut revisions = BTreeMap::new();
    let mut finished_writes = Vec::new();
    for record in &records {
        assert!(record.offset <= record.revision, "{record:?}");
        // A write's records come together: once a later write shows,
        // no record of an earlier one follows.
        if finished_writes.last() != Some(&record.revision) {
            assert!(
                !finished_writes.contains(&record.revision),
                "the records of write {} are split: {records:?}",
                record.revision
            );
            finished_writes.push(record.revision);
        }
        match &record.value {
            Some(value) => {
                state.insert(record.key.clone(), value.clone());
                revisions.insert(record.key.clone(), record.revision);
            }
            None => {
                state.remove(&record.key);
                revisions.remove(&record.key);
            }
        }
    }
    let listed: Vec<kv_client::KeyValue> = client.list("").try_collect().await.unwrap();
    let listed_state: BTreeMap<String, Value> = listed
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect();
    assert_eq!(state, listed_state);
    for entry in &listed {
        assert_eq!(
            revisions[&entry.key], entry.mod_revision,
            "{}: a record's revision is its key's mod_revision",
            entry.key
        );
    }

    // From an offset inside the last transaction: it starts at the
    // transaction's first record.
    let last = client.get("mix/last").await.unwrap().unwrap().mod_revision;
    let tail: Vec<Record> = client
        .replay(last)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(!tail.is_empty());
    assert!(
        tail.iter().all(|record| record.revision == last),
        "{tail:?}"
    );
    assert!(tail[0].offset < last, "the write's first record: {tail:?}");
    assert!(tail
        .iter()
        .any(|record| record.key == "mix/t3/a" && record.is_delete()));
}

#[tokio::test]
async fn a_prefix_watch_receives_a_transaction_of_five_keys_together_with_its_revision() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    client.put("other/x", &0).await.unwrap();
    let mut events = client
        .watch(Watch::prefix("w/").poll_wait(Duration::from_secs(2)))
        .await
        .unwrap();

    let ops: Vec<TxnOp> = (0..5)
        .map(|n| TxnOp::put(format!("w/{n}"), &n).unwrap())
        .chain([TxnOp::put("other/x", &1).unwrap()])
        .collect();
    let written = client.txn().and_then(ops).commit().await.unwrap();
    client.put("w/after", &"later").await.unwrap();

    let mut keys = Vec::new();
    for _ in 0..5 {
        match next_event(&mut events).await {
            WatchEvent::Put(entry) => {
                assert_eq!(entry.mod_revision, written.revision, "{entry:?}");
                keys.push(entry.key);
            }
            other => panic!("not a put: {other:?}"),
        }
    }
    keys.sort();
    assert_eq!(keys, ["w/0", "w/1", "w/2", "w/3", "w/4"]);
    let after = next_event(&mut events).await;
    assert!(after.revision() > written.revision, "{after:?}");
    assert!(matches!(&after, WatchEvent::Put(entry) if entry.key == "w/after"));

    // A watch from inside the transaction's offsets gets all of it, not
    // only the records past that offset.
    let mut from_inside = client
        .watch(Watch::prefix("w/").after(written.revision - 2))
        .await
        .unwrap();
    let mut revisions = Vec::new();
    for _ in 0..6 {
        revisions.push(next_event(&mut from_inside).await.revision());
    }
    assert_eq!(revisions[..5], [written.revision; 5]);
}

#[tokio::test]
async fn kvctl_txn_reads_a_file_or_stdin_and_a_refusal_exits_1_naming_the_field() {
    let server = TestServer::start().await;
    let client = client_of(&server);
    let a = client.put("ctl/a", &1).await.unwrap();
    let dir = std::env::temp_dir().join(format!("kvctl-txn-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("move.json");
    let request = json!({
        "compare": [{"key": "ctl/a", "target": "mod_revision", "op": "=", "value": a.revision}],
        "success": [{"put": {"key": "ctl/a", "value": 2}}, {"put": {"key": "ctl/b", "value": 3}}],
        "failure": [{"get": {"key": "ctl/a"}}],
    });
    std::fs::write(&file, request.to_string()).unwrap();
    let path = file.display().to_string();

    let run = kvctl(&server.url(""), &["txn", &path]).await.success();
    assert!(run.stdout.starts_with("succeeded"), "{}", run.stdout);
    let revision = client.get("ctl/b").await.unwrap().unwrap().mod_revision;
    assert!(
        run.stdout
            .contains(&format!("[1] put at revision {revision}")),
        "{}",
        run.stdout
    );

    let again = kvctl(&server.url(""), &["-o", "json", "txn", &path])
        .await
        .success()
        .json();
    assert_eq!(again["succeeded"], false);
    assert_eq!(again["results"][0]["get"]["kvs"][0]["value"], 2);
    let table = kvctl(&server.url(""), &["txn", &path]).await.success();
    assert!(
        table.stdout.starts_with("a compare failed"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("ctl/a"), "{}", table.stdout);

    let from_stdin = kvctl_with_stdin(
        &server,
        &["-o", "json", "txn", "-"],
        r#"{"success": [{"delete": {"prefix": "ctl/"}}]}"#,
    );
    assert_eq!(from_stdin.0, 0, "{from_stdin:?}");
    let answer: Value = serde_json::from_str(&from_stdin.1).unwrap();
    assert_eq!(answer["results"][0]["delete"]["deleted"], 2);
    let no_file_argument = kvctl_with_stdin(
        &server,
        &["txn"],
        r#"{"success": [{"get": {"prefix": "ctl/"}}]}"#,
    );
    assert_eq!(no_file_argument.0, 0, "{no_file_argument:?}");
    assert!(
        no_file_argument.1.contains("[0] get: 0 keys"),
        "{no_file_argument:?}"
    );

    let refused = kvctl_with_stdin(
        &server,
        &["txn"],
        r#"{"success": [{"put": {"key": "ctl/x", "value": 1}}, {"put": {"key": "ctl/x", "value": 2}}]}"#,
    );
    assert_eq!(refused.0, 1, "{refused:?}");
    assert!(refused.2.contains("duplicate_key"), "{refused:?}");
    assert!(refused.2.contains("success[1].put.key"), "{refused:?}");

    let malformed = kvctl_with_stdin(&server, &["txn"], r#"{"success": [{"patch": {}}]}"#);
    assert_eq!(malformed.0, 2, "{malformed:?}");
    assert!(malformed.2.contains("success[0]"), "{malformed:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs kvctl against `server` with `input` on stdin: (exit code, stdout, stderr).
fn kvctl_with_stdin(server: &TestServer, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(kvctl_binary())
        .args(["--endpoints", &server.url(""), "--timeout", "10s"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KVCTL_ENDPOINTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kvctl starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("kvctl reads its stdin");
    // The --timeout above bounds the run.
    let output = child.wait_with_output().expect("kvctl runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A name no other run of this test uses at the same time.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
