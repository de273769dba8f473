//! `produce`: sends COUNT messages synchronously through rocketmq-rust's
//! producer. A failed send is retried a bounded number of times (a name
//! server or broker may be dying under it, as the scenario intends); the run
//! fails once one message has used up its attempts or the deadline passed.

use std::time::Duration;

use anyhow::bail;
use rocketmq_client_rust::DefaultMQProducer;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::result::SendStatus;
use tokio::time::Instant;

use crate::client::ClientEnv;

/// Milliseconds one send may take, the client's own retries included.
const SEND_TIMEOUT_MS: u64 = 3_000;
/// Pause between attempts at one message.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Sends `count` messages with bodies "{prefix}-{i}" to `topic`.
pub async fn run(
    namesrv: &str,
    topic: &str,
    count: u32,
    attempts: u32,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let env = ClientEnv::new("producer")?;
    let mut producer = DefaultMQProducer::builder(env.runtime())
        .producer_group(format!("e2e-producer-{}", std::process::id()))
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .retry_times_when_send_failed(2)
        .build();
    if let Err(error) = producer.start().await {
        env.shutdown().await;
        bail!("starting the producer against {namesrv}: {error}");
    }
    let outcome = send_all(&producer, topic, count, attempts.max(1), prefix, timeout).await;
    producer.shutdown().await;
    env.shutdown().await;
    let (sent, retried) = outcome?;
    println!("RESULT produce topic={topic} sent={sent} retried={retried}");
    Ok(())
}

/// Sends every message, retrying each up to `attempts` times; returns how
/// many were sent and how many attempts were repeated.
async fn send_all(
    producer: &DefaultMQProducer,
    topic: &str,
    count: u32,
    attempts: u32,
    prefix: &str,
    timeout: Duration,
) -> anyhow::Result<(u32, u32)> {
    let deadline = Instant::now() + timeout;
    let mut retried = 0;
    for i in 0..count {
        let body = format!("{prefix}-{i}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let message = Message::builder()
                .topic(topic)
                .tags("e2e")
                .keys(vec![body.clone()])
                .body_slice(body.as_bytes())
                .build_unchecked();
            let failure = match producer.send_with_timeout(message, SEND_TIMEOUT_MS).await {
                Ok(Some(result)) if result.send_status == SendStatus::SendOk => break,
                Ok(Some(result)) => format!("send status {:?}", result.send_status),
                Ok(None) => "no send result".to_string(),
                Err(error) => error.to_string(),
            };
            if attempt >= attempts || Instant::now() >= deadline {
                bail!(
                    "message {i} of {count} to {topic} not sent after {attempt} attempts \
                     ({i} sent before it): {failure}"
                );
            }
            eprintln!("rocketmq-e2e: message {i} attempt {attempt} failed, retrying: {failure}");
            retried += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        if Instant::now() >= deadline {
            bail!(
                "deadline of {timeout:?} passed after {} of {count} messages to {topic}",
                i + 1
            );
        }
    }
    Ok((count, retried))
}
