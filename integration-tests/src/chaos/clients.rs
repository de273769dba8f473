//! The concurrent clients of a history: each draws its operations from its
//! own seeded generator, sends each to a random running node with a time
//! limit, and records what it called, when, and what was answered.
//!
//! An answer that says nothing about the outcome (a time-out, a cut
//! connection, a 5xx) is [`Output::Unknown`] for a write; the client then
//! takes a new id, since its open write may still take effect while it
//! goes on (Jepsen's crashed process). A read without an answer had no
//! effect and is left out of the history, as is a request that surely did
//! not take effect: one that never reached a node (the connection was
//! refused), or one a node answered with a code that says it was never
//! proposed (`not_leader`, `not_a_member`). Leaving such a write out keeps
//! its value from explaining any read: were it applied after all, the
//! checker would find a value no operation wrote.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::api::ErrorCode;
use serde_json::{json, Value};

use super::history::{Input, Nanos, Operation, Output};

/// Time limit of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause when no node runs.
const NO_NODE_PAUSE: Duration = Duration::from_millis(50);
/// Most operations one client makes in a history.
const MAX_OPERATIONS: usize = 100_000;
/// Unexpected answers kept for the report.
const UNEXPECTED_KEPT: usize = 20;

/// The key space: groups of keys, every operation inside one group.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    /// How many groups.
    pub groups: usize,
    /// Keys per group.
    pub keys_per_group: usize,
}

impl KeySpace {
    /// The keys of group `group`.
    pub fn keys(&self, group: usize) -> Vec<String> {
        (0..self.keys_per_group)
            .map(|key| format!("chaos/g{group:02}/k{key}"))
            .collect()
    }

    /// Every key.
    pub fn all_keys(&self) -> Vec<String> {
        (0..self.groups)
            .flat_map(|group| self.keys(group))
            .collect()
    }
}

/// The group a key belongs to (`chaos/g03/k1` → `chaos/g03`).
pub fn group_of(key: &str) -> String {
    key.rsplit_once('/')
        .map_or(key, |(group, _)| group)
        .to_string()
}

/// What every client of a history shares.
pub struct Shared {
    /// The client API URLs of the nodes, in id order.
    pub urls: Vec<String>,
    /// Per node, whether it runs now.
    pub up: Arc<Vec<AtomicBool>>,
    /// When the history started: operation times count from here.
    pub epoch: Instant,
    /// Set when the clients must stop.
    pub stop: Arc<AtomicBool>,
    /// The next fresh client id.
    pub next_id: AtomicUsize,
    /// The key space.
    pub keys: KeySpace,
    /// One HTTP client for all.
    pub http: reqwest::Client,
}

impl Shared {
    /// Clients' shared state for nodes at `urls`; ids from `first_id` on
    /// are handed out to clients that lost a write's answer.
    pub fn new(
        urls: Vec<String>,
        up: Arc<Vec<AtomicBool>>,
        keys: KeySpace,
        first_id: usize,
    ) -> Shared {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds");
        Shared {
            urls,
            up,
            epoch: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            next_id: AtomicUsize::new(first_id),
            keys,
            http,
        }
    }

    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }
}

/// What one client recorded.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Its operations, in call order.
    pub operations: Vec<Operation>,
    /// Reads that got no answer (left out of the history).
    pub failed_reads: usize,
    /// Requests that surely took no effect (left out): refused before
    /// they reached a node, or answered as never proposed.
    pub refused: usize,
    /// Answers no correct node gives a valid request (4xx, bad bodies).
    pub unexpected: Vec<String>,
}

