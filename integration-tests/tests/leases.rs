//! Leases on one node, over raw HTTP: a key attached to a lease goes when
//! the lease's keep-alives stop (and its watchers see it go with the lease,
//! as one unit), keep-alives keep it, a revoke ends the lease's keys
//! together, bad input and missing leases are refused, and leases survive
//! a restart and a view rebuilt from the topic.

use std::collections::BTreeMap;
use std::time::Duration;

use integration_tests::leases::{grant, keep_alive, lease_table, view_keys};
use integration_tests::{call, error_of, TestServer};
use serde_json::{json, Value};
use tokio::time::Instant;

/// The shortest TTL a lease may have.
const TTL: Duration = Duration::from_secs(5);
/// Pause between two looks at a key.
const POLL: Duration = Duration::from_millis(50);
/// How long a spawned long-poll may take to register with the server.
const REGISTERED_WITHIN: Duration = Duration::from_secs(10);
/// How long after its deadline the leader may take to end a lease.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);

/// Puts `value` at `key` attached to `lease`; returns the write's revision.
async fn put_with_lease(server: &TestServer, key: &str, value: Value, lease: u64) -> u64 {
    let (status, body) = call(
        server,
        "PUT",
        &format!("/v1/kv/{key}?lease={lease}"),
        Some(value),
    )
    .await;
    assert!(
        status == 200 || status == 201,
        "PUT {key}?lease={lease}: {status} {body}"
    );
    body["revision"]
        .as_u64()
        .expect("a write answers its revision")
}

/// Keeps lease `id` alive once; returns when the keep-alive was sent and
/// when its answer came (the leader moved the deadline in between).
async fn keep_alive_once(server: &TestServer, id: u64) -> (Instant, Instant) {
    let sent = Instant::now();
    let (status, body) = keep_alive(server.client(), &server.base_url(), id)
        .await
        .expect("the keep-alive is answered");
    let acked = Instant::now();
    assert_eq!(status, 200, "keep-alive of lease {id}: {body}");
    assert_eq!(body, json!({"id": id, "ttl_s": TTL.as_secs()}));
    (sent, acked)
}

