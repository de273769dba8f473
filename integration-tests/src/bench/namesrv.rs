//! Name-server workloads over RocketMQ's remoting protocol: route lookups
//! (GET_ROUTEINFO_BY_TOPIC) in a closed loop, and brokers registering
//! their topics (REGISTER_BROKER) as a real broker does, with every name
//! server at once. The same client drives kv-server's name-server port and
//! an in-memory RocketMQ name server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemas::remoting::{
    body_crc32, decode_frame, request_code, response_code, DataVersion, RegisterBrokerBody,
    RemotingCommand, TopicConfigSerializeWrapper, DEFAULT_MAX_FRAME_BYTES,
};
use schemas::TopicConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bench::closed_loop::Limits;
use crate::bench::report::{Errors, Latency};
use crate::bench::BenchError;

/// Pause after a failed connect, so a dead server is not hammered.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// A name server address on this machine (`127.0.0.1:9876`), checked.
pub fn loopback_namesrv(address: &str) -> Result<SocketAddr, BenchError> {
    let parsed: SocketAddr = address.parse().map_err(|error| BenchError::BadEndpoint {
        url: address.to_string(),
        reason: format!("not an ip:port name server address: {error}"),
    })?;
    if !parsed.ip().is_loopback() {
        return Err(BenchError::NotLoopback {
            url: address.to_string(),
        });
    }
    Ok(parsed)
}

/// One connection to a name server, one request in flight.
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    next_opaque: i32,
    timeout: Duration,
}

impl Connection {
    /// Connects to `address`, each call bounded by `timeout`.
    pub async fn open(address: SocketAddr, timeout: Duration) -> Result<Connection, String> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| "connect".to_string())?
            .map_err(|_| "connect".to_string())?;
        stream
            .set_nodelay(true)
            .map_err(|_| "connect".to_string())?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(4096),
            next_opaque: 0,
            timeout,
        })
    }

    /// Sends `request` and returns its answer; an error is a short kind
    /// for the report (`timeout`, `closed`, `bad frame`).
    pub async fn call(&mut self, mut request: RemotingCommand) -> Result<RemotingCommand, String> {
        self.next_opaque = self.next_opaque.wrapping_add(1);
        request.opaque = self.next_opaque;
        let frame = request.encode();
        tokio::time::timeout(self.timeout, self.exchange(&frame, request.opaque))
            .await
            .map_err(|_| "timeout".to_string())?
    }

    async fn exchange(&mut self, frame: &[u8], opaque: i32) -> Result<RemotingCommand, String> {
        self.stream
            .write_all(frame)
            .await
            .map_err(|_| "closed".to_string())?;
        loop {
            match decode_frame(&self.buffer, DEFAULT_MAX_FRAME_BYTES) {
                Ok(Some((answer, used))) => {
                    self.buffer.drain(..used);
                    if answer.opaque == opaque && answer.is_response() {
                        return Ok(answer);
                    }
                }
                Ok(None) => {
                    let mut chunk = [0u8; 16 * 1024];
                    let read = self
                        .stream
                        .read(&mut chunk)
                        .await
                        .map_err(|_| "closed".to_string())?;
                    if read == 0 {
                        return Err("closed".to_string());
                    }
                    self.buffer.extend_from_slice(&chunk[..read]);
                }
                Err(_) => return Err("bad frame".to_string()),
            }
        }
    }
}

/// The name of bench topic `index`.
pub fn topic_name(index: usize) -> String {
    format!("bench-topic-{index}")
}

/// The broker `index` of a registration run: its name, id 0 (a master),
/// and an address no broker listens on (the name server never calls it).
pub struct BenchBroker {
    /// `bench-broker-{index}`.
    pub name: String,
    /// `127.0.0.1:{20000 + index}`.
    pub address: String,
}

impl BenchBroker {
    /// Broker `index`.
    pub fn new(index: usize) -> BenchBroker {
        BenchBroker {
            name: format!("bench-broker-{index}"),
            address: format!("127.0.0.1:{}", 20_000 + index),
        }
    }

    /// Its REGISTER_BROKER request for topics `0..topics`, with data
    /// version `counter`, as a broker sends it (JSON body, `bodyCrc32`).
    pub fn register(&self, topics: usize, counter: i64) -> RemotingCommand {
        let topic_config_table = (0..topics)
            .map(|index| {
                let mut config = TopicConfig::new(topic_name(index));
                config.read_queue_nums = 8;
                config.write_queue_nums = 8;
                (config.topic_name.clone(), config)
            })
            .collect();
        let body = RegisterBrokerBody {
            topic_config_serialize_wrapper: TopicConfigSerializeWrapper {
                topic_config_table,
                data_version: DataVersion {
                    state_version: 0,
                    timestamp: 1,
                    counter,
                },
                extra: BTreeMap::new(),
            },
            filter_server_list: Vec::new(),
        }
        .encode(false);
        let fields = [
            ("brokerAddr", self.address.clone()),
            ("brokerId", "0".to_string()),
            ("brokerName", self.name.clone()),
            ("clusterName", "BenchCluster".to_string()),
            ("haServerAddr", String::new()),
            ("compressed", "false".to_string()),
            ("enableActingMaster", "false".to_string()),
            ("bodyCrc32", body_crc32(&body).to_string()),
        ];
        let mut request = RemotingCommand::request(
            request_code::REGISTER_BROKER,
            fields
                .into_iter()
                .map(|(name, value)| (name.to_string(), value))
                .collect(),
        );
        request.body = body;
        request
    }
}

