//! Frame encoding and decoding (see the crate docs for the layout).

use std::io::{self, Read, Write};

use crate::{ProtocolError, FRAME_FORMAT};

/// Size of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 12;
/// Largest payload a frame may carry; writers split bigger data.
pub const MAX_PAYLOAD: u32 = 1 << 20;
const MAGIC: u16 = u16::from_le_bytes(*b"HL");
/// What the reader allocates for a payload before its bytes arrive.
const PAYLOAD_PREALLOC: usize = 64 * 1024;

/// What a frame's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// JSON control envelope.
    Control = 0,
    /// Bytes of a stdio stream.
    Data = 1,
    /// End of a stdio stream.
    Eof = 2,
}

impl TryFrom<u8> for FrameKind {
    type Error = ProtocolError;
    fn try_from(v: u8) -> Result<Self, ProtocolError> {
        match v {
            0 => Ok(Self::Control),
            1 => Ok(Self::Data),
            2 => Ok(Self::Eof),
            other => Err(ProtocolError::BadKind(other)),
        }
    }
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub stream: u32,
    pub len: u32,
}

impl FrameHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC.to_le_bytes());
        b[2] = FRAME_FORMAT;
        b[3] = self.kind as u8;
        b[4..8].copy_from_slice(&self.stream.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, ProtocolError> {
        let magic = u16::from_le_bytes([b[0], b[1]]);
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        if b[2] != FRAME_FORMAT {
            return Err(ProtocolError::FrameFormat {
                peer: b[2],
                ours: FRAME_FORMAT,
            });
        }
        let kind = FrameKind::try_from(b[3])?;
        let stream = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if len > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(len));
        }
        Ok(Self { kind, stream, len })
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Control(Vec<u8>),
    Data { stream: u32, bytes: Vec<u8> },
    Eof { stream: u32 },
}

/// Reads frames from a byte stream.
pub struct FrameReader<R> {
    inner: R,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner }
    }

    /// The stream read from.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Next frame, or `None` on a clean end of stream (EOF at a frame boundary).
    pub fn read_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let mut hdr = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.inner.read(&mut hdr[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let h = FrameHeader::decode(&hdr)?;
        // `decode` refused lengths above MAX_PAYLOAD. The buffer grows with the bytes that
        // actually arrive: a header announcing a large payload, followed by nothing, costs
        // no more than what was received (never `len` up front).
        let len = h.len as usize;
        let mut payload = Vec::with_capacity(len.min(PAYLOAD_PREALLOC));
        (&mut self.inner)
            .take(u64::from(h.len))
            .read_to_end(&mut payload)?;
        if payload.len() != len {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        Ok(Some(match h.kind {
            FrameKind::Control => Frame::Control(payload),
            FrameKind::Data => Frame::Data {
                stream: h.stream,
                bytes: payload,
            },
            FrameKind::Eof => Frame::Eof { stream: h.stream },
        }))
    }
}

/// Writes frames to a byte stream. Each call writes whole frames with one `write_all`, so
/// callers that share a writer behind a mutex never interleave partial frames.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    fn put(&mut self, kind: FrameKind, stream: u32, payload: &[u8]) -> Result<(), ProtocolError> {
        debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
        self.buf.clear();
        let h = FrameHeader {
            kind,
            stream,
            len: payload.len() as u32,
        };
        self.buf.extend_from_slice(&h.encode());
        self.buf.extend_from_slice(payload);
        self.inner.write_all(&self.buf)?;
        Ok(())
    }

    /// Writes one control envelope.
    pub fn write_control(&mut self, json: &[u8]) -> Result<(), ProtocolError> {
        if json.len() > MAX_PAYLOAD as usize {
            return Err(ProtocolError::TooLarge(json.len() as u32));
        }
        self.put(FrameKind::Control, 0, json)
    }

    /// Writes stream data, split into frames of at most [`MAX_PAYLOAD`] bytes.
    pub fn write_data(&mut self, stream: u32, bytes: &[u8]) -> Result<(), ProtocolError> {
        for chunk in bytes.chunks(MAX_PAYLOAD as usize) {
            self.put(FrameKind::Data, stream, chunk)?;
        }
        Ok(())
    }

    /// Signals the end of a stream.
    pub fn write_eof(&mut self, stream: u32) -> Result<(), ProtocolError> {
        self.put(FrameKind::Eof, stream, &[])
    }

    pub fn write_frame(&mut self, f: &Frame) -> Result<(), ProtocolError> {
        match f {
            Frame::Control(j) => self.write_control(j),
            Frame::Data { stream, bytes } => self.write_data(*stream, bytes),
            Frame::Eof { stream } => self.write_eof(*stream),
        }
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Frame::Control),
            (
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 1..4096)
            )
                .prop_map(|(stream, bytes)| Frame::Data { stream, bytes }),
            any::<u32>().prop_map(|stream| Frame::Eof { stream }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(frames in proptest::collection::vec(arb_frame(), 0..20)) {
            let mut w = FrameWriter::new(Vec::new());
            for f in &frames { w.write_frame(f).unwrap(); }
            let bytes = std::mem::take(w.get_mut());
            let mut r = FrameReader::new(&bytes[..]);
            let mut back = Vec::new();
            while let Some(f) = r.read_frame().unwrap() { back.push(f); }
            prop_assert_eq!(back, frames);
        }

        #[test]
        fn truncated_stream_is_an_error_not_a_frame(
            f in arb_frame(), cut in 1usize..HEADER_LEN + 8
        ) {
            let mut w = FrameWriter::new(Vec::new());
            w.write_frame(&f).unwrap();
            let bytes = std::mem::take(w.get_mut());
            let cut = cut.min(bytes.len() - 1);
            let mut r = FrameReader::new(&bytes[..bytes.len() - cut]);
            prop_assert!(r.read_frame().is_err());
        }
    }

    #[test]
    fn big_data_is_split_into_max_payload_frames() {
        let data = vec![7u8; MAX_PAYLOAD as usize * 2 + 5];
        let mut w = FrameWriter::new(Vec::new());
        w.write_data(9, &data).unwrap();
        let bytes = std::mem::take(w.get_mut());
        let mut r = FrameReader::new(&bytes[..]);
        let mut lens = Vec::new();
        while let Some(Frame::Data { stream, bytes }) = r.read_frame().unwrap() {
            assert_eq!(stream, 9);
            lens.push(bytes.len());
        }
        assert_eq!(lens, vec![MAX_PAYLOAD as usize, MAX_PAYLOAD as usize, 5]);
    }

    #[test]
    fn wrong_magic_and_frame_format_are_rejected() {
        let mut h = FrameHeader {
            kind: FrameKind::Eof,
            stream: 1,
            len: 0,
        }
        .encode();
        h[0] = b'X';
        assert!(matches!(
            FrameHeader::decode(&h),
            Err(ProtocolError::BadMagic(_))
        ));
        let mut h = FrameHeader {
            kind: FrameKind::Eof,
            stream: 1,
            len: 0,
        }
        .encode();
        h[2] = FRAME_FORMAT + 1;
        assert!(matches!(
            FrameHeader::decode(&h),
            Err(ProtocolError::FrameFormat { .. })
        ));
        let mut h = FrameHeader {
            kind: FrameKind::Eof,
            stream: 1,
            len: 0,
        }
        .encode();
        h[8..12].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert!(matches!(
            FrameHeader::decode(&h),
            Err(ProtocolError::TooLarge(_))
        ));
    }
}
