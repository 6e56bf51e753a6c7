//! Console logging: terse lines on /dev/console prefixed `hull-agent: `; verbose ones only when
//! the kernel command line has `hull.debug`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static CONSOLE: OnceLock<File> = OnceLock::new();
static DEBUG: AtomicBool = AtomicBool::new(false);

/// Opens /dev/console for logging (call once /dev is mounted). When the console does not exist
/// yet (the virtio console port appears asynchronously), logs go to the kernel log instead,
/// which reaches the console once it is there.
pub fn open_console() {
    let open = |path| {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
    };
    if let Ok(f) = open("/dev/console").or_else(|_| open("/dev/kmsg")) {
        let _ = CONSOLE.set(f);
    }
}

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one line; errors are ignored (there is nowhere else to report them).
pub fn write_line(args: fmt::Arguments<'_>) {
    let line = format!("hull-agent: {args}\n");
    match CONSOLE.get() {
        Some(mut f) => {
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// Logs a line to the console.
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write_line(format_args!($($t)*)) };
}

/// Logs a line to the console when `hull.debug` is on, stamped with the guest's boot time (ms).
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write_line(format_args!(
                "[{:.1} ms] {}",
                $crate::sys::boottime_ns() as f64 / 1e6,
                format_args!($($t)*)
            ))
        }
    };
}
