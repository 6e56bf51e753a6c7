//! The monitor's life: boot the VM, create the container, start it, relay, wait, tear down.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use hull_oci::{Bundle, FsCache, ShareTree, VmPlan};
use hull_protocol::{
    AgentEvent, BindShare, ContainerConfig, ExitStatus, HostRequest, Reply, StartProcess, StreamId,
    AGENT_PORT_NAME, PROTOCOL_VERSION, SHARE_TAG, VOLUME_TAG,
};
use hull_qemu::{Accel, AccelChoice, Chardev, Device, QemuCommand, QmpClient};
use hull_state::{ContainerState, StateDir, Status};
use oci_spec::runtime::Hooks;

use crate::agent::{AgentConn, Event, RequestError};
use crate::assets::Assets;
use crate::control::{self, CtlReply, CtlRequest};
use crate::host_probe::{self, HostProbe};
use crate::sys::{self, Accepted, ChildGuard};
use crate::timings::{ns_to_ms, Timings};
use crate::{log, share, tty, MonitorError};

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

const QEMU_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(3);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn boot_timeout(accel: Accel) -> Duration {
    let default = match accel {
        Accel::Kvm => 20,
        Accel::Tcg => 90,
    };
    Duration::from_secs(env_u64("HULL_BOOT_TIMEOUT_SECS").unwrap_or(default))
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
    };
    let r = m.run();
    if let (Err(e), Some(ready)) = (&r, m.ready.as_mut()) {
        let msg = serde_json::json!({"error": error_chain(e), "code": e.exit_code()});
        let _ = writeln!(ready, "{msg}");
    }
    r
}

/// `error: cause: cause` in one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

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
}

struct ExecEntry {
    reply: Sender<CtlReply>,
    host_pid: i32,
}

/// Removes the state directory on drop unless disarmed.
struct StateGuard {
    sd: StateDir,
    keep: bool,
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.sd.remove();
        }
    }
}

impl Monitor {
    fn ms(&self) -> f64 {
        ns_to_ms(sys::monotonic_ns() - self.t0)
    }

    fn run(&mut self) -> Result<i32, MonitorError> {
        let sd = StateDir::new(&self.opts.root, &self.opts.id)?;
        // Everything that can be wrong with the input is checked before anything exists.
        let bundle = Bundle::load(&self.opts.bundle)?;
        if bundle.terminal() {
            let size = bundle
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.console_size())
                .map(|b| (b.height() as u16, b.width() as u16));
            self.terminal = Some(size);
            if self.opts.console_socket.is_none() && !std::io::stdin().is_terminal() {
                return Err(hull_oci::OciError::Invalid {
                    path: bundle.config_path.clone(),
                    field: "process.terminal".into(),
                    problem: "true, but there is no --console-socket and stdin is not a terminal"
                        .into(),
                }
                .into());
            }
        }
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let plan = VmPlan::from_bundle(&bundle, host_cpus)?;
        let assets = Assets::locate()?;
        let probe = host_probe::load_or_probe(&self.opts.root, &self.opts.self_exe);
        let accel = self.choose_accel(&probe)?;
        let console = guest_console()?;
        if let Some(notice) = accel.notice() {
            log::info(&notice);
            if std::io::stderr().is_terminal() {
                eprintln!("{notice}");
            }
        }
        // Signals are caught from here on; the thread that handles them starts after unshare.
        let signals = catch_signals()?;
        sd.create()?;
        let mut guard = StateGuard {
            sd: sd.clone(),
            keep: false,
        };
        // Must precede every thread of this process.
        sys::private_mount_namespace()?;
        if let Some(netns) = network_namespace(&bundle) {
            sys::enter_network_namespace(netns.as_deref())?;
        }
        let (ev_tx, ev_rx) = mpsc::channel();
        let abortable = Arc::new(AtomicBool::new(true));
        spawn_signal_thread(signals, ev_tx.clone(), abortable.clone(), sd.clone())?;

        let volumes = plan.tree(ShareTree::Volumes).next().is_some();
        share::stage(&plan, ShareTree::Rootfs, &sd.share_dir())?;
        if volumes {
            share::stage(&plan, ShareTree::Volumes, &sd.path("volumes"))?;
        }
        self.timings.host_prepared_ms = self.ms();

