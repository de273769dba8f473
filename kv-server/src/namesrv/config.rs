//! GET_NAMESRV_CONFIG and UPDATE_NAMESRV_CONFIG: the name server's
//! properties, replicated under `namesrv/config/` so every node answers
//! alike. The properties Apache's name server reads are honored here too:
//! `enableAllTopicList`, `enableTopicList`, `orderMessageEnable`.
//!
//! As Apache merges an update only into the properties it has
//! (`mergeIfExist`), a name Apache's name server does not have is left
//! out, and so are `listenPort` and `bindAddress`, each node's own: stored
//! for the cluster they would be wrong on every other node.

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

/// Every property: the defaults with the stored updates over them. Only
/// properties an update may set count: one an earlier build stored
/// (another name, a node's port) would be shown for good, since no
/// request deletes it.
pub fn properties(ns: &NameServer) -> Result<BTreeMap<String, String>, Failure> {
    let (entries, _) = view::scan(&ns.state.store, keys::CONFIG)?;
    let mut all = defaults(ns);
    let stored: Vec<(String, String)> = view::string_table(keys::CONFIG, entries)
        .into_iter()
        .filter(|(name, _)| updatable(name))
        .collect();
    all.extend(stored);
    Ok(all)
}

/// The boolean property `name`, `default` when unset. A value is read as
/// Java's `Boolean.parseBoolean` reads it: `true` in any case is true,
/// anything else false (`true ` included).
pub fn flag(ns: &NameServer, name: &str, default: bool) -> Result<bool, Failure> {
    let stored = ns.state.store.get(&keys::config(name))?;
    Ok(stored
        .and_then(|entry| serde_json::from_slice::<String>(&entry.value).ok())
        .map_or(default, |value| value.eq_ignore_ascii_case("true")))
}

/// The properties of Apache's name server (`NamesrvConfig` and
/// `NettyServerConfig`), the ones its `mergeIfExist` lets an update set.
/// Those beyond [`defaults`] are stored and shown, not acted on.
const APACHE_PROPERTIES: [&str; 36] = [
    "bindAddress",
    "clientRequestThreadPoolNums",
    "clientRequestThreadPoolQueueCapacity",
    "clusterTest",
    "configBlackList",
    "configStorePath",
    "defaultThreadPoolNums",
    "defaultThreadPoolQueueCapacity",
    "deleteTopicWithBrokerRegistration",
    "enableAllTopicList",
    "enableControllerInNamesrv",
    "enableShutdownGracefully",
    "enableTopicList",
    "kvConfigPath",
    "listenPort",
    "needWaitForService",
    "notifyMinBrokerIdChanged",
    "orderMessageEnable",
    "productEnvName",
    "returnOrderTopicConfigToBroker",
    "rocketmqHome",
    "scanNotActiveBrokerInterval",
    "serverAsyncSemaphoreValue",
    "serverCallbackExecutorThreads",
    "serverChannelMaxIdleTimeSeconds",
    "serverOnewaySemaphoreValue",
    "serverPooledByteBufAllocatorEnable",
    "serverSelectorThreads",
    "serverSocketBacklog",
    "serverSocketRcvBufSize",
    "serverSocketSndBufSize",
    "serverWorkerThreads",
    "shutdownWaitTimeSeconds",
    "supportActingMaster",
    "unRegisterBrokerQueueCapacity",
    "useEpollNativeSelector",
];

/// Properties that are each node's own (where it listens): stored for
/// the cluster they would be wrong on every other node.
const NODE_OWN: [&str; 2] = ["bindAddress", "listenPort"];

/// Whether an update may set the property `name`: one Apache's name server
/// has, and not a node's own.
fn updatable(name: &str) -> bool {
    APACHE_PROPERTIES.contains(&name) && !NODE_OWN.contains(&name)
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

/// Reads Java properties text as `java.util.Properties.load` does: lines
/// end at `\n`, `\r` or `\r\n`, a `\` at the end of one continues it,
/// escapes (`\uXXXX`, `\t`, ...) are decoded, a name ends at the first
/// unescaped `=`, `:` or white space, and `#`/`!` lines are comments. The
/// text is UTF-8 (Apache's reads the bytes as ISO-8859-1, which garbles
/// any other character). A malformed `\u` escape is an error, as Java's.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut properties = BTreeMap::new();
    java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8)
        .read_into(|name, value| {
            properties.insert(name, value);
        })
        .map_err(|error| error.to_string())?;
    Ok(properties)
}

/// UPDATE_NAMESRV_CONFIG: the body's properties, stored in one change;
/// a black-listed one refuses the whole update with NO_PERMISSION.
pub async fn update(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let Ok(text) = std::str::from_utf8(&request.body) else {
        return Err(Failure::system(
            "string2Properties error: the body is not UTF-8",
        ));
    };
    let updates = parse_properties(text)
        .map_err(|error| Failure::system(format!("string2Properties error: {error}")))?;
    if updates
        .keys()
        .any(|name| BLACK_LIST.contains(&name.as_str()))
    {
        return Err(Failure::new(
            schemas::remoting::response_code::NO_PERMISSION,
            "Can not update config in black list.",
        ));
    }
    let (updates, ignored): (BTreeMap<_, _>, BTreeMap<_, _>) =
        updates.into_iter().partition(|(name, _)| updatable(name));
    if !ignored.is_empty() {
        tracing::info!(
            names = ?ignored.keys().collect::<Vec<_>>(),
            "name server config update: left out names Apache's name server does not have, \
             and a node's own"
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines split as `java.util.Properties` splits them.
    #[test]
    fn properties_split_as_java_splits_them() {
        let parsed = parse_properties(
            "a=1\nb: 2\nc 3\n  d  =  4  \ne\n# f=5\n! g=6\n\nh==7\ni:=8\nj = k = 9\n\
             l=x\rm=y\r\nn\\u0041me=\\u00e9t\\u00e9\no=ab\\\n    cd\np\\=q=r\n",
        )
        .expect("the text parses");
        let expected: BTreeMap<String, String> = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "4  "),
            ("e", ""),
            ("h", "=7"),
            ("i", "=8"),
            ("j", "k = 9"),
            ("l", "x"),
            ("m", "y"),
            ("nAme", "été"),
            ("o", "abcd"),
            ("p=q", "r"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
        assert_eq!(parsed, expected);
        assert!(parse_properties("a=\\u00zz").is_err(), "a malformed escape");
    }
}
