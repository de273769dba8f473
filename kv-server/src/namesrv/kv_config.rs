//! PUT_KV_CONFIG, GET_KV_CONFIG, DELETE_KV_CONFIG and
//! GET_KVLIST_BY_NAMESPACE (Apache's `KVConfigManager`), replicated.

use schemas::remoting::{response_code, KvTable, RemotingCommand};
use serde_json::json;

use crate::namesrv::keys;
use crate::namesrv::view;
use crate::namesrv::writes::{idempotency_key, Op};
use crate::namesrv::{json_body, Failure, Handled, NameServer};

/// The namespace and key of a request; Apache refuses a missing one with
/// this remark.
fn namespace_and_key(request: &RemotingCommand) -> Result<(&str, &str), Failure> {
    match (request.field("namespace"), request.field("key")) {
        (Some(namespace), Some(key)) if !namespace.is_empty() && !key.is_empty() => {
            Ok((namespace, key))
        }
        _ => Err(Failure::system("namespace or key is null")),
    }
}

/// PUT_KV_CONFIG.
pub async fn put(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let (namespace, key) = namespace_and_key(request)?;
    let value = request.required("value")?;
    let revision = ns.state.store.revision().to_string();
    let op = Op::Put {
        key: keys::kv(namespace, key),
        value: json!(value),
        lease: None,
    };
    let id = idempotency_key(&["kv-put", namespace, key, value, &revision]);
    ns.writer.txn(&[], &[op], id).await?;
    tracing::info!(?namespace, ?key, "KV config put");
    Ok(request.answer(0, None))
}

/// GET_KV_CONFIG: the value in the answer's `value` field, or
/// QUERY_NOT_FOUND.
pub fn get(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let (namespace, key) = namespace_and_key(request)?;
    let value = ns
        .state
        .store
        .get(&keys::kv(namespace, key))?
        .map(|entry| crate::namesrv::view::value_text(&entry.value));
    let Some(value) = value else {
        return Err(Failure::new(
            response_code::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {namespace} Key: {key}"),
        ));
    };
    let mut answer = request.answer(0, None);
    answer.ext_fields.insert("value".into(), value);
    Ok(answer)
}

/// DELETE_KV_CONFIG.
pub async fn delete(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let (namespace, key) = namespace_and_key(request)?;
    let revision = ns.state.store.revision().to_string();
    let id = idempotency_key(&["kv-delete", namespace, key, &revision]);
    ns.writer
        .txn(&[], &[Op::Delete(keys::kv(namespace, key))], id)
        .await?;
    tracing::info!(?namespace, ?key, "KV config deleted");
    Ok(request.answer(0, None))
}

/// GET_KVLIST_BY_NAMESPACE: the namespace as a KVTable, or
/// QUERY_NOT_FOUND when it holds nothing.
pub fn list(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let namespace = request.required("namespace")?;
    let table = view::kv_table(&ns.state.store, namespace)?;
    if table.is_empty() {
        return Err(Failure::new(
            response_code::QUERY_NOT_FOUND,
            format!("No config item, Namespace: {namespace}"),
        ));
    }
    let mut answer = request.answer(0, None);
    answer.body = json_body(&KvTable { table });
    Ok(answer)
}
