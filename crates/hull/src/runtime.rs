//! `hull-runtime`, the one path to a VM: hull drives it as any engine does, with its state
//! root at `<root>/run`. Its binary: `$HULL_RUNTIME`, else next to `hull`, else on PATH.
//! Container state is read from its state directory (`hull_state`, the same code
//! `hull-runtime state` runs), which also has the exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hull_state::{StateDir, Status};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run {bin}: {source} (install hull-runtime next to hull, or set HULL_RUNTIME)")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("`hull-runtime {args}` failed: {message}")]
    Failed { args: String, message: String },
    #[error("`hull-runtime {args}` did not finish within {timeout:?}")]
    Timeout { args: String, timeout: Duration },
    #[error("timed out after {timeout:?} waiting for container {id} to stop")]
    StillRunning { id: String, timeout: Duration },
}

/// What the runtime's state directory says about a container.
#[derive(Debug, Clone)]
pub struct State {
    pub status: Status,
    pub paused: bool,
    /// The monitor process (alive while the container is).
    pub monitor_pid: i32,
    pub exit_status: Option<i32>,
    /// RFC 3339.
    pub created: String,
    /// When the state last changed (seconds since the epoch): the stop time once stopped.
    pub changed: Option<i64>,
}

impl State {
    /// Created, running or paused: the VM is there.
    pub fn alive(&self) -> bool {
        self.status != Status::Stopped
    }
}

/// Deadline for short runtime commands (state, kill, delete).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Runtime {
    pub bin: PathBuf,
    /// The runtime's state root: `<root>/run`.
    pub root: PathBuf,
}

impl Runtime {
    pub fn new(hull_root: &Path) -> Self {
        Self {
            bin: locate(),
            root: hull_root.join("run"),
        }
    }

    /// `hull-runtime --root <root>/run`, started with no signal blocked (`hull run` blocks
    /// the ones it forwards; the runtime and the monitor it becomes must receive them).
    pub fn command(&self) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        // SAFETY: sigprocmask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                let empty = nix::sys::signal::SigSet::empty();
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&empty),
                    None,
                )
                .map_err(std::io::Error::from)
            });
        }
        c
    }

    /// The container's state, `None` if the runtime has none. A monitor that died without
    /// recording the exit means stopped.
    pub fn state(&self, id: &str) -> Option<State> {
        let sd = StateDir::new(&self.root, id).ok()?;
        let st = sd.load().ok()?;
        let changed = std::fs::metadata(sd.state_json())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        let dead = st.status != Status::Stopped && !hull_state::process_alive(st.monitor_pid);
        Some(State {
            status: if dead { Status::Stopped } else { st.status },
            paused: st.paused && !dead,
            monitor_pid: st.monitor_pid,
            exit_status: st.exit_status,
            created: st.created,
            changed: if dead { Some(now()) } else { changed },
        })
    }

    /// Runs a short runtime command to completion (bounded), failing with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<Output, RuntimeError> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = args.join(" ");
        let out = output_with_deadline(&mut cmd, COMMAND_TIMEOUT).map_err(|e| match e {
            DeadlineError::Spawn(source) => RuntimeError::Spawn {
                bin: self.bin.clone(),
                source,
            },
            DeadlineError::Timeout => RuntimeError::Timeout {
                args: line.clone(),
                timeout: COMMAND_TIMEOUT,
            },
        })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let message = text
                .lines()
                .map(|l| l.strip_prefix("hull-runtime: ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RuntimeError::Failed {
                args: line,
                message: if message.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    message
                },
            });
        }
        Ok(out)
    }

    /// `kill ID SIGNAL`.
    pub fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.run(&["kill", id, signal]).map(drop)
    }

    /// `delete [--force] ID`; nothing to do if the runtime has no state for it.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if StateDir::new(&self.root, id)
            .map(|s| !s.exists())
            .unwrap_or(true)
        {
            return Ok(());
        }
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(&args).map(drop)
    }

    /// Waits until the container is stopped or gone (its monitor exited).
    pub fn wait_stopped(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            match self.state(id) {
                None => return Ok(()),
                Some(s) if !s.alive() && !hull_state::process_alive(s.monitor_pid) => return Ok(()),
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::StillRunning {
                    id: id.to_string(),
                    timeout,
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The error lines hull-runtime wrote to a `--log` file (JSON lines).
    pub fn logged_errors(log: &Path) -> Vec<String> {
        let Ok(text) = std::fs::read_to_string(log) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "error")
            .filter_map(|v| v["msg"].as_str().map(str::to_string))
            .collect()
    }
}

/// Waits until process `pid` (not necessarily our child) has exited: a pidfd, else polling.
/// Unbounded: it is the container's lifetime.
pub fn wait_pid_exit(pid: i32) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        // SAFETY: the fd was just returned to us and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        loop {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, -1) };
            if r > 0
                || (r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                return;
            }
        }
    }
    while hull_state::process_alive(pid) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The hull-runtime binary: `$HULL_RUNTIME`, else next to this executable, else `hull-runtime`
/// on PATH.
pub fn locate() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_RUNTIME") {
        return p.into();
    }
    if let Ok(exe) = std::env::current_exe() {
        let p = exe.with_file_name("hull-runtime");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("hull-runtime")
}

pub enum DeadlineError {
    Spawn(std::io::Error),
    Timeout,
}

/// Runs `cmd` capturing its output; kills it at the deadline.
pub fn output_with_deadline(cmd: &mut Command, timeout: Duration) -> Result<Output, DeadlineError> {
    let mut child = cmd.spawn().map_err(DeadlineError::Spawn)?;
    let read = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as _));
    let err = read(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DeadlineError::Timeout);
            }
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
