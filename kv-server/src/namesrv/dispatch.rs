//! Request code → handler, as Apache's `DefaultRequestProcessor` and
//! `ClientRequestProcessor` route them.

use schemas::remoting::{request_code as code, response_code, RemotingCommand};
use tracing::{debug, warn};

use crate::namesrv::{brokers, config, kv_config, routes, topics, Failure, Handled, NameServer};

/// Whether a request only reads: those are refused with SYSTEM_BUSY by a
/// node that may be stale.
fn is_read(request_code: i32) -> bool {
    matches!(
        request_code,
        code::GET_ROUTEINFO_BY_TOPIC
            | code::GET_BROKER_CLUSTER_INFO
            | code::GET_BROKER_MEMBER_GROUP
            | code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER
            | code::GET_TOPICS_BY_CLUSTER
            | code::GET_SYSTEM_TOPIC_LIST_FROM_NS
            | code::GET_UNIT_TOPIC_LIST
            | code::GET_HAS_UNIT_SUB_TOPIC_LIST
            | code::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST
            | code::GET_KV_CONFIG
            | code::GET_KVLIST_BY_NAMESPACE
            | code::GET_NAMESRV_CONFIG
    )
}

/// The answer to `request`: its handler's, or the error RocketMQ gives.
pub async fn dispatch(ns: &NameServer, request: &RemotingCommand) -> RemotingCommand {
    let handled = if is_read(request.code) {
        match ns.stale() {
            Some(why) => Err(Failure::new(response_code::SYSTEM_BUSY, why)),
            None => handle(ns, request).await,
        }
    } else {
        handle(ns, request).await
    };
    match handled {
        Ok(answer) => answer,
        Err(failure) => {
            if failure.code == response_code::TOPIC_NOT_EXIST
                || failure.code == response_code::QUERY_NOT_FOUND
            {
                debug!(code = request.code, remark = ?failure.remark, "not found");
            } else {
                warn!(code = request.code, opaque = request.opaque, answer = failure.code, remark = ?failure.remark, "request failed");
            }
            request.answer(failure.code, Some(failure.remark))
        }
    }
}

async fn handle(ns: &NameServer, request: &RemotingCommand) -> Handled {
    match request.code {
        code::PUT_KV_CONFIG => kv_config::put(ns, request).await,
        code::GET_KV_CONFIG => kv_config::get(ns, request),
        code::DELETE_KV_CONFIG => kv_config::delete(ns, request).await,
        code::GET_KVLIST_BY_NAMESPACE => kv_config::list(ns, request),
        code::REGISTER_BROKER => brokers::register(ns, request).await,
        code::UNREGISTER_BROKER => brokers::unregister(ns, request).await,
        code::BROKER_HEARTBEAT => brokers::heartbeat(ns, request).await,
        code::QUERY_DATA_VERSION => brokers::query_data_version(ns, request).await,
        code::GET_ROUTEINFO_BY_TOPIC => routes::route_of_topic(ns, request),
        code::GET_BROKER_CLUSTER_INFO => routes::cluster_info(ns, request),
        code::GET_BROKER_MEMBER_GROUP => routes::member_group(ns, request),
        code::WIPE_WRITE_PERM_OF_BROKER => topics::wipe_write_perm(ns, request).await,
        code::ADD_WRITE_PERM_OF_BROKER => topics::add_write_perm(ns, request).await,
        code::GET_ALL_TOPIC_LIST_FROM_NAMESERVER => topics::all_topics(ns, request),
        code::GET_TOPICS_BY_CLUSTER => topics::topics_of_cluster(ns, request),
        code::GET_SYSTEM_TOPIC_LIST_FROM_NS => topics::system_topics(ns, request),
        code::GET_UNIT_TOPIC_LIST
        | code::GET_HAS_UNIT_SUB_TOPIC_LIST
        | code::GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST => topics::unit_topics(ns, request),
        code::REGISTER_TOPIC_IN_NAMESRV => topics::register_topic(ns, request).await,
        code::DELETE_TOPIC_IN_NAMESRV => topics::delete_topic(ns, request).await,
        code::GET_NAMESRV_CONFIG => config::get(ns, request),
        code::UPDATE_NAMESRV_CONFIG => config::update(ns, request).await,
        other => Err(Failure::new(
            response_code::REQUEST_CODE_NOT_SUPPORTED,
            format!(" request type {other} not supported"),
        )),
    }
}
