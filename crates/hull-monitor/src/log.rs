//! The runtime log (`--log FILE --log-format text|json`), runc's format: JSON lines
//! `{"level","msg","time"}`. Without a log file, debug lines are dropped and errors are left to
//! the caller (the container's stderr is not ours to write on).

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

struct Logger {
    file: Mutex<std::fs::File>,
    json: bool,
    debug: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Opens the log file (append). Call once at startup.
pub fn init(path: Option<&Path>, json: bool, debug: bool) {
    if let Some(p) = path {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = LOGGER.set(Logger {
                file: Mutex::new(f),
                json,
                debug,
            });
        }
    }
}

pub fn write(level: &str, msg: &str) {
    let Some(l) = LOGGER.get() else { return };
    if level == "debug" && !l.debug {
        return;
    }
    let time = hull_state::now_rfc3339();
    let line = if l.json {
        serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
    } else {
        format!(
            "time=\"{time}\" level={level} msg=\"{}\"",
            msg.replace('"', "\\\"")
        )
    };
    let mut file = l
        .file
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = writeln!(file, "{line}");
}

pub fn debug(msg: &str) {
    write("debug", msg)
}
pub fn info(msg: &str) {
    write("info", msg)
}
pub fn error(msg: &str) {
    write("error", msg)
}

/// Makes a panic one line in the log and on stderr (`PROGRAM: internal error: …`) and exit 1,
/// instead of a backtrace an engine would show its user; a panicking helper thread ends the
/// process too rather than leaving it half-alive. Its children die with it (PDEATHSIG) and
/// `delete` cleans up what it leaves.
pub fn install_panic_hook(program: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let msg = format!("internal error (a bug, please report it): {info}");
        error(&msg);
        eprintln!("{program}: {}", msg.replace('\n', " "));
        std::process::exit(1);
    }));
}
