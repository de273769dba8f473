//! Connections per listener, HTTP/2 streams per connection and long-polls
//! per node are bounded: a connection beyond `--max-connections` is not
//! served until another closes, a client's streams beyond
//! `--max-http2-streams` wait for one of its own to end, and a long-poll
//! beyond `--max-long-polls` is refused with 503.

use std::time::Duration;

use futures::future::join_all;
use integration_tests::raw_http::RawConnection;
use integration_tests::{call, error_of, http2_client, TestServer};
use serde_json::{json, Value};

/// `--max-connections` of the connection test.
const MAX_CONNECTIONS: usize = 4;
/// `--max-long-polls` of the long-poll test.
const MAX_LONG_POLLS: usize = 3;
/// `--max-long-polls-per-connection` of the per-connection test.
const MAX_LONG_POLLS_PER_CONNECTION: usize = 2;
/// `--max-http2-streams` of the stream test.
const MAX_STREAMS: u64 = 2;
/// Long-polls the stream test opens on one connection.
const LONG_POLLS: usize = 5;
/// How long a served request may take to be answered.
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);
/// How long a request beyond a limit is watched for an answer that must
/// not come.
const HELD_FOR: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_connection_beyond_the_limit_is_served_only_once_another_closes() {
    let server = TestServer::start_with(&["--max-connections", &MAX_CONNECTIONS.to_string()]).await;
    // The harness's own pooled connection may hold a slot, so connections
    // are opened until one is not served: that must happen by the limit.
    let mut served = Vec::new();
    let mut waiting = loop {
        assert!(
            served.len() < MAX_CONNECTIONS,
            "{} connections were served with --max-connections {MAX_CONNECTIONS}",
            served.len() + 1
        );
        let mut connection = RawConnection::open(server.addr()).await;
        connection.send_get("/healthz").await;
        match connection.status_within(HELD_FOR).await {
            Some(status) => {
                assert_eq!(status, 200);
                served.push(connection);
            }
            None => break connection,
        }
    };
    assert!(!served.is_empty(), "no connection was served at all");
    drop(served);
    assert_eq!(
        waiting.status_within(ANSWERED_WITHIN).await,
        Some(200),
        "the waiting connection is served once the others close"
    );
}

/// The answers of the long-polls a test held on `key`.
type HeldPolls = Vec<tokio::task::JoinHandle<Result<u16, reqwest::Error>>>;

/// Writes `key` (value 0), then sends `count` long-polls on it from that
/// revision, each waiting up to `wait`; returns the revision and the polls.
async fn hold_long_polls(
    server: &TestServer,
    key: &str,
    count: usize,
    wait: &str,
) -> (u64, HeldPolls) {
    let (status, written) = call(server, "PUT", &format!("/v1/kv/{key}"), Some(json!(0))).await;
    assert_eq!(status, 201, "{written}");
    let index = written["revision"]
        .as_u64()
        .expect("a write answers its revision");
    let waiting = format!("/v1/kv/{key}?index={index}&wait={wait}");
    let held = (0..count)
        .map(|_| {
            let request = server.client().get(server.url(&waiting)).send();
            tokio::spawn(async move { request.await.map(|response| response.status().as_u16()) })
        })
        .collect();
    (index, held)
}

/// Updates `key`, then checks that every long-poll `held` on it is
/// answered 200.
async fn answered_once_changed(server: &TestServer, key: &str, held: HeldPolls) {
    let (status, _) = call(server, "PUT", &format!("/v1/kv/{key}"), Some(json!(1))).await;
    assert_eq!(status, 200, "the key is updated");
    let statuses = tokio::time::timeout(ANSWERED_WITHIN, join_all(held))
        .await
        .expect("the held long-polls are answered once the key changed");
    for status in statuses {
        assert_eq!(status.expect("the task ends").expect("answered"), 200);
    }
}

