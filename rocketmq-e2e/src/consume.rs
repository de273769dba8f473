//! `consume`: a push consumer in a fresh group, reading the topic from its
//! first offset, that exits once COUNT distinct message bodies arrived or
//! fails at the timeout saying how many did.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::bail;
use rocketmq_client_rust::ClientResult;
use rocketmq_client_rust::ConsumeConcurrentlyContext;
use rocketmq_client_rust::ConsumeConcurrentlyStatus;
use rocketmq_client_rust::DefaultMQPushConsumer;
use rocketmq_client_rust::MQPushConsumer;
use rocketmq_client_rust::MessageListenerConcurrently;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use tokio::time::Instant;

use crate::client::ClientEnv;

/// How often the count of received bodies is looked at.
const POLL: Duration = Duration::from_millis(200);

/// Records the body of every message delivered, as text.
struct Collector {
    bodies: Arc<Mutex<HashSet<String>>>,
}

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        messages: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut bodies = self
            .bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for message in messages {
            let body = message
                .body()
                .map(|body| String::from_utf8_lossy(&body).into_owned());
            bodies.insert(body.unwrap_or_else(|| format!("<no body: {}>", message.msg_id())));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// Consumes `topic` in `group` until `count` distinct bodies arrived.
pub async fn run(
    namesrv: &str,
    topic: &str,
    group: &str,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let env = ClientEnv::new("consumer")?;
    let bodies = Arc::new(Mutex::new(HashSet::new()));
    let mut consumer = DefaultMQPushConsumer::builder(env.runtime())
        .consumer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .build();
    let started = async {
        consumer.subscribe(topic, "*").await?;
        consumer.register_message_listener_concurrently(Collector {
            bodies: Arc::clone(&bodies),
        });
        consumer.start().await
    }
    .await;
    if let Err(error) = started {
        env.shutdown().await;
        bail!("starting the consumer of {topic} in group {group} against {namesrv}: {error}");
    }
    let begun = Instant::now();
    let received = loop {
        let received = bodies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len();
        if received >= count || begun.elapsed() >= timeout {
            break received;
        }
        tokio::time::sleep(POLL).await;
    };
    let seconds = begun.elapsed().as_secs_f64();
    consumer.shutdown().await;
    env.shutdown().await;
    if received < count {
        bail!("received {received} of {count} distinct messages of {topic} in {timeout:?} (group {group})");
    }
    println!("RESULT consume topic={topic} group={group} received={received} seconds={seconds:.1}");
    Ok(())
}
