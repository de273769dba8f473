//! The change feed (`/v1/changes`) across compaction: deletes stay visible
//! until the cleaner drops their tombstones, then a reader from below the
//! tombstone floor is told 410 Gone instead of being served an incomplete
//! history.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use integration_tests::TestServer;
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

async fn changes(server: &TestServer, query: &str) -> (u16, Value) {
    let response = server
        .client()
        .get(server.url(&format!("/v1/changes?{query}")))
        .send()
        .await
        .expect("the change feed answers");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.expect("the change feed answers JSON"),
    )
}

/// The status of a replay from offset `from`, and its body when refused.
async fn replay(server: &TestServer, from: u64) -> (u16, Value) {
    let response = server
        .client()
        .get(server.url(&format!("/v1/topic/records?from={from}")))
        .send()
        .await
        .expect("the replay answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the body is readable");
    let body = if status == 200 {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}

/// The offset a 410 says to read again from ("… or from N or later").
fn resume_offset(refusal: &Value) -> u64 {
    let message = refusal["error"]["message"].as_str().unwrap_or_default();
    message
        .rsplit("or from ")
        .next()
        .and_then(|rest| rest.split(' ').next())
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("no offset to resume from in {refusal}"))
}

async fn put(server: &TestServer, key: &str, value: Value) -> u64 {
    let response = server
        .client()
        .put(server.url(&format!("/v1/kv/{key}")))
        .json(&value)
        .send()
        .await
        .expect("the write is answered");
    assert!(
        response.status().is_success(),
        "PUT {key}: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("a write answers JSON");
    body["revision"]
        .as_u64()
        .expect("a write answers its revision")
}

async fn delete(server: &TestServer, key: &str) -> u64 {
    let response = server
        .client()
        .delete(server.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .expect("the delete is answered");
    assert!(
        response.status().is_success(),
        "DELETE {key}: {}",
        response.status()
    );
    let body: Value = response.json().await.expect("a delete answers JSON");
    body["revision"]
        .as_u64()
        .expect("a delete answers its revision")
}

/// The latest record of every key in a change-feed answer.
fn latest_by_key(page: &Value) -> BTreeMap<String, Value> {
    page["records"]
        .as_array()
        .expect("records is an array")
        .iter()
        .map(|record| {
            (
                record["key"].as_str().unwrap().to_string(),
                record["value"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_feed_returns_the_latest_record_per_key_deletes_included() {
    let server = TestServer::start().await;
    let first = put(&server, "feed/a", json!(1)).await;
    put(&server, "feed/a", json!(2)).await;
    put(&server, "feed/b", json!("x")).await;
    let deleted_at = delete(&server, "feed/b").await;
    put(&server, "other/c", json!(true)).await;

    let (status, page) = changes(&server, "from=0&prefix=feed/").await;
    assert_eq!(status, 200, "{page}");
    let latest = latest_by_key(&page);
    assert_eq!(
        latest.len(),
        2,
        "one record per key, none outside the prefix: {page}"
    );
    assert_eq!(latest["feed/a"], json!(2));
    assert_eq!(
        latest["feed/b"],
        Value::Null,
        "a delete shows as a null value"
    );

    // From an offset, only what changed after it.
    let (_, page) = changes(&server, &format!("from={first}&prefix=feed/")).await;
    assert_eq!(latest_by_key(&page)["feed/b"], Value::Null);
    let (_, page) = changes(&server, &format!("from={deleted_at}&prefix=feed/")).await;
    assert!(latest_by_key(&page).is_empty(), "{page}");
    assert!(page["next"].as_u64().unwrap() >= deleted_at);
}

#[tokio::test]
async fn a_waiting_feed_answers_when_its_prefix_changes() {
    let server = TestServer::start().await;
    let from = put(&server, "feed/a", json!(1)).await;
    let waiting = {
        let client = server.client().clone();
        let url = server.url(&format!("/v1/changes?from={from}&prefix=feed/&wait=10s"));
        tokio::spawn(async move {
            let started = Instant::now();
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            (started.elapsed(), page)
        })
    };
    server.wait_for_waiters(1, Duration::from_secs(10)).await;
    put(&server, "other/x", json!(0)).await;
    // A write is answered after its waiters were woken: the feed still
    // waits if it was not one of them.
    assert_eq!(
        server.waiters().await,
        1,
        "a write outside the prefix ended the wait"
    );
    let written = put(&server, "feed/b", json!(2)).await;
    let (elapsed, page) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the feed answered after the write")
        .unwrap();
    assert!(elapsed < Duration::from_secs(5));
    assert_eq!(page["records"][0]["offset"], json!(written), "{page}");
}

#[tokio::test]
async fn a_reader_below_the_tombstone_floor_gets_410_and_one_above_it_sees_every_delete() {
    let server = TestServer::start_with(EAGER_CLEANER).await;
    for key in ["feed/a", "feed/b", "feed/c"] {
        put(&server, key, json!({ "key": key })).await;
    }
    let deleted_at = delete(&server, "feed/a").await;

    // Keep writing so segments roll and the cleaner has dirt to compact,
    // until it has dropped the tombstone: then reading from 1 is refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut writes = 0u64;
    let gone = loop {
        assert!(
            Instant::now() < deadline,
            "the tombstone was never compacted away"
        );
        assert!(writes < 5_000, "the tombstone was never compacted away");
        put(
            &server,
            "filler/x",
            json!({ "padding": "p".repeat(200), "n": writes }),
        )
        .await;
        writes += 1;
        let (status, body) = changes(&server, "from=1").await;
        if status == 410 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(gone["error"]["code"], "below_tombstone_floor", "{gone}");

    // The floor is one above the dropped tombstone; from there on the feed
    // answers, and replay from 0 is always allowed.
    let (status, _) = changes(&server, &format!("from={deleted_at}")).await;
    assert_eq!(status, 200);

    // Each refusal names where to resume, in its own reading of `from`
    // (the feed: after it; a replay: from it): there it answers, one
    // before it does not.
    let (_, refused) = changes(&server, "from=1").await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("list the keys"), "{refused}");
    let after = resume_offset(&refused);
    assert_eq!(changes(&server, &format!("from={after}")).await.0, 200);
    assert_eq!(
        changes(&server, &format!("from={}", after - 1)).await.0,
        410
    );
    let (status, refused) = replay(&server, 2).await;
    assert_eq!(status, 410, "{refused}");
    let first = resume_offset(&refused);
    assert_eq!(first, after + 1, "{refused}");
    assert_eq!(replay(&server, first).await.0, 200);
    assert_eq!(replay(&server, first - 1).await.0, 410);
    let (status, page) = changes(&server, "from=0&prefix=feed/").await;
    assert_eq!(status, 200, "{page}");
    let latest = latest_by_key(&page);
    assert!(
        !latest.contains_key("feed/a"),
        "the deleted key is gone: {page}"
    );
    assert_eq!(latest.len(), 2, "{page}");

    // Paging from 0 stops below the floor, and the next page is refused:
    // reading from 0 again would loop. The refusal's way on is a list and
    // the changes after its revision.
    let (status, first_page) = changes(&server, "from=0&limit=1").await;
    assert_eq!(
        (status, &first_page["more"]),
        (200, &json!(true)),
        "{first_page}"
    );
    let next = first_page["next"].as_u64().expect("a next");
    assert!(
        next + 1 < after + 1,
        "the first page ends below the floor: {first_page}"
    );
    assert_eq!(changes(&server, &format!("from={next}")).await.0, 410);
    let listed = server
        .client()
        .get(server.url("/v1/kv?prefix=feed/"))
        .send()
        .await
        .expect("the list answers");
    assert_eq!(listed.status(), 200);
    let revision: u64 = listed.headers()["x-kv-revision"]
        .to_str()
        .expect("text")
        .parse()
        .expect("a revision");
    let (status, page) = changes(&server, &format!("from={revision}")).await;
    assert_eq!(status, 200, "{page}");
}

#[tokio::test]
async fn a_full_page_of_other_keys_is_answered_at_once_with_more() {
    let server = TestServer::start().await;
    for n in 0..5 {
        put(&server, &format!("other/{n}"), json!(n)).await;
    }
    let started = Instant::now();
    let (status, page) = changes(&server, "from=0&prefix=mine/&limit=2&wait=5s").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a page that stopped at its limit did not wait"
    );
    assert_eq!(page["records"], json!([]));
    assert_eq!(page["more"], json!(true), "{page}");
    let next = page["next"].as_u64().unwrap();
    let (_, last) = changes(&server, &format!("from={next}&prefix=mine/&limit=100")).await;
    assert_eq!(last["more"], json!(false), "{last}");
}

#[tokio::test]
async fn a_put_of_null_is_not_a_delete_in_the_feed() {
    let server = TestServer::start().await;
    put(&server, "nulls/put", Value::Null).await;
    put(&server, "nulls/gone", json!(1)).await;
    delete(&server, "nulls/gone").await;
    let (_, page) = changes(&server, "from=0&prefix=nulls/").await;
    let records = page["records"].as_array().unwrap();
    let of = |key: &str| {
        records
            .iter()
            .find(|record| record["key"] == key)
            .unwrap_or_else(|| panic!("{key} in {page}"))
            .clone()
    };
    assert_eq!(of("nulls/put")["deleted"], json!(false));
    assert_eq!(of("nulls/put")["value"], Value::Null);
    assert_eq!(of("nulls/gone")["deleted"], json!(true));
}