/// Runs client `worker` until `shared.stop` is set, drawing from `seed`.
pub async fn run_client(shared: Arc<Shared>, worker: usize, seed: u64) -> ClientLog {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = worker;
    let mut log = ClientLog::default();
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    for sequence in 0..MAX_OPERATIONS {
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        let input = draw_input(&mut rng, &shared.keys, &seen, worker, sequence);
        let Some(url) = pick_node(&mut rng, &shared) else {
            tokio::time::sleep(NO_NODE_PAUSE).await;
            continue;
        };
        let call = shared.now();
        let answer = send(&shared.http, &url, &input).await;
        let ret = shared.now();
        let output = match answer {
            Answer::Output(output) => output,
            Answer::Refused | Answer::NoEffect => {
                log.refused += 1;
                continue;
            }
            Answer::Unexpected(why) => {
                if log.unexpected.len() < UNEXPECTED_KEPT {
                    log.unexpected.push(why);
                }
                if is_read(&input) {
                    log.failed_reads += 1;
                    continue;
                }
                Output::Unknown
            }
            Answer::Failed if is_read(&input) => {
                log.failed_reads += 1;
                continue;
            }
            Answer::Failed => Output::Unknown,
        };
        remember(&mut seen, &input, &output);
        let unknown = output == Output::Unknown;
        log.operations.push(Operation {
            client,
            call,
            ret: (!unknown).then_some(ret),
            input,
            output,
        });
        if unknown {
            client = shared.next_id.fetch_add(1, Ordering::Relaxed);
        }
    }
    log
}

/// A linearizable read of `key` through the node at `url`, recorded as
/// client `client`; `None` when it got no answer.
pub async fn final_read(shared: &Shared, url: &str, client: usize, key: &str) -> Option<Operation> {
    let input = Input::Get {
        key: key.to_string(),
    };
    let call = shared.now();
    let Answer::Output(output) = send(&shared.http, url, &input).await else {
        return None;
    };
    Some(Operation {
        client,
        call,
        ret: Some(shared.now()),
        input,
        output,
    })
}

fn is_read(input: &Input) -> bool {
    matches!(input, Input::Get { .. } | Input::ReadAll { .. })
}

/// Remembers what a client last saw of each key, for its next CAS.
fn remember(seen: &mut HashMap<String, Option<String>>, input: &Input, output: &Output) {
    match (input, output) {
        (Input::Get { key }, Output::Got(value)) => {
            seen.insert(key.clone(), value.clone());
        }
        (Input::ReadAll { keys }, Output::GotAll(values)) => {
            for (key, value) in keys.iter().zip(values) {
                seen.insert(key.clone(), value.clone());
            }
        }
        (Input::Put { key, value }, Output::Written)
        | (Input::Cas { key, value, .. }, Output::Swapped(true)) => {
            seen.insert(key.clone(), Some(value.clone()));
        }
        (Input::Delete { key }, Output::Written) => {
            seen.insert(key.clone(), None);
        }
        _ => {}
    }
}

fn pick_node(rng: &mut StdRng, shared: &Shared) -> Option<String> {
    let running: Vec<&String> = shared
        .urls
        .iter()
        .zip(shared.up.iter())
        .filter(|(_, up)| up.load(Ordering::Acquire))
        .map(|(url, _)| url)
        .collect();
    if running.is_empty() {
        return None;
    }
    Some(running[rng.random_range(0..running.len())].clone())
}

fn draw_input(
    rng: &mut StdRng,
    keys: &KeySpace,
    seen: &HashMap<String, Option<String>>,
    worker: usize,
    sequence: usize,
) -> Input {
    let group = keys.keys(rng.random_range(0..keys.groups));
    let key = group[rng.random_range(0..group.len())].clone();
    let value = |suffix: usize| format!("c{worker}-{sequence}-{suffix}");
    match rng.random_range(0..100) {
        0..30 => Input::Get { key },
        30..50 => Input::Put {
            key,
            value: value(0),
        },
        50..55 => Input::Delete { key },
        55..75 => Input::Cas {
            expect: seen.get(&key).cloned().flatten(),
            key,
            value: value(0),
        },
        75..90 => Input::ReadAll { keys: group },
        _ => Input::WriteAll {
            pairs: group
                .into_iter()
                .enumerate()
                .map(|(index, key)| (key, value(index)))
                .collect(),
        },
    }
}

