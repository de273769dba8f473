//! A small RocketMQ remoting client for the tests, built on the `schemas`
//! codec: connect to a name server, send a command (or raw bytes), read
//! the answer carrying the request's opaque, every step with a time limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use schemas::remoting::{
    decode_frame, response_code, RemotingCommand, SerializeType, DEFAULT_MAX_FRAME_BYTES,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TestServer;

/// How long a connect, a write or an answer may take.
pub const REMOTING_TIMEOUT: Duration = Duration::from_secs(15);

/// One connection to a name server.
pub struct RemotingClient {
    addr: SocketAddr,
    stream: TcpStream,
    buffer: Vec<u8>,
    next_opaque: i32,
    /// How long an answer may take ([`REMOTING_TIMEOUT`] unless set).
    answer_timeout: Duration,
}

impl RemotingClient {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> RemotingClient {
        let stream = tokio::time::timeout(REMOTING_TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connecting to the name server at {addr} timed out"))
            .unwrap_or_else(|error| panic!("cannot connect to the name server at {addr}: {error}"));
        RemotingClient {
            addr,
            stream,
            buffer: Vec::new(),
            next_opaque: 1000,
            answer_timeout: REMOTING_TIMEOUT,
        }
    }

    /// The client, waiting up to `timeout` for each answer.
    pub fn with_answer_timeout(mut self, timeout: Duration) -> RemotingClient {
        self.answer_timeout = timeout;
        self
    }

    /// A new connection to the same name server, as a RocketMQ client
    /// makes after the server closed one (it does after SYSTEM_BUSY).
    pub async fn reconnect(&mut self) {
        *self = RemotingClient::connect(self.addr).await;
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(REMOTING_TIMEOUT, self.stream.write_all(bytes))
            .await
            .expect("writing to the name server timed out")
            .expect("the name server takes the bytes");
    }

    /// Sends `request` with a fresh opaque and returns its answer.
    pub async fn call(&mut self, mut request: RemotingCommand) -> RemotingCommand {
        self.next_opaque += 1;
        request.opaque = self.next_opaque;
        self.send_raw(&request.encode()).await;
        self.answer_to(request.opaque).await
    }

    /// Sends `request` and checks it was answered SUCCESS; returns the
    /// answer.
    pub async fn call_ok(&mut self, request: RemotingCommand) -> RemotingCommand {
        let code = request.code;
        let answer = self.call(request).await;
        assert_eq!(answer.code, 0, "request {code} was refused: {answer:?}");
        answer
    }

    /// Sends a request of `code` with header fields `fields` and `body`,
    /// in JSON header form; returns its answer.
    pub async fn request(
        &mut self,
        code: i32,
        fields: &[(&str, &str)],
        body: Vec<u8>,
    ) -> RemotingCommand {
        self.call(command(code, fields, body, SerializeType::Json))
            .await
    }

    /// Reads answers until the one with `opaque`.
    pub async fn answer_to(&mut self, opaque: i32) -> RemotingCommand {
        loop {
            let answer = self.read_frame().await.unwrap_or_else(|| {
                panic!("the name server closed the connection before answering opaque {opaque}")
            });
            if answer.opaque == opaque {
                return answer;
            }
        }
    }

