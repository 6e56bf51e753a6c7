//! The host ↔ guest-agent protocol of hull: the one place where it is defined.
//!
//! One byte stream (a virtio-serial port today, vsock later) carries frames. Each frame has a
//! fixed 12-byte header followed by `len` payload bytes:
//!
//! ```text
//!  0      2        3      4            8            12
//!  +------+--------+------+------------+------------+-------------+
//!  | "HL" | format | kind | stream u32 | len u32    | payload ... |
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
//! Two versions, on purpose:
//! * [`FRAME_FORMAT`] (header byte 2) is the layout above. It never changes without a new magic;
//!   a peer with another format is not a hull peer the other side could answer.
//! * [`PROTOCOL_VERSION`] is the message set. Bump it on any incompatible message change. The
//!   host sends it in the first message, [`HostRequest::Hello`], whose shape (and the error
//!   reply's) stays fixed across versions, so the agent can always answer a mismatched host with
//!   an error that names both versions ([`check_version`]).

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod frame;
#[doc(hidden)]
pub mod fuzzing;
mod messages;
mod net;

pub use frame::{Frame, FrameHeader, FrameKind, FrameReader, FrameWriter, HEADER_LEN, MAX_PAYLOAD};
pub use messages::*;
pub use net::{IpNet, NetInterface, NetRoute, NetworkConfig};

/// Version of the message set. The host sends it in `Hello`; the agent answers with its own.
pub const PROTOCOL_VERSION: u8 = 6;

/// Version of the frame layout (header byte 2).
pub const FRAME_FORMAT: u8 = 1;

/// The agent's check of a host's `Hello`: `Err` names both versions.
pub fn check_version(host: u8) -> Result<(), String> {
    if host == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: the host speaks version {host}, this agent speaks \
             {PROTOCOL_VERSION} (host and guest initramfs come from different hull builds)"
        ))
    }
}

/// An error with its causes in one line (`error: cause: cause`), as errors cross the channel
/// and reach logs: host and agent print them the same way.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// Name of the virtio-serial port the agent talks on (`/sys/class/virtio-ports/*/name`).
pub const AGENT_PORT_NAME: &str = "org.hull.agent.0";

/// virtio-fs tag under which the host shares the container's rootfs (cached in the guest).
pub const SHARE_TAG: &str = "hullshare";

/// virtio-fs tag under which the host shares the sources of bind mounts (coherent with the host),
/// present when the container has bind mounts.
pub const VOLUME_TAG: &str = "hullvol";

// The tags name virtio-fs devices in a cold-booted VM and virtio-9p devices in a VM cloned
// from a template (vhost-user-fs cannot be migrated in QEMU 7.2): the agent mounts whichever
// kind carries the tag.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_version_check_names_both_versions() {
        assert!(check_version(PROTOCOL_VERSION).is_ok());
        let e = check_version(PROTOCOL_VERSION + 1).unwrap_err();
        assert!(
            e.contains(&format!("host speaks version {}", PROTOCOL_VERSION + 1)),
            "{e}"
        );
        assert!(
            e.contains(&format!("agent speaks {PROTOCOL_VERSION}")),
            "{e}"
        );
    }

    #[test]
    fn hello_keeps_its_wire_shape() {
        // Other protocol versions must still be able to parse these two messages.
        let hello = HostMessage {
            id: 1,
            request: HostRequest::Hello { version: 9 },
        };
        let v = serde_json::to_value(&hello).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["request"]["version"], 9);
        let err = AgentMessage::Reply {
            id: 1,
            result: Err(AgentError::new("no")),
        };
        let v = serde_json::to_value(&err).unwrap();
        assert_eq!(v["id"], 1);
        assert_eq!(v["result"]["Err"]["message"], "no", "{v}");
    }
}

/// Errors of the wire format.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o on the agent channel")]
    Io(#[from] std::io::Error),
    #[error("bad frame magic {0:#06x} (stream out of sync or not a hull agent)")]
    BadMagic(u16),
    #[error("peer uses frame format {peer}, we use {ours}")]
    FrameFormat { peer: u8, ours: u8 },
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    #[error("frame payload of {0} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge(u32),
    #[error("malformed control message")]
    Json(#[from] serde_json::Error),
}