        let spawn_share = |dir: PathBuf, sock: &str, log: &str, cache: FsCache| {
            let listener = bind(&sd, sock)?;
            share::spawn_virtiofsd(&assets.virtiofsd, &dir, cache, &listener, &sd.path(log))
        };
        let mut virtiofsd = vec![spawn_share(
            sd.share_dir(),
            "vfs.sock",
            "virtiofsd.log",
            plan.rootfs_cache,
        )?];
        if volumes {
            virtiofsd.push(spawn_share(
                sd.path("volumes"),
                "vol.sock",
                "virtiofsd-volumes.log",
                FsCache::Auto,
            )?);
        }
        self.timings.virtiofsd_spawned_ms = self.ms();

        let agent_listener = bind(&sd, "agent.sock")?;
        let qmp_listener = bind(&sd, "qmp.sock")?;
        if !console {
            std::fs::write(
                sd.console_log(),
                "(no guest console: HULL_GUEST_CONSOLE=off)\n",
            )
            .map_err(MonitorError::sys("write console.log"))?;
        }
        let qcmd = self.qemu_command(&assets, &plan, accel.accel, probe.tsc_khz, volumes, console);
        log::debug(&format!(
            "qemu: {} {:?}",
            qcmd.binary.display(),
            qcmd.args()
        ));
        let mut qemu = spawn_qemu(&qcmd, &sd)?;
        self.timings.qemu_spawned_ms = self.ms();

