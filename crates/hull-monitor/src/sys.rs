//! Small safe wrappers over the system calls the monitor needs.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::MonitorError;

/// Moves the monitor into a private mount namespace. Everything it mounts there (the staging of
/// shared files) disappears with the last process in it, so a killed monitor leaks no mount.
/// Must run before any thread is started.
pub fn private_mount_namespace() -> Result<(), MonitorError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| MonitorError::sys("unshare(CLONE_NEWNS) for the staging mounts")(e.into()))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| MonitorError::sys("making / private in the monitor's mount namespace")(e.into()))
}

/// Puts the monitor (and so QEMU) in the container's network namespace: the one at `path` (an
/// engine's pre-made netns), or a new one. Engines configure container networking through the
/// pid-file PID's `/proc/PID/ns/net`, which is ours; the VM's network devices will be wired to
/// it. Must run before any thread is started.
pub fn enter_network_namespace(path: Option<&Path>) -> Result<(), MonitorError> {
    use nix::sched::{setns, unshare, CloneFlags};
    match path {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(MonitorError::sys(format!(
                "open network namespace {}",
                p.display()
            )))?;
            setns(f, CloneFlags::CLONE_NEWNET).map_err(|e| {
                MonitorError::sys(format!("join network namespace {}", p.display()))(e.into())
            })
        }
        None => unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| MonitorError::sys("unshare(CLONE_NEWNET)")(e.into())),
    }
}

/// New ipc, uts and cgroup namespaces for this process (the pid-file PID) as `flags` says, so
/// that tools reading `/proc/<pid>/ns/*` see the container's, not the host's; in a new uts
/// namespace the host name is the container's.
pub fn unshare_namespaces(
    flags: nix::sched::CloneFlags,
    hostname: Option<&str>,
) -> Result<(), MonitorError> {
    if flags.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(flags)
        .map_err(|e| MonitorError::sys(format!("unshare({flags:?})"))(e.into()))?;
    if let Some(name) = hostname.filter(|_| flags.contains(nix::sched::CloneFlags::CLONE_NEWUTS)) {
        nix::unistd::sethostname(name)
            .map_err(|e| MonitorError::sys(format!("sethostname {name:?}"))(e.into()))?;
    }
    Ok(())
}

pub fn mount_tmpfs(target: &Path) -> Result<(), MonitorError> {
    mount(
        Some("hull-share"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .map_err(|e| MonitorError::sys(format!("mount tmpfs on {}", target.display()))(e.into()))
}

/// Makes the mount on `target` shared: mounts below it propagate to its copies in namespaces
/// created later (virtiofsd's).
pub fn make_shared(target: &Path) -> Result<(), MonitorError> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(|e| MonitorError::sys(format!("make {} a shared mount", target.display()))(e.into()))
}

pub fn bind_mount(source: &Path, target: &Path) -> Result<(), MonitorError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        MonitorError::sys(format!(
            "bind mount {} on {}",
            source.display(),
            target.display()
        ))(e.into())
    })
}

/// Makes `cmd`'s child die with SIGKILL when the monitor dies (no orphaned QEMU/virtiofsd).
pub fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `fd` survive exec in the child at the same number (clears CLOEXEC in the child only).
pub fn inherit_fd(cmd: &mut Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: fcntl on an fd number is async-signal-safe; it only changes the child's fd flags.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A child process that is killed and reaped when dropped, unless released.
pub struct ChildGuard {
    pub name: &'static str,
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(name: &'static str, child: Child) -> Self {
        Self {
            name,
            child: Some(child),
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// `Some(status)` if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for it to exit on its own, then kills it.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let st = child.wait().ok();
                self.child = None;
                return st;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Outcome of waiting for a connection.
pub enum Accepted {
    Stream(UnixStream),
    /// The process that should connect has exited.
    PeerDied(std::process::ExitStatus),
    TimedOut,
}

/// Accepts one connection on `listener` within `timeout`, watching `peer` for early death.
pub fn accept_within(
    listener: &UnixListener,
    peer: &mut ChildGuard,
    timeout: Duration,
) -> Result<Accepted, MonitorError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Accepted::TimedOut);
        }
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let slice = left.min(Duration::from_millis(20));
        let n = poll(
            &mut fds,
            PollTimeout::try_from(slice.as_millis() as i32).unwrap_or(PollTimeout::MAX),
        )
        .or_else(|e| {
            if e == nix::errno::Errno::EINTR {
                Ok(0)
            } else {
                Err(e)
            }
        })?;
        if n > 0 {
            let (s, _) = listener.accept().map_err(MonitorError::sys("accept"))?;
            s.set_nonblocking(false)
                .map_err(MonitorError::sys("accept"))?;
            return Ok(Accepted::Stream(s));
        }
        if let Some(st) = peer.try_wait() {
            return Ok(Accepted::PeerDied(st));
        }
    }
}

/// Last lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = v[v.len().saturating_sub(lines)..].join(" | ");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

/// CLOCK_MONOTONIC now, in ns.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Replaces fds 0, 1 and 2 with /dev/null (the container's stdio is closed once it exits).
pub fn close_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds; `null` stays valid for the call.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// Writes a pid file atomically (engines read it as soon as it exists).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), MonitorError> {
    let tmp = path.with_extension(format!("hull-tmp{pid}"));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(MonitorError::sys(format!(
            "write pid file {}",
            path.display()
        )))
}

/// A detached copy of the mount tree at `path` (`open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)`):
/// it can be attached in another mount namespace with [`attach_tree`] after being passed there
/// over a unix socket. This is how a pod member's files reach the pod monitor's private
/// staging namespace, which never sees mounts made on the host after it was created.
pub fn clone_tree(path: &Path) -> Result<std::os::fd::OwnedFd, MonitorError> {
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_long = 1;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        MonitorError::sys(format!("open_tree {}", path.display()))(std::io::Error::from(
            std::io::ErrorKind::InvalidInput,
        ))
    })?;
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_long | libc::AT_RECURSIVE as libc::c_long;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new fd or -1; no memory of
    // ours is written.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(MonitorError::sys(format!("open_tree {}", path.display()))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// Attaches a detached mount tree (from [`clone_tree`]) at `target` (`move_mount`).
pub fn attach_tree(tree: &impl AsRawFd, target: &Path) -> Result<(), MonitorError> {
    use std::os::unix::ffi::OsStrExt;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_long = 0x4;
    let what = || format!("move_mount onto {}", target.display());
    let c = std::ffi::CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        MonitorError::sys(what())(std::io::Error::from(std::io::ErrorKind::InvalidInput))
    })?;
    let empty = c"";
    // SAFETY: move_mount reads two NUL-terminated paths; it writes no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(MonitorError::sys(what())(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn lseek(f: &std::fs::File, offset: u64, whence: libc::c_int) -> std::io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on a descriptor we own; no memory is passed.
    let r = unsafe { libc::lseek(f.as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(None), // no more data (SEEK_DATA past the last data)
        _ => Err(e),
    }
}

/// The next hole at or after `offset` (the file's end counts as one).
pub fn seek_hole(f: &std::fs::File, offset: u64) -> std::io::Result<u64> {
    Ok(lseek(f, offset, libc::SEEK_HOLE)?.unwrap_or(u64::MAX))
}

/// The next data at or after `offset`; `None` when only a hole follows.
pub fn seek_data(f: &std::fs::File, offset: u64) -> std::io::Result<Option<u64>> {
    lseek(f, offset, libc::SEEK_DATA)
}

/// Frees `len` bytes at `offset` of `f` (they read as zeros; the size stays).
pub fn punch_hole(f: &std::fs::File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            f.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
