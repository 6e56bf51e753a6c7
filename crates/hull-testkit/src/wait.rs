//! Waiting on conditions with deadlines.

use std::time::{Duration, Instant};

/// Polls `cond` until it returns `Some`, or panics after `timeout` saying what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// True if a process with this PID exists (and is not a zombie we could still reap).
pub use hull_state::process_alive as pid_alive;
