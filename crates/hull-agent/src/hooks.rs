//! OCI hooks that run in the guest, from the container's init child (single-threaded, after
//! fork): `createContainer` (in the container's mount namespace once its mounts are in place,
//! before it changes root) and `startContainer` (in the container, before the user's process is
//! exec'd). Each gets the container's state JSON on stdin, like the host's hooks.
//!
//! The guest's own root holds nothing but the agent, so a `createContainer` hook's path is looked
//! up in the container's root file system: the hook runs chrooted there, with the container's
//! mounts (what runc's runtime namespace would offer is the host's, which is not in the VM).

use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::Hook;

use crate::container::Container;
use crate::error::{Context, Error, Result};
use crate::sys;

/// Deadline of a hook without a `timeout` of its own (as on the host).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);

/// The state JSON that hooks read on stdin. `pid` is the container init's PID as the hooks see it
/// (they run in its PID namespace).
pub fn state_json(c: &Container, status: &str) -> String {
    serde_json::json!({
        "ociVersion": c.spec.version(),
        "id": c.id,
        "status": status,
        "pid": std::process::id(),
        "bundle": c.bundle,
        "annotations": c.spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Runs `hooks` in order; the first failure stops and is returned. `root`: chroot each hook
/// there first.
pub fn run(kind: &str, hooks: &[Hook], state: &str, root: Option<&Path>) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    // A hook that does not read its stdin must not kill us with SIGPIPE.
    // SAFETY: SIG_IGN and SIG_DFL run no handler code.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let r = hooks.iter().try_for_each(|h| run_one(kind, h, state, root));
    // SAFETY: as above; the process about to be exec'd gets the default back.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    r
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::msg(format!("{what} {s:?} contains a NUL byte")))
}

fn run_one(kind: &str, h: &Hook, state: &str, root: Option<&Path>) -> Result<()> {
    let path = h.path().display().to_string();
    let what = || format!("{kind} hook {path}");
    let path_c = cstr(&path, "hook path")?;
    let argv = match h.args().as_deref() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|s| cstr(s, "hook argument"))
            .collect::<Result<Vec<_>>>()?,
        _ => vec![path_c.clone()],
    };
    let envp = h
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| cstr(s, "hook environment variable"))
        .collect::<Result<Vec<_>>>()?;
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into());
    let (in_r, in_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // SAFETY: the caller is single-threaded (the container's init child), so fork has no
    // caveats; the child only makes system calls and ends in execve or _exit.
    match unsafe { nix::unistd::fork() }.ctx(|| format!("{}: fork", what()))? {
        ForkResult::Child => {
            let fail = |msg: String| -> ! {
                let _ = nix::unistd::write(&err_w, msg.as_bytes());
                sys::exit_now(127)
            };
            let null =
                nix::fcntl::open("/dev/null", OFlag::O_WRONLY, nix::sys::stat::Mode::empty());
            if sys::dup2(in_r.as_raw_fd(), 0).is_err() || sys::dup2(err_w.as_raw_fd(), 2).is_err() {
                fail("cannot set up stdio".into());
            }
            match null {
                Ok(fd) => {
                    let _ = sys::dup2(fd.as_raw_fd(), 1);
                }
                Err(_) => {
                    let _ = sys::dup2(err_w.as_raw_fd(), 1);
                }
            }
            if let Some(root) = root {
                if let Err(e) = nix::unistd::chroot(root).and_then(|_| nix::unistd::chdir("/")) {
                    fail(format!("chroot to {}: {}", root.display(), e.desc()));
                }
            }
            let e = match nix::unistd::execve(&path_c, &argv, &envp) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            fail(format!("cannot run: {}", e.desc()))
        }
        ForkResult::Parent { child } => {
            drop((in_r, err_w));
            let mut input = std::fs::File::from(in_w);
            let _ = input.write_all(state.as_bytes());
            drop(input);
            let timeout = h
                .timeout()
                .map(|t| Duration::from_secs(t.max(1) as u64))
                .unwrap_or(DEFAULT_TIMEOUT);
            let (status, stderr) =
                wait(child, err_r, timeout).map_err(|e| Error::msg(format!("{}: {e}", what())))?;
            match status {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, code) => Err(Error::msg(format!(
                    "{} failed (exit status {code}): {}",
                    what(),
                    stderr.trim()
                ))),
                WaitStatus::Signaled(_, sig, _) => Err(Error::msg(format!(
                    "{} failed (killed by {sig}): {}",
                    what(),
                    stderr.trim()
                ))),
                other => Err(Error::msg(format!(
                    "{}: unexpected status {other:?}",
                    what()
                ))),
            }
        }
    }
}

/// Waits for `child` up to `timeout` (then kills it), collecting its stderr.
fn wait(
    child: Pid,
    stderr: OwnedFd,
    timeout: Duration,
) -> std::result::Result<(WaitStatus, String), String> {
    let flags = nix::fcntl::fcntl(&stderr, nix::fcntl::F_GETFL).unwrap_or(0);
    let _ = nix::fcntl::fcntl(
        &stderr,
        nix::fcntl::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    );
    let mut err = std::fs::File::from(stderr);
    let mut text = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let mut buf = [0u8; 4096];
        loop {
            match err.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if text.len() < 64 * 1024 => text.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(st) => return Ok((st, String::from_utf8_lossy(&text).into_owned())),
            Err(e) => return Err(format!("waiting for it: {}", e.desc())),
        }
        if Instant::now() >= deadline {
            let _ = sys::kill(child.as_raw(), libc::SIGKILL);
            let _ = waitpid(child, None);
            return Err(format!("timed out after {timeout:?}"));
        }
        std::thread::sleep(POLL);
    }
}
