//! Bytes sent to a monitor's control socket → the request line and its parsing.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    hull_monitor::control::fuzzing::control(data);
});