    /// The next frame the server sends; `None` when it closes the
    /// connection.
    pub async fn read_frame(&mut self) -> Option<RemotingCommand> {
        loop {
            match decode_frame(&self.buffer, DEFAULT_MAX_FRAME_BYTES) {
                Ok(Some((command, used))) => {
                    self.buffer.drain(..used);
                    return Some(command);
                }
                Ok(None) => {}
                Err(error) => panic!("the name server sent a bad frame: {error}"),
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(self.answer_timeout, self.stream.read(&mut chunk))
                .await
                .expect("the name server did not answer in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
            }
        }
    }

    /// Whether the server closes the connection (within the time limit)
    /// without sending another frame.
    pub async fn is_closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout(REMOTING_TIMEOUT, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }
}

/// A request of `code` with header fields `fields` and `body`, written in
/// `form`.
pub fn command(
    code: i32,
    fields: &[(&str, &str)],
    body: Vec<u8>,
    form: SerializeType,
) -> RemotingCommand {
    let ext_fields: BTreeMap<String, String> = fields
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let mut request = RemotingCommand::request(code, ext_fields);
    request.serialize_type = form;
    request.body = body;
    request
}

/// The captured frame `name` (e.g. `001-request-code103.bin`) of the
/// fixtures of real RocketMQ peers.
pub fn captured_frame(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/tests/fixtures/rocketmq-frames")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The captured frame `name`, decoded.
pub fn captured_command(name: &str) -> RemotingCommand {
    let bytes = captured_frame(name);
    decode_frame(&bytes, DEFAULT_MAX_FRAME_BYTES)
        .unwrap_or_else(|error| panic!("{name} does not decode: {error}"))
        .unwrap_or_else(|| panic!("{name} is not a whole frame"))
        .0
}

/// The JSON body of `answer`.
pub fn json_of(answer: &RemotingCommand) -> serde_json::Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|error| {
        panic!(
            "the answer's body is not JSON ({error}): {:?}",
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// A REGISTER_BROKER of broker `broker_id` of group `broker_name` at
/// `broker_addr`, carrying the captured broker's topics under data version
/// counter `counter`, its body compressed or not, with its `bodyCrc32`.
pub fn registration(
    broker_name: &str,
    broker_id: i64,
    broker_addr: &str,
    counter: i64,
    compressed: bool,
) -> RemotingCommand {
    registration_edited(broker_name, broker_id, broker_addr, compressed, |body| {
        body.topic_config_serialize_wrapper.data_version.counter = counter;
    })
}

/// A REGISTER_BROKER as [`registration`] makes it, with the captured body
/// changed by `edit` first.
pub fn registration_edited(
    broker_name: &str,
    broker_id: i64,
    broker_addr: &str,
    compressed: bool,
    edit: impl FnOnce(&mut schemas::remoting::RegisterBrokerBody),
) -> RemotingCommand {
    use schemas::remoting::{body_crc32, RegisterBrokerBody};
    let captured = captured_command("001-request-code103.bin");
    let mut body = RegisterBrokerBody::decode(&captured.body, false)
        .expect("the captured registration body decodes");
    edit(&mut body);
    let bytes = body.encode(compressed);
    let crc = body_crc32(&bytes).to_string();
    let id = broker_id.to_string();
    let compressed_field = compressed.to_string();
    command(
        schemas::remoting::request_code::REGISTER_BROKER,
        &[
            ("brokerAddr", broker_addr),
            ("brokerId", &id),
            ("brokerName", broker_name),
            ("clusterName", "DefaultCluster"),
            ("compressed", &compressed_field),
            ("enableActingMaster", "false"),
            ("haServerAddr", "192.0.2.2:10912"),
            ("bodyCrc32", &crc),
        ],
        bytes,
        SerializeType::Json,
    )
}

/// A request of `code` naming broker `broker_name`/`broker_id` at
/// `broker_addr` of `DefaultCluster` (UNREGISTER_BROKER, BROKER_HEARTBEAT).
pub fn broker_request(
    code: i32,
    broker_name: &str,
    broker_id: i64,
    broker_addr: &str,
) -> RemotingCommand {
    let id = broker_id.to_string();
    command(
        code,
        &[
            ("brokerAddr", broker_addr),
            ("brokerId", &id),
            ("brokerName", broker_name),
            ("clusterName", "DefaultCluster"),
        ],
        Vec::new(),
        SerializeType::Json,
    )
}

/// GET_ROUTEINFO_BY_TOPIC of `topic`.
pub fn route_request(topic: &str) -> RemotingCommand {
    command(
        schemas::remoting::request_code::GET_ROUTEINFO_BY_TOPIC,
        &[("topic", topic)],
        Vec::new(),
        SerializeType::Json,
    )
}

/// Pause between two polls of a condition.
pub const POLL: Duration = Duration::from_millis(50);

/// The broker of the captured frames.
pub const BROKER_A: &str = "127.0.0.1:20911";

/// A connection to `server`'s name server.
pub async fn connect(server: &TestServer) -> RemotingClient {
    RemotingClient::connect(server.namesrv_addr()).await
}

/// The answer to a request of `code` with `fields` and no body.
pub async fn ask(
    client: &mut RemotingClient,
    code: i32,
    fields: &[(&str, &str)],
) -> RemotingCommand {
    client.request(code, fields, Vec::new()).await
}

/// The body of a captured answer, as JSON.
pub fn captured_body(name: &str) -> Value {
    json_of(&captured_command(name))
}

/// Registers broker-a as the captured frame does (opaque 0).
pub async fn register_captured(client: &mut RemotingClient) -> RemotingCommand {
    client
        .send_raw(&captured_frame("001-request-code103.bin"))
        .await;
    client.answer_to(0).await
}

/// The store's revision and the `namesrv/` keys with their mod revisions.
pub async fn namesrv_keys(server: &TestServer) -> (u64, Vec<(String, u64)>) {
    let response = server
        .client()
        .get(server.url("/v1/kv?prefix=namesrv/&consistency=stale&limit=1000"))
        .send()
        .await
        .expect("the server answers");
    let revision = response.headers()["x-kv-revision"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("a number");
    let list: Value = response.json().await.expect("JSON");
    let keys = list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["key"].as_str().expect("key").to_string(),
                entry["mod_revision"].as_u64().expect("mod_revision"),
            )
        })
        .collect();
    (revision, keys)
}

/// Polls the route of `topic` until its answer has `wanted` as code.
pub async fn wait_route_code(
    client: &mut RemotingClient,
    topic: &str,
    wanted: i32,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let answer = client.call(route_request(topic)).await;
        if answer.code == wanted {
            return;
        }
        if answer.code == response_code::SYSTEM_BUSY {
            client.reconnect().await;
        }
        assert!(
            Instant::now() < deadline,
            "the route of {topic} still answers {} after {limit:?}, not {wanted}",
            answer.code
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A master's registration as [`registration`] makes it, with `extra`
/// more topics named `many-000`, `many-001`, ... beside its own.
pub fn registration_with_topics(
    broker_name: &str,
    broker_addr: &str,
    extra: usize,
) -> RemotingCommand {
    registration_with_topics_in(broker_name, broker_addr, extra, false)
}

/// [`registration_with_topics`], its body compressed or not.
pub fn registration_with_topics_in(
    broker_name: &str,
    broker_addr: &str,
    extra: usize,
    compressed: bool,
) -> RemotingCommand {
    registration_edited(broker_name, 0, broker_addr, compressed, |body| {
        body.topic_config_serialize_wrapper.data_version.counter = 1;
        let table = &mut body.topic_config_serialize_wrapper.topic_config_table;
        let template = table["TBW102"].clone();
        for index in 0..extra {
            let name = format!("many-{index:03}");
            let mut config = template.clone();
            config.topic_name = name.clone();
            table.insert(name, config);
        }
    })
}

/// The revision of each change-feed record under `namesrv/` after `from`
/// on `server` (one page, at most 1,000 records).
pub async fn namesrv_change_revisions(server: &TestServer, from: u64) -> Vec<u64> {
    let url = server.url(&format!(
        "/v1/changes?from={from}&prefix=namesrv/&limit=1000"
    ));
    let page: Value = server
        .client()
        .get(url)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["more"], Value::Bool(false), "{page}");
    page["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|record| record["revision"].as_u64().expect("a revision"))
        .collect()
}
