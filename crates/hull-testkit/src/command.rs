//! Running programs with deadlines and capturing what they print.
//!
//! Every call is bounded: a program still running at its deadline is killed and the test
//! panics with the command line and whatever it had printed so far.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::wait::wait_for;

/// Deadline for one engine command: `$HULL_TEST_TIMEOUT_SECS` if set, else 120 s (VM-based
/// runtimes under TCG boot in seconds, so keep this generous; it only bounds a hang).
pub fn default_timeout() -> Duration {
    let secs = std::env::var("HULL_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}

/// What a finished program did.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    /// Exit code, `None` if it was killed by a signal.
    pub code: Option<i32>,
    /// Signal that killed it, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Panics (with everything the program printed) unless it exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }

    /// Panics (with everything the program printed) unless it exited with `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "unexpected exit status\n{self}");
        self
    }

    /// True if it exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout with surrounding whitespace trimmed.
    pub fn stdout_trimmed(&self) -> &str {
        self.stdout.trim()
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.cmdline)?;
        match (self.code, self.signal) {
            (Some(c), _) => writeln!(f, "exit code {c} after {:?}", self.elapsed)?,
            (None, Some(s)) => writeln!(f, "killed by signal {s} after {:?}", self.elapsed)?,
            _ => writeln!(f, "unknown exit status")?,
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// The command line of `cmd`, for messages.
pub fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with stdin from /dev/null, capturing stdout and stderr, bounded by
/// [`default_timeout`].
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    run_with(cmd, None, default_timeout())
}

/// Runs `cmd` with `input` written to its stdin (then closed), capturing stdout and stderr.
#[track_caller]
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    run_with(cmd, Some(input), default_timeout())
}

/// Runs `cmd`: stdin gets `input` (or /dev/null), stdout/stderr are captured. Panics if it
/// cannot be started or is still running after `timeout` (it is killed first).
#[track_caller]
pub fn run_with(cmd: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    match try_run_with(cmd, input, timeout) {
        Ok(out) => out,
        Err(why) => panic!("{why}"),
    }
}

/// Like [`run_with`] but never panics: `Err` says why the program could not be started or
/// that it timed out (with what it printed). For cleanup code in `Drop`.
pub fn try_run_with(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    let line = cmdline(cmd);
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;

    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel();
    let out = collect(child.stdout.take().unwrap(), tx.clone());
    let err = collect(child.stderr.take().unwrap(), tx);

    let status = wait_child(&mut child, timeout);
    // A program that left a daemon holding its stdout (conmon, shims) must not make us hang:
    // give the readers a short grace once the program itself has exited.
    let grace = Instant::now() + Duration::from_secs(5);
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    let output = Output {
        cmdline: line,
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        stdout: text(&out),
        stderr: text(&err),
        elapsed: start.elapsed(),
    };
    match status {
        Some(_) => Ok(output),
        None => Err(format!("timed out after {timeout:?} (killed)\n{output}")),
    }
}

/// Waits for `child` up to `timeout`; kills and reaps it and returns `None` on timeout.
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    let status = wait_for(
        "child to exit",
        timeout + Duration::from_secs(5),
        || match child.try_wait() {
            Ok(Some(s)) => Some(Some(s)),
            Ok(None) if Instant::now() >= deadline => Some(None),
            Ok(None) => None,
            Err(e) => panic!("waiting for child: {e}"),
        },
    );
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

fn collect(mut r: impl Read + Send + 'static, done: mpsc::Sender<()>) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
        let _ = done.send(());
    });
    buf
}