/// Polls `key` every 50 ms until it is gone; fails if it is still there at
/// `deadline`. Returns when it was first seen gone.
async fn wait_gone(server: &TestServer, key: &str, deadline: Instant) -> Instant {
    loop {
        let (status, body) = call(server, "GET", &format!("/v1/kv/{key}"), None).await;
        let now = Instant::now();
        if status == 404 {
            assert_eq!(error_of(&body).0, "key_not_found", "{body}");
            return now;
        }
        assert_eq!(status, 200, "GET {key}: {body}");
        assert!(
            now < deadline,
            "{key} is still there {:?} past its deadline",
            now - deadline
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Spawns `GET path` and returns its status, `X-Kv-Index` and body.
fn spawn_get(
    server: &TestServer,
    path: String,
) -> tokio::task::JoinHandle<(u16, Option<u64>, Value)> {
    let client = server.client().clone();
    let url = server.url(&path);
    tokio::spawn(async move {
        let response = client
            .get(url)
            .send()
            .await
            .expect("the long-poll is answered");
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-kv-index")
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let body = response.json().await.expect("a long-poll answers JSON");
        (status, index, body)
    })
}

/// Whether any key in `text` (a JSON document or JSON lines) is internal:
/// a lease's key starts with a NUL.
fn mentions_a_lease_key(text: &str) -> bool {
    text.contains("\\u0000")
}

#[tokio::test]
async fn a_key_goes_within_ttl_of_its_last_keep_alive_and_its_watchers_see_it_go_with_the_lease() {
    let server = TestServer::start().await;
    let id = grant(server.client(), &server.base_url(), TTL.as_secs()).await;
    let written = put_with_lease(&server, "exp/k", json!({"owner": "b1"}), id).await;
    let (_, entry) = call(&server, "GET", "/v1/kv/exp/k", None).await;
    assert_eq!(
        entry["lease"],
        json!(id),
        "the key shows its lease: {entry}"
    );

    let key_watch = spawn_get(&server, format!("/v1/kv/exp/k?index={written}&wait=30s"));
    let feed_watch = spawn_get(
        &server,
        format!("/v1/changes?prefix=exp/&from={written}&wait=30s"),
    );
    server.wait_for_waiters(2, REGISTERED_WITHIN).await;

    let (sent, acked) = keep_alive_once(&server, id).await;
    let gone_at = wait_gone(&server, "exp/k", acked + TTL + EXPIRY_SLACK).await;
    assert!(
        gone_at >= sent + TTL - Duration::from_millis(500),
        "the key went {:?} after the last keep-alive, before its TTL of {TTL:?}",
        gone_at - sent
    );

    let (status, index, body) = tokio::time::timeout(Duration::from_secs(5), key_watch)
        .await
        .expect("the expiry woke the key's watch")
        .unwrap();
    assert_eq!(
        (status, error_of(&body).0),
        (404, "key_not_found"),
        "{body}"
    );
    let ended = index.expect("the watch answers X-Kv-Index");
    assert!(
        ended > written,
        "the index moved to the expiry: {ended} after {written}"
    );

    let (status, _, page) = tokio::time::timeout(Duration::from_secs(5), feed_watch)
        .await
        .expect("the expiry woke the change-feed watch")
        .unwrap();
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "only the key's tombstone: {page}");
    let tombstone = &records[0];
    assert_eq!(tombstone["key"], "exp/k");
    assert_eq!(tombstone["deleted"], json!(true), "{tombstone}");
    // The unit's last record is the lease's own tombstone: the key's record
    // is one before the revision of the whole unit.
    assert_eq!(tombstone["revision"], json!(ended), "{tombstone}");
    assert_eq!(
        tombstone["offset"],
        json!(ended - 1),
        "the lease's end follows it: {tombstone}"
    );
    assert_eq!(page["next"], json!(ended), "{page}");

    let (status, body) = call(&server, "GET", &format!("/v1/leases/{id}"), None).await;
    assert_eq!((status, error_of(&body).0), (404, "lease_not_found"));

    // The lease's key shows nowhere a client reads.
    let (_, feed) = call(&server, "GET", "/v1/changes?from=0", None).await;
    assert!(!mentions_a_lease_key(&feed.to_string()), "{feed}");
    let (_, list) = call(&server, "GET", "/v1/kv?prefix=", None).await;
    assert!(!mentions_a_lease_key(&list.to_string()), "{list}");
    let replay = server
        .client()
        .get(server.url("/v1/topic/records?from=0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(replay.contains("exp/k"), "{replay}");
    assert!(!mentions_a_lease_key(&replay), "{replay}");
}

#[tokio::test]
async fn keep_alives_every_third_of_the_ttl_keep_a_lease_and_its_key_for_three_ttls() {
    let server = TestServer::start().await;
    let id = grant(server.client(), &server.base_url(), TTL.as_secs()).await;
    put_with_lease(&server, "kept/k", json!(1), id).await;
    let until = Instant::now() + 3 * TTL;
    while Instant::now() < until {
        keep_alive_once(&server, id).await;
        let (status, body) = call(&server, "GET", "/v1/kv/kept/k", None).await;
        assert_eq!(status, 200, "the kept lease's key is there: {body}");
        tokio::time::sleep(TTL / 3).await;
    }
    let (status, info) = call(&server, "GET", &format!("/v1/leases/{id}"), None).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (&info["ttl_s"], &info["keys"]),
        (&json!(5), &json!(["kept/k"]))
    );
    let remaining = info["remaining_ttl_s"].as_u64().unwrap();
    assert!((1..=5).contains(&remaining), "{info}");
}

#[tokio::test]
async fn a_revoke_deletes_the_leases_keys_in_one_unit_and_spares_keys_moved_or_detached() {
    let server = TestServer::start().await;
    let (client, base) = (server.client(), server.base_url());
    let doomed = grant(client, &base, 60).await;
    let other = grant(client, &base, 60).await;
    put_with_lease(&server, "rv/a", json!("a"), doomed).await;
    put_with_lease(&server, "rv/c", json!("c"), doomed).await;
    put_with_lease(&server, "rv/d", json!("d"), doomed).await;
    // A transaction's put attaches too.
    let (status, body) = call(
        &server,
        "POST",
        "/v1/txn",
        Some(json!({"success": [{"put": {"key": "rv/b", "value": "b", "lease": doomed}}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A topic's config attaches as a key does.
    let (status, body) = call(
        &server,
        "PUT",
        &format!("/v1/topics/rvt?lease={doomed}"),
        Some(json!({"topicName": "rvt"})),
    )
    .await;
    assert!(status == 200 || status == 201, "{body}");
    // rv/c moves to the other lease; rv/d is put again without one.
    put_with_lease(&server, "rv/c", json!("c2"), other).await;
    let (status, body) = call(&server, "PUT", "/v1/kv/rv/d", Some(json!("d2"))).await;
    assert!(status == 200 || status == 201, "{body}");
    let before = body["revision"].as_u64().unwrap();

    let (status, revoked) = call(&server, "DELETE", &format!("/v1/leases/{doomed}"), None).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(
        (&revoked["id"], &revoked["deleted"]),
        (&json!(doomed), &json!(3)),
        "{revoked}"
    );
    let revision = revoked["revision"].as_u64().unwrap();

    for key in ["rv/a", "rv/b", "topics/rvt"] {
        let (status, _) = call(&server, "GET", &format!("/v1/kv/{key}"), None).await;
        assert_eq!(status, 404, "{key} went with its lease");
    }
    let (_, moved) = call(&server, "GET", "/v1/kv/rv/c", None).await;
    assert_eq!(
        (&moved["value"], &moved["lease"]),
        (&json!("c2"), &json!(other)),
        "{moved}"
    );
    let (_, detached) = call(&server, "GET", "/v1/kv/rv/d", None).await;
    assert_eq!(detached["value"], "d2");
    assert!(
        detached.get("lease").is_none(),
        "a put without lease detaches: {detached}"
    );

    // One page, even of one record, holds the unit whole: both tombstones
    // at the revoke's revision.
    let (status, page) = call(
        &server,
        "GET",
        &format!("/v1/changes?from={before}&limit=1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().unwrap();
    let keys: Vec<&str> = records
        .iter()
        .map(|record| record["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["rv/a", "rv/b", "topics/rvt"], "{page}");
    for record in records {
        assert_eq!(
            (&record["deleted"], &record["revision"]),
            (&json!(true), &json!(revision)),
            "{record}"
        );
    }
    assert_eq!(page["next"], json!(revision));

    let (status, body) = call(&server, "DELETE", &format!("/v1/leases/{doomed}"), None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (404, "lease_not_found"),
        "{body}"
    );
    let (status, body) = keep_alive(client, &base, doomed).await.unwrap();
    assert_eq!(
        (status, error_of(&body).0),
        (404, "lease_not_found"),
        "{body}"
    );
    let (_, info) = call(&server, "GET", &format!("/v1/leases/{other}"), None).await;
    assert_eq!(info["keys"], json!(["rv/c"]), "{info}");
}

#[tokio::test]
async fn a_put_with_a_missing_lease_is_refused_and_writes_nothing() {
    let server = TestServer::start().await;
    let (_, feed) = call(&server, "GET", "/v1/changes?from=0", None).await;
    let before = feed["next"].clone();
    let cases = [
        ("/v1/kv/ml/k?lease=999", json!(1), "/v1/kv/ml/k"),
        (
            "/v1/topics/t1?lease=999",
            json!({"topicName": "t1"}),
            "/v1/topics/t1",
        ),
        (
            "/v1/subscriptions/g1?lease=999",
            json!({"groupName": "g1"}),
            "/v1/subscriptions/g1",
        ),
    ];
    for (path, body, read_back) in cases {
        let (status, refused) = call(&server, "PUT", path, Some(body)).await;
        assert_eq!(
            (status, error_of(&refused)),
            (404, ("lease_not_found", Some("lease"))),
            "PUT {path}: {refused}"
        );
        let (status, _) = call(&server, "GET", read_back, None).await;
        assert_eq!(status, 404, "nothing was written at {read_back}");
    }
    let (_, feed) = call(&server, "GET", "/v1/changes?from=0", None).await;
    assert_eq!(feed["next"], before, "no revision was used: {feed}");
}

#[tokio::test]
async fn max_leases_refuses_one_more_grant_until_a_lease_is_revoked() {
    let server = TestServer::start_with(&["--max-leases", "3"]).await;
    let (client, base) = (server.client(), server.base_url());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(grant(client, &base, 60).await);
    }
    let (status, body) = call(&server, "POST", "/v1/leases", Some(json!({"ttl_s": 60}))).await;
    assert_eq!((status, error_of(&body).0), (429, "lease_limit"), "{body}");
    let (status, _) = call(&server, "DELETE", &format!("/v1/leases/{}", ids[0]), None).await;
    assert_eq!(status, 200);
    grant(client, &base, 60).await;
}

#[tokio::test]
async fn bad_lease_input_is_refused_with_a_json_error_naming_the_field() {
    let server = TestServer::start().await;
    let cases = [
        (
            "POST",
            "/v1/leases",
            Some(json!({"ttl_s": 4})),
            400,
            "invalid_ttl",
            Some("ttl_s"),
        ),
        (
            "POST",
            "/v1/leases",
            Some(json!({"ttl_s": 86_401})),
            400,
            "invalid_ttl",
            Some("ttl_s"),
        ),
        (
            "GET",
            "/v1/leases/abc",
            None,
            400,
            "invalid_lease_id",
            Some("id"),
        ),
        (
            "DELETE",
            "/v1/leases/abc",
            None,
            400,
            "invalid_lease_id",
            Some("id"),
        ),
        (
            "POST",
            "/v1/leases/abc/keepalive",
            None,
            400,
            "invalid_lease_id",
            Some("id"),
        ),
        // A keep-alive asking for another TTL was answered as if heard.
        (
            "POST",
            "/v1/leases/7/keepalive",
            Some(json!({"ttl_s": 100})),
            400,
            "invalid_body",
            None,
        ),
        (
            "GET",
            "/v1/leases/0",
            None,
            400,
            "invalid_lease_id",
            Some("id"),
        ),
        (
            "PUT",
            "/v1/kv/bad/k?lease=abc",
            Some(json!(1)),
            400,
            "invalid_lease_id",
            Some("lease"),
        ),
        (
            "PUT",
            "/v1/kv/bad/k?lease=0",
            Some(json!(1)),
            400,
            "invalid_lease_id",
            Some("lease"),
        ),
        (
            "PUT",
            "/v1/kv/bad/k?lease=-3",
            Some(json!(1)),
            400,
            "invalid_lease_id",
            Some("lease"),
        ),
    ];
    for (method, path, body, want_status, want_code, want_field) in cases {
        let (status, answer) = call(&server, method, path, body).await;
        assert_eq!(
            (status, error_of(&answer)),
            (want_status, (want_code, want_field)),
            "{method} {path}: {answer}"
        );
    }
    // An unknown field in a grant: refused, and the message names it.
    let (status, answer) = call(
        &server,
        "POST",
        "/v1/leases",
        Some(json!({"ttl_s": 10, "ttl_ms": 5})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    error_of(&answer);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ttl_ms"),
        "the error names the unknown field: {answer}"
    );
    let (_, list) = call(&server, "GET", "/v1/leases", None).await;
    assert_eq!(list, json!({"leases": []}), "no bad grant made a lease");
    let (status, _) = call(&server, "GET", "/v1/kv/bad/k", None).await;
    assert_eq!(status, 404, "no bad put wrote the key");
}

#[tokio::test]
async fn a_lease_and_its_key_survive_a_restart_and_still_expire_after_it() {
    let mut server = TestServer::start().await;
    let id = grant(server.client(), &server.base_url(), TTL.as_secs()).await;
    put_with_lease(&server, "rs/k", json!("kept"), id).await;

    server.stop().await;
    let spawned = Instant::now();
    server.restart().await;
    let restarted = Instant::now();
    // The node keeps deadlines once it leads again: until then lease
    // reads answer 503.
    let leading_at = loop {
        let (status, info) = call(&server, "GET", &format!("/v1/leases/{id}"), None).await;
        if status == 200 {
            assert_eq!(
                (&info["ttl_s"], &info["keys"]),
                (&json!(5), &json!(["rs/k"])),
                "{info}"
            );
            break Instant::now();
        }
        assert_eq!(status, 503, "{info}");
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "the node did not keep the leases again"
        );
        tokio::time::sleep(POLL).await;
    };
    let (_, entry) = call(&server, "GET", "/v1/kv/rs/k", None).await;
    assert_eq!(
        (&entry["value"], &entry["lease"]),
        (&json!("kept"), &json!(id)),
        "{entry}"
    );

    // No keep-alive since the restart: the lease ends a whole TTL after
    // the node began keeping it, which it did after it was spawned.
    let election = leading_at - restarted;
    let gone_at = wait_gone(&server, "rs/k", restarted + TTL + election + EXPIRY_SLACK).await;
    assert!(
        gone_at >= spawned + TTL,
        "the key went {:?} after the node was started again, before a whole TTL",
        gone_at - spawned
    );
    let (status, _) = call(&server, "GET", &format!("/v1/leases/{id}"), None).await;
    assert_eq!(status, 404);
}

/// What a node shows of its leases and keys, the time left aside.
async fn visible_state(
    server: &TestServer,
) -> (BTreeMap<String, Value>, BTreeMap<u64, (u64, Vec<String>)>) {
    (
        view_keys(server.client(), &server.base_url()).await,
        lease_table(server.client(), &server.base_url()).await,
    )
}

#[tokio::test]
async fn a_view_rebuilt_from_the_topic_equals_the_live_one_after_expiries_and_revokes() {
    let mut server = TestServer::start().await;
    let (client, base) = (server.client().clone(), server.base_url());
    let expiring = grant(&client, &base, TTL.as_secs()).await;
    let revoked = grant(&client, &base, 60).await;
    let kept = grant(&client, &base, 60).await;
    let idle = grant(&client, &base, 30).await;
    put_with_lease(&server, "rb/1", json!(1), expiring).await;
    put_with_lease(&server, "rb/2", json!(2), revoked).await;
    put_with_lease(&server, "rb/3", json!(3), kept).await;
    put_with_lease(&server, "rb/4", json!(4), idle).await;
    put_with_lease(&server, "rb/5", json!(5), expiring).await;
    put_with_lease(&server, "rb/5", json!(55), kept).await;
    put_with_lease(&server, "rb/6", json!(6), revoked).await;
    call(&server, "PUT", "/v1/kv/rb/6", Some(json!(66))).await;
    call(&server, "PUT", "/v1/kv/rb/7", Some(json!(7))).await;
    let (status, _) = call(&server, "DELETE", &format!("/v1/leases/{revoked}"), None).await;
    assert_eq!(status, 200);
    // How soon a lease ends is the other tests' business; this one needs it
    // ended. A node that had not started keeping deadlines when the grant
    // was applied gives the lease its full TTL from when it does.
    wait_gone(&server, "rb/1", Instant::now() + 3 * TTL).await;

    let live = visible_state(&server).await;
    let keys: Vec<&String> = live.0.keys().collect();
    assert_eq!(keys, ["rb/3", "rb/4", "rb/5", "rb/6", "rb/7"], "{live:?}");
    assert_eq!(
        live.1.keys().copied().collect::<Vec<_>>(),
        [kept, idle],
        "{live:?}"
    );

    server.stop().await;
    std::fs::remove_dir_all(server.data_dir().join("view")).expect("the view can be removed");
    server.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while call(&server, "GET", "/v1/leases", None).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the rebuilt node did not keep the leases"
        );
        tokio::time::sleep(POLL).await;
    }
    let rebuilt = visible_state(&server).await;
    assert_eq!(rebuilt, live, "the rebuilt view differs from the live one");
}
