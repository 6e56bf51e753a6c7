//! Host processes: finding a container's monitor, QEMU and virtiofsd, killing them, and peeking
//! at (then reaping) the exit of monitors that were reparented to us (we are a subreaper).

use std::path::Path;

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    hull_testkit::wait::pid_alive(pid)
}

/// The process's command line, NUL-separated.
pub fn cmdline(pid: i32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// `/proc/PID/comm` (at most 15 characters: QEMU is `qemu-system-x86`).
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .collect()
}

/// The direct children of `pid` (all its threads').
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}

/// The living monitor of container `id` in state root `root` (by its command line).
pub fn find_monitor(root: &Path, id: &str) -> Option<i32> {
    let root_arg = format!("\0--root\0{}\0", root.display());
    let id_arg = format!("\0--id\0{id}\0");
    all_pids().into_iter().find(|&pid| {
        let c = cmdline(pid);
        contains(&c, b"hull-monitor")
            && contains(&c, root_arg.as_bytes())
            && contains(&c, id_arg.as_bytes())
            && alive(pid)
    })
}

/// The monitor's living children whose `comm` starts with `prefix` (`qemu-system`, `virtiofsd`).
pub fn children_named(monitor: i32, prefix: &str) -> Vec<i32> {
    children(monitor)
        .into_iter()
        .filter(|&p| comm(p).starts_with(prefix) && alive(p))
        .collect()
}

/// Living processes whose command line mentions `needle`, and their children.
pub fn mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&pid| pid != me && contains(&cmdline(pid), needle.as_bytes()) && alive(pid))
        .flat_map(|pid| std::iter::once(pid).chain(children(pid).into_iter().filter(|&c| alive(c))))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A process description for reports: `PID (comm)`.
pub fn describe(pid: i32) -> String {
    format!("{pid} ({})", comm(pid))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub fn sigkill(pid: i32) -> bool {
    // SAFETY: kill(2) with a valid signal number; no memory is shared.
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

/// Makes this process the subreaper of its descendants: monitors whose `hull-runtime create`
/// exited become our children, as they become an engine's, so their exit status is visible.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Not our child (reaped by someone else): only its end is known.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
            Exit::Unknown => write!(f, "exit unknown (not our child)"),
        }
    }
}

/// `Some(exit)` once `pid` has ended, without reaping it (a zombie keeps its PID from being
/// reused while `hull-runtime` still looks at it); `None` while it runs.
pub fn peek_exit(pid: i32) -> Option<Exit> {
    // SAFETY: waitid writes a siginfo_t we own; WNOWAIT leaves the child waitable.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r != 0 {
        // ECHILD: not ours (yet, or any more).
        return (!alive(pid)).then_some(Exit::Unknown);
    }
    // SAFETY: waitid filled the SIGCHLD fields (or left si_pid 0: still running).
    let (spid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if spid == 0 {
        return None;
    }
    Some(match info.si_code {
        libc::CLD_EXITED => Exit::Code(status),
        _ => Exit::Signal(status),
    })
}

/// Reaps `pid` if it is our zombie child.
pub fn reap(pid: i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let mut f = rest.split_whitespace();
    let state = f.next();
    let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
    if state == Some("Z") && ppid == Some(std::process::id()) {
        // SAFETY: waitpid on our own zombie child.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}
