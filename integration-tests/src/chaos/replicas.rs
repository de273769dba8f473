//! The check that every replica holds the same state once the cluster is
//! quiet: the state folded from each node's topic replay (key → value and
//! offset: offsets are the same on every replica, though each compacts on
//! its own schedule) and each node's view (every key's whole entry).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// A state folded from a topic replay: key → (value, offset).
type Replayed = BTreeMap<String, (Value, u64)>;
/// A node's view: key → its whole entry.
type View = BTreeMap<String, Value>;

/// Time limit of one replay or list request.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most list pages read from one node.
const MAX_PAGES: usize = 1_000;

/// The state of the node at `url` folded from `/v1/topic/records`:
/// key → (value, offset of its last record), deletes applied.
pub async fn replayed_state(http: &reqwest::Client, url: &str) -> Result<Replayed, String> {
    let body = http
        .get(format!("{url}/v1/topic/records?from=0"))
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| format!("replay of {url}: {error}"))?
        .text()
        .await
        .map_err(|error| format!("replay of {url}: {error}"))?;
    let mut state = BTreeMap::new();
    for line in body.lines() {
        let record: Value = serde_json::from_str(line)
            .map_err(|error| format!("replay of {url}: {error} in {line:?}"))?;
        let (Some(key), Some(offset)) = (record["key"].as_str(), record["offset"].as_u64()) else {
            return Err(format!(
                "replay of {url}: a record without key or offset: {line}"
            ));
        };
        match &record["value"] {
            Value::Null => state.remove(key),
            value => state.insert(key.to_string(), (value.clone(), offset)),
        };
    }
    Ok(state)
}

/// Every entry of the node at `url`'s own view (`consistency=stale`).
pub async fn view_state(http: &reqwest::Client, url: &str) -> Result<View, String> {
    let mut entries = BTreeMap::new();
    let mut start_after: Option<String> = None;
    for _page in 0..MAX_PAGES {
        let mut list = format!("{url}/v1/kv?limit=10000&consistency=stale");
        if let Some(after) = &start_after {
            list.push_str(&format!("&start_after={after}"));
        }
        let page: Value = http
            .get(&list)
            .timeout(READ_TIMEOUT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("list of {url}: {error}"))?
            .json()
            .await
            .map_err(|error| format!("list of {url}: {error}"))?;
        let listed = page["entries"]
            .as_array()
            .ok_or_else(|| format!("list of {url}: no entries in {page}"))?;
        for entry in listed {
            let key = entry["key"].as_str().unwrap_or_default().to_string();
            entries.insert(key, entry.clone());
        }
        start_after = listed
            .last()
            .and_then(|entry| entry["key"].as_str())
            .map(str::to_string);
        if page["more"] != json!(true) {
            return Ok(entries);
        }
    }
    Err(format!("list of {url}: more than {MAX_PAGES} pages"))
}

/// Compares the replayed state and the view of every node (`(id, url)`)
/// with the first node's; returns one line per difference found.
pub async fn compare(http: &reqwest::Client, nodes: &[(u64, String)]) -> Vec<String> {
    let mut differences = Vec::new();
    let mut first: Option<(u64, Replayed, View)> = None;
    for (id, url) in nodes {
        let replayed = replayed_state(http, url).await;
        let view = view_state(http, url).await;
        let (replayed, view) = match (replayed, view) {
            (Ok(replayed), Ok(view)) => (replayed, view),
            (Err(error), _) | (_, Err(error)) => {
                differences.push(format!("node {id}: {error}"));
                continue;
            }
        };
        match &first {
            None => first = Some((*id, replayed, view)),
            Some((first_id, first_replayed, first_view)) => {
                if let Some(diff) = first_difference(first_replayed, &replayed) {
                    differences.push(format!(
                        "the topics of node {first_id} and node {id} differ: {diff}"
                    ));
                }
                if let Some(diff) = first_difference(first_view, &view) {
                    differences.push(format!(
                        "the views of node {first_id} and node {id} differ: {diff}"
                    ));
                }
            }
        }
    }
    differences
}

/// The first key where two maps differ, with both sides.
fn first_difference<V: PartialEq + std::fmt::Debug>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
) -> Option<String> {
    let keys = a.keys().chain(b.keys());
    keys.into_iter()
        .find(|key| a.get(*key) != b.get(*key))
        .map(|key| format!("key {key:?}: {:?} vs {:?}", a.get(key), b.get(key)))
}
