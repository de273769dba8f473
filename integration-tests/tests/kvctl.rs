//! The `kvctl` binary against real servers: every subcommand, its table
//! and JSON output, its exit codes (0 ok, 1 error, 2 usage), and the
//! import and export of a broker's RocketMQ metadata files.

use std::path::{Path, PathBuf};

use integration_tests::{call, closed_port_url, kvctl, KvctlRun, TestServer};
use schemas::{SubscriptionGroupFile, TopicConfigFile, ValidateOptions};
use serde_json::{json, Value};

/// Runs kvctl against `server`.
async fn ctl(server: &TestServer, args: &[&str]) -> KvctlRun {
    kvctl(&server.url(""), args).await
}

/// The fixtures: a broker's files with the stock system topics and groups,
/// some ordinary ones, and a few bad entries.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rocketmq")
        .join(name)
}

fn fixture_args() -> (String, String) {
    (
        fixture("topics.json").display().to_string(),
        fixture("subscriptionGroup.json").display().to_string(),
    )
}

/// The store's revision, as the node reports it.
async fn store_revision(server: &TestServer) -> u64 {
    let (_, status) = call(server, "GET", "/v1/cluster", None).await;
    status["revision"].as_u64().expect("a numeric revision")
}

/// A value is written, and exported by `replay`, as given: JSON read into
/// numbers would round an integer past 64 bits, or a decimal past `f64`'s
/// digits, and could not hold a number past `f64`'s range at all.
#[tokio::test]
async fn a_value_is_put_and_replayed_as_written_however_long_its_numbers() {
    let server = TestServer::start().await;
    let value = r#"{"big":123456789012345678901234567890123456789,"fine":0.10000000000000000001}"#;
    ctl(&server, &["put", "app/big", value]).await.success();
    ctl(&server, &["cas", "app/big2", "0", "18446744073709551617"])
        .await
        .success();
    for (key, written) in [("app/big", value), ("app/big2", "18446744073709551617")] {
        let stored = server
            .client()
            .get(server.url(&format!("/v1/kv/{key}")))
            .send()
            .await
            .expect("the read answers")
            .text()
            .await
            .expect("a body");
        assert!(
            stored.contains(&format!(r#""value":{written}"#)),
            "{key}: {stored}"
        );
    }
    // Accepted by the server (any JSON), past what f64 holds.
    let huge = server
        .client()
        .put(server.url("/v1/kv/app/huge"))
        .body("1e999999")
        .send()
        .await
        .expect("the write answers");
    assert_eq!(huge.status(), 201);
    let export = ctl(&server, &["replay"]).await.success();
    let listed = ctl(&server, &["-o", "json", "ls", "app/"]).await.success();
    for written in [value, "18446744073709551617", "1e999999"] {
        assert!(
            export.stdout.contains(&format!(r#""value":{written}"#)),
            "{written}: {}",
            export.stdout
        );
        assert!(
            listed.stdout.contains(&format!(r#""value": {written}"#)),
            "{written}: {}",
            listed.stdout
        );
    }
    let table = ctl(&server, &["ls", "app/"]).await.success();
    assert!(table.stdout.contains("1e999999"), "{}", table.stdout);
    let got = ctl(&server, &["get", "app/big2"]).await.success();
    assert!(
        got.stdout.contains("18446744073709551617"),
        "{}",
        got.stdout
    );
    ctl(&server, &["ls", "app/", "--limit", "0"])
        .await
        .expect_code(2);
}

/// A value past what `f64` holds, which the server takes as any JSON, is
/// shown by `watch` (table and JSON) and by `txn` as written. It used to
/// end every watch covering its key, and `txn` reported a transaction it
/// had applied as failed.
#[tokio::test]
async fn watch_and_txn_show_a_number_past_f64_as_written() {
    let server = TestServer::start().await;
    let from = store_revision(&server).await.to_string();
    // Sent as raw text: serde_json holds no number past f64's range.
    for (key, value) in [("nb/a", "1"), ("nb/b", "1e400"), ("nb/c", "2")] {
        let written = server
            .client()
            .put(server.url(&format!("/v1/kv/{key}")))
            .body(value)
            .send()
            .await
            .expect("the write answers");
        assert_eq!(written.status(), 201, "{key}");
    }
    let watch = ["watch", "nb/", "--prefix", "--after", &from, "--count", "3"];
    let table = ctl(&server, &watch).await.success();
    assert!(table.stdout.contains("nb/b 1e400"), "{}", table.stdout);
    assert!(table.stdout.contains("nb/c 2"), "{}", table.stdout);
    let mut json_watch = vec!["-o", "json"];
    json_watch.extend_from_slice(&watch);
    let lines = ctl(&server, &json_watch).await.success();
    assert_eq!(lines.stdout.lines().count(), 3, "{}", lines.stdout);
    assert!(
        lines.stdout.contains(r#""value":1e400"#),
        "{}",
        lines.stdout
    );

    let dir = tempfile::tempdir().unwrap();
    let txn = dir.path().join("txn.json");
    std::fs::write(
        &txn,
        r#"{"success":[{"put":{"key":"nb/z","value":7}},{"get":{"key":"nb/b"}}]}"#,
    )
    .unwrap();
    let txn = txn.display().to_string();
    let answered = ctl(&server, &["txn", &txn]).await.success();
    assert!(answered.stdout.contains("1e400"), "{}", answered.stdout);
    let answered = ctl(&server, &["-o", "json", "txn", &txn]).await.success();
    assert!(answered.stdout.contains("1e400"), "{}", answered.stdout);
}

/// A prefix that begins no key (longer than a key may be) is refused as
/// a usage error before anything is sent, as a key is; it used to be
/// tried twelve times over seconds. An endpoint with a user and password
/// in it is refused without naming the password.
#[tokio::test]
async fn a_prefix_no_key_has_and_an_endpoint_with_a_password_are_usage_errors() {
    let server = TestServer::start().await;
    let long = "k".repeat(schemas::MAX_KEY_BYTES + 1);
    for args in [
        vec!["ls", long.as_str()],
        vec!["watch", "--prefix", long.as_str()],
    ] {
        let refused = ctl(&server, &args).await.expect_code(2);
        assert!(refused.stderr.contains("prefix"), "{}", refused.stderr);
    }
    let with_password = server
        .url("")
        .replacen("http://", "http://user:hunter2@", 1);
    let refused = kvctl(&with_password, &["get", "k"]).await.expect_code(2);
    assert!(
        refused.stderr.contains("user and password") && !refused.stderr.contains("hunter2"),
        "{}",
        refused.stderr
    );
}

/// A write against nodes that take connections and never answer gives up
/// near its `--timeout`: the look for the leader before it takes at most
/// half of it. It took about 7 s with a 1 s timeout and three such nodes.
#[tokio::test]
async fn a_write_to_nodes_that_never_answer_gives_up_near_its_timeout() {
    let silent: Vec<String> = (0..3)
        .map(|_| integration_tests::silent_port_url())
        .collect();
    let started = std::time::Instant::now();
    let run = kvctl(&silent.join(","), &["--timeout", "1s", "put", "k", "1"]).await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        took < std::time::Duration::from_secs(3),
        "gave up after {took:?}: {}",
        run.stderr
    );
}

/// A name or key no write can have is a usage error (exit 2), said at
/// once: an empty name would reach another route ("no such route"), and a
/// watch of an invalid key would wait forever.
#[tokio::test]
async fn empty_names_and_invalid_watched_keys_are_usage_errors() {
    let server = TestServer::start().await;
    for args in [
        &["topic", "create", ""][..],
        &["group", "create", ""],
        &["topic", "get", ""],
        &["acl", "role", "create", "", "--read", "app/"],
        &["acl", "token", "revoke", ""],
        &["watch", "a//b", "--after", "0", "--count", "1"],
    ] {
        let run = ctl(&server, args).await.expect_code(2);
        assert!(
            !run.stderr.contains("no such route"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn put_get_ls_cas_and_del_work_on_raw_keys() {
    let server = TestServer::start().await;

    let put = ctl(&server, &["put", "app/config", r#"{"retention":"7d"}"#])
        .await
        .success();
    assert!(
        put.stdout.starts_with("created \"app/config\" at revision"),
        "{}",
        put.stdout
    );
    let got = ctl(&server, &["get", "app/config"]).await.success();
    assert!(
        got.stdout.contains(r#"{"retention":"7d"}"#),
        "{}",
        got.stdout
    );
    assert!(got.stdout.contains("version:"), "{}", got.stdout);

    let entry = ctl(&server, &["-o", "json", "get", "app/config"])
        .await
        .success()
        .json();
    assert_eq!(entry["value"], json!({"retention": "7d"}));
    let revision = entry["mod_revision"].as_u64().unwrap().to_string();

    ctl(&server, &["put", "app/name", "--string", "hello world"])
        .await
        .success();
    ctl(&server, &["put", "app/count", "3"]).await.success();
    let listed = ctl(&server, &["-o", "json", "ls", "app/"])
        .await
        .success()
        .json();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/config", "app/count", "app/name"]);
    assert_eq!(listed[2]["value"], "hello world");
    let table = ctl(&server, &["ls", "app/"]).await.success();
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("KEY") && lines[0].contains("MOD_REVISION"),
        "{}",
        table.stdout
    );
    assert_eq!(lines.len(), 4, "a header and three keys: {}", table.stdout);
    let keys_only = ctl(&server, &["ls", "app/", "--keys-only", "--limit", "2"])
        .await
        .success();
    assert_eq!(keys_only.stdout, "app/config\napp/count\n");

    let cas = ctl(
        &server,
        &[
            "-o",
            "json",
            "cas",
            "app/config",
            &revision,
            r#"{"retention":"3d"}"#,
        ],
    )
    .await
    .success()
    .json();
    assert_eq!(cas["version"], 2);
    let stale = ctl(&server, &["cas", "app/config", &revision, "{}"])
        .await
        .expect_code(1);
    assert!(
        stale.stderr.contains("precondition_failed"),
        "{}",
        stale.stderr
    );
    ctl(&server, &["cas", "app/new", "0", "true"])
        .await
        .success();
    ctl(&server, &["cas", "app/new", "0", "true"])
        .await
        .expect_code(1);
    ctl(&server, &["put", "app/new", "false", "--create"])
        .await
        .expect_code(1);

    ctl(&server, &["del", "app/new"]).await.success();
    let missing = ctl(&server, &["get", "app/new"]).await.expect_code(1);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    ctl(&server, &["del", "app/new"]).await.expect_code(1);
    ctl(&server, &["del", "app/config", "--if-revision", &revision])
        .await
        .expect_code(1);
}

#[tokio::test]
async fn usage_errors_exit_2_and_server_errors_exit_1() {
    let server = TestServer::start().await;

    ctl(&server, &["frobnicate"]).await.expect_code(2);
    ctl(&server, &["get"]).await.expect_code(2);
    ctl(&server, &["cas", "k", "not-a-number", "1"])
        .await
        .expect_code(2);
    let not_json = ctl(&server, &["put", "k", "{oops"]).await.expect_code(2);
    assert!(not_json.stderr.contains("--string"), "{}", not_json.stderr);
    ctl(&server, &["get", "a//b"]).await.expect_code(2);
    kvctl("ftp://127.0.0.1:1", &["get", "k"])
        .await
        .expect_code(2);
    let help = ctl(&server, &["--help"]).await.success();
    assert!(help.stdout.contains("import-rocketmq"), "{}", help.stdout);

    let refused = ctl(&server, &["put", "topics/raw", "1"])
        .await
        .expect_code(1);
    assert!(
        refused.stderr.contains("reserved_key"),
        "{}",
        refused.stderr
    );
    let unreachable = kvctl(&closed_port_url(), &["--timeout", "1s", "get", "k"])
        .await
        .expect_code(1);
    assert!(
        unreachable.stderr.contains("gave up") && unreachable.stderr.contains("Connection refused"),
        "{}",
        unreachable.stderr
    );
}

#[tokio::test]
async fn a_dead_first_endpoint_is_skipped() {
    let server = TestServer::start().await;
    let endpoints = format!("{},{}", closed_port_url(), server.url(""));

    kvctl(&endpoints, &["put", "failover/a", "1"])
        .await
        .success();
    let entry = kvctl(&endpoints, &["-o", "json", "get", "failover/a"])
        .await
        .success()
        .json();
    assert_eq!(entry["version"], 1);
    // host:port without a scheme means http://.
    let bare = server.url("").replace("http://", "");
    kvctl(&bare, &["get", "failover/a"]).await.success();
}

#[tokio::test]
async fn watch_prints_each_change_until_its_count() {
    let server = TestServer::start().await;
    let (_, first) = call(&server, "PUT", "/v1/kv/app/a", Some(json!(0))).await;
    let after = first["revision"].as_u64().unwrap().to_string();
    let watching = {
        let endpoints = server.url("");
        let after = after.clone();
        tokio::spawn(async move {
            kvctl(
                &endpoints,
                &[
                    "-o", "json", "watch", "app/", "--prefix", "--after", &after, "--count", "3",
                    "--for", "20s",
                ],
            )
            .await
        })
    };
    call(&server, "PUT", "/v1/kv/app/b", Some(json!({"n": 1}))).await;
    call(&server, "PUT", "/v1/kv/elsewhere", Some(json!(2))).await;
    call(&server, "DELETE", "/v1/kv/app/a", None).await;
    call(&server, "PUT", "/v1/kv/app/c", Some(json!("three"))).await;

    let events = watching.await.unwrap().success().json_lines();
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_string(),
                event["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("put".to_string(), "app/b".to_string()),
            ("delete".to_string(), "app/a".to_string()),
            ("put".to_string(), "app/c".to_string()),
        ]
    );
    assert_eq!(events[0]["value"], json!({"n": 1}));

    // A table-format watch of one key that sees nothing ends with --for.
    let quiet = ctl(&server, &["watch", "app/b", "--for", "1s"])
        .await
        .success();
    assert_eq!(quiet.stdout, "");
    let table = ctl(
        &server,
        &["watch", "app/b", "--after", &after, "--count", "1"],
    )
    .await
    .success();
    assert!(table.stdout.starts_with("PUT "), "{}", table.stdout);
    assert!(
        table.stdout.contains(r#"app/b {"n":1}"#),
        "{}",
        table.stdout
    );
}

#[tokio::test]
async fn topics_are_created_from_flags_or_files_listed_shown_and_deleted() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();

    let created = ctl(
        &server,
        &[
            "topic",
            "create",
            "orders",
            "--queues",
            "8",
            "--order",
            "--message-type",
            "FIFO",
        ],
    )
    .await
    .success();
    assert!(
        created.stdout.starts_with("created topic \"orders\""),
        "{}",
        created.stdout
    );
    let exists = ctl(&server, &["topic", "create", "orders"])
        .await
        .expect_code(1);
    assert!(exists.stderr.contains("--update"), "{}", exists.stderr);
    ctl(
        &server,
        &["topic", "create", "orders", "--queues", "4", "--update"],
    )
    .await
    .success();

    let orders = ctl(&server, &["-o", "json", "topic", "get", "orders"])
        .await
        .success()
        .json();
    assert_eq!(orders["readQueueNums"], 4);
    assert_eq!(orders["order"], true);
    assert_eq!(orders["attributes"]["message.type"], "FIFO");
    let shown = ctl(&server, &["topic", "get", "orders"]).await.success();
    assert!(shown.stdout.contains("rw- (6)"), "{}", shown.stdout);

    // From a file, in RocketMQ's own shape, unknown fields kept.
    let file = dir.path().join("payments.json");
    std::fs::write(
        &file,
        r#"{"topicName":"payments","writeQueueNums":2,"readQueueNums":2,"brokerZone":"az-1"}"#,
    )
    .unwrap();
    let file = file.display().to_string();
    ctl(
        &server,
        &["topic", "create", "--from-file", &file, "--perm", "4"],
    )
    .await
    .success();
    let payments = ctl(&server, &["-o", "json", "topic", "get", "payments"])
        .await
        .success()
        .json();
    assert_eq!(
        (payments["perm"].clone(), payments["brokerZone"].clone()),
        (json!(4), json!("az-1"))
    );
    ctl(&server, &["topic", "create", "other", "--from-file", &file])
        .await
        .expect_code(2);

    let refused = ctl(&server, &["topic", "create", "TBW102"])
        .await
        .expect_code(1);
    assert!(refused.stderr.contains("system_name"), "{}", refused.stderr);
    ctl(&server, &["topic", "create", "TBW102", "--system"])
        .await
        .success();
    let invalid = ctl(&server, &["topic", "create", "bad", "--perm", "9"])
        .await
        .expect_code(1);
    assert!(invalid.stderr.contains("perm"), "{}", invalid.stderr);

    let listed = ctl(&server, &["topic", "list"]).await.success();
    let names: Vec<&str> = listed
        .stdout
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["TBW102", "orders", "payments"]);
    let json_list = ctl(&server, &["-o", "json", "topic", "list"])
        .await
        .success()
        .json();
    assert_eq!(json_list.as_array().unwrap().len(), 3);

    ctl(&server, &["topic", "delete", "orders"]).await.success();
    ctl(&server, &["topic", "delete", "orders"])
        .await
        .expect_code(1);
    ctl(&server, &["topic", "get", "orders"])
        .await
        .expect_code(1);
}

#[tokio::test]
async fn groups_are_created_from_flags_or_files_listed_shown_and_deleted() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();

    ctl(
        &server,
        &[
            "group",
            "create",
            "order-consumers",
            "--retry-max-times",
            "3",
            "--orderly",
            "--no-broadcast",
        ],
    )
    .await
    .success();
    let group = ctl(&server, &["-o", "json", "group", "get", "order-consumers"])
        .await
        .success()
        .json();
    assert_eq!(group["retryMaxTimes"], 3);
    assert_eq!(group["consumeMessageOrderly"], true);
    assert_eq!(group["consumeBroadcastEnable"], false);
    let shown = ctl(&server, &["group", "get", "order-consumers"])
        .await
        .success();
    assert!(shown.stdout.contains("retryMaxTimes:"), "{}", shown.stdout);

    let file = dir.path().join("billing.json");
    std::fs::write(
        &file,
        r#"{"groupName":"billing","subscriptionDataSet":[{"topic":"payments","expression":"paid"}]}"#,
    )
    .unwrap();
    ctl(
        &server,
        &[
            "group",
            "create",
            "--from-file",
            &file.display().to_string(),
        ],
    )
    .await
    .success();
    ctl(&server, &["group", "create", "billing"])
        .await
        .expect_code(1);
    ctl(&server, &["group", "create", "TOOLS_CONSUMER"])
        .await
        .expect_code(1);
    ctl(&server, &["group", "create", "TOOLS_CONSUMER", "--system"])
        .await
        .success();

    let listed = ctl(&server, &["-o", "json", "group", "list"])
        .await
        .success()
        .json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["groupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["TOOLS_CONSUMER", "billing", "order-consumers"]);
    let table = ctl(&server, &["group", "list"]).await.success();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);

    ctl(&server, &["group", "delete", "billing"])
        .await
        .success();
    ctl(&server, &["group", "delete", "billing"])
        .await
        .expect_code(1);
}

#[tokio::test]
async fn replay_writes_the_topic_as_ndjson_to_stdout_or_a_file() {
    let server = TestServer::start().await;
    for n in 0..20 {
        call(
            &server,
            "PUT",
            &format!("/v1/kv/replay/k{n:02}"),
            Some(json!({ "n": n })),
        )
        .await;
    }
    call(&server, "DELETE", "/v1/kv/replay/k03", None).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("records.ndjson");

    let written = ctl(&server, &["replay", "--out", &out.display().to_string()])
        .await
        .success();
    assert!(
        written.stderr.contains("wrote 21 records"),
        "{}",
        written.stderr
    );
    assert_eq!(written.stdout, "");
    let text = std::fs::read_to_string(&out).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 21);
    assert_eq!(records[20]["key"], "replay/k03");
    assert_eq!(records[20]["value"], Value::Null);
    assert_eq!(records[20]["version"], 0);

    let from = records[19]["offset"].as_u64().unwrap().to_string();
    let tail = ctl(&server, &["replay", "--from", &from])
        .await
        .success()
        .json_lines();
    assert_eq!(tail.len(), 2);

    // A file is replaced once whole; through a symlink, its target is.
    let link = dir.path().join("link.ndjson");
    std::os::unix::fs::symlink(&out, &link).unwrap();
    std::fs::write(&out, "x".repeat(100_000)).unwrap();
    ctl(&server, &["replay", "--out", &link.display().to_string()])
        .await
        .success();
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    // A device is written as it is, never renamed over.
    ctl(&server, &["replay", "--out", "/dev/null"])
        .await
        .success();
    assert!(!std::path::Path::new("/dev/null.part").exists());
    // A directory is refused before anything is read.
    let refused = ctl(
        &server,
        &["replay", "--out", &dir.path().display().to_string()],
    )
    .await
    .expect_code(1);
    assert!(
        refused.stderr.contains("is a directory"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn import_of_a_brokers_files_takes_every_good_entry_and_reports_the_bad_ones() {
    let server = TestServer::start().await;
    let (topics, groups) = fixture_args();

    let first = ctl(
        &server,
        &["-o", "json", "import-rocketmq", &topics, &groups],
    )
    .await
    .expect_code(1);
    assert!(
        first.stderr.contains("8 of 36 entries were rejected"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("forbiddenTable"), "{}", first.stderr);
    let report = first.json();
    assert_eq!(
        report["totals"],
        json!({"created": 28, "updated": 0, "unchanged": 0, "rejected": 8})
    );
    let rejected: Vec<(String, String)> = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["outcome"] == "rejected")
        .map(|entry| {
            (
                entry["name"].as_str().unwrap().to_string(),
                entry["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason_of = |name: &str| -> &str {
        &rejected
            .iter()
            .find(|(rejected, _)| rejected == name)
            .unwrap_or_else(|| panic!("{name} is rejected: {rejected:?}"))
            .1
    };
    assert!(reason_of("bad-perm").contains("topicConfigTable.bad-perm.perm"));
    assert!(reason_of("too-many-queues").contains("writeQueueNums"));
    assert!(reason_of("wrong-type").contains("readQueueNums"));
    assert!(reason_of("renamed").contains("table key"));
    assert!(reason_of("bad name").contains("illegal character"));
    assert!(reason_of("bad-retry").contains("retryMaxTimes"));
    assert!(reason_of("bad-timeout").contains("consumeTimeoutMinute"));
    assert!(reason_of("bad-expression").contains("expressionType"));

    // The stock system topics and groups are in, as the broker had them.
    for topic in [
        "TBW102",
        "SCHEDULE_TOPIC_XXXX",
        "RMQ_SYS_TRACE_TOPIC",
        "SELF_TEST_TOPIC",
        "BenchmarkTest",
        "OFFSET_MOVED_EVENT",
        "rmq_sys_wheel_timer",
        "%RETRY%order-consumers",
    ] {
        let (status, _) = call(&server, "GET", &format!("/v1/topics/{topic}"), None).await;
        assert_eq!(status, 200, "topic {topic}");
    }
    let (_, benchmark) = call(&server, "GET", "/v1/topics/BenchmarkTest", None).await;
    assert_eq!(benchmark["writeQueueNums"], 1024);
    for group in [
        "TOOLS_CONSUMER",
        "FILTERSRV_CONSUMER",
        "SELF_TEST_C_GROUP",
        "CID_ONS-HTTP-PROXY",
        "CID_RMQ_SYS_TRANS",
    ] {
        let (status, _) = call(&server, "GET", &format!("/v1/subscriptions/{group}"), None).await;
        assert_eq!(status, 200, "group {group}");
    }
    let (_, pop) = call(&server, "GET", "/v1/subscriptions/payment-pop-group", None).await;
    assert_eq!(pop["groupRetryPolicy"]["type"], "EXPONENTIAL");
    let (status, _) = call(&server, "GET", "/v1/topics/bad-perm", None).await;
    assert_eq!(status, 404, "a rejected entry is not written");

    // The second run finds everything in place and writes nothing.
    let before = store_revision(&server).await;
    let second = ctl(&server, &["import-rocketmq", &topics, &groups])
        .await
        .expect_code(1);
    assert!(
        second
            .stdout
            .contains("created 0, updated 0, unchanged 28, rejected 8"),
        "{}",
        second.stdout
    );
    assert_eq!(store_revision(&server).await, before, "no write at all");
}

#[tokio::test]
async fn import_updates_a_changed_entry_with_compare_and_set() {
    let server = TestServer::start().await;
    call(
        &server,
        "PUT",
        "/v1/topics/orders",
        Some(json!({"topicName": "orders", "readQueueNums": 2, "writeQueueNums": 2})),
    )
    .await;
    let (topics, groups) = fixture_args();

    let run = ctl(
        &server,
        &["-o", "json", "import-rocketmq", &topics, &groups],
    )
    .await
    .expect_code(1);
    let report = run.json();
    assert_eq!(report["totals"]["updated"], 1);
    assert_eq!(report["totals"]["created"], 27);
    let (_, orders) = call(&server, "GET", "/v1/topics/orders", None).await;
    assert_eq!(
        orders["readQueueNums"], 8,
        "the file's config replaced the old one"
    );
}

#[tokio::test]
async fn import_refuses_files_that_are_not_a_brokers() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("topics.json");
    std::fs::write(&not_json, "not json").unwrap();
    let wrong_shape = dir.path().join("groups.json");
    std::fs::write(&wrong_shape, r#"{"topicConfigTable":{}}"#).unwrap();
    let (topics, _) = fixture_args();

    let run = ctl(
        &server,
        &["import-rocketmq", &not_json.display().to_string(), &topics],
    )
    .await
    .expect_code(1);
    assert!(run.stderr.contains("is not JSON"), "{}", run.stderr);
    let run = ctl(
        &server,
        &[
            "import-rocketmq",
            &topics,
            &wrong_shape.display().to_string(),
        ],
    )
    .await
    .expect_code(1);
    assert!(
        run.stderr.contains("subscriptionGroupTable"),
        "{}",
        run.stderr
    );
    let missing = dir.path().join("missing.json").display().to_string();
    ctl(&server, &["import-rocketmq", &missing, &topics])
        .await
        .expect_code(1);
    let (_, listed) = call(&server, "GET", "/v1/topics", None).await;
    assert_eq!(listed["topics"], json!([]), "nothing was written");
}

#[tokio::test]
async fn an_export_is_a_brokers_files_and_imports_again_with_no_change() {
    let server = TestServer::start().await;
    let (topics, groups) = fixture_args();
    ctl(&server, &["import-rocketmq", &topics, &groups])
        .await
        .expect_code(1);
    let dir = tempfile::tempdir().unwrap();
    let export_dir = dir.path().join("store");

    let exported = ctl(
        &server,
        &["export-rocketmq", &export_dir.display().to_string()],
    )
    .await
    .success();
    assert!(
        exported.stdout.contains("wrote 18 topics"),
        "{}",
        exported.stdout
    );
    let topics_file: TopicConfigFile =
        serde_json::from_slice(&std::fs::read(export_dir.join("topics.json")).unwrap()).unwrap();
    let groups_file: SubscriptionGroupFile =
        serde_json::from_slice(&std::fs::read(export_dir.join("subscriptionGroup.json")).unwrap())
            .unwrap();
    topics_file.validate(ValidateOptions::ALLOW_SYSTEM).unwrap();
    groups_file.validate(ValidateOptions::ALLOW_SYSTEM).unwrap();
    assert_eq!(topics_file.topic_config_table.len(), 18);
    assert_eq!(groups_file.subscription_group_table.len(), 10);
    assert!(topics_file.topic_config_table.contains_key("TBW102"));
    let revision = store_revision(&server).await;
    assert_eq!(topics_file.data_version.counter, revision as i64);
    assert!(topics_file.data_version.timestamp > 1_700_000_000_000);

    let again = ctl(
        &server,
        &[
            "import-rocketmq",
            &export_dir.join("topics.json").display().to_string(),
            &export_dir
                .join("subscriptionGroup.json")
                .display()
                .to_string(),
        ],
    )
    .await
    .success();
    assert!(
        again
            .stdout
            .contains("created 0, updated 0, unchanged 28, rejected 0"),
        "{}",
        again.stdout
    );
    assert_eq!(store_revision(&server).await, revision, "no write at all");
}

#[tokio::test]
async fn cluster_status_shows_the_node_and_bogus_membership_changes_exit_1() {
    let server = TestServer::start().await;

    let status = ctl(&server, &["cluster", "status"]).await.success();
    assert!(status.stdout.contains("leader:"), "{}", status.stdout);
    assert!(status.stdout.contains(&server.url("")), "{}", status.stdout);
    assert!(
        status.stdout.contains("MATCHED_INDEX  LAG"),
        "each member's lag: {}",
        status.stdout
    );
    // -v with a dead first endpoint logs the failed attempt, in plain
    // text: stderr here is a pipe, not a terminal.
    let endpoints = format!("{},{}", closed_port_url(), server.url(""));
    let verbose = kvctl(&endpoints, &["-v", "cluster", "status"])
        .await
        .success();
    assert!(
        verbose.stderr.contains("attempt failed") && !verbose.stderr.contains('\u{1b}'),
        "plain logs off a terminal: {:?}",
        verbose.stderr
    );
    let json = ctl(&server, &["-o", "json", "cluster", "status"])
        .await
        .success()
        .json();
    assert_eq!(
        (json["node_id"].clone(), json["leader"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(json["members"][0]["addr"], server.url(""));

    let added = ctl(
        &server,
        &[
            "--timeout",
            "10s",
            "cluster",
            "add",
            "99",
            "http://127.0.0.1:1/not-a-node",
            "http://127.0.0.1:2",
        ],
    )
    .await
    .expect_code(1);
    assert!(added.stderr.starts_with("error: "), "{}", added.stderr);
    let removed = ctl(&server, &["--timeout", "10s", "cluster", "remove", "99"])
        .await
        .expect_code(1);
    assert!(removed.stderr.starts_with("error: "), "{}", removed.stderr);
    ctl(&server, &["cluster", "add", "x", "http://127.0.0.1:1"])
        .await
        .expect_code(2);
}

#[tokio::test]
async fn completion_scripts_cover_every_command_and_bash_reads_its_own() {
    // No node is needed: completion never connects.
    let bash = kvctl("http://127.0.0.1:1", &["completion", "bash"])
        .await
        .success();
    for command in ["snapshot", "alarm", "cluster", "lease", "txn"] {
        assert!(
            bash.stdout.contains(command),
            "bash completion lacks {command}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("kvctl.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish"] {
        let script = kvctl("http://127.0.0.1:1", &["completion", shell])
            .await
            .success();
        assert!(script.stdout.contains("snapshot"), "{shell}");
    }
    kvctl("http://127.0.0.1:1", &["completion", "tcsh"])
        .await
        .expect_code(2);
}