        let qmp_stream = self.accept(
            &qmp_listener,
            &mut qemu,
            &mut virtiofsd,
            &sd,
            accel.accel,
            "QEMU's QMP connection",
        )?;
        let mut qmp = QmpClient::handshake(qmp_stream, QEMU_CONNECT_TIMEOUT).map_err(|e| {
            MonitorError::Sys {
                what: "QMP handshake".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        self.timings.qmp_ready_ms = self.ms();
        let agent_stream = self.accept(
            &agent_listener,
            &mut qemu,
            &mut virtiofsd,
            &sd,
            accel.accel,
            "QEMU's agent channel connection",
        )?;
        drop((agent_listener, qmp_listener));
        let _ = std::fs::remove_file(sd.path("agent.sock"));
        let _ = std::fs::remove_file(sd.path("qmp.sock"));
        self.timings.agent_connected_ms = self.ms();

        let agent = AgentConn::start(agent_stream, ev_tx.clone())?;

        let console = sd.console_log();
        let id = self.opts.id.clone();
        let gone = |what: &str| MonitorError::GuestGone {
            what: what.into(),
            accel: accel.accel.to_string(),
            console: keep_console(&console, &id),
        };
        let timeout = |what: &str, t: Duration| MonitorError::GuestTimeout {
            what: what.into(),
            timeout: t,
            accel: accel.accel.to_string(),
            console: keep_console(&console, &id),
        };

        let boot = boot_timeout(accel.accel);
        match agent.request(
            HostRequest::Hello {
                version: PROTOCOL_VERSION,
            },
            boot,
        ) {
            Ok(Reply::Hello {
                agent_start_ns,
                agent_ready_ns,
                ..
            }) => {
                self.timings.guest_agent_start_ms = ns_to_ms(agent_start_ns);
                self.timings.guest_agent_ready_ms = ns_to_ms(agent_ready_ns);
            }
            Ok(other) => {
                return Err(MonitorError::Agent(format!(
                    "unexpected reply to hello: {other:?}"
                )))
            }
            Err(RequestError::Timeout) => {
                return Err(timeout("the guest agent to boot and answer", boot))
            }
            Err(RequestError::Gone) => return Err(gone("booting the guest")),
            Err(RequestError::Agent(e)) => {
                return Err(MonitorError::Agent(format!(
                    "the guest agent in {} refused this host: {}",
                    assets.initrd.display(),
                    e.message
                )))
            }
        }
        self.timings.agent_ready_ms = self.ms();

        let cfg = ContainerConfig {
            id: self.opts.id.clone(),
            spec: bundle.spec.clone(),
            rootfs: "rootfs".into(),
            bundle: bundle.dir.display().to_string(),
            binds: plan
                .shares
                .iter()
                .filter_map(|s| {
                    s.mount_index.map(|i| BindShare {
                        mount_index: i,
                        share_path: s.share_path.clone(),
                    })
                })
                .collect(),
        };
        // The guest runs the createContainer hooks during create: their time comes on top.
        let create_timeout =
            CREATE_TIMEOUT + hull_oci::hooks::timeout_of(&bundle.spec, Hooks::create_container);
        match agent.request(HostRequest::CreateContainer(Box::new(cfg)), create_timeout) {
            Ok(_) => {}
            Err(RequestError::Agent(e)) => {
                return Err(MonitorError::Agent(format!(
                    "creating the container: {}",
                    e.message
                )))
            }
            Err(RequestError::Timeout) => {
                return Err(timeout(
                    "the guest agent to create the container",
                    create_timeout,
                ))
            }
            Err(RequestError::Gone) => return Err(gone("creating the container")),
        }
        self.timings.container_created_ms = self.ms();

        let mut state = ContainerState {
            id: self.opts.id.clone(),
            status: Status::Created,
            pid: std::process::id() as i32,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: hull_state::now_rfc3339(),
            owner: String::new(),
            annotations: bundle
                .spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            monitor_pid: std::process::id() as i32,
            exit_status: None,
            accel: accel.accel.to_string(),
            paused: false,
        };
        // createRuntime and prestart hooks: on the host, after the container is set up and
        // before it is reported created; a failure fails create.
        if let Some(h) = bundle.spec.hooks() {
            let json = state.oci().to_string();
            let create_runtime = h.create_runtime().clone().unwrap_or_default();
            hull_oci::hooks::run_hooks("createRuntime", &create_runtime, &json)?;
            let prestart = h.prestart().clone().unwrap_or_default();
            hull_oci::hooks::run_hooks("prestart", &prestart, &json)?;
        }
        self.start_timeout =
            REQUEST_TIMEOUT + hull_oci::hooks::timeout_of(&bundle.spec, Hooks::start_container);
        self.poststart = bundle
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().clone())
            .unwrap_or_default();
        sd.save(&state)?;
        if let Some(p) = &self.opts.pid_file {
            sys::write_pid_file(p, std::process::id() as i32)?;
        }

        let mut vm = Vm {
            agent,
            qmp: &mut qmp,
        };
        self.prepare_init_stdio(&mut vm)?;
        let status = match self.opts.mode {
            Mode::Run => {
                self.start_init(&mut vm, &sd, &mut state, &abortable, &gone)?;
                self.event_loop(&mut vm, &ev_rx, &sd, &mut state)?
            }
            Mode::Create { .. } => {
                let ctl = bind(&sd, "ctl.sock")?;
                control::serve(ctl, ev_tx.clone());
                if let Some(mut r) = self.ready.take() {
                    let _ = writeln!(
                        r,
                        "{}",
                        serde_json::json!({"ok": true, "pid": std::process::id()})
                    );
                }
                guard.keep = true;
                abortable.store(false, Ordering::SeqCst);
                match self.wait_for_start(&mut vm, &ev_rx, &sd, &mut state, &abortable, &gone)? {
                    Some(status) => status,
                    None => self.event_loop(&mut vm, &ev_rx, &sd, &mut state)?,
                }
            }
        };
        self.timings.process_exited_ms = self.ms();

        // Record the status first, then close stdio, then let the VM go.
        state.status = Status::Stopped;
        state.pid = 0;
        state.exit_status = Some(status.shell_code());
        sd.save(&state)?;
        if let Some(t) = self.tty_restore.take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &t,
            );
        }
        sys::close_stdio();
        qemu.wait_or_kill(POWEROFF_TIMEOUT);
        for v in &mut virtiofsd {
            v.child.wait_or_kill(Duration::from_secs(1));
        }
        if self.opts.debug {
            // The guest's side of the story (agent debug lines with `hull.debug`) in the log.
            if let Ok(text) = std::fs::read_to_string(sd.console_log()) {
                for line in text.lines() {
                    log::debug(&format!("guest: {line}"));
                }
            }
        }
        for f in ["ctl.sock", "vfs.sock", "vol.sock"] {
            let _ = std::fs::remove_file(sd.path(f));
        }
        self.timings.teardown_done_ms = self.ms();
        self.write_timings();
        Ok(status.shell_code())
    }

    fn accept(
        &self,
        listener: &UnixListener,
        qemu: &mut ChildGuard,
        virtiofsd: &mut [share::Virtiofsd],
        sd: &StateDir,
        accel: Accel,
        what: &str,
    ) -> Result<std::os::unix::net::UnixStream, MonitorError> {
        match sys::accept_within(listener, qemu, QEMU_CONNECT_TIMEOUT)? {
            Accepted::Stream(s) => Ok(s),
            Accepted::PeerDied(st) => {
                let vfs_dead = virtiofsd
                    .iter_mut()
                    .find_map(|v| v.child.try_wait().map(|_| v.log.clone()));
                let (program, log) = match vfs_dead {
                    Some(log) => ("virtiofsd", log),
                    None => ("qemu", sd.path("qemu.log")),
                };
                Err(MonitorError::ChildDied {
                    program,
                    status: st.to_string(),
                    tail: sys::log_tail(&log, 5),
                    log,
                })
            }
            Accepted::TimedOut => Err(MonitorError::GuestTimeout {
                what: what.into(),
                timeout: QEMU_CONNECT_TIMEOUT,
                accel: accel.to_string(),
                console: keep_console(&sd.console_log(), &self.opts.id),
            }),
        }
    }

    fn choose_accel(&self, probe: &HostProbe) -> Result<AccelChoice, MonitorError> {
        let forced = match (self.opts.accel, std::env::var("HULL_ACCEL")) {
            (Some(a), _) => Some(a),
            (None, Ok(v)) if !v.is_empty() => Some(v.parse()?),
            _ => None,
        };
        Ok(hull_qemu::accel::resolve(
            forced,
            probe.kvm_unusable.clone(),
        )?)
    }

    fn qemu_command(
        &self,
        assets: &Assets,
        plan: &VmPlan,
        accel: Accel,
        tsc_khz: Option<u64>,
        volumes: bool,
        console: bool,
    ) -> QemuCommand {
        let mut cmdline = String::from(
            "reboot=t panic=-1 tsc=reliable no_timer_check rcupdate.rcu_expedited=1 \
             cryptomgr.notests random.trust_cpu=on 8250.nr_uarts=0 pci=off",
        );
        if console {
            cmdline.insert_str(0, "console=hvc0 ");
        }
        if accel == Accel::Tcg {
            // See hull_qemu::tsc: without it, TCG guests hang in TSC calibration on a busy host.
            if let Some(khz) = tsc_khz {
                cmdline.push_str(&format!(" tsc_early_khz={khz}"));
            }
        }
        if self.opts.debug {
            cmdline.push_str(" hull.debug");
        } else {
            cmdline.push_str(" quiet");
        }
        // For debugging the guest: extra kernel parameters, appended last so they win.
        if let Ok(extra) = std::env::var("HULL_KERNEL_CMDLINE_APPEND") {
            if !extra.trim().is_empty() {
                cmdline.push(' ');
                cmdline.push_str(extra.trim());
            }
        }
        let mut q = QemuCommand {
            binary: assets.qemu.clone(),
            name: format!("hull-{}", self.opts.id),
            accel,
            tcg_tb_size_mib: env_u64("HULL_TCG_TB_SIZE_MIB").unwrap_or(64) as u32,
            vcpus: plan.vcpus,
            memory_mib: plan.memory_mib,
            kernel: assets.kernel.clone(),
            initrd: assets.initrd.clone(),
            kernel_cmdline: cmdline,
            // Relative to QEMU's working directory, the state directory (short socket paths).
            chardevs: vec![
                Chardev::SocketClient {
                    id: "qmp".into(),
                    path: "qmp.sock".into(),
                },
                Chardev::File {
                    id: "console".into(),
                    path: "console.log".into(),
                },
                Chardev::SocketClient {
                    id: "agent".into(),
                    path: "agent.sock".into(),
                },
                Chardev::SocketClient {
                    id: "vfs".into(),
                    path: "vfs.sock".into(),
                },
            ],
            devices: vec![
                Device::VirtioSerial {
                    id: "vser0".into(),
                    max_ports: 4,
                },
                Device::VirtConsole {
                    chardev: "console".into(),
                },
                Device::VirtSerialPort {
                    chardev: "agent".into(),
                    name: AGENT_PORT_NAME.into(),
                },
                Device::VhostUserFs {
                    chardev: "vfs".into(),
                    tag: SHARE_TAG.into(),
                    queue_size: 1024,
                },
            ],
            qmp_chardev: "qmp".into(),
        };
        if !console {
            q.chardevs
                .retain(|c| !matches!(c, Chardev::File { id, .. } if id == "console"));
            q.devices
                .retain(|d| !matches!(d, Device::VirtConsole { .. }));
        }
        if volumes {
            q.chardevs.push(Chardev::SocketClient {
                id: "vol".into(),
                path: "vol.sock".into(),
            });
            q.devices.push(Device::VhostUserFs {
                chardev: "vol".into(),
                tag: VOLUME_TAG.into(),
                queue_size: 1024,
            });
        }
        q
    }

    /// Prepares the container's stdio before it is reported created: our own fds, or a
    /// terminal whose master goes to the console socket now (engines wait for it during create).
    fn prepare_init_stdio(&mut self, vm: &mut Vm) -> Result<(), MonitorError> {
        // stdio of the container: our own fds, or a terminal.
        let stdio: (File, Option<File>) = match self.terminal {
            None => {
                vm.agent.add_sink(StreamId::stdout(0), dup_fd(1));
                vm.agent.add_sink(StreamId::stderr(0), dup_fd(2));
                (dup_file(0)?, None)
            }
            Some(size) => match &self.opts.console_socket {
                Some(sock) => {
                    let pty = tty::open_pty(size)?;
                    tty::send_to_console_socket(sock, &pty.master)?;
                    let slave = File::from(pty.slave);
                    let out = slave.try_clone().map_err(MonitorError::sys("dup pty"))?;
                    vm.agent.add_sink(StreamId::stdout(0), Box::new(out));
                    let input = slave.try_clone().map_err(MonitorError::sys("dup pty"))?;
                    (input, Some(slave))
                }
                None => {
                    // `run` on a terminal: ours, in raw mode until we exit.
                    let stdin = dup_file(0)?;
                    self.tty_restore = nix::sys::termios::tcgetattr(&stdin).ok();
                    tty::make_raw(&stdin)?;
                    vm.agent.add_sink(StreamId::stdout(0), dup_fd(1));
                    let input = stdin.try_clone().map_err(MonitorError::sys("dup stdin"))?;
                    (input, Some(stdin))
                }
            },
        };
        self.init_stdio = Some(stdio);
        Ok(())
    }

    fn start_init(
        &mut self,
        vm: &mut Vm,
        sd: &StateDir,
        state: &mut ContainerState,
        abortable: &AtomicBool,
        gone: &dyn Fn(&str) -> MonitorError,
    ) -> Result<(), MonitorError> {
        let (input, tty_fd) = self
            .init_stdio
            .take()
            .ok_or_else(|| MonitorError::Agent("container stdio not prepared".into()))?;
        let req = StartProcess {
            exec_id: 0,
            process: None,
            stdin: true,
        };
        match vm
            .agent
            .request(HostRequest::StartProcess(Box::new(req)), self.start_timeout)
        {
            Ok(Reply::Started { started_ns, .. }) => {
                self.timings.guest_process_started_ms = ns_to_ms(started_ns)
            }
            Ok(other) => {
                return Err(MonitorError::Agent(format!(
                    "unexpected reply to start: {other:?}"
                )))
            }
            Err(RequestError::Agent(e)) => return Err(MonitorError::Agent(e.message)),
            Err(RequestError::Timeout) => {
                return Err(MonitorError::Agent(format!(
                    "starting the container process timed out after {:?}",
                    self.start_timeout
                )))
            }
            Err(RequestError::Gone) => return Err(gone("starting the container process")),
        }
        abortable.store(false, Ordering::SeqCst);
        self.timings.process_started_ms = self.ms();
        state.status = Status::Running;
        sd.save(state)?;
        // poststart failures are warnings (runtime-spec).
        if let Err(e) =
            hull_oci::hooks::run_hooks("poststart", &self.poststart, &state.oci().to_string())
        {
            log::write("warning", &e.to_string());
        }
        spawn_stdin_pump(vm.agent.clone(), StreamId::stdin(0), input);
        if let Some(tty) = tty_fd {
            spawn_winsize_poller(vm.agent.clone(), 0, tty);
        }
        Ok(())
    }

    /// Create mode: serve control requests until `start` (or a kill before start).
    fn wait_for_start(
        &mut self,
        vm: &mut Vm,
        ev_rx: &Receiver<Event>,
        sd: &StateDir,
        state: &mut ContainerState,
        abortable: &AtomicBool,
        gone: &dyn Fn(&str) -> MonitorError,
    ) -> Result<Option<ExitStatus>, MonitorError> {
        loop {
            let Ok(ev) = ev_rx.recv() else {
                return Err(gone("waiting for start"));
            };
            match ev {
                Event::Control(c) => match c.request {
                    CtlRequest::Start => {
                        let r = self.start_init(vm, sd, state, abortable, gone);
                        let _ = c.reply.send(match &r {
                            Ok(()) => CtlReply::Ok,
                            Err(e) => CtlReply::Error {
                                message: error_chain(e),
                            },
                        });
                        r?;
                        return Ok(None);
                    }
                    CtlRequest::Kill { signal, .. } => {
                        // Nothing runs yet: the container ends as if killed by the signal.
                        let _ = c.reply.send(CtlReply::Ok);
                        return Ok(Some(ExitStatus::Signal(signal)));
                    }
                    other => {
                        let reply = self.handle_control(vm, state, sd, other, false);
                        let _ = c.reply.send(reply);
                    }
                },
                Event::Signal(sig) if sig == libc::SIGTERM || sig == libc::SIGINT => {
                    return Ok(Some(ExitStatus::Signal(sig)))
                }
                Event::Signal(_) | Event::Agent(_) => {}
                Event::Disconnected(_) => return Err(gone("waiting for start")),
            }
        }
    }

    fn event_loop(
        &mut self,
        vm: &mut Vm,
        ev_rx: &Receiver<Event>,
        sd: &StateDir,
        state: &mut ContainerState,
    ) -> Result<ExitStatus, MonitorError> {
        loop {
            let Ok(ev) = ev_rx.recv() else {
                return Err(MonitorError::Agent("event channel closed".into()));
            };
            match ev {
                Event::Agent(AgentEvent::Exited {
                    exec_id: 0,
                    status,
                    exited_ns,
                }) => {
                    self.timings.guest_process_exited_ms = ns_to_ms(exited_ns);
                    return Ok(status);
                }
                Event::Agent(AgentEvent::Exited {
                    exec_id, status, ..
                }) => {
                    if let Some(e) = self.execs.remove(&exec_id) {
                        let _ = e.reply.send(CtlReply::Exited {
                            status: status.shell_code(),
                        });
                    }
                }
                Event::Signal(libc::SIGWINCH) => {}
                Event::Signal(sig) => {
                    let req = HostRequest::Signal {
                        exec_id: 0,
                        signal: sig,
                        all: false,
                    };
                    if let Err(RequestError::Agent(e)) = vm.agent.request(req, REQUEST_TIMEOUT) {
                        log::debug(&format!("forwarding signal {sig}: {}", e.message));
                    }
                }
                Event::Control(c) => {
                    if let CtlRequest::Exec { process } = c.request {
                        self.exec(vm, *process, c.fds, c.peer_pid, c.reply);
                        continue;
                    }
                    let reply = self.handle_control(vm, state, sd, c.request, true);
                    let _ = c.reply.send(reply);
                }
                Event::Disconnected(why) => {
                    log::error(&format!("VM went away: {why}"));
                    return Err(MonitorError::GuestGone {
                        what: "the container was running".into(),
                        accel: state.accel.clone(),
                        console: keep_console(&sd.console_log(), &self.opts.id),
                    });
                }
            }
        }
    }

    fn handle_control(
        &mut self,
        vm: &mut Vm,
        state: &mut ContainerState,
        sd: &StateDir,
        req: CtlRequest,
        running: bool,
    ) -> CtlReply {
        let err = |m: String| CtlReply::Error { message: m };
        match req {
            CtlRequest::Start => err("cannot start a container that has already started".into()),
            CtlRequest::Kill { signal, all } => {
                if !running {
                    return err("container not running".into());
                }
                match vm.agent.request(
                    HostRequest::Signal {
                        exec_id: 0,
                        signal,
                        all,
                    },
                    REQUEST_TIMEOUT,
                ) {
                    Ok(_) => CtlReply::Ok,
                    Err(e) => err(request_error_text(e)),
                }
            }
            CtlRequest::Pause | CtlRequest::Resume => {
                let pause = matches!(req, CtlRequest::Pause);
                let r = if pause { vm.qmp.stop() } else { vm.qmp.cont() };
                match r {
                    Ok(()) => {
                        state.paused = pause;
                        let _ = sd.save(state);
                        CtlReply::Ok
                    }
                    Err(e) => err(e.to_string()),
                }
            }
            CtlRequest::Stats => match vm.agent.request(HostRequest::Stats, REQUEST_TIMEOUT) {
                Ok(Reply::Stats(stats)) => CtlReply::Stats { stats },
                Ok(other) => err(format!("unexpected reply {other:?}")),
                Err(e) => err(request_error_text(e)),
            },
            CtlRequest::Ps => {
                let mut pids = vec![std::process::id() as i32];
                pids.extend(self.execs.values().map(|e| e.host_pid).filter(|p| *p > 0));
                CtlReply::Ps { pids }
            }
            CtlRequest::Exec { .. } => err("container is not running".into()),
            CtlRequest::Resize {
                exec_id,
                rows,
                cols,
            } => {
                let req = HostRequest::ResizeTty {
                    exec_id,
                    rows,
                    cols,
                };
                match vm.agent.request(req, REQUEST_TIMEOUT) {
                    Ok(_) => CtlReply::Ok,
                    Err(e) => err(request_error_text(e)),
                }
            }
        }
    }

    /// Starts an exec'd process whose stdio are `fds` (stdin, stdout, stderr; or one pty slave).
    fn exec(
        &mut self,
        vm: &mut Vm,
        process: oci_spec::runtime::Process,
        fds: Vec<std::os::fd::OwnedFd>,
        host_pid: i32,
        reply: Sender<CtlReply>,
    ) {
        let terminal = process.terminal().unwrap_or(false);
        let mut files: Vec<File> = fds.into_iter().map(File::from).collect();
        let want = if terminal { 1 } else { 3 };
        if files.len() != want {
            let message = format!("exec needs {want} stdio fds, got {}", files.len());
            let _ = reply.send(CtlReply::Error { message });
            return;
        }
        let exec_id = self.next_exec;
        self.next_exec += 1;
        let input = files.remove(0);
        let out = if terminal {
            input.try_clone().ok()
        } else {
            Some(files.remove(0))
        };
        if let Some(out) = out {
            vm.agent.add_sink(StreamId::stdout(exec_id), Box::new(out));
        }
        if !terminal {
            vm.agent
                .add_sink(StreamId::stderr(exec_id), Box::new(files.remove(0)));
        }
        let req = StartProcess {
            exec_id,
            process: Some(process),
            stdin: true,
        };
        match vm
            .agent
            .request(HostRequest::StartProcess(Box::new(req)), REQUEST_TIMEOUT)
        {
            Ok(Reply::Started { pid, .. }) => {
                let _ = reply.send(CtlReply::Started { exec_id, pid });
                spawn_stdin_pump(vm.agent.clone(), StreamId::stdin(exec_id), input);
                self.execs.insert(exec_id, ExecEntry { reply, host_pid });
            }
            other => {
                // It never ran: release its stdio now (no Eof will ever come for it).
                vm.agent.remove_sink(StreamId::stdout(exec_id));
                vm.agent.remove_sink(StreamId::stderr(exec_id));
                let message = match other {
                    Ok(r) => format!("unexpected reply {r:?}"),
                    Err(e) => request_error_text(e),
                };
                let _ = reply.send(CtlReply::Error { message });
            }
        }
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

/// The spec's network namespace: `None` if it asks for none, `Some(None)` for a new one,
/// `Some(Some(path))` to join one.
fn network_namespace(b: &Bundle) -> Option<Option<PathBuf>> {
    let ns = b.spec.linux().as_ref()?.namespaces().as_ref()?;
    ns.iter()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network)
        .map(|n| n.path().clone())
}

