//! `route`: asks one name server for a topic's route with
//! GET_ROUTEINFO_BY_TOPIC and prints one line the scenario script reads:
//! `ROUTE addr=… topic=… code=0 brokers=broker-a:4,broker-b:4` (broker name
//! and write queues), or the answer's code and remark when there is no route.
//! A refused or silent server is the only failure.

use std::time::Duration;

use anyhow::anyhow;
use rocketmq_protocol::protocol::header::client_request_header::GetRouteInfoRequestHeader;
use rocketmq_protocol::protocol::route::topic_route_data::TopicRouteData;
use rocketmq_protocol::protocol::RemotingCommand;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::RequestCode;

use crate::wire;
use crate::wire::Connection;

/// Queries `namesrv` for `topic` and prints the ROUTE line.
pub async fn run(namesrv: &str, topic: &str, timeout: Duration) -> anyhow::Result<()> {
    let mut connection = Connection::connect(namesrv, timeout).await?;
    let answer = connection
        .call(route_request(topic, SerializeType::JSON))
        .await?;
    println!("ROUTE addr={namesrv} topic={topic} {}", summarize(&answer)?);
    Ok(())
}

/// A GET_ROUTEINFO_BY_TOPIC request for `topic`.
pub fn route_request(topic: &str, serialize: SerializeType) -> RemotingCommand {
    wire::request(
        RequestCode::GetRouteinfoByTopic,
        GetRouteInfoRequestHeader::new(topic, None),
        serialize,
    )
}

/// "code=0 brokers=name:writeQueues,…" (sorted), or "code=N remark=…".
pub fn summarize(answer: &RemotingCommand) -> anyhow::Result<String> {
    if answer.code() != 0 {
        let remark = answer
            .remark()
            .map(|remark| remark.to_string())
            .unwrap_or_default();
        return Ok(format!("code={} remark={:?}", answer.code(), remark));
    }
    let route = decode_route(answer)?;
    let mut brokers: Vec<String> = route
        .queue_datas
        .iter()
        .map(|queue| format!("{}:{}", queue.broker_name(), queue.write_queue_nums()))
        .collect();
    brokers.sort();
    Ok(format!("code=0 brokers={}", brokers.join(",")))
}

/// The answer's body as rocketmq-rust's `TopicRouteData`.
pub fn decode_route(answer: &RemotingCommand) -> anyhow::Result<TopicRouteData> {
    let body = answer
        .body()
        .ok_or_else(|| anyhow!("route answer has code 0 and no body"))?;
    TopicRouteData::decode(body).map_err(|error| {
        anyhow!(
            "route body does not decode as TopicRouteData: {error}: {}",
            String::from_utf8_lossy(body)
        )
    })
}
