//! One TCP connection to a name server speaking RocketMQ's remoting frames:
//! requests are encoded, and answers decoded, by rocketmq-rust's own
//! `RemotingCommand`; this file only moves the bytes, bounded in time and size.

use std::time::Duration;

use anyhow::anyhow;
use anyhow::bail;
use anyhow::Context;
use bytes::BytesMut;
use rocketmq_protocol::protocol::CommandCustomHeader;
use rocketmq_protocol::protocol::RemotingCommand;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::RequestCode;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest answer accepted (a route table of a large cluster fits many times).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// A request with the header encoding and version a current broker uses.
pub fn request<H>(code: RequestCode, header: H, serialize: SerializeType) -> RemotingCommand
where
    H: CommandCustomHeader + Sync + Send + 'static,
{
    RemotingCommand::create_request_command_with_defaults(
        code.to_i32(),
        header,
        rocketmq_model::version::CURRENT_VERSION as i32,
        serialize,
    )
}

/// An open connection to one name server.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    buffer: BytesMut,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr`, giving up after `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr}: no answer in {timeout:?}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).ok();
        Ok(Self {
            addr: addr.to_string(),
            stream,
            buffer: BytesMut::new(),
            timeout,
        })
    }

    /// Sends `request` and returns the answer carrying its opaque.
    pub async fn call(&mut self, mut request: RemotingCommand) -> anyhow::Result<RemotingCommand> {
        let code = request.code();
        let mut frame = BytesMut::new();
        request
            .try_fast_header_encode(&mut frame)
            .map_err(|error| anyhow!("encoding request code {code}: {error}"))?;
        if let Some(body) = request.body() {
            frame.extend_from_slice(body);
        }
        let addr = self.addr.clone();
        let opaque = request.opaque();
        let exchange =
            async {
                self.stream
                    .write_all(&frame)
                    .await
                    .with_context(|| format!("sending code {code} to {addr}"))?;
                loop {
                    let decoded = RemotingCommand::decode_with_max_frame_bytes(
                        &mut self.buffer,
                        MAX_FRAME_BYTES,
                    )
                    .map_err(|error| {
                        anyhow!("decoding the answer to code {code} from {addr}: {error}")
                    })?;
                    match decoded {
                        Some(answer) if answer.opaque() == opaque => return Ok(answer),
                        Some(other) => {
                            eprintln!(
                                "rocketmq-e2e: {addr} sent code {} opaque {} unasked; skipped",
                                other.code(),
                                other.opaque()
                            );
                        }
                        None => {
                            let read = self.stream.read_buf(&mut self.buffer).await.with_context(
                                || format!("reading the answer to code {code} from {addr}"),
                            )?;
                            if read == 0 {
                                bail!("{addr} closed the connection before answering code {code}");
                            }
                        }
                    }
                }
            };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("{addr} did not answer code {code} in {:?}", self.timeout))?
    }
}
