//! hull-agent: PID 1 of a hull VM. It mounts the basic file systems, finds the host's
//! virtio-serial port and serves the hull protocol on it: it sets up the container, starts its
//! processes, relays their stdio and reports their exit. When the container's init exits, the VM
//! powers off.
//!
//! `no_main`: Rust's runtime start-up aborts the process when fds 0-2 are closed and
//! `/dev/null` cannot be opened. That is exactly PID 1's situation when the kernel could not open
//! `/dev/console` (the virtio console port is added asynchronously and may not exist yet when
//! init starts) and devtmpfs is not mounted: PID 1 then died with SIGABRT-turned-SIGSEGV before
//! `main`, at random under load. The agent therefore starts from a C `main` and fills fds 0-2
//! itself once /dev is mounted.

// Unit tests keep the test harness's own `main`.
#![cfg_attr(not(test), no_main)]
// No panics on any input path (frames from the host, specs): errors are returned.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[macro_use]
mod log;

mod agent;
mod attrs;
mod binfmt;
mod caps;
mod cgroup;
mod channel;
mod container;
mod cpus;
mod error;
mod hooks;
mod lookup;
mod mounts;
mod process;
mod procfs;
mod reaper;
mod seccomp;
mod stdio;
mod sys;
mod userns;

use std::convert::Infallible;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::Duration;

use hull_protocol::{FrameReader, AGENT_PORT_NAME};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;

use crate::error::{Context, Result};

/// How often, and how long, to look for the host's port.
const PORT_POLL: Duration = Duration::from_millis(5);
const PORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The C entry point (see the module docs for why not Rust's `main`).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    agent_main()
}

#[cfg_attr(test, allow(dead_code))]
fn agent_main() -> ! {
    let agent_start_ns = sys::boottime_ns();
    // As Rust's runtime would: a closed pipe is an EPIPE error, not a signal. Children get the
    // default disposition back before exec (process.rs resets every signal).
    sys::ignore_sigpipe();
    if std::process::id() != 1 {
        eprintln!("hull-agent: this is the init of a hull VM and must run as PID 1");
        std::process::exit(2);
    }
    // A panic of PID 1 would panic the kernel: log it and power off instead.
    std::panic::set_hook(Box::new(|info| {
        log::write_line(format_args!("panic: {info}"));
        sys::power_off();
    }));
    let console_at_start = sys::fd_is_open(1);
    early_init();
    if !console_at_start {
        debug!("started without a console: fds 0-2 were closed");
    }
    let e = match run(agent_start_ns) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    info!("fatal: {e}; powering off");
    sys::power_off();
}

/// Mounts the basic file systems, makes sure fds 0-2 are open, opens the console.
fn early_init() {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounts: [(&str, &str, &str, MsFlags, Option<&str>); 6] = [
        ("proc", "/proc", "proc", nosuid_nodev_noexec, None),
        ("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid_nodev_noexec,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (src, target, fstype, flags, data) in mounts {
        let _ = std::fs::create_dir_all(target);
        match nix::mount::mount(Some(src), target, Some(fstype), flags, data) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(e) => failures.push(format!("mounting {fstype} on {target}: {}", e.desc())),
        }
    }
    ensure_std_fds();
    log::open_console();
    // Programs talk to themselves over localhost: lo is up in every VM.
    if let Err(e) = hull_net::guest::loopback_up() {
        failures.push(format!("bringing lo up: {e}"));
    }
    // A user-mode VM: foreign ELF files run under the emulator of the initramfs.
    match binfmt::register_bundled() {
        Ok(names) if !names.is_empty() => debug!("binfmt_misc: registered {}", names.join(", ")),
        Ok(_) => {}
        Err(e) => failures.push(e),
    }
    for f in failures {
        info!("{f}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    log::set_debug(cmdline.split_whitespace().any(|w| w == "hull.debug"));
    // The VM has its maximum vCPUs (no CPU hotplug on microvm); the plan's are online.
    if let Some(n) = cpus::boot_target(&cmdline) {
        if let Err(e) = cpus::set_online(n.clamp(1, cpus::present())) {
            info!("{e}");
        }
    }
}

/// Without /dev/console in the initramfs the kernel starts init with fds 0-2 closed; fill them
/// (stdin /dev/null, stdout and stderr the console) so that no other file lands there.
fn ensure_std_fds() {
    for fd in 0..3 {
        if sys::fd_is_open(fd) {
            continue;
        }
        let path = if fd == 0 { "/dev/null" } else { "/dev/console" };
        let opened = nix::fcntl::open(path, OFlag::O_RDWR | OFlag::O_NOCTTY, Mode::empty())
            .or_else(|_| nix::fcntl::open("/dev/null", OFlag::O_RDWR, Mode::empty()));
        let Ok(new) = opened else { continue };
        if new.as_raw_fd() == fd {
            let _ = new.into_raw_fd(); // keep it open: it is the fd we wanted
        } else {
            let _ = sys::dup2(new.as_raw_fd(), fd);
        }
    }
}

fn run(agent_start_ns: u64) -> Result<Infallible> {
    // Before any thread exists, so that all inherit it (the reaper waits for the signal).
    sys::block_sigchld().ctx(|| "blocking SIGCHLD".into())?;
    let port = channel::open_port(AGENT_PORT_NAME, PORT_POLL, PORT_TIMEOUT)?;
    let reader = port.try_clone().ctx(|| "duplicating the port fd".into())?;
    // Before the first read: see HostWait.
    let host = channel::HostWait::new(&reader);
    let chan = Arc::new(channel::Channel::new(port));
    let agent = Arc::new(agent::Agent::new(chan, agent_start_ns, sys::boottime_ns()));
    reaper::start(agent.clone())?;
    debug!(
        "ready after {} ms (started at {} ms)",
        sys::boottime_ns() / 1_000_000,
        agent_start_ns / 1_000_000
    );
    agent.serve(FrameReader::new(reader), &host)
}
