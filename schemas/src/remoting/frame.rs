//! Frames: a command to bytes and back, with both header forms.
//!
//! INTERFACE ONLY: the bodies are being written on branch `codec`.

use thiserror::Error;

use crate::remoting::RemotingCommand;

/// The largest frame a name server reads by default: RocketMQ's
/// `com.rocketmq.remoting.frameMaxLength` default (16 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why bytes are not a frame. Each names what was wrong and where.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// Placeholder until the codec lands.
    #[error("the remoting codec is not built yet")]
    NotBuilt,
}

/// Decodes the first frame of `buf`: `Ok(None)` if `buf` does not hold a
/// whole frame yet, else the command and the bytes it used. A length over
/// `max_frame_bytes` is refused before its bytes arrive.
pub fn decode_frame(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(RemotingCommand, usize)>, FrameError> {
    let _ = (buf, max_frame_bytes);
    Err(FrameError::NotBuilt)
}

impl RemotingCommand {
    /// The whole frame, length prefix included, with the header in
    /// `self.serialize_type`'s form.
    pub fn encode(&self) -> Vec<u8> {
        unimplemented!("the remoting codec is not built yet")
    }
}
