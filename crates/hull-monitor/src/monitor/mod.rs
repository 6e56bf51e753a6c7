//! The monitor's life, in phases that read top to bottom:
//!
//! 1. [`prepare`]: input checked, state directory, namespaces, the devices' host sides
//!    (staging, virtiofsd, taps);
//! 2. [`vmm`]: QEMU started with the devices' command line, its QMP and agent connections;
//! 3. [`boot`]: the agent's `Hello`, then the guest's network;
//! 4. [`create`]: the container prepared in the guest, host hooks, state `created`;
//! 5. [`serve`]: start, stdio, signals, control requests, exec — until the init exits;
//! 6. teardown (here): status recorded, stdio closed, QEMU and the backends stopped.

mod boot;
mod create;
pub(crate) use create::container_state;
mod exec;
mod manage;
mod pod;
mod prepare;
mod serve;
mod vmm;
pub(crate) use vmm::spawn_qemu;

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Duration;

use hull_qemu::Accel;
use hull_state::{ContainerState, StateDir, Status};

use crate::control::CtlReply;
use crate::devices::VmDevice;
use crate::sys;
use crate::timings::{ns_to_ms, Timings};
use crate::{log, MonitorError};

/// How the monitor was started.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `hull-runtime run`: start at once, remove everything at the end.
    Run,
    /// `hull-runtime create`: report readiness on `ready_fd`, wait for `start` on the control
    /// socket, keep the stopped state until `delete`.
    Create { ready_fd: RawFd },
}

/// Everything the monitor is told.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub mode: Mode,
    pub pid_file: Option<PathBuf>,
    pub accel: Option<Accel>,
    pub debug: bool,
    /// The monitor binary itself (runs the KVM probe as a child).
    pub self_exe: PathBuf,
    /// Where to send the terminal's master when `process.terminal` is set (runc's flag).
    pub console_socket: Option<PathBuf>,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(3);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the monitor to the end. Returns the container process's status as a shell code.
/// In create mode errors are also reported on the ready fd.
pub fn run(opts: Options) -> Result<i32, MonitorError> {
    let ready = match opts.mode {
        // SAFETY: the runtime passed us this fd for our exclusive use.
        Mode::Create { ready_fd } => Some(unsafe { File::from_raw_fd(ready_fd) }),
        Mode::Run => None,
    };
    let mut m = Monitor {
        opts,
        ready,
        t0: sys::monotonic_ns(),
        timings: Timings::default(),
        terminal: None,
        execs: HashMap::new(),
        next_exec: 1,
        tty_restore: None,
        init_stdio: None,
        poststart: Vec::new(),
        start_timeout: REQUEST_TIMEOUT,
        members: HashMap::new(),
        facts: None,
    };
    let r = m.run();
    if let (Err(e), Some(ready)) = (&r, m.ready.as_mut()) {
        let msg = serde_json::json!({"error": error_chain(e), "code": e.exit_code()});
        let _ = writeln!(ready, "{msg}");
    }
    r
}

pub use hull_protocol::error_chain;

struct Monitor {
    opts: Options,
    ready: Option<File>,
    t0: u64,
    timings: Timings,
    /// `process.terminal` of the spec, with consoleSize.
    terminal: Option<Option<(u16, u16)>>,
    /// Running exec'd processes: where their exit status goes, and their host process.
    execs: HashMap<u32, ExecEntry>,
    next_exec: u32,
    /// The terminal settings to restore (run with a terminal on our own stdin).
    tty_restore: Option<nix::sys::termios::Termios>,
    /// The init process's stdin source and terminal, prepared at create time.
    init_stdio: Option<(File, Option<File>)>,
    poststart: Vec<oci_spec::runtime::Hook>,
    /// Deadline for starting the init: the guest runs the startContainer hooks first.
    start_timeout: Duration,
    /// Later containers of the pod whose VM this is (see `pod`).
    members: HashMap<String, pod::Member>,
    /// What the management API reports (from the create phase on).
    facts: Option<manage::Facts>,
}

struct ExecEntry {
    reply: Sender<CtlReply>,
    host_pid: i32,
    /// The pod member it runs in (`None`: the VM's first container).
    container: Option<String>,
}

/// Removes the state directory on drop unless disarmed.
pub(crate) struct StateGuard {
    pub(crate) sd: StateDir,
    pub(crate) keep: bool,
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.sd.remove_settled(std::time::Duration::from_secs(1));
        }
    }
}

impl Monitor {
    fn ms(&self) -> f64 {
        ns_to_ms(sys::monotonic_ns() - self.t0)
    }