#[tokio::test]
async fn streams_beyond_the_limit_wait_for_one_of_their_connection_to_end() {
    let server = TestServer::start_with(&["--max-http2-streams", &MAX_STREAMS.to_string()]).await;
    let client = http2_client();
    let (status, written) = call(&server, "PUT", "/v1/kv/watched", Some(json!(0))).await;
    assert_eq!(status, 201, "{written}");
    let index = written["revision"]
        .as_u64()
        .expect("a write answers its revision");
    // One request first, so the client knows the server's settings before
    // it opens the long-polls' streams.
    let warm = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("the HTTP/2 connection serves");
    assert_eq!(warm.status(), 200);
    let polls = (0..LONG_POLLS).map(|_| {
        let request = client
            .get(server.url(&format!("/v1/kv/watched?index={index}&wait=30s")))
            .send();
        tokio::spawn(async move {
            let response = request.await.expect("a long-poll is answered");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("a long-poll answers JSON");
            (status, body)
        })
    });
    let polls: Vec<_> = polls.collect();
    server.wait_for_waiters(MAX_STREAMS, ANSWERED_WITHIN).await;
    // The others are held by the client, not the server: no more register.
    tokio::time::sleep(HELD_FOR).await;
    assert_eq!(server.waiters().await, MAX_STREAMS);

    let (status, _) = call(&server, "PUT", "/v1/kv/watched", Some(json!(1))).await;
    assert_eq!(status, 200, "the key is updated");
    let answers = tokio::time::timeout(ANSWERED_WITHIN, join_all(polls))
        .await
        .expect("every long-poll is answered once the key changed");
    for answer in answers {
        let (status, body) = answer.expect("the long-poll task ends");
        assert_eq!((status, &body["value"]), (200, &json!(1)), "{body}");
    }
}

