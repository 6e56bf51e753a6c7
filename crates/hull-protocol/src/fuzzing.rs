//! What the fuzz targets (`fuzz/fuzz_targets/`) run, kept here so that the normal test suite
//! replays their corpus through exactly the same code (`tests/fuzz_corpus.rs`). Not an API.
//!
//! Each function takes arbitrary bytes, must never panic, and checks the invariants a peer
//! relies on (a frame never holds more than [`MAX_PAYLOAD`] bytes, a decoded message encodes
//! and decodes to itself). Invariant failures are panics on purpose: that is how a fuzzer
//! reports them.

use std::io::{self, Read};

use crate::{
    check_version, AgentEvent, AgentMessage, Frame, FrameKind, FrameReader, HostMessage,
    HostRequest, Reply, StreamId, HEADER_LEN, MAX_PAYLOAD, PROTOCOL_VERSION,
};

/// A byte stream delivered in chunks of varying size, with `EINTR`s in between, as a socket
/// or a virtio-serial port hands it to the monitor's (or the agent's) reader.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    /// Chunk sizes cycled through (never 0).
    sizes: [usize; 4],
    step: usize,
    interrupt: bool,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.step = self.step.wrapping_add(1);
        if self.interrupt && self.step % 3 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let size = self.sizes[self.step % self.sizes.len()];
        let n = size.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// What [`frames`] decoded before the stream ended or broke.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FramesSummary {
    pub frames: usize,
    /// Payload bytes of the frames decoded.
    pub payload_bytes: usize,
    /// Whether the stream ended with an error (bad header, truncated frame).
    pub error: bool,
}

/// Feeds `data` to a [`FrameReader`] the way the monitor's agent reader gets it. The first
/// byte picks the chunking; the rest is the stream. Checks that every frame is no bigger than
/// [`MAX_PAYLOAD`], consumed exactly its header and payload, and carries the bytes it was sent.
pub fn frames(data: &[u8]) -> FramesSummary {
    let Some((&mode, stream)) = data.split_first() else {
        return FramesSummary::default();
    };
    let m = usize::from(mode);
    let sizes = [
        1 + (m & 0x7),
        1 + ((m >> 3) & 0x3) * 5,
        HEADER_LEN + (m & 0x1),
        if m & 0x40 != 0 { 64 * 1024 } else { 3 },
    ];
    let mut r = FrameReader::new(Chunked {
        data: stream,
        pos: 0,
        sizes,
        step: 0,
        interrupt: m & 0x80 != 0,
    });
    let mut sum = FramesSummary::default();
    loop {
        let start = r.get_ref().pos;
        match r.read_frame() {
            Ok(None) => {
                assert_eq!(start, stream.len(), "clean end of stream only at its end");
                break;
            }
            Err(_) => {
                sum.error = true;
                break;
            }
            Ok(Some(f)) => {
                let end = r.get_ref().pos;
                let consumed = &stream[start..end];
                assert!(
                    consumed.len() >= HEADER_LEN,
                    "frame shorter than its header"
                );
                let len = consumed.len() - HEADER_LEN;
                assert!(len <= MAX_PAYLOAD as usize, "frame of {len} bytes accepted");
                let announced =
                    u32::from_le_bytes([consumed[8], consumed[9], consumed[10], consumed[11]]);
                assert_eq!(
                    len, announced as usize,
                    "consumed what the header announced"
                );
                let stream_id =
                    u32::from_le_bytes([consumed[4], consumed[5], consumed[6], consumed[7]]);
                let body = &consumed[HEADER_LEN..];
                match &f {
                    Frame::Control(json) => {
                        assert_eq!(consumed[3], FrameKind::Control as u8);
                        assert_eq!(json.as_slice(), body);
                    }
                    Frame::Data { stream, bytes } => {
                        assert_eq!(consumed[3], FrameKind::Data as u8);
                        assert_eq!(*stream, stream_id);
                        assert_eq!(bytes.as_slice(), body);
                    }
                    Frame::Eof { stream } => {
                        assert_eq!(consumed[3], FrameKind::Eof as u8);
                        assert_eq!(*stream, stream_id);
                    }
                }
                sum.frames += 1;
                sum.payload_bytes += len;
            }
        }
    }
    sum
}

/// Which side decoded what in [`messages`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessagesSummary {
    /// The monitor decoded an [`AgentMessage`].
    pub agent_message: bool,
    /// The agent decoded a [`HostMessage`].
    pub host_message: bool,
    /// The agent could not decode it but found the request id to answer with an error.
    pub malformed_with_id: bool,
}

/// Decodes the payload of a control frame as both sides do: as an [`AgentMessage`] (the
/// monitor's reader) and as a [`HostMessage`] (the agent), with what each side does next with
/// the numbers in it (version check, stream ids of an exec id, exit status).
pub fn messages(data: &[u8]) -> MessagesSummary {
    let mut sum = MessagesSummary::default();
    if let Ok(m) = serde_json::from_slice::<AgentMessage>(data) {
        sum.agent_message = true;
        match &m {
            AgentMessage::Reply { result, .. } => {
                if let Ok(Reply::Hello { version, .. }) = result {
                    let _ = check_version(*version);
                }
            }
            AgentMessage::Event(AgentEvent::Exited {
                exec_id, status, ..
            }) => {
                let _ = (StreamId::stdout(*exec_id), StreamId::stderr(*exec_id));
                let _ = status.shell_code();
            }
        }
        round_trip(&m);
    }
    // The agent: a malformed request is answered with an error if its id can be found.
    match serde_json::from_slice::<HostMessage>(data) {
        Ok(m) => {
            sum.host_message = true;
            match &m.request {
                HostRequest::Hello { version } => match check_version(*version) {
                    Ok(()) => assert_eq!(*version, PROTOCOL_VERSION),
                    Err(e) => assert!(e.contains(&format!("version {version}")), "{e}"),
                },
                HostRequest::StartProcess(sp) => {
                    let _ = (
                        StreamId::stdin(sp.exec_id),
                        StreamId::stdout(sp.exec_id),
                        StreamId::stderr(sp.exec_id),
                    );
                }
                HostRequest::Signal { exec_id, .. } | HostRequest::ResizeTty { exec_id, .. } => {
                    let _ = StreamId::stdin(*exec_id);
                }
                _ => {}
            }
            round_trip(&m);
        }
        Err(_) => {
            sum.malformed_with_id = serde_json::from_slice::<serde_json::Value>(data)
                .ok()
                .and_then(|v| v.get("id")?.as_u64())
                .is_some();
        }
    }
    sum
}

/// A decoded message encodes, and that encoding decodes to the same message.
fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(m: &T) {
    let Ok(json) = serde_json::to_vec(m) else {
        // Serialization of what was just deserialized has no reason to fail.
        panic!("a decoded message does not encode");
    };
    assert!(
        json.len() <= MAX_PAYLOAD as usize * 2,
        "re-encoded message of {} bytes",
        json.len()
    );
    let back: T = match serde_json::from_slice(&json) {
        Ok(b) => b,
        Err(e) => panic!(
            "re-encoded message does not decode: {e}: {}",
            String::from_utf8_lossy(&json)
        ),
    };
    let (a, b) = (serde_json::to_value(m), serde_json::to_value(&back));
    match (a, b) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "message changed through encode/decode"),
        _ => panic!("a decoded message does not encode to a value"),
    }
}
