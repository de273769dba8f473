//! A view whose files were damaged is never served: the node finds the
//! damage at start and rebuilds the view from the topic.

use std::path::Path;

use integration_tests::{call, copy_tree, TestServer};
use serde_json::{json, Value};

/// How many single-bit flips the test tries, each on its own copy of the
/// data directory, spread evenly over the view's log file.
const FLIPS: u64 = 12;

/// Puts `count` keys under `prefix`, each with a value of about 500 bytes
/// that names `round`.
async fn fill(server: &TestServer, prefix: &str, count: usize, round: u32) {
    let padding = "f".repeat(500);
    for n in 0..count {
        let (status, body) = call(
            server,
            "PUT",
            &format!("/v1/kv/{prefix}{n:05}"),
            Some(json!({ "round": round, "padding": padding })),
        )
        .await;
        assert!((200..300).contains(&status), "{status}: {body}");
    }
}

/// Every entry the node serves.
async fn everything(server: &TestServer) -> Value {
    let (status, page) = call(server, "GET", "/v1/kv?prefix=&limit=10000", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["more"], false);
    page["entries"].clone()
}

/// sled reads a damaged record of its log as the log's end, or fails the
/// read that meets it: without a check of its own the node served older
/// values, or a 500 naming sled. Each flip here, on its own copy of the
/// node's data, must leave every key served as written; at least one of
/// them must have made the node rebuild its view.
#[tokio::test]
async fn a_flipped_bit_anywhere_in_the_view_never_changes_what_is_served() {
    let mut server = TestServer::start().await;
    // Three write-outs' worth of overwrites, so that older values of the
    // same keys lie in the file under the newer ones.
    fill(&server, "a/", 1_500, 1).await;
    server.stop().await;
    server.restart().await;
    fill(&server, "a/", 700, 2).await;
    fill(&server, "b/", 1_500, 2).await;
    server.stop().await;
    server.restart().await;
    fill(&server, "c/", 300, 3).await;
    let expected = everything(&server).await;
    assert_eq!(expected.as_array().unwrap().len(), 3_300);
    server.stop().await;

    let data = server.data_dir();
    let pristine = data.with_file_name("pristine");
    copy_tree(&data, &pristine);
    let view_log = Path::new("view").join("db");
    let len = std::fs::metadata(data.join(&view_log)).unwrap().len();
    let mut rebuilds = 0;
    for flip in 0..FLIPS {
        std::fs::remove_dir_all(&data).unwrap();
        copy_tree(&pristine, &data);
        let at = len * (2 * flip + 1) / (2 * FLIPS);
        let mut bytes = std::fs::read(data.join(&view_log)).unwrap();
        bytes[at as usize] ^= 0x10;
        std::fs::write(data.join(&view_log), &bytes).unwrap();

        let rebuilt_before = server.log_count("the view is damaged; rebuilding it from the topic");
        server.restart().await;
        assert_eq!(
            everything(&server).await,
            expected,
            "after a flip at byte {at} of {len}"
        );
        if server.log_count("the view is damaged; rebuilding it from the topic") > rebuilt_before {
            rebuilds += 1;
        }
        server.kill9().await;
    }
    assert!(rebuilds > 0, "no flip of {FLIPS} made the node rebuild");
}