#[tokio::test]
async fn a_long_poll_beyond_the_limit_is_refused_with_503_and_others_are_served() {
    let server = TestServer::start_with(&["--max-long-polls", &MAX_LONG_POLLS.to_string()]).await;
    let (index, held) = hold_long_polls(&server, "polled", MAX_LONG_POLLS, "30s").await;
    server
        .wait_for_waiters(MAX_LONG_POLLS as u64, ANSWERED_WITHIN)
        .await;

    // Every kind of long-poll that would wait is refused...
    let refused = [
        format!("/v1/kv/polled?index={index}&wait=30s"),
        format!("/v1/kv?prefix=polled&index={index}&wait=30s"),
        format!("/v1/changes?prefix=polled&from={index}&wait=30s"),
    ];
    for path in &refused {
        let (status, body) = call(&server, "GET", path, None).await;
        assert_eq!(status, 503, "{path}: {body}");
        assert_eq!(error_of(&body).0, "unavailable", "{path}: {body}");
    }
    // ...while requests that do not wait are served.
    let served = [
        "/v1/kv/polled".to_string(),
        format!("/v1/kv/polled?index={}&wait=30s", index - 1),
        format!("/v1/changes?prefix=polled&from={}&wait=30s", index - 1),
    ];
    for path in &served {
        let (status, body) = call(&server, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    answered_once_changed(&server, "polled", held).await;
    // Their slots are free again.
    server.wait_for_waiters(0, ANSWERED_WITHIN).await;
    let (status, body) = call(
        &server,
        "GET",
        &format!("/v1/kv/polled?index={}&wait=50ms", index + 1),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_long_poll_beyond_its_connections_share_is_refused_and_other_connections_are_served() {
    let server = TestServer::start_with(&[
        "--max-long-polls-per-connection",
        &MAX_LONG_POLLS_PER_CONNECTION.to_string(),
    ])
    .await;
    let (status, written) = call(&server, "PUT", "/v1/kv/shared", Some(json!(0))).await;
    assert_eq!(status, 201, "{written}");
    let index = written["revision"]
        .as_u64()
        .expect("a write answers its revision");
    let waiting = server.url(&format!("/v1/kv/shared?index={index}&wait=30s"));
    let busy = http2_client();
    let warm = busy
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("the HTTP/2 connection serves");
    assert_eq!(warm.status(), 200);
    let held: HeldPolls = (0..MAX_LONG_POLLS_PER_CONNECTION)
        .map(|_| {
            let request = busy.get(&waiting).send();
            tokio::spawn(async move { request.await.map(|response| response.status().as_u16()) })
        })
        .collect();
    server
        .wait_for_waiters(MAX_LONG_POLLS_PER_CONNECTION as u64, ANSWERED_WITHIN)
        .await;

    // One more long-poll on that connection is refused, naming the cause...
    let refused = busy.get(&waiting).send().await.expect("answered");
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("an error answers JSON");
    assert_eq!(error_of(&body).0, "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("this connection"), "{body}");
    // ...while the same connection's other requests are served...
    let read = busy
        .get(server.url("/v1/kv/shared"))
        .send()
        .await
        .expect("answered");
    assert_eq!(read.status(), 200);
    // ...and another connection may still wait.
    let (status, body) = call(
        &server,
        "GET",
        &format!("/v1/kv/shared?index={index}&wait=50ms"),
        None,
    )
    .await;
    assert_eq!(status, 200, "another connection's long-poll waits: {body}");

    answered_once_changed(&server, "shared", held).await;
}

/// `--max-concurrent-requests` of the request-slot test.
const MAX_REQUESTS: usize = 3;
/// How long the request-slot test's long-polls wait before they answer on
/// their own, freeing their slots.
const SLOT_HELD_FOR: &str = "5s";

/// Requests being served hold the node's request slots: one more is
/// refused at once with 503 (shed, not queued), changes nothing, and is
/// served again once a slot is free.
#[tokio::test]
async fn a_request_beyond_the_slots_being_served_is_refused_with_503_at_once() {
    let server = TestServer::start_with(&[
        "--max-concurrent-requests",
        &MAX_REQUESTS.to_string(),
        "--max-long-polls",
        &MAX_REQUESTS.to_string(),
    ])
    .await;
    let (_, held) = hold_long_polls(&server, "slots", MAX_REQUESTS, SLOT_HELD_FOR).await;
    // Once they all wait, every slot is taken (the metrics that tell
    // waiters need one too): poll a plain request until it is refused.
    let deadline = std::time::Instant::now() + ANSWERED_WITHIN;
    let body = loop {
        let (status, body) = call(&server, "GET", "/healthz", None).await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the long-polls never took every slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(error_of(&body).0, "unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--max-concurrent-requests"),
        "the refusal names the limit: {body}"
    );
    let (status, body) = call(&server, "PUT", "/v1/kv/slots", Some(json!(1))).await;
    assert_eq!(status, 503, "a write is refused too: {body}");

    // The long-polls end on their own, and free their slots.
    for poll in held {
        let status = poll
            .await
            .expect("the poll task ends")
            .expect("a long-poll is answered");
        assert_eq!(status, 200);
    }
    let (status, body) = call(&server, "GET", "/v1/kv/slots", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], json!(0), "the refused write changed nothing");
}

/// A connection that sends nothing, on the client port or the peer port,
/// is closed once the first byte is 10 s late: it no longer holds one of
/// the `--max-connections` slots for as long as it stays open. (Once a
/// request began, hyper's own header timeout closes an idle one.)
#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_ten_seconds() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start().await;
    let silent = [server.addr(), server.peer_addr()].map(|addr| async move {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the port takes the connection");
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut byte))
            .await
            .unwrap_or_else(|_| panic!("{addr}: a silent connection is still open after 30 s"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{addr}: the node sent something: {read:?}"
        );
        started.elapsed()
    });
    for closed_after in join_all(silent).await {
        assert!(
            closed_after >= Duration::from_secs(9),
            "closed after {closed_after:?}, before the deadline"
        );
    }
    let (status, body) = call(&server, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "{body}");
}

/// A node stopping (SIGTERM) closes at once the connections that have not
/// sent their first byte: they carry no request, and each held the graceful
/// shutdown until its 10 s deadline (a peer's or a pool's connection opened
/// just before the stop made the node take 10 s to exit).
#[tokio::test]
async fn a_stopping_node_does_not_wait_for_connections_that_sent_nothing() {
    let mut server = TestServer::start().await;
    let ports = [
        (server.addr(), server.url("/healthz")),
        (server.peer_addr(), format!("{}/healthz", server.peer_url())),
    ];
    let mut silent = Vec::new();
    for (addr, healthz) in ports {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the port takes the connection");
        // A port accepts in order: a later connection answered means the
        // silent one was taken up by the node, not left in the backlog.
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .timeout(ANSWERED_WITHIN)
            .build()
            .expect("a client builds");
        let answered = fresh.get(&healthz).send().await;
        assert!(answered.is_ok(), "{healthz}: {answered:?}");
        silent.push(stream);
    }
    server.stop_closing(silent, Duration::from_secs(5)).await;
}
