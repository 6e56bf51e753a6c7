//! Processes the harness starts, and what `/proc` says about processes.
//!
//! Every child dies with the harness (`PR_SET_PDEATHSIG`), runs in its own process group (a
//! terminal's Ctrl-C reaches only the harness, which then stops at the next wait and cleans up
//! through its `Drop` guards), and is killed and reaped when its [`Proc`] is dropped. Every wait
//! has a deadline.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM/SIGHUP set a flag that every wait checks: the harness then unwinds and its
/// guards stop everything it started.
pub fn install_interrupt_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once the harness was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once the harness was asked to stop.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// A child process that is SIGKILLed and reaped on drop.
///
/// Spawn only from the main thread: the parent-death signal fires when the *thread* that
/// forked the child ends.
pub struct Proc {
    name: String,
    child: Child,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({})", cmd.get_program().to_string_lossy()))?;
        // SAFETY: plain syscall; on success it returns a new fd that we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        Ok(Self {
            name: name.to_string(),
            child,
            pidfd,
            status: None,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The read end of its stdout, if it was spawned with `Stdio::piped()` (once).
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Waits for the exit until `deadline`: `Some((status, instant the exit was seen))`, or
    /// `None` if it is still running at the deadline.
    pub fn wait_until(&mut self, deadline: Instant) -> Result<Option<(ExitStatus, Instant)>> {
        loop {
            if let Some(st) = self.status {
                return Ok(Some((st, Instant::now())));
            }
            let now = Instant::now();
            if let Some(fd) = &self.pidfd {
                // Short slices so that an interrupt is noticed quickly.
                let slice = deadline
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100));
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, slice.as_millis() as libc::c_int) };
                let seen = Instant::now();
                if r > 0 {
                    let st = self.child.wait().context("wait")?;
                    self.status = Some(st);
                    return Ok(Some((st, seen)));
                }
            } else {
                if let Some(st) = self.child.try_wait().context("wait")? {
                    self.status = Some(st);
                    return Ok(Some((st, now)));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            check_interrupted()?;
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Waits for the exit within `timeout`; an error (and a SIGKILL) if it takes longer.
    pub fn finish(&mut self, timeout: Duration) -> Result<(ExitStatus, Instant)> {
        match self.wait_until(Instant::now() + timeout)? {
            Some(r) => Ok(r),
            None => {
                self.kill(libc::SIGKILL);
                bail!("{} still running after {timeout:?}", self.name)
            }
        }
    }

    /// True once the process has exited (reaps it).
    pub fn exited(&mut self) -> Result<bool> {
        if self.status.is_none() {
            self.status = self.child.try_wait().context("wait")?;
        }
        Ok(self.status.is_some())
    }

    pub fn kill(&mut self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: plain kill(2) on our own unreaped child (the PID cannot be reused).
            unsafe {
                libc::kill(self.pid(), sig);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill(libc::SIGKILL);
            let _ = self.wait_until(Instant::now() + Duration::from_secs(10));
        }
    }
}

/// Runs `cmd` to completion within `timeout`, capturing its output.
pub fn output(name: &str, cmd: &mut Command, timeout: Duration) -> Result<std::process::Output> {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn(name, cmd)?;
    let (mut so, mut se) = match (p.child.stdout.take(), p.child.stderr.take()) {
        (Some(so), Some(se)) => (so, se),
        _ => bail!("{name}: spawned without piped stdout and stderr"),
    };
    let t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let mut stdout = Vec::new();
    // EOF comes at the latest when the process dies (killed at the deadline below).
    let deadline = Instant::now() + timeout;
    let reader = std::thread::spawn(move || {
        let _ = so.read_to_end(&mut stdout);
        stdout
    });
    let (status, _) = match p.wait_until(deadline)? {
        Some(r) => r,
        None => {
            p.kill(libc::SIGKILL);
            bail!("{name} still running after {timeout:?}");
        }
    };
    let stdout = reader.join().map_err(|_| anyhow!("stdout reader"))?;
    let stderr = t.join().map_err(|_| anyhow!("stderr reader"))?;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

/// Polls `f` (backing off from 2 to 50 ms) until it yields a value; an error naming `what`
/// at the deadline.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        check_interrupted()?;
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// PSS and RSS of a process in KiB (`/proc/PID/smaps_rollup`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mem {
    pub pss_kib: u64,
    pub rss_kib: u64,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, o: Self) {
        self.pss_kib += o.pss_kib;
        self.rss_kib += o.rss_kib;
    }
}

pub fn parse_smaps_rollup(text: &str) -> Mem {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    Mem {
        pss_kib: field("Pss:"),
        rss_kib: field("Rss:"),
    }
}

pub fn mem(pid: i32) -> Option<Mem> {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .map(|t| parse_smaps_rollup(&t))
}

/// Direct children of `pid` (of all its threads).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `pid` and all its descendants.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let kids = children(out[i]);
        out.extend(kids);
        i += 1;
    }
    out
}

/// The process's `comm` (its name, up to 15 bytes).
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Its command line, one string per argument.
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// Live processes (other than this one) that belong to `root`: their command line mentions it
/// (monitors, virtiofsd) or their working directory is below it (QEMU runs in the state
/// directory, with socket paths relative to it).
pub fn processes_of_root(root: &Path) -> Vec<i32> {
    let needle = root.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            cmdline(pid).join(" ").contains(&needle)
                || fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(root))
        })
        .filter(|&pid| !is_zombie(pid))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_rollup_fields() {
        let t = "55d0-7ffd ---p 00000000 00:00 0    [rollup]\nRss:              123456 kB\n\
                 Pss:               65432 kB\nPss_Anon:          1000 kB\n";
        assert_eq!(
            parse_smaps_rollup(t),
            Mem {
                pss_kib: 65432,
                rss_kib: 123456
            }
        );
    }

    #[test]
    fn own_process_is_visible() {
        let me = std::process::id() as i32;
        assert!(mem(me).unwrap().rss_kib > 0);
        assert!(tree(me).contains(&me));
        assert!(!comm(me).is_empty());
    }

    #[test]
    fn waits_have_deadlines() {
        let mut p = Proc::spawn("sleep", Command::new("sleep").arg("5")).unwrap();
        let t = Instant::now();
        assert!(p
            .wait_until(Instant::now() + Duration::from_millis(50))
            .unwrap()
            .is_none());
        assert!(t.elapsed() < Duration::from_secs(2));
        let pid = p.pid();
        drop(p);
        assert!(is_zombie(pid) || !Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn processes_are_found_by_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Command::new("sleep");
        c.arg("30").current_dir(dir.path());
        let p = Proc::spawn("sleep", &mut c).unwrap();
        assert_eq!(processes_of_root(dir.path()), vec![p.pid()]);
        drop(p);
        assert!(processes_of_root(dir.path()).is_empty());
    }

    #[test]
    fn exit_is_seen() {
        let mut p = Proc::spawn("true", &mut Command::new("true")).unwrap();
        let (st, _) = p.finish(Duration::from_secs(10)).unwrap();
        assert!(st.success());
    }
}
