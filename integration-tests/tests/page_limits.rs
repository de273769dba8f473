//! Pages bounded by bytes: lists and the change feed stop at
//! `--max-page-bytes` and say `more`, against a real server.

use integration_tests::{call, TestServer};
use serde_json::{json, Value};

/// `--max-page-bytes` of the page tests: room for two values of
/// [`VALUE_CHARS`] characters, not three.
const PAGE_BYTES: &str = "3000";
/// Characters of the string each paged value holds (its JSON is 2 more).
const VALUE_CHARS: usize = 1000;
/// Keys, topics and groups written per page test.
const ENTRIES: usize = 7;

/// A JSON string value of `chars` characters.
fn text_of(chars: usize) -> Value {
    Value::String("v".repeat(chars))
}

/// Follows `path` page by page (`start_after` the last name of each) and
/// returns each page's names; `names` reads a page's names and `more`.
async fn pages(
    server: &TestServer,
    path: &str,
    names: impl Fn(&Value) -> (Vec<String>, bool),
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut start_after: Option<String> = None;
    for _ in 0..=ENTRIES {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = match &start_after {
            Some(after) => format!("{path}{separator}start_after={after}"),
            None => path.to_string(),
        };
        let (status, page) = call(server, "GET", &url, None).await;
        assert_eq!(status, 200, "GET {url}: {page}");
        let (page_names, more) = names(&page);
        start_after = page_names.last().cloned();
        pages.push(page_names);
        if !more {
            return pages;
        }
    }
    panic!("{path} still says more after {ENTRIES} pages: {pages:?}");
}

/// The names of `items`' objects under `field`.
fn names_under(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {items}"))
        .iter()
        .map(|item| {
            item[field]
                .as_str()
                .expect("each item is named")
                .to_string()
        })
        .collect()
}

/// `count` names `prefix0`, `prefix1`, … in order.
fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

/// Writes one paged value (`VALUE_CHARS` long) at `key`.
async fn put_paged_value(server: &TestServer, key: &str) {
    let (status, _) = call(
        server,
        "PUT",
        &format!("/v1/kv/{key}"),
        Some(text_of(VALUE_CHARS)),
    )
    .await;
    assert_eq!(status, 201, "PUT {key}");
}

/// Every page holds two of the values, the last what is left.
fn two_per_page(names: &[String]) -> Vec<Vec<String>> {
    names.chunks(2).map(<[String]>::to_vec).collect()
}

/// The keys of each page of the list under `prefix`.
async fn key_pages(server: &TestServer, prefix: &str) -> Vec<Vec<String>> {
    pages(server, &format!("/v1/kv?prefix={prefix}"), |page| {
        (
            names_under(&page["entries"], "key"),
            page["more"] == json!(true),
        )
    })
    .await
}

#[tokio::test]
async fn key_lists_stop_at_the_page_byte_bound_and_say_more() {
    let server = TestServer::start_with(&["--max-page-bytes", PAGE_BYTES]).await;
    for key in numbered("k/", ENTRIES) {
        put_paged_value(&server, &key).await;
    }
    let listed = key_pages(&server, "k/").await;
    assert_eq!(listed, two_per_page(&numbered("k/", ENTRIES)));

    // A value larger than the bound still comes through, alone.
    let (status, _) = call(&server, "PUT", "/v1/kv/big/a", Some(text_of(5000))).await;
    assert_eq!(status, 201);
    let (status, _) = call(&server, "PUT", "/v1/kv/big/b", Some(text_of(10))).await;
    assert_eq!(status, 201);
    let listed = key_pages(&server, "big/").await;
    assert_eq!(listed, [["big/a"], ["big/b"]]);
}

#[tokio::test]
async fn topic_and_group_lists_stop_at_the_page_byte_bound() {
    let server = TestServer::start_with(&["--max-page-bytes", PAGE_BYTES]).await;
    // Unknown fields are kept, so a note makes each config about as large
    // as one paged value.
    let note = text_of(VALUE_CHARS - 100);
    for name in numbered("t", ENTRIES) {
        let body = json!({"topicName": name, "note": note});
        let (status, answer) =
            call(&server, "PUT", &format!("/v1/topics/{name}"), Some(body)).await;
        assert_eq!(status, 201, "PUT topic {name}: {answer}");
    }
    for name in numbered("g", ENTRIES) {
        let body = json!({"groupName": name, "note": note});
        let (status, answer) = call(
            &server,
            "PUT",
            &format!("/v1/subscriptions/{name}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "PUT group {name}: {answer}");
    }
    let topics = pages(&server, "/v1/topics", |page| {
        (
            names_under(&page["topics"], "topicName"),
            page["more"] == json!(true),
        )
    })
    .await;
    assert_eq!(topics, two_per_page(&numbered("t", ENTRIES)));
    let groups = pages(&server, "/v1/subscriptions", |page| {
        (
            names_under(&page["subscriptions"], "groupName"),
            page["more"] == json!(true),
        )
    })
    .await;
    assert_eq!(groups, two_per_page(&numbered("g", ENTRIES)));
}

#[tokio::test]
async fn change_feed_pages_stop_at_the_byte_bound_and_resume_after_the_last_record() {
    let server = TestServer::start_with(&["--max-page-bytes", PAGE_BYTES]).await;
    // Another prefix in between: its records are read past, not counted.
    for (i, key) in numbered("c/", ENTRIES).iter().enumerate() {
        put_paged_value(&server, key).await;
        put_paged_value(&server, &format!("other/{i}")).await;
    }
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut from = 0;
    for _ in 0..=ENTRIES {
        let (status, page) = call(
            &server,
            "GET",
            &format!("/v1/changes?prefix=c/&from={from}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "changes from {from}: {page}");
        let offsets: Vec<u64> = page["records"]
            .as_array()
            .expect("a page of records")
            .iter()
            .map(|record| record["offset"].as_u64().expect("a record has an offset"))
            .collect();
        let next = page["next"].as_u64().expect("a page says next");
        if page["more"] == json!(true) {
            // The next page resumes after the last record of this one (and
            // after the other keys' records read past it).
            let last = *offsets.last().expect("a page that says more is not empty");
            assert!(next >= last, "page from {from}: {page}");
        }
        pages.push(names_under(&page["records"], "key"));
        from = next;
        if page["more"] != json!(true) {
            break;
        }
    }
    assert_eq!(pages, two_per_page(&numbered("c/", ENTRIES)));
}
