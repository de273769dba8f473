//! Leases through the Rust client and kvctl against real servers: keys
//! attached with a lease, revocation, a `KeepAlive` handle that keeps a
//! lease alive across several TTLs and a leader kill, and the lease's end
//! once the handle is dropped.

use std::time::Duration;

use integration_tests::{kvctl, TestCluster, TestServer};
use kv_client::{Client, KeepAliveStatus, TxnOp, WriteOptions};
use tokio::time::Instant;

/// The shortest TTL the server grants, in seconds: the tests' clock.
const TTL_S: u64 = kv_client::MIN_LEASE_TTL_S;
const TTL: Duration = Duration::from_secs(TTL_S);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(100);

fn client_of(urls: impl IntoIterator<Item = String>) -> Client {
    Client::builder(urls)
        .deadline(Duration::from_secs(20))
        .request_timeout(Duration::from_secs(5))
        .build()
        .expect("loopback URLs are valid endpoints")
}

/// Checks for `period` that `key` exists and `kept` is alive, every poll.
async fn assert_alive_for(
    client: &Client,
    kept: &kv_client::KeepAlive,
    key: &str,
    period: Duration,
) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(
            matches!(kept.status(), KeepAliveStatus::Alive { .. }),
            "lease {} lost: {:?}",
            kept.id(),
            kept.status()
        );
        let entry = client.get(key).await.expect("the cluster answers");
        assert_eq!(
            entry.and_then(|entry| entry.lease),
            Some(kept.id()),
            "{key}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_key_put_with_a_lease_is_attached_and_listed_in_the_leases_info() {
    let server = TestServer::start().await;
    let client = client_of([server.url("")]);

    let lease = client.grant_lease(30).await.unwrap();
    assert_eq!(lease.ttl_s, 30);
    let written = client
        .put_with(
            "brokers/b1",
            &"10.0.0.7:10911",
            WriteOptions::new().lease(lease.id),
        )
        .await
        .unwrap();
    assert!(written.created);
    client
        .txn()
        .and_then(TxnOp::put_with_lease("brokers/b2", &"10.0.0.8:10911", lease.id).unwrap())
        .commit()
        .await
        .unwrap();
    client.put("brokers/unleased", &1).await.unwrap();

    let entry = client.get("brokers/b1").await.unwrap().expect("written");
    assert_eq!(entry.lease, Some(lease.id));
    let info = client.lease(lease.id).await.unwrap().expect("granted");
    assert_eq!(info.keys, ["brokers/b1", "brokers/b2"]);
    assert_eq!(info.ttl_s, 30);
    assert!((1..=30).contains(&info.remaining_ttl_s), "{info:?}");
    let listed = client.leases().await.unwrap();
    assert_eq!(
        listed.iter().map(|lease| lease.id).collect::<Vec<_>>(),
        [lease.id]
    );

    let renewed = client.keep_alive_once(lease.id).await.unwrap();
    assert_eq!((renewed.id, renewed.ttl_s), (lease.id, 30));

    // A put without the lease detaches the key.
    client.put("brokers/b2", &"moved").await.unwrap();
    let info = client.lease(lease.id).await.unwrap().expect("granted");
    assert_eq!(info.keys, ["brokers/b1"]);
}

