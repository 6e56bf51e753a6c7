//! A control frame's payload → the messages both sides decode (agent → host in the monitor,
//! host → agent in the agent), version check included.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hull_protocol::fuzzing::messages(data);
});
