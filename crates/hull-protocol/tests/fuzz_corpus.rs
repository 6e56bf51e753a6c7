//! Replays the corpus of the `frame_decoder` and `agent_messages` fuzz targets
//! (`fuzz/corpus/<target>/`, see README "Fuzzing") through the same functions the targets
//! run, and checks the frame reader's memory bound on hostile headers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::path::Path;

use hull_protocol::fuzzing;
use hull_protocol::{
    Frame, FrameHeader, FrameKind, FrameReader, FrameWriter, ProtocolError, HEADER_LEN, MAX_PAYLOAD,
};

/// Counts the bytes this thread has allocated and not freed, and their peak.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get().saturating_add_signed(delta);
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        track(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        track(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The most this thread had allocated at once while running `f`, above what it had before.
fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    (r, PEAK.with(Cell::get) - base)
}

/// Runs `f` on each file; a panic fails the test naming the file.
fn replay(target: &str, mut f: impl FnMut(&Path, &[u8])) -> usize {
    let files = hull_testkit::fuzz_corpus(target);
    for (path, bytes) in &files {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(path, bytes)));
        if r.is_err() {
            panic!("fuzz corpus file {} panics", path.display());
        }
    }
    files.len()
}

#[test]
fn frame_decoder_corpus_replays() {
    let n = replay("frame_decoder", |path, bytes| {
        let (sum, peak) = peak_alloc(|| fuzzing::frames(bytes));
        assert!(
            sum.payload_bytes <= bytes.len(),
            "{}: {sum:?}",
            path.display()
        );
        // The reader holds one frame at a time: its payload (at most MAX_PAYLOAD, at most
        // about twice what was received while it grows) plus small change.
        let bound = (2 * bytes.len()).min(MAX_PAYLOAD as usize) + 256 * 1024;
        assert!(
            peak <= bound,
            "{}: {peak} bytes allocated for {} bytes of input",
            path.display(),
            bytes.len()
        );
    });
    eprintln!("{n} frame_decoder corpus files");
}

#[test]
fn agent_messages_corpus_replays() {
    let n = replay("agent_messages", |_, bytes| {
        fuzzing::messages(bytes);
    });
    eprintln!("{n} agent_messages corpus files");
}

/// A frame header with any length, past the limit too (`encode` is only given valid ones).
fn header(kind: FrameKind, len: u32) -> [u8; HEADER_LEN] {
    let mut h = FrameHeader {
        kind,
        stream: 1,
        len: 0,
    }
    .encode();
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h
}

#[test]
fn oversized_frame_header_is_rejected_without_allocating_its_size() {
    for len in [MAX_PAYLOAD + 1, u32::MAX / 2, u32::MAX] {
        let mut stream = header(FrameKind::Data, len).to_vec();
        stream.extend_from_slice(&[0u8; 64]);
        let (r, peak) = peak_alloc(|| FrameReader::new(&stream[..]).read_frame());
        assert!(
            matches!(r, Err(ProtocolError::TooLarge(l)) if l == len),
            "{len}: {r:?}"
        );
        assert!(peak < 4096, "{len}: {peak} bytes allocated");
    }
}

#[test]
fn a_header_announcing_the_maximum_then_nothing_allocates_what_arrived() {
    // A guest that announces MAX_PAYLOAD bytes and sends 10 costs the monitor about what
    // it sent, and the frame is an error (truncated), not a frame.
    let mut stream = header(FrameKind::Control, MAX_PAYLOAD).to_vec();
    stream.extend_from_slice(&[b'x'; 10]);
    let (r, peak) = peak_alloc(|| FrameReader::new(&stream[..]).read_frame());
    match r {
        Err(ProtocolError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert!(
        peak <= 128 * 1024,
        "{peak} bytes allocated for a frame of 10"
    );
}

#[test]
fn a_maximum_frame_is_still_read() {
    let mut w = FrameWriter::new(Vec::new());
    let big = vec![5u8; MAX_PAYLOAD as usize];
    w.write_data(3, &big).unwrap();
    let bytes = std::mem::take(w.get_mut());
    let mut r = FrameReader::new(&bytes[..]);
    assert_eq!(
        r.read_frame().unwrap(),
        Some(Frame::Data {
            stream: 3,
            bytes: big
        })
    );
    assert_eq!(r.read_frame().unwrap(), None);
}

#[test]
fn truncated_frames_and_garbage_are_errors_not_panics() {
    let mut w = FrameWriter::new(Vec::new());
    let json = br#"{"kind":"event","event":"exited"}"#;
    w.write_control(json).unwrap();
    w.write_data(7, b"hello").unwrap();
    let good = std::mem::take(w.get_mut());
    // Every cut inside a frame is an error; cuts at a frame boundary end cleanly.
    let first = HEADER_LEN + json.len();
    for cut in 1..good.len() {
        let mut r = FrameReader::new(&good[..cut]);
        let mut frames = 0;
        let end = loop {
            match r.read_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if cut == first {
            assert!(end.is_ok() && frames == 1, "cut {cut}");
        } else {
            assert!(end.is_err(), "cut {cut}: {frames} frames and a clean end");
        }
    }
    // Garbage: not a header.
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xff; 40], &[0; 12]] {
        assert!(FrameReader::new(junk).read_frame().is_err(), "{junk:?}");
    }
    // An unknown kind.
    let mut h = header(FrameKind::Eof, 0);
    h[3] = 9;
    assert!(matches!(
        FrameReader::new(&h[..]).read_frame(),
        Err(ProtocolError::BadKind(9))
    ));
    // Whatever comes in, the reader reads no further than the header it refused.
    let mut stream = header(FrameKind::Data, u32::MAX).to_vec();
    stream.extend_from_slice(&good);
    let mut src = &stream[..];
    assert!(FrameReader::new(&mut src).read_frame().is_err());
    let mut rest = Vec::new();
    src.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, good);
}

#[test]
fn malformed_messages_are_errors_not_panics() {
    for junk in [
        &b""[..],
        b"{",
        b"null",
        b"{\"kind\":\"reply\",\"id\":-1}",
        b"{\"kind\":\"event\",\"event\":\"exited\",\"exec_id\":4294967295,\"status\":{\"signal\":2147483647},\"exited_ns\":0}",
        b"{\"id\":18446744073709551615,\"request\":{\"op\":\"hello\",\"version\":255}}",
        b"{\"id\":1,\"request\":{\"op\":\"start_process\",\"exec_id\":4294967295,\"process\":null,\"stdin\":true}}",
    ] {
        fuzzing::messages(junk);
    }
    let deep = "[".repeat(100_000);
    fuzzing::messages(deep.as_bytes());
}
