//! The coordinator protocol: length-prefixed postcard messages over TCP.
//!
//! Frame: u32 little-endian payload length, then the postcard bytes of one message.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};

/// DMTCP's default coordinator port.
pub const DEFAULT_PORT: u16 = 7779;
/// Frames larger than this are refused: a peer that sends one is broken or hostile.
pub const MAX_FRAME: u32 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("coordinator connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("coordinator connection closed")]
    Closed,
    #[error("coordinator sent a frame of {0} bytes (limit {MAX_FRAME})")]
    TooLarge(u32),
    #[error("malformed coordinator message: {0}")]
    Decode(#[from] postcard::Error),
}

/// What a user asks through dmtcp_command.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `blocking`: reply only once every image and the restart script are written.
    /// `kill_after`: kill the computation once the checkpoint is written.
    Checkpoint {
        blocking: bool,
        kill_after: bool,
    },
    Status,
    List,
    /// Seconds; 0 disables interval checkpoints.
    SetInterval(u32),
    Kill,
    Quit,
}

/// DMTCP's command status codes (dmtcp_command --json prints these names).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    Success,
    NotRunning,
    /// No processes are connected (e.g. checkpoint with nothing to checkpoint).
    NoPeers,
    /// A checkpoint failed in at least one process (disk full, ...).
    CheckpointFailed,
    /// Another checkpoint is in progress.
    Busy,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub unique_pid: String,
    pub pid: u32,
    pub prog: String,
    pub hostname: String,
    pub state: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CommandReply {
    pub status: CommandStatus,
    pub num_peers: u32,
    /// True while the computation runs (not in the middle of a checkpoint).
    pub running: bool,
    /// Seconds between automatic checkpoints, 0 = none.
    pub interval: u32,
    pub peers: Vec<PeerInfo>,
    /// Images written by the last checkpoint (absolute paths).
    pub images: Vec<String>,
    pub message: String,
}

/// Messages to the coordinator.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ToCoord {
    /// A process of the computation joins: right after launch (`restarted: false`) or after
    /// restart (`restarted: true`).
    Hello {
        unique_pid: String,
        pid: u32,
        prog: String,
        hostname: String,
        restarted: bool,
        /// `dmtcp_launch --interval S`: the coordinator adopts it if non-zero.
        interval: u32,
    },
    /// This process finished its part of checkpoint `generation`.
    CheckpointDone { generation: u64, image: String, error: Option<String> },
    /// The application called dmtcp_checkpoint().
    RequestCheckpoint,
    /// dmtcp_command.
    Command(Command),
    /// Every thread of this process is parked for checkpoint `generation`; `tcp`: the ends of
    /// TCP connections it holds (crate::tcp_pairs).
    Suspended { generation: u64, tcp: Vec<TcpEnd> },
    /// Every TCP connection this process drains has nothing left in its own send queues.
    Drained { generation: u64 },
}

pub use crate::tcp_pairs::TcpEnd;

/// Messages from the coordinator.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum FromCoord {
    Welcome {
        generation: u64,
    },
    /// Suspend, write the image into `ckpt_dir` (or the launch-time directory if None).
    DoCheckpoint {
        generation: u64,
        ckpt_dir: Option<String>,
    },
    /// Every process has written its image: resume running.
    Resume,
    /// Terminate (dmtcp_command --kill, or --kcheckpoint after the images are written).
    Kill,
    Reply(CommandReply),
    /// Every process of round `generation` is suspended: what sits in pipes and sockets between
    /// them can be read now, before the images are written.
    AllSuspended {
        generation: u64,
        /// Every process's TCP ends, from their Suspended messages.
        tcp: Vec<TcpEnd>,
    },
    /// Every process of round `generation` reported Drained: each drained connection's data is
    /// all on the reading side now.
    AllDrained {
        generation: u64,
    },
}

pub fn send<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtocolError> {
    let body = postcard::to_allocvec(msg)?;
    let len = u32::try_from(body.len()).map_err(|_| ProtocolError::TooLarge(u32::MAX))?;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    Ok(())
}

pub fn recv<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, ProtocolError> {
    let mut len = [0u8; 4];
    if let Err(e) = r.read_exact(&mut len) {
        return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof { ProtocolError::Closed } else { e.into() });
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(postcard::from_bytes(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let msg = ToCoord::CheckpointDone { generation: 3, image: "/tmp/x.dmtcp".into(), error: None };
        send(&mut buf, &msg).unwrap();
        let back: ToCoord = recv(&mut buf.as_slice()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn refuses_oversized_and_truncated_frames() {
        let frame = (MAX_FRAME + 1).to_le_bytes();
        assert!(matches!(recv::<_, ToCoord>(&mut frame.as_slice()), Err(ProtocolError::TooLarge(_))));
        assert!(matches!(recv::<_, ToCoord>(&mut [1u8, 0].as_slice()), Err(ProtocolError::Closed)));
        let mut buf = Vec::new();
        send(&mut buf, &FromCoord::Resume).unwrap();
        buf.push(0);
        buf[0] = 9; // claims more bytes than follow
        assert!(recv::<_, FromCoord>(&mut buf.as_slice()).is_err());
    }
}
