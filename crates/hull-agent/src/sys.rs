//! Small safe wrappers around the system calls nix does not cover (or covers awkwardly).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

/// CLOCK_BOOTTIME in nanoseconds.
pub fn boottime_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// Whether `fd` is an open descriptor.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; any fd number is acceptable.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// dup2(2): makes `new` a copy of `old` (without FD_CLOEXEC).
pub fn dup2(old: RawFd, new: RawFd) -> nix::Result<()> {
    // SAFETY: dup2 takes plain descriptor numbers and touches no memory of ours.
    Errno::result(unsafe { libc::dup2(old, new) }).map(drop)
}

/// TIOCSWINSZ: sets a terminal's window size (the kernel sends SIGWINCH to its foreground group).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> nix::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which is valid for the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// TIOCSPTLCK: unlocks a pty master's slave (unlockpt(3)).
pub fn unlockpt(master: BorrowedFd<'_>) -> nix::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int through the pointer, which is valid for the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }).map(drop)
}

/// TIOCGPTN: the number N of a pty master's slave (/dev/pts/N in its devpts).
pub fn pty_number(master: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int through the pointer, valid for the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) })?;
    Ok(n)
}

/// TIOCGPTPEER: opens a pty master's slave (O_RDWR, O_NOCTTY, O_CLOEXEC) without a path.
pub fn open_pty_peer(master: BorrowedFd<'_>) -> nix::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes integer flags and no pointers.
    let fd = Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: the ioctl returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// TIOCSCTTY: makes the terminal `fd` the controlling terminal of this (session leader) process.
pub fn set_controlling_tty(fd: RawFd) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument and no pointers.
    Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) }).map(drop)
}

fn prctl(op: libc::c_int, a: libc::c_ulong, b: libc::c_ulong) -> nix::Result<libc::c_int> {
    // SAFETY: only used with prctl operations whose arguments are plain integers.
    Errno::result(unsafe { libc::prctl(op, a, b, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

/// Whether capability `cap` exists in this kernel (PR_CAPBSET_READ fails past the last one).
pub fn cap_exists(cap: u32) -> bool {
    prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0).is_ok()
}

/// Drops `cap` from the bounding set.
pub fn capbset_drop(cap: u32) -> nix::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0).map(drop)
}

/// Raises `cap` in the ambient set.
pub fn cap_ambient_raise(cap: u32) -> nix::Result<()> {
    prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
        cap as libc::c_ulong,
    )
    .map(drop)
}

/// PR_SET_KEEPCAPS.
pub fn set_keepcaps(on: bool) -> nix::Result<()> {
    nix::sys::prctl::set_keepcaps(on)
}

/// Sets this thread's effective, permitted and inheritable capability sets (bit masks).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> nix::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |v: u64, i: u32| (v >> (32 * i)) as u32;
    let data = [0, 1].map(|i| Data {
        effective: word(effective, i),
        permitted: word(permitted, i),
        inheritable: word(inheritable, i),
    });
    // SAFETY: capset reads a version-3 header and two data structs (the layout of
    // `__user_cap_header_struct` / `__user_cap_data_struct`); both live for the call.
    Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }).map(drop)
}

/// setrlimit(2) with a raw resource number.
pub fn setrlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> nix::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one `rlimit` through the pointer, valid for the call.
    Errno::result(unsafe { libc::setrlimit(resource, &lim) }).map(drop)
}

/// Result of a non-blocking wait for any child.
pub enum Reaped {
    Child {
        pid: i32,
        status: i32,
    },
    /// Children exist but none has changed state.
    Nothing,
    /// No children at all.
    NoChildren,
}

/// waitpid(-1, WNOHANG) with the raw status.
pub fn reap_one() -> Reaped {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status through a pointer to a local integer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Reaped::Nothing,
            p if p > 0 => return Reaped::Child { pid: p, status },
            _ => match Errno::last() {
                Errno::EINTR => continue,
                _ => return Reaped::NoChildren,
            },
        }
    }
}

/// Blocks SIGCHLD in the calling thread (threads spawned afterwards inherit it).
pub fn block_sigchld() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
}

/// Waits for a SIGCHLD (which must be blocked).
pub fn wait_sigchld() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = set.wait();
}

