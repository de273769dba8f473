//! `kv-bench` itself: tiny bounded runs of each workload against a real
//! server finish on their own, report a throughput and no errors; a target
//! off this machine is refused.
//!
//! The binary is `$KV_BENCH_BIN` if set, else the one cargo builds for these
//! tests (`<target>/<profile>/kv-bench`).

use std::path::PathBuf;
use std::process::{Command, Output};

use integration_tests::TestServer;

fn kv_bench_binary() -> PathBuf {
    std::env::var_os("KV_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_kv-bench")))
}

/// kv-server, next to kv-bench unless `$KV_SERVER_BIN` says otherwise.
fn kv_server_binary() -> PathBuf {
    std::env::var_os("KV_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| kv_bench_binary().with_file_name("kv-server"))
}

/// Runs kv-bench with `args` and returns what it did.
async fn kv_bench(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(kv_bench_binary())
            .args(&args)
            .output()
            .expect("kv-bench can be run")
    })
    .await
    .expect("the blocking task finishes")
}

/// Runs kv-bench against `server`, checks it succeeded and returns what
/// it printed.
async fn run_ok(server: &TestServer, args: &[&str]) -> String {
    let endpoint = server.url("");
    let mut all = vec!["--endpoints", endpoint.as_str()];
    all.extend_from_slice(args);
    let output = kv_bench(&all).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kv-bench {args:?} exited with {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs kv-bench against `server` with `--summary` and returns the fields
/// of its summary line.
async fn summary_of(server: &TestServer, args: &[&str]) -> Vec<(String, String)> {
    let stdout = run_ok(server, &[&["--summary"], args].concat()).await;
    let line = stdout
        .lines()
        .rfind(|line| line.starts_with("summary "))
        .unwrap_or_else(|| panic!("kv-bench {args:?} printed no summary:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|field| field.split_once('='))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn number(fields: &[(String, String)], name: &str) -> f64 {
    fields
        .iter()
        .find(|(field, _)| field == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {fields:?}"))
}

#[tokio::test]
async fn put_get_and_mixed_runs_stop_at_their_count_with_throughput_and_no_errors() {
    let server = TestServer::start().await;
    let small = ["--connections", "4", "--keys", "50", "--duration", "30s"];

    let loaded = run_ok(&server, &[&small[..], &["fill"]].concat()).await;
    assert!(loaded.contains("loaded 50 keys"), "{loaded}");
    for workload in [
        &["put"][..],
        &["get", "--consistency", "linearizable"],
        &["get", "--consistency", "stale"],
        &["mixed"],
    ] {
        let args = [&small[..], &["--ops", "200"], workload].concat();
        let fields = summary_of(&server, &args).await;
        assert_eq!(number(&fields, "ok"), 200.0, "{workload:?}: {fields:?}");
        assert_eq!(number(&fields, "errors"), 0.0, "{workload:?}: {fields:?}");
        assert!(number(&fields, "ops_per_sec") > 0.0, "{fields:?}");
        assert!(number(&fields, "p99_ms") > 0.0, "{fields:?}");
    }
}

#[tokio::test]
async fn watchers_see_the_writes_of_a_short_watch_run() {
    let server = TestServer::start().await;
    let fields = summary_of(
        &server,
        &[
            "--duration",
            "2s",
            "watch",
            "--watchers",
            "20",
            "--watch-keys",
            "5",
            "--h2-connections",
            "2",
            "--writes-per-sec",
            "20",
        ],
    )
    .await;
    assert_eq!(number(&fields, "errors"), 0.0, "{fields:?}");
    assert!(number(&fields, "writes") > 0.0, "{fields:?}");
    assert!(number(&fields, "deliveries") > 0.0, "{fields:?}");
    assert!(
        number(&fields, "deliveries") <= number(&fields, "expected_deliveries"),
        "{fields:?}"
    );
}

#[tokio::test]
async fn replay_and_rebuild_count_every_loaded_record() {
    let mut server = TestServer::start().await;
    let fields = summary_of(
        &server,
        &["--connections", "4", "replay", "--records", "300"],
    )
    .await;
    assert!(number(&fields, "records") >= 300.0, "{fields:?}");
    assert!(number(&fields, "records_per_sec") > 0.0, "{fields:?}");

    server.stop().await;
    let data_dir = server.data_dir();
    let server_bin = kv_server_binary();
    let fields = summary_of(
        &server,
        &[
            "rebuild",
            "--server-bin",
            server_bin.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
    )
    .await;
    assert!(number(&fields, "records") >= 300.0, "{fields:?}");
}

#[tokio::test]
async fn a_target_off_this_machine_is_refused() {
    for endpoint in ["http://192.0.2.1:7070", "http://example.com"] {
        let output = kv_bench(&["--endpoints", endpoint, "--ops", "1", "put"]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{endpoint} was driven");
        assert!(
            stderr.contains("not a loopback address"),
            "{endpoint}: {stderr}"
        );
    }
}

/// The store revision `server` reports.
async fn revision(server: &TestServer) -> u64 {
    let cluster: serde_json::Value = server
        .client()
        .get(server.url("/v1/cluster"))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer");
    cluster["revision"].as_u64().expect("a revision")
}

#[tokio::test]
async fn noop_runs_write_nothing_and_report_the_servers_cpu_per_operation() {
    let server = TestServer::start_with(&["--bench-noop-route"]).await;
    let pid = server.pid().expect("the server runs").to_string();
    let before = revision(&server).await;
    for workload in ["noop", "put"] {
        let args = [
            "--connections",
            "4",
            "--keys",
            "50",
            "--ops",
            "2000",
            "--duration",
            "60s",
            workload,
            "--server-pids",
            &pid,
        ];
        let fields = summary_of(&server, &args).await;
        assert_eq!(number(&fields, "ok"), 2000.0, "{workload}: {fields:?}");
        assert_eq!(number(&fields, "errors"), 0.0, "{workload}: {fields:?}");
        // 2,000 requests cost the server well over one 10 ms clock tick.
        assert!(number(&fields, "cpu_us_per_op") > 0.0, "{fields:?}");
        if workload == "noop" {
            assert_eq!(revision(&server).await, before, "the no-op route wrote");
        }
    }
}

#[tokio::test]
async fn noop_runs_fail_where_the_route_is_not_served() {
    let server = TestServer::start().await;
    let fields = summary_of(&server, &["--ops", "20", "noop"]).await;
    assert_eq!(number(&fields, "ok"), 0.0, "{fields:?}");
    assert_eq!(number(&fields, "errors"), 20.0, "{fields:?}");

    let endpoint = server.url("");
    let output = kv_bench(&[
        "--target",
        "etcd",
        "--endpoints",
        &endpoint,
        "--ops",
        "1",
        "noop",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "etcd was sent no-ops");
    assert!(stderr.contains("no-op route"), "{stderr}");
}

#[tokio::test]
async fn under_auth_runs_without_the_token_fail_and_runs_with_it_pass() {
    let server = TestServer::start_with(&["--auth"]).await;
    let root = server.bootstrap_acl().await;
    let root = root.as_str();
    let small = ["--connections", "2", "--keys", "10", "--ops", "20"];

    let refused = summary_of(&server, &[&small[..], &["put"]].concat()).await;
    assert_eq!(number(&refused, "ok"), 0.0, "{refused:?}");
    assert_eq!(number(&refused, "errors"), 20.0, "{refused:?}");
    let loaded = run_ok(
        &server,
        &[&["--token", root][..], &small[..], &["fill"]].concat(),
    )
    .await;
    assert!(loaded.contains("loaded 10 keys"), "{loaded}");
    for workload in [&["put"][..], &["get", "--consistency", "stale"]] {
        let args = [&["--token", root][..], &small[..], workload].concat();
        let fields = summary_of(&server, &args).await;
        assert_eq!(number(&fields, "ok"), 20.0, "{workload:?}: {fields:?}");
        assert_eq!(number(&fields, "errors"), 0.0, "{workload:?}: {fields:?}");
    }
}