/// A route lookup of `topic`.
pub fn route_lookup(topic: &str) -> RemotingCommand {
    RemotingCommand::request(
        request_code::GET_ROUTEINFO_BY_TOPIC,
        BTreeMap::from([("topic".to_string(), topic.to_string())]),
    )
}

/// The outcome of a lookup run.
pub struct LookupResult {
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Latency of the lookups answered with a route.
    pub latency: Latency,
    /// Failed lookups by kind.
    pub errors: Errors,
}

/// Looks up routes of random topics among `topics` with `connections`
/// workers (worker i on name server i mod n) within `limits`.
pub async fn lookups(
    namesrvs: &[SocketAddr],
    connections: usize,
    topics: usize,
    limits: Limits,
    timeout: Duration,
) -> Result<LookupResult, BenchError> {
    let started_ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limits.duration;
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let address = namesrvs[worker % namesrvs.len()];
            let started_ops = Arc::clone(&started_ops);
            tokio::spawn(async move {
                let mut latency = Latency::new();
                let mut errors = Errors::default();
                let mut connection = None;
                while Instant::now() < deadline {
                    if let Some(ops) = limits.ops {
                        if started_ops.fetch_add(1, Ordering::Relaxed) >= ops {
                            break;
                        }
                    }
                    if connection.is_none() {
                        match Connection::open(address, timeout).await {
                            Ok(opened) => connection = Some(opened),
                            Err(kind) => {
                                errors.add(kind);
                                tokio::time::sleep(CONNECT_BACKOFF).await;
                                continue;
                            }
                        }
                    }
                    let Some(open) = connection.as_mut() else {
                        continue;
                    };
                    let topic = topic_name(rand::random_range(0..topics));
                    let sent = Instant::now();
                    match open.call(route_lookup(&topic)).await {
                        Ok(answer) if answer.code == response_code::SUCCESS => {
                            latency.record(sent.elapsed());
                        }
                        Ok(answer) => errors.add(format!("code {}", answer.code)),
                        Err(kind) => {
                            errors.add(kind);
                            connection = None;
                        }
                    }
                }
                (latency, errors)
            })
        })
        .collect();
    let mut result = LookupResult {
        elapsed: Duration::ZERO,
        latency: Latency::new(),
        errors: Errors::default(),
    };
    for worker in workers {
        let (latency, errors) = worker
            .await
            .map_err(|error| BenchError::Setup(format!("a worker failed: {error}")))?;
        result.latency.merge(&latency);
        result.errors.merge(&errors);
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

/// Registers brokers `0..brokers`, each with topics `0..topics` at data
/// version `counter`, with every name server of `namesrvs` (as a broker
/// registers with each), `connections` registrations at a time. Fails on
/// the first registration that was not answered SUCCESS. Returns the time
/// taken.
pub async fn register_all(
    namesrvs: &[SocketAddr],
    brokers: usize,
    topics: usize,
    counter: i64,
    connections: usize,
    timeout: Duration,
) -> Result<Duration, BenchError> {
    let next = Arc::new(AtomicU64::new(0));
    let namesrvs = Arc::new(namesrvs.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..connections.min(brokers).max(1))
        .map(|_| {
            let next = Arc::clone(&next);
            let namesrvs = Arc::clone(&namesrvs);
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if index >= brokers {
                        return Ok(());
                    }
                    let broker = BenchBroker::new(index);
                    let request = broker.register(topics, counter);
                    for address in namesrvs.iter() {
                        let failed = |why: String| {
                            BenchError::Setup(format!(
                                "registering {} with {address}: {why}",
                                broker.name
                            ))
                        };
                        let mut connection =
                            Connection::open(*address, timeout).await.map_err(failed)?;
                        let answer = connection.call(request.clone()).await.map_err(failed)?;
                        if answer.code != response_code::SUCCESS {
                            return Err(failed(format!(
                                "answered code {}: {}",
                                answer.code,
                                answer.remark.unwrap_or_default()
                            )));
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker
            .await
            .map_err(|error| BenchError::Setup(format!("a registrar failed: {error}")))??;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_name_servers_are_driven() {
        assert!(loopback_namesrv("127.0.0.1:9876").is_ok());
        assert!(loopback_namesrv("[::1]:9876").is_ok());
        assert!(matches!(
            loopback_namesrv("10.0.0.1:9876"),
            Err(BenchError::NotLoopback { .. })
        ));
        assert!(matches!(
            loopback_namesrv("localhost"),
            Err(BenchError::BadEndpoint { .. })
        ));
    }
}
