//! Ten thousand waiting watchers: what they cost the server, and that a
//! write wakes only the watchers of its key.
//!
//! The watchers share one HTTP/2 connection, as a client holding many
//! watches should (over HTTP/1.1 each would be a connection of its own).

use std::time::Duration;

use integration_tests::TestServer;
use serde_json::{json, Value};

const WATCHERS: usize = 10_000;
/// What 10,000 waiting watchers may cost the server at most.
const MEMORY_BUDGET_BYTES: u64 = 100 << 20;

/// Resident memory of the process serving `server`, from /proc.
fn server_rss_bytes(server: &TestServer) -> u64 {
    let data_dir = server.data_dir();
    let needle = data_dir.to_str().unwrap().as_bytes();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
        let is_server = args.first().is_some_and(|arg| arg.ends_with(b"kv-server"));
        if is_server && args.contains(&needle) {
            let status = std::fs::read_to_string(entry.path().join("status")).unwrap();
            let kb: u64 = status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .expect("status has VmRSS");
            return kb * 1024;
        }
    }
    panic!("no kv-server process serves {}", data_dir.display());
}

/// How long 10,000 long-polls may take to register.
const REGISTERED_WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_watchers_cost_under_100_mb_and_a_write_wakes_only_its_own() {
    // One HTTP/2 connection carries them all: its streams and long-polls
    // are raised to match.
    let server = TestServer::start_with(&[
        "--max-http2-streams",
        "10000",
        "--max-long-polls-per-connection",
        "10000",
    ])
    .await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let index = server
        .client()
        .put(server.url("/v1/kv/watched/seed"))
        .json(&json!(0))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["revision"]
        .as_u64()
        .unwrap();
    let before = server_rss_bytes(&server);

    let mut watchers = Vec::with_capacity(WATCHERS);
    for n in 0..WATCHERS {
        let url = server.url(&format!(
            "/v1/kv/watched/k{n}?index={index}&wait=90s&consistency=stale"
        ));
        let client = client.clone();
        watchers.push(tokio::spawn(async move {
            let response = client.get(url).send().await.expect("the long-poll answers");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        }));
    }
    server
        .wait_for_waiters(WATCHERS as u64, REGISTERED_WITHIN)
        .await;
    let cost = server_rss_bytes(&server).saturating_sub(before);
    eprintln!("{WATCHERS} watchers cost the server {} MB", cost >> 20);
    assert!(
        cost < MEMORY_BUDGET_BYTES,
        "{WATCHERS} watchers cost {} MB",
        cost >> 20
    );

    // A write to a key nobody watches wakes nobody.
    server
        .client()
        .put(server.url("/v1/kv/unwatched/x"))
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    // A write is answered after its waiters were woken: all still wait.
    assert_eq!(server.waiters().await, WATCHERS as u64);

    // A write to one watched key wakes exactly its watcher, with the value.
    server
        .client()
        .put(server.url("/v1/kv/watched/k4242"))
        .json(&json!("changed"))
        .send()
        .await
        .unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(10), watchers.remove(4242))
        .await
        .expect("the watcher of the written key answered")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"changed\""), "{body}");
    assert_eq!(
        server.waiters().await,
        WATCHERS as u64 - 1,
        "the write woke one watcher, its own"
    );
    assert!(watchers.iter().all(|watcher| !watcher.is_finished()));

    for watcher in watchers {
        watcher.abort();
    }
}