/// Ignores SIGPIPE, as Rust's runtime start-up does (the agent starts from a C `main`).
pub fn ignore_sigpipe() {
    // SAFETY: SIG_IGN runs no handler code.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

/// In a forked child: an empty signal mask and default SIGPIPE (the agent ignores it, and an
/// ignored disposition survives exec).
pub fn reset_signals_for_exec() -> nix::Result<()> {
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    // SAFETY: installing SIG_DFL runs no handler code of ours.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map(drop)
}

/// kill(2) with a raw signal number (0..=64, so real-time signals work too).
pub fn kill(pid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: kill takes plain integers.
    Errno::result(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Ends this process at once, without running destructors or atexit handlers (forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Flushes file systems and powers the VM off. Never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let e = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    crate::log::write_line(format_args!("power off failed: {e:?}; exiting PID 1"));
    // Last resort: PID 1 exiting panics the kernel, which (panic=-1, -no-reboot) ends QEMU.
    exit_now(1)
}

/// setdomainname(2).
pub fn setdomainname(name: &str) -> nix::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    Errno::result(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER0, 48 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
}

/// sched_setattr(2) on this thread.
pub fn sched_setattr(attr: &SchedAttr) -> nix::Result<()> {
    // SAFETY: the kernel reads `attr.size` bytes of a `sched_attr` through the pointer; the
    // struct has that layout and size and lives for the call.
    Errno::result(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) })
        .map(drop)
}

/// personality(2): sets this process's execution domain.
pub fn personality(persona: libc::c_ulong) -> nix::Result<()> {
    // SAFETY: personality takes an integer and touches no memory of ours.
    Errno::result(unsafe { libc::personality(persona) }).map(drop)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, value): this process's I/O priority.
pub fn ioprio_set(value: i32) -> nix::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    Errno::result(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) })
        .map(drop)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2): sets and clears `MOUNT_ATTR_*` flags on the mount at `path` (not following
/// a final symlink), and with `recursive` on every mount below it too (AT_RECURSIVE).
pub fn mount_setattr(
    path: &std::path::Path,
    set: u64,
    clear: u64,
    recursive: bool,
) -> nix::Result<()> {
    let path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        ..MountAttr::default()
    };
    let mut flags = libc::AT_SYMLINK_NOFOLLOW;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is a NUL-terminated string and the kernel reads `size_of::<MountAttr>()`
    // bytes of a `mount_attr` through the pointer; both live for the call.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// RNDADDENTROPY, `_IOW('R', 0x03, int[2])`: its argument is a `struct rand_pool_info`.
const RNDADDENTROPY: libc::c_ulong = libc::_IOW::<[libc::c_int; 2]>(b'R' as u32, 0x03);
/// RNDRESEEDCRNG, `_IO('R', 0x07)` (Linux 4.17+).
const RNDRESEEDCRNG: libc::c_ulong = libc::_IO(b'R' as u32, 0x07);

/// `struct rand_pool_info` for `bytes` as 32-bit words: `entropy_count` (bits credited, all of
/// them), `buf_size` (bytes), then the bytes, the last word padded with zeros.
fn rand_pool_info(bytes: &[u8]) -> nix::Result<Vec<u32>> {
    let len = libc::c_int::try_from(bytes.len()).map_err(|_| Errno::E2BIG)?;
    let bits = len.checked_mul(8).ok_or(Errno::E2BIG)?;
    let mut info = Vec::with_capacity(2 + bytes.len().div_ceil(4));
    info.push(bits as u32);
    info.push(len as u32);
    info.extend(bytes.chunks(4).map(|c| {
        let mut word = [0u8; 4];
        word[..c.len()].copy_from_slice(c);
        u32::from_ne_bytes(word)
    }));
    Ok(info)
}

/// RNDADDENTROPY on a random device: mixes `bytes` into the kernel's input pool and credits
/// them as entropy (8 bits a byte). Needs CAP_SYS_ADMIN.
pub fn add_entropy(random: BorrowedFd<'_>, bytes: &[u8]) -> nix::Result<()> {
    let info = rand_pool_info(bytes)?;
    // SAFETY: RNDADDENTROPY reads a `rand_pool_info` (two ints, then `buf_size` bytes) through
    // the pointer; `info` holds all of it, aligned for u32/int, and lives for the call.
    Errno::result(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })
        .map(drop)
}

/// RNDRESEEDCRNG on a random device: reseeds the kernel's CRNG from the input pool now, rather
/// than at its next periodic reseed. Needs CAP_SYS_ADMIN; ENODATA before the CRNG is ready.
pub fn reseed_crng(random: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: RNDRESEEDCRNG takes no argument and touches no memory of ours.
    Errno::result(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) }).map(drop)
}

/// clock_settime(CLOCK_REALTIME) to `unix_time_ns` nanoseconds since the epoch.
pub fn set_realtime_ns(unix_time_ns: u64) -> nix::Result<()> {
    let secs = libc::time_t::try_from(unix_time_ns / 1_000_000_000).map_err(|_| Errno::EINVAL)?;
    let nanos = (unix_time_ns % 1_000_000_000) as libc::c_long;
    let ts = nix::sys::time::TimeSpec::new(secs, nanos);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
}

/// CLOCK_REALTIME in nanoseconds since the epoch (0 before it).
pub fn realtime_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
        Ok(ts) => (ts.tv_sec().max(0) as u64) * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ioctl_numbers_match_linux() {
        // <linux/random.h> on x86_64 and arm64.
        assert_eq!(RNDADDENTROPY, 0x4008_5203);
        assert_eq!(RNDRESEEDCRNG, 0x5207);
    }

    #[test]
    fn rand_pool_info_credits_every_byte_and_pads_the_last_word() {
        let bytes: Vec<u8> = (1..=6).collect();
        let info = rand_pool_info(&bytes).unwrap();
        assert_eq!(info[..2], [48, 6]);
        assert_eq!(info.len(), 4);
        let buf: Vec<u8> = info[2..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(buf, [1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(rand_pool_info(&[]).unwrap(), [0, 0]);
    }
}