/// How a request ended.
enum Answer {
    /// An answer that says what happened.
    Output(Output),
    /// The connection was refused: the request reached no node.
    Refused,
    /// A node answered that the request was never proposed: no leader
    /// took it, or the node is no longer a member.
    NoEffect,
    /// No answer, or one that does not say (time-out, 5xx).
    Failed,
    /// An answer no correct node gives this request.
    Unexpected(String),
}

async fn send(http: &reqwest::Client, url: &str, input: &Input) -> Answer {
    let request = match input {
        Input::Get { key } => http.get(format!("{url}/v1/kv/{key}")),
        Input::Put { key, value } => http.put(format!("{url}/v1/kv/{key}")).json(value),
        Input::Delete { key } => http.delete(format!("{url}/v1/kv/{key}")),
        Input::Cas { .. } | Input::ReadAll { .. } | Input::WriteAll { .. } => {
            http.post(format!("{url}/v1/txn")).json(&txn_body(input))
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) if error.is_connect() => return Answer::Refused,
        Err(_) => return Answer::Failed,
    };
    let status = response.status().as_u16();
    let body: Value = match response.text().await {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        Err(_) => return Answer::Failed,
    };
    if status >= 500 {
        return if never_proposed(&body) {
            Answer::NoEffect
        } else {
            Answer::Failed
        };
    }
    let output = match (input, status) {
        (Input::Get { .. }, 200) => body["value"].as_str().map(|v| Output::Got(Some(v.into()))),
        (Input::Get { .. }, 404) => Some(Output::Got(None)),
        (Input::Put { .. }, 200 | 201) | (Input::Delete { .. }, 200 | 201 | 404) => {
            Some(Output::Written)
        }
        (Input::Cas { .. }, 200) => body["succeeded"].as_bool().map(Output::Swapped),
        (Input::WriteAll { .. }, 200) => {
            (body["succeeded"] == json!(true)).then_some(Output::Written)
        }
        (Input::ReadAll { keys }, 200) => read_all(&body, keys.len()).map(Output::GotAll),
        _ => None,
    };
    output.map_or_else(
        || Answer::Unexpected(format!("unexpected answer {status} {body} to {input:?}")),
        Answer::Output,
    )
}

/// Whether an error body's code says the request was never proposed, so it
/// cannot take effect later.
fn never_proposed(body: &Value) -> bool {
    let code = body["error"]["code"].as_str();
    [ErrorCode::NotLeader, ErrorCode::NotAMember]
        .iter()
        .any(|definite| code == Some(definite.as_str()))
}

/// The transaction a CAS, read-all or write-all sends.
fn txn_body(input: &Input) -> Value {
    match input {
        Input::Cas { key, expect, value } => {
            let compare = match expect {
                Some(expect) => json!({"key": key, "target": "value", "op": "=", "value": expect}),
                None => json!({"key": key, "target": "exists", "op": "=", "value": false}),
            };
            json!({"compare": [compare], "success": [{"put": {"key": key, "value": value}}]})
        }
        Input::ReadAll { keys } => {
            let gets: Vec<Value> = keys
                .iter()
                .map(|key| json!({"get": {"key": key}}))
                .collect();
            json!({ "success": gets })
        }
        Input::WriteAll { pairs } => {
            let puts: Vec<Value> = pairs
                .iter()
                .map(|(key, value)| json!({"put": {"key": key, "value": value}}))
                .collect();
            json!({ "success": puts })
        }
        Input::Get { .. } | Input::Put { .. } | Input::Delete { .. } => {
            unreachable!("only a CAS, read-all or write-all is sent as a transaction")
        }
    }
}

/// The values of a read-all's gets, in order (`None` for a missing key).
fn read_all(body: &Value, count: usize) -> Option<Vec<Option<String>>> {
    let results = body["results"].as_array()?;
    if results.len() != count {
        return None;
    }
    results
        .iter()
        .map(|result| {
            let kvs = result["get"]["kvs"].as_array()?;
            match kvs.first() {
                None => Some(None),
                Some(kv) => kv["value"].as_str().map(|value| Some(value.to_string())),
            }
        })
        .collect()
}
