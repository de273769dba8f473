//! GET_NAMESRV_CONFIG and UPDATE_NAMESRV_CONFIG: the name server's
//! properties, replicated under `namesrv/config/` so every node answers
//! alike. The properties Apache's name server reads are honored here too:
//! `enableAllTopicList`, `enableTopicList`, `orderMessageEnable`.

use std::collections::BTreeMap;

use schemas::remoting::RemotingCommand;
use serde_json::json;

use crate::namesrv::keys;
use crate::namesrv::view;
use crate::namesrv::writes::{idempotency_key, Op};
use crate::namesrv::{Failure, Handled, NameServer};

/// Properties no request may change: Apache's default `configBlackList`
/// and `rocketmqHome`, which its request processor always adds.
const BLACK_LIST: [&str; 4] = [
    "configBlackList",
    "configStorePath",
    "kvConfigPath",
    "rocketmqHome",
];

/// The properties before any update.
fn defaults(ns: &NameServer) -> BTreeMap<String, String> {
    let listen = ns.state.config.namesrv_listen.to_string();
    let port = listen.rsplit(':').next().unwrap_or_default().to_string();
    [
        ("listenPort", port.as_str()),
        ("enableAllTopicList", "true"),
        ("enableTopicList", "true"),
        ("orderMessageEnable", "false"),
        ("clusterTest", "false"),
        ("notifyMinBrokerIdChanged", "false"),
        (
            "configBlackList",
            "configBlackList;configStorePath;kvConfigPath",
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// Every property: the defaults with the stored updates over them.
pub fn properties(ns: &NameServer) -> Result<BTreeMap<String, String>, Failure> {
    let (entries, _) = view::scan(&ns.state.store, keys::CONFIG)?;
    let mut all = defaults(ns);
    all.extend(view::string_table(keys::CONFIG, entries));
    Ok(all)
}

/// The boolean property `name` (`default` when unset or not a boolean).
pub fn flag(ns: &NameServer, name: &str, default: bool) -> Result<bool, Failure> {
    let stored = ns.state.store.get(&keys::config(name))?;
    Ok(stored
        .and_then(|entry| serde_json::from_slice::<String>(&entry.value).ok())
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(default))
}

/// GET_NAMESRV_CONFIG: the properties as `name=value` lines.
pub fn get(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let text: String = properties(ns)?
        .into_iter()
        .map(|(name, value)| format!("{name}={value}\n"))
        .collect();
    let mut answer = request.answer(0, None);
    answer.body = text.into_bytes();
    Ok(answer)
}

/// Reads Java properties text: `name=value` or `name:value` lines; blank
/// lines and `#`/`!` comments are skipped.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('!'))
        .map(|line| match line.find(['=', ':']) {
            Some(at) => (
                line[..at].trim().to_string(),
                line[at + 1..].trim().to_string(),
            ),
            None => (line.to_string(), String::new()),
        })
        .collect()
}

/// UPDATE_NAMESRV_CONFIG: the body's properties, stored in one change;
/// a black-listed one refuses the whole update with NO_PERMISSION.
pub async fn update(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return Err(Failure::system(
            "string2Properties error: the body is not UTF-8",
        ));
    };
    let updates = parse_properties(text);
    if updates
        .keys()
        .any(|name| BLACK_LIST.contains(&name.as_str()))
    {
        return Err(Failure::new(
            schemas::remoting::response_code::NO_PERMISSION,
            "Can not update config in black list.",
        ));
    }
    if updates.is_empty() {
        return Ok(request.answer(0, None));
    }
    let ops: Vec<Op> = updates
        .iter()
        .map(|(name, value)| Op::Put {
            key: keys::config(name),
            value: json!(value),
            lease: None,
        })
        .collect();
    let revision = ns.state.store.revision().to_string();
    ns.writer
        .txn(&[], &ops, idempotency_key(&["config", text, &revision]))
        .await?;
    tracing::info!(names = ?updates.keys().collect::<Vec<_>>(), "name server config updated");
    Ok(request.answer(0, None))
}
