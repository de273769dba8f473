//! Raw-HTTP helpers for the lease tests: grant and keep alive a lease on
//! any node, and read what a node's view holds (every key with its whole
//! entry, every lease with its keys) so two views can be compared.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Grants a lease of `ttl_s` through the node at `base_url` and returns its
/// id; the grant must answer 201.
pub async fn grant(client: &reqwest::Client, base_url: &str, ttl_s: u64) -> u64 {
    let response = client
        .post(format!("{base_url}/v1/leases"))
        .json(&json!({ "ttl_s": ttl_s }))
        .send()
        .await
        .expect("the grant is answered");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a grant answers JSON");
    assert_eq!(status, 201, "POST /v1/leases: {body}");
    assert_eq!(
        body["ttl_s"],
        json!(ttl_s),
        "the grant answers its TTL: {body}"
    );
    body["id"].as_u64().expect("a grant answers its id")
}

/// Sends one keep-alive of lease `id` to the node at `base_url`: the status
/// and body, or the transport error as text.
pub async fn keep_alive(
    client: &reqwest::Client,
    base_url: &str,
    id: u64,
) -> Result<(u16, Value), String> {
    let response = client
        .post(format!("{base_url}/v1/leases/{id}/keepalive"))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response.json().await.map_err(|error| error.to_string())?;
    Ok((status, body))
}

/// Every key of the node at `base_url` with its whole entry (value,
/// revisions, version, lease), read from the node's own view
/// (`consistency=stale`), page by page.
pub async fn view_keys(client: &reqwest::Client, base_url: &str) -> BTreeMap<String, Value> {
    let mut keys = BTreeMap::new();
    let mut start_after: Option<String> = None;
    for _page in 0..1_000 {
        let mut url = format!("{base_url}/v1/kv?limit=10000&consistency=stale");
        if let Some(after) = &start_after {
            url.push_str(&format!("&start_after={after}"));
        }
        let page: Value = client
            .get(url)
            .send()
            .await
            .expect("the list is answered")
            .json()
            .await
            .expect("a list page is JSON");
        let entries = page["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("a list page has entries: {page}"));
        for entry in entries {
            let key = entry["key"].as_str().expect("an entry has a key");
            keys.insert(key.to_string(), entry.clone());
        }
        start_after = entries
            .last()
            .and_then(|entry| entry["key"].as_str())
            .map(str::to_string);
        if page["more"] != json!(true) {
            return keys;
        }
    }
    panic!("more than 1,000 list pages on {base_url}");
}

/// Every lease as the leader reports it through the node at `base_url`:
/// id → (TTL in seconds, attached keys).
pub async fn lease_table(
    client: &reqwest::Client,
    base_url: &str,
) -> BTreeMap<u64, (u64, Vec<String>)> {
    let list: Value = client
        .get(format!("{base_url}/v1/leases"))
        .send()
        .await
        .expect("the lease list is answered")
        .json()
        .await
        .expect("the lease list is JSON");
    let leases = list["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /v1/leases answers a list: {list}"));
    let mut table = BTreeMap::new();
    for lease in leases {
        let id = lease["id"].as_u64().expect("a listed lease has an id");
        let info: Value = client
            .get(format!("{base_url}/v1/leases/{id}"))
            .send()
            .await
            .expect("a lease's info is answered")
            .json()
            .await
            .expect("a lease's info is JSON");
        let keys = info["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("lease {id} lists its keys: {info}"))
            .iter()
            .map(|key| key.as_str().expect("a key is a string").to_string())
            .collect();
        let ttl_s = lease["ttl_s"].as_u64().expect("a listed lease has a TTL");
        assert_eq!(
            info["ttl_s"],
            json!(ttl_s),
            "lease {id}: list and info agree"
        );
        table.insert(id, (ttl_s, keys));
    }
    table
}