struct Vm<'a> {
    agent: AgentConn,
    qmp: &'a mut QmpClient,
}

fn request_error_text(e: RequestError) -> String {
    match e {
        RequestError::Agent(e) => e.message,
        RequestError::Timeout => "the guest agent did not answer in time".into(),
        RequestError::Gone => "container not running".into(),
    }
}

/// Listens on `name` in the state directory (through a short path: see `StateDir::short`).
fn bind(sd: &StateDir, name: &str) -> Result<UnixListener, MonitorError> {
    let _ = std::fs::remove_file(sd.path(name));
    let short = sd.short(name)?;
    UnixListener::bind(&short.path).map_err(MonitorError::sys(format!(
        "listen on {}",
        sd.path(name).display()
    )))
}

/// Starts QEMU in the state directory: its socket and log paths are relative to it, so they
/// stay short whatever the state root is.
fn spawn_qemu(q: &QemuCommand, sd: &StateDir) -> Result<ChildGuard, MonitorError> {
    let log = sd.path("qemu.log");
    let log_file =
        File::create(&log).map_err(MonitorError::sys(format!("create {}", log.display())))?;
    let mut cmd = q.command();
    cmd.current_dir(&sd.dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    sys::kill_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(MonitorError::sys(format!("start {}", q.binary.display())))?;
    Ok(ChildGuard::new("qemu", child))
}

/// `HULL_GUEST_CONSOLE`: `on` (default: the guest console goes to `<state>/console.log`) or
/// `off` (no console device; one device less to boot, and no log of the guest kernel).
fn guest_console() -> Result<bool, MonitorError> {
    match std::env::var("HULL_GUEST_CONSOLE").as_deref() {
        Err(_) | Ok("") | Ok("on") => Ok(true),
        Ok("off") => Ok(false),
        Ok(v) => Err(MonitorError::Setting {
            name: "HULL_GUEST_CONSOLE",
            value: v.into(),
            problem: "must be \"on\" or \"off\"",
        }),
    }
}

/// Copies the console log somewhere that outlives the state directory, for error messages.
fn keep_console(console: &Path, id: &str) -> PathBuf {
    let kept = std::env::temp_dir().join(format!("hull-{id}-console.log"));
    match std::fs::copy(console, &kept) {
        Ok(_) => kept,
        Err(_) => console.to_path_buf(),
    }
}

/// A duplicate of one of our standard fds (survives the original being replaced).
fn dup_file(fd: RawFd) -> Result<File, MonitorError> {
    // SAFETY: dup of a standard fd into a new fd that we own exclusively.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(MonitorError::sys(format!("dup fd {fd}"))(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `new` is a freshly duplicated fd owned by nobody else.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// A sink writing to a duplicate of one of our fds (discarding if it cannot be duplicated).
fn dup_fd(fd: RawFd) -> Box<dyn Write + Send> {
    match dup_file(fd) {
        Ok(f) => Box::new(f),
        Err(_) => Box::new(std::io::sink()),
    }
}

fn spawn_stdin_pump(agent: AgentConn, stream: StreamId, mut input: File) {
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if agent.send_data(stream, &buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = agent.send_eof(stream);
        });
}

/// Passes window-size changes of a host terminal to the guest process's pty. Polls (5/s): no
/// signal handling, and it works for a pty slave we do not control.
fn spawn_winsize_poller(agent: AgentConn, exec_id: u32, tty: File) {
    let _ = std::thread::Builder::new()
        .name("winsize".into())
        .spawn(move || {
            let mut last = None;
            loop {
                let now = tty::window_size(&tty);
                if let (Some((rows, cols)), true) = (now, now != last) {
                    let req = HostRequest::ResizeTty {
                        exec_id,
                        rows,
                        cols,
                    };
                    match agent.request(req, REQUEST_TIMEOUT) {
                        Err(RequestError::Gone) => return,
                        _ => last = now,
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
}

/// Catches the signals the monitor forwards or aborts on (delivered later by the signal thread).
fn catch_signals() -> Result<signal_hook::iterator::Signals, MonitorError> {
    use signal_hook::consts::*;
    signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
    ])
    .map_err(MonitorError::sys("install signal handlers"))
}

/// Forwards signals to the main loop. While `abortable` (booting, before the container is
/// created/started), SIGINT/SIGTERM/SIGHUP/SIGQUIT abort: the state directory goes, QEMU and
/// virtiofsd die with us (PDEATHSIG), mounts with our namespace.
fn spawn_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    events: Sender<Event>,
    abortable: Arc<AtomicBool>,
    sd: StateDir,
) -> Result<(), MonitorError> {
    use signal_hook::consts::*;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let fatal = matches!(sig, SIGINT | SIGTERM | SIGHUP | SIGQUIT);
                if fatal && abortable.load(Ordering::SeqCst) {
                    let _ = sd.remove();
                    std::process::exit(128 + sig);
                }
                let _ = events.send(Event::Signal(sig));
            }
        })
        .map_err(MonitorError::sys("spawn signal thread"))?;
    Ok(())
}