#[tokio::test]
async fn revoking_a_lease_deletes_its_keys_and_the_lease_is_then_not_found() {
    let server = TestServer::start().await;
    let client = client_of([server.url("")]);

    let lease = client.grant_lease(30).await.unwrap();
    for key in ["sessions/a", "sessions/b"] {
        client
            .put_with(key, &true, WriteOptions::new().lease(lease.id))
            .await
            .unwrap();
    }
    let revoked = client.revoke_lease(lease.id).await.unwrap();
    assert_eq!((revoked.id, revoked.deleted), (lease.id, 2));

    assert_eq!(client.get("sessions/a").await.unwrap(), None);
    assert_eq!(client.get("sessions/b").await.unwrap(), None);
    assert_eq!(client.lease(lease.id).await.unwrap(), None);
    assert!(client.leases().await.unwrap().is_empty());
    let gone = client.keep_alive_once(lease.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    let gone = client.revoke_lease(lease.id).await.unwrap_err();
    assert_eq!(
        gone.code(),
        Some(kv_client::ErrorCode::LeaseNotFound),
        "{gone}"
    );
    let refused = client
        .put_with("sessions/c", &true, WriteOptions::new().lease(lease.id))
        .await
        .unwrap_err();
    assert!(refused.is_not_found(), "{refused}");
}

#[tokio::test]
async fn a_kept_alive_lease_outlives_its_ttl_and_ends_within_a_ttl_once_the_handle_is_dropped() {
    let server = TestServer::start().await;
    let client = client_of([server.url("")]);

    let kept = client.grant_lease_kept_alive(TTL_S).await.unwrap();
    client
        .put_with("workers/w1", &"up", WriteOptions::new().lease(kept.id()))
        .await
        .unwrap();
    assert_alive_for(&client, &kept, "workers/w1", 2 * TTL).await;
    let KeepAliveStatus::Alive { renewals } = kept.status() else {
        panic!("lost: {:?}", kept.status());
    };
    assert!(renewals >= 4, "only {renewals} keep-alives in two TTLs");

    let id = kept.id();
    drop(kept);
    let dropped = Instant::now();
    let limit = TTL + Duration::from_secs(1);
    while client.get("workers/w1").await.unwrap().is_some() {
        assert!(
            dropped.elapsed() < limit,
            "the key outlived the dropped handle by {limit:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(client.lease(id).await.unwrap(), None);
}

#[tokio::test]
async fn a_revoked_kept_alive_lease_is_reported_lost() {
    let server = TestServer::start().await;
    let client = client_of([server.url("")]);

    let kept = client.grant_lease_kept_alive(TTL_S).await.unwrap();
    client.revoke_lease(kept.id()).await.unwrap();
    let lost = tokio::time::timeout(TTL, kept.lost())
        .await
        .expect("the loss is seen at the next keep-alive");
    assert_eq!(lost, kv_client::LeaseLost::NotFound { id: kept.id() });
}

#[tokio::test]
async fn a_lease_kept_alive_with_no_node_in_reach_is_lost_once_its_ttl_ran_out() {
    let client = client_of([integration_tests::closed_port_url()]);
    let started = Instant::now();
    let kept = client.keep_alive(kv_client::Lease {
        id: 7,
        ttl_s: TTL_S,
    });
    let lost = tokio::time::timeout(TTL + Duration::from_secs(1), kept.lost())
        .await
        .expect("the loss is reported once the TTL ran out");
    assert!(
        started.elapsed() >= TTL,
        "lost after only {:?}",
        started.elapsed()
    );
    assert!(
        matches!(lost, kv_client::LeaseLost::TimedOut { id: 7, .. }),
        "{lost:?}"
    );
}

/// A lease kept alive knowing the time it had left is reported lost once
/// that time ran out, not a whole TTL later: it used to be taken as just
/// renewed.
#[tokio::test]
async fn a_lease_kept_alive_with_its_time_left_is_lost_once_that_ran_out() {
    let client = client_of([integration_tests::closed_port_url()]);
    let started = Instant::now();
    let left = Duration::from_millis(500);
    let kept = client.keep_alive_with_time_left(kv_client::Lease { id: 8, ttl_s: 30 }, left);
    let lost = tokio::time::timeout(Duration::from_secs(10), kept.lost())
        .await
        .expect("the loss is reported once the time left ran out, not the TTL");
    assert!(
        started.elapsed() >= left,
        "lost after only {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            lost,
            kv_client::LeaseLost::TimedOut {
                id: 8,
                ttl_s: 30,
                ..
            }
        ),
        "{lost:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_lease_survives_a_leader_kill() {
    let mut cluster = TestCluster::start(3, &[]).await;
    let client = client_of(cluster.urls());

    let kept = client.grant_lease_kept_alive(TTL_S).await.unwrap();
    client
        .put_with("brokers/b1", &"up", WriteOptions::new().lease(kept.id()))
        .await
        .unwrap();
    let leader = cluster.leader().await;
    cluster.node_mut(leader).kill9().await;

    assert_alive_for(&client, &kept, "brokers/b1", 2 * TTL).await;
    let info = client
        .lease(kept.id())
        .await
        .unwrap()
        .expect("the lease lives");
    assert_eq!(info.keys, ["brokers/b1"]);

    let revoked = kept.revoke().await.unwrap();
    assert_eq!(revoked.deleted, 1);
    assert_eq!(client.get("brokers/b1").await.unwrap(), None);
}

#[tokio::test]
async fn kvctl_grants_keeps_alive_shows_lists_and_revokes_leases() {
    let server = TestServer::start().await;
    let url = server.url("");

    let granted = kvctl(&url, &["-o", "json", "lease", "grant", "30"])
        .await
        .success()
        .json();
    let id = granted["id"].as_u64().expect("a lease id");
    assert_eq!(granted["ttl_s"], 30);
    let id_text = id.to_string();
    let id = id_text.as_str();

    let put = kvctl(&url, &["put", "--lease", id, "brokers/b1", r#""up""#])
        .await
        .success();
    assert!(
        put.stdout.starts_with("created \"brokers/b1\""),
        "{}",
        put.stdout
    );

    let shown = kvctl(&url, &["lease", "get", id]).await.success();
    assert!(shown.stdout.contains("brokers/b1"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("remaining_ttl_s:"),
        "{}",
        shown.stdout
    );
    let shown = kvctl(&url, &["-o", "json", "lease", "get", id])
        .await
        .success()
        .json();
    assert_eq!(shown["keys"], serde_json::json!(["brokers/b1"]));

    let renewed = kvctl(&url, &["lease", "keepalive", id, "--once"])
        .await
        .success();
    assert!(
        renewed.stdout.contains(&format!("lease {id} kept alive")),
        "{}",
        renewed.stdout
    );

    let listed = kvctl(&url, &["lease", "list"]).await.success();
    assert!(
        listed.stdout.contains("REMAINING_TTL_S"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.lines().any(|line| line.starts_with(id)),
        "{}",
        listed.stdout
    );
    let listed = kvctl(&url, &["-o", "json", "lease", "list"])
        .await
        .success()
        .json();
    assert_eq!(
        listed[0]["id"].as_u64(),
        Some(granted["id"].as_u64().unwrap())
    );

    let revoked = kvctl(&url, &["-o", "json", "lease", "revoke", id])
        .await
        .success()
        .json();
    assert_eq!(revoked["deleted"], 1);

    for args in [
        vec!["lease", "get", id],
        vec!["lease", "keepalive", id, "--once"],
        vec!["lease", "keepalive", id],
        vec!["lease", "revoke", id],
        vec!["put", "--lease", id, "brokers/b1", "1"],
    ] {
        let missing = kvctl(&url, &args).await.expect_code(1);
        assert!(
            missing.stderr.contains("lease_not_found"),
            "{args:?}: {}",
            missing.stderr
        );
    }
    kvctl(&url, &["lease", "grant", "1"]).await.expect_code(2);
}

#[tokio::test]
async fn kvctl_keepalive_prints_each_renewal_and_fails_once_the_lease_is_gone() {
    let server = TestServer::start().await;
    let url = server.url("");
    let client = client_of([url.clone()]);
    let lease = client.grant_lease(TTL_S).await.unwrap();
    let id = lease.id.to_string();

    let args = ["lease", "keepalive", id.as_str()];
    let keeping = kvctl(&url, &args);
    let revoking = async {
        // Two renewals: the first at once, the next a third of the TTL later.
        tokio::time::sleep(TTL * 3 / 4).await;
        client.revoke_lease(lease.id).await.unwrap();
    };
    let (kept, ()) = tokio::join!(keeping, revoking);
    let kept = kept.expect_code(1);
    let renewals = kept.lines_with("kept alive");
    assert!(renewals >= 2, "{}", kept.stdout);
    assert!(kept.stderr.contains("lease_not_found"), "{}", kept.stderr);
}
