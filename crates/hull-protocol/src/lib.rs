//! The host ↔ guest-agent protocol of hull: the one place where it is defined.
//!
//! One byte stream (a virtio-serial port today, vsock later) carries frames. Each frame has a
//! fixed 12-byte header followed by `len` payload bytes:
//!
//! ```text
//!  0      2        3      4            8            12
//!  +------+--------+------+------------+------------+-------------+
//!  | "HL" | version| kind | stream u32 | len u32    | payload ... |
//!  +------+--------+------+------------+------------+-------------+
//! ```
//! (all integers little-endian)
//!
//! * `kind = Control`: payload is one JSON [`HostMessage`] (host → agent: a request with an id)
//!   or [`AgentMessage`] (agent → host: the reply carrying that id, or an event).
//! * `kind = Data`: payload is raw bytes of one stdio stream, named by `stream` (see [`StreamId`]).
//! * `kind = Eof`: the writer closed the stream `stream` (no payload).
//!
//! Multiplexing many processes' stdio over one channel is what the stream id is for: one exec'd
//! process owns three stream ids (stdin, stdout, stderr). Control messages and data never wait on
//! each other beyond the frame being written.
//!
//! Bump [`PROTOCOL_VERSION`] on any incompatible change; the agent refuses a host with another
//! version in its [`HostRequest::Hello`] reply.

mod frame;
mod messages;

pub use frame::{Frame, FrameHeader, FrameKind, FrameReader, FrameWriter, HEADER_LEN, MAX_PAYLOAD};
pub use messages::*;

/// Version of this protocol. The host sends it in `Hello`; the agent answers with its own.
pub const PROTOCOL_VERSION: u8 = 1;

/// Name of the virtio-serial port the agent talks on (`/sys/class/virtio-ports/*/name`).
pub const AGENT_PORT_NAME: &str = "org.hull.agent.0";

/// virtio-fs tag under which the host shares the container's files (rootfs + bind mounts).
pub const SHARE_TAG: &str = "hullshare";

/// Errors of the wire format.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o on the agent channel")]
    Io(#[from] std::io::Error),
    #[error("bad frame magic {0:#06x} (stream out of sync or not a hull agent)")]
    BadMagic(u16),
    #[error("peer speaks protocol version {peer}, we speak {ours}")]
    Version { peer: u8, ours: u8 },
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("frame payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge(u32),
    #[error("malformed control message")]
    Json(#[from] serde_json::Error),
}
