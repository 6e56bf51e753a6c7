//! Bytes from the guest → the frame decoder, in chunks, as the monitor's agent reader gets them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hull_protocol::fuzzing::frames(data);
});