    fn run(&mut self) -> Result<i32, MonitorError> {
        // A container in the network namespace of a running hull container joins its VM.
        let bundle = hull_oci::Bundle::load(&self.opts.bundle)?;
        let pod = bundle
            .network_namespace()
            .flatten()
            .and_then(|ns| crate::member::find_pod(&self.opts.root, &ns));
        if let Some(pod) = pod {
            return crate::member::run(&self.opts, self.ready.as_mut(), bundle, pod);
        }
        let mut host = self.prepare_host(bundle)?;
        let mut vmm = self.start_vmm(&mut host)?;
        self.boot_handshake(&host, &mut vmm)?;
        let mut state = self.create_container(&mut host, &mut vmm)?;
        let status = self.serve(&mut host, &mut vmm, &mut state)?;
        self.teardown(&mut host, vmm, &mut state, status)
    }

    /// Records the status, then closes stdio, then lets the VM and its backends go.
    fn teardown(
        &mut self,
        host: &mut prepare::Host,
        mut vmm: vmm::Vmm,
        state: &mut ContainerState,
        status: hull_protocol::ExitStatus,
    ) -> Result<i32, MonitorError> {
        self.timings.process_exited_ms = self.ms();
        // The API answers 503 from now on; its socket goes before the state directory.
        if let Some(f) = &self.facts {
            f.gone();
        }
        drop(host.api.take());
        state.status = Status::Stopped;
        state.pid = 0;
        state.exit_status = Some(status.shell_code());
        host.sd.save(state)?;
        if let Some(t) = self.tty_restore.take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &t,
            );
        }
        sys::close_stdio();
        vmm.qemu.wait_or_kill(POWEROFF_TIMEOUT);
        if let Some(dir) = &vmm.template_dir {
            crate::template::give_back_free_pages(dir);
        }
        stop_devices(&mut host.devices);
        // The VM's processes are gone: the engine's cgroup for it goes too.
        drop(host.cgroup.take());
        if self.opts.debug {
            // The guest's side of the story (agent debug lines with `hull.debug`) in the log.
            if let Ok(text) = std::fs::read_to_string(host.sd.console_log()) {
                for line in text.lines() {
                    log::debug(&format!("guest: {line}"));
                }
            }
        }
        let _ = std::fs::remove_file(host.sd.path("ctl.sock"));
        self.timings.teardown_done_ms = self.ms();
        self.write_timings();
        Ok(status.shell_code())
    }

    fn write_timings(&self) {
        if let Some(p) = std::env::var_os("HULL_TIMINGS_FILE") {
            let _ = std::fs::write(
                p,
                serde_json::to_vec_pretty(&self.timings).unwrap_or_default(),
            );
        }
        log::debug(&format!(
            "timings: {}",
            serde_json::to_string(&self.timings).unwrap_or_default()
        ));
    }
}

/// Stops every device's host side (QEMU has exited or been killed).
fn stop_devices(devices: &mut [Box<dyn VmDevice>]) {
    for d in devices {
        d.stop();
    }
}

/// Listens on `name` in the state directory (through a short path: see `StateDir::short`).
pub(crate) fn bind(sd: &StateDir, name: &str) -> Result<UnixListener, MonitorError> {
    let _ = std::fs::remove_file(sd.path(name));
    let short = sd.short(name)?;
    UnixListener::bind(&short.path).map_err(MonitorError::sys(format!(
        "listen on {}",
        sd.path(name).display()
    )))
}

/// Where [`keep_console`] copies container `id`'s console log (`delete` removes it).
pub fn kept_console(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hull-{id}-console.log"))
}

/// Copies the console log somewhere that outlives the state directory, for error messages.
fn keep_console(console: &Path, id: &str) -> PathBuf {
    let kept = kept_console(id);
    match std::fs::copy(console, &kept) {
        Ok(_) => kept,
        Err(_) => console.to_path_buf(),
    }
}

/// The error for a guest that went away while `what`.
fn guest_gone(sd: &StateDir, id: &str, accel: Accel, what: &str) -> MonitorError {
    MonitorError::GuestGone {
        what: what.into(),
        accel: accel.to_string(),
        console: keep_console(&sd.console_log(), id),
    }
}

/// The error for a guest that did not answer within `timeout` while `what`.
fn guest_timeout(sd: &StateDir, id: &str, accel: Accel, what: &str, t: Duration) -> MonitorError {
    MonitorError::GuestTimeout {
        what: what.into(),
        timeout: t,
        accel: accel.to_string(),
        console: keep_console(&sd.console_log(), id),
    }
}
