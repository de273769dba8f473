//! GET_ROUTEINFO_BY_TOPIC, GET_BROKER_CLUSTER_INFO and
//! GET_BROKER_MEMBER_GROUP, from this node's view.

use std::collections::BTreeMap;

use schemas::remoting::{response_code, RemotingCommand};
use serde::Serialize;

use crate::namesrv::{config, json_body, required_name, view, Failure, Handled, NameServer};

/// GET_ROUTEINFO_BY_TOPIC: the topic's route, or TOPIC_NOT_EXIST.
pub fn route_of_topic(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let topic = required_name(request, "topic")?;
    let Some(mut route) = view::route(&ns.state.store, topic)? else {
        return Err(Failure::new(
            response_code::TOPIC_NOT_EXIST,
            // Apache's remark, with its `FAQUrl.suggestTodo` line.
            format!(
                "No topic route info in name server for the topic: {topic}\nSee \
                 https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details."
            ),
        ));
    };
    if config::flag(ns, "orderMessageEnable", false)? {
        route.order_topic_conf =
            view::kv_table(&ns.state.store, crate::namesrv::brokers::ORDER_TOPIC_CONFIG)?
                .remove(topic);
    }
    let mut answer = request.answer(0, None);
    answer.body = json_body(&route);
    Ok(answer)
}

/// GET_BROKER_CLUSTER_INFO.
pub fn cluster_info(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let info = view::cluster_info(&ns.state.store)?;
    let mut answer = request.answer(0, None);
    answer.body = json_body(&info);
    Ok(answer)
}

/// One broker group's members (RocketMQ's `BrokerMemberGroup`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerMemberGroup {
    cluster: String,
    broker_name: String,
    broker_addrs: BTreeMap<i64, String>,
}

/// The body of GET_BROKER_MEMBER_GROUP's answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemberGroupBody {
    broker_member_group: BrokerMemberGroup,
}

/// GET_BROKER_MEMBER_GROUP: the addresses of a group's members (none when
/// the group is unknown). As in Apache, the group is looked up by its
/// name alone; the cluster named is only echoed.
pub fn member_group(ns: &NameServer, request: &RemotingCommand) -> Handled {
    let cluster = required_name(request, "clusterName")?;
    let broker_name = required_name(request, "brokerName")?;
    let broker_addrs = view::group(&ns.state.store, broker_name)?
        .into_iter()
        .map(|(_, _, record)| (record.broker_id, record.broker_addr))
        .collect();
    let mut answer = request.answer(0, None);
    answer.body = json_body(&MemberGroupBody {
        broker_member_group: BrokerMemberGroup {
            cluster: cluster.to_string(),
            broker_name: broker_name.to_string(),
            broker_addrs,
        },
    });
    Ok(answer)
}
