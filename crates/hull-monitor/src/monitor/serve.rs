//! Phase 5: the container runs. Start (at once for `run`, on request for `create`), stdio,
//! signals, control requests and exec, until the init exits.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use hull_protocol::{AgentEvent, ExitStatus, HostRequest, Reply, StartProcess, StreamId};
use hull_state::{ContainerState, StateDir, Status};

use super::prepare::Host;
use super::vmm::Vmm;
use super::{bind, error_chain, guest_gone, keep_console, Mode, Monitor, REQUEST_TIMEOUT};
use crate::agent::{AgentConn, Event, RequestError};
use crate::control::{self, CtlReply, CtlRequest};
use crate::devices::VmDevice;
use crate::timings::ns_to_ms;
use crate::{log, tty, MonitorError};

impl Monitor {
    pub(super) fn serve(
        &mut self,
        host: &mut Host,
        vm: &mut Vmm,
        state: &mut ContainerState,
    ) -> Result<ExitStatus, MonitorError> {
        let (sd, id, accel) = (host.sd.clone(), self.opts.id.clone(), host.accel.accel);
        let gone = move |what: &str| guest_gone(&sd, &id, accel, what);
        self.prepare_init_stdio(vm)?;
        // exec, kill, ps, stats reach `run` containers too, as with runc.
        let ctl = bind(&host.sd, "ctl.sock")?;
        control::serve(ctl, host.ev_tx.clone()).map_err(|source| MonitorError::Sys {
            what: "starting the control socket's thread".into(),
            source,
        })?;
        match self.opts.mode {
            Mode::Run => {
                self.start_init(vm, &host.sd, state, &host.abortable, &gone)?;
                self.event_loop(vm, &host.ev_rx, &host.sd, state, &mut host.devices)
            }
            Mode::Create { .. } => {
                if let Some(mut r) = self.ready.take() {
                    let _ = writeln!(
                        r,
                        "{}",
                        serde_json::json!({"ok": true, "pid": std::process::id()})
                    );
                }
                host.guard.keep = true;
                host.abortable.store(false, Ordering::SeqCst);
                let started = self.wait_for_start(vm, host, state, &gone)?;
                match started {
                    Some(status) => Ok(status),
                    None => self.event_loop(vm, &host.ev_rx, &host.sd, state, &mut host.devices),
                }
            }
        }
    }

    /// Prepares the container's stdio before it is reported created: our own fds, or a
    /// terminal whose master goes to the console socket now (engines wait for it during create).
    fn prepare_init_stdio(&mut self, vm: &mut Vmm) -> Result<(), MonitorError> {
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
        vm: &mut Vmm,
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
            container: None,
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
        vm: &mut Vmm,
        host: &mut Host,
        state: &mut ContainerState,
        gone: &dyn Fn(&str) -> MonitorError,
    ) -> Result<Option<ExitStatus>, MonitorError> {
        let (sd, abortable) = (&host.sd, &host.abortable);
        loop {
            let Ok(ev) = host.ev_rx.recv() else {
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
                Event::Api(call) => self.api_call(vm, state, sd, call),
                Event::Signal(libc::SIGCHLD) => {
                    if let Some(status) = self.check_backends(vm, &mut host.devices) {
                        return Ok(Some(status));
                    }
                }
                Event::Signal(_) | Event::Agent(..) => {}
                Event::Disconnected(_) => {
                    self.vm_gone();
                    return Err(gone("waiting for start"));
                }
            }
        }
    }

    fn event_loop(
        &mut self,
        vm: &mut Vmm,
        ev_rx: &Receiver<Event>,
        sd: &StateDir,
        state: &mut ContainerState,
        devices: &mut [Box<dyn VmDevice>],
    ) -> Result<ExitStatus, MonitorError> {
        loop {
            let Ok(ev) = ev_rx.recv() else {
                return Err(MonitorError::Agent("event channel closed".into()));
            };
            match ev {
                Event::Agent(
                    AgentEvent::Exited {
                        exec_id: 0,
                        status,
                        exited_ns,
                    },
                    _,
                ) => {
                    self.timings.guest_process_exited_ms = ns_to_ms(exited_ns);
                    return Ok(status);
                }
                Event::Agent(
                    AgentEvent::Exited {
                        exec_id, status, ..
                    },
                    _,
                ) => {
                    if self.member_exited(vm, exec_id, status) {
                        continue;
                    }
                    if let Some(e) = self.execs.remove(&exec_id) {
                        let _ = e.reply.send(CtlReply::Exited {
                            status: status.shell_code(),
                        });
                    }
                }
                Event::Signal(libc::SIGWINCH) => {}
                Event::Signal(libc::SIGCHLD) => {
                    if let Some(status) = self.check_backends(vm, devices) {
                        return Ok(status);
                    }
                }
                Event::Signal(sig) => {
                    let req = HostRequest::Signal {
                        exec_id: 0,
                        signal: sig,
                        all: false,
                        container: None,
                    };
                    if let Err(RequestError::Agent(e)) = vm.agent.request(req, REQUEST_TIMEOUT) {
                        log::debug(&format!("forwarding signal {sig}: {}", e.message));
                    }
                }
                Event::Control(c) => match c.request {
                    CtlRequest::Exec { process } => {
                        self.exec(vm, *process, c.fds, c.peer_pid, c.reply, None)
                    }
                    CtlRequest::CreateMember { id, bundle } => {
                        self.create_member(vm, sd, id, bundle, c.fds, c.peer_pid, c.reply)
                    }
                    CtlRequest::Member { id, request } => {
                        self.member_request(vm, &id, *request, c.fds, c.peer_pid, c.reply)
                    }
                    request => {
                        let reply = self.handle_control(vm, state, sd, request, true);
                        let _ = c.reply.send(reply);
                    }
                },
                Event::Api(call) => self.api_call(vm, state, sd, call),
                Event::Disconnected(why) => {
                    self.vm_gone();
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

    /// A child of the monitor ended: if it was a backend of the VM (virtiofsd, passt), the
    /// guest can no longer use that device (a file access would hang on a FUSE request nobody
    /// answers), so the VM is stopped: the container ends as if killed (137), the reason in
    /// the log, and teardown cleans up as after any end.
    fn check_backends(
        &mut self,
        vm: &mut Vmm,
        devices: &mut [Box<dyn VmDevice>],
    ) -> Option<ExitStatus> {
        let dead = devices.iter_mut().find_map(|d| d.dead_backend())?;
        log::error(&format!(
            "the VM's {} died ({}; its log {}): the VM is stopped and the container ends as \
             killed (137)",
            dead.program,
            dead.status,
            dead.log.display()
        ));
        self.vm_gone();
        vm.qemu.kill();
        Some(ExitStatus::Signal(libc::SIGKILL))
    }

    /// The VM is gone: API calls answer 503 from now on.
    fn vm_gone(&self) {
        if let Some(f) = &self.facts {
            f.gone();
        }
    }

    fn handle_control(
        &mut self,
        vm: &mut Vmm,
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
                // A paused guest cannot take a signal: its vCPUs run again for the delivery
                // (and stay running for SIGKILL, whose container is about to end), the way a
                // frozen cgroup delivers a signal when it thaws.
                let paused = state.paused;
                if paused {
                    if let Err(e) = vm.qmp.cont() {
                        return err(format!("resume the paused VM to signal it: {e}"));
                    }
                }
                let r = vm.agent.request(
                    HostRequest::Signal {
                        exec_id: 0,
                        signal,
                        all,
                        container: None,
                    },
                    REQUEST_TIMEOUT,
                );
                if paused && (signal == libc::SIGKILL || vm.qmp.stop().is_err()) {
                    state.paused = false;
                    let _ = sd.save(state);
                }
                match r {
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
            CtlRequest::Stats => stats_reply(vm),
            CtlRequest::Update { resources } => {
                let host = crate::cgroup::HostLimits::for_update(&resources);
                let req = HostRequest::UpdateResources {
                    container: None,
                    resources,
                };
                match vm.agent.request(req, REQUEST_TIMEOUT) {
                    Ok(_) => match state.cgroup.as_deref() {
                        Some(rel) => match crate::cgroup::set_limits(rel, &host) {
                            Ok(()) => CtlReply::Ok,
                            Err(e) => err(format!("the host cgroup's limits: {e}")),
                        },
                        None => CtlReply::Ok,
                    },
                    Err(e) => err(request_error_text(e)),
                }
            }
            CtlRequest::Ps => {
                let mut pids = vec![std::process::id() as i32];
                let ours = self.execs.values().filter(|e| e.container.is_none());
                pids.extend(ours.map(|e| e.host_pid).filter(|p| *p > 0));
                CtlReply::Ps { pids }
            }
            CtlRequest::CreateMember { .. } | CtlRequest::Member { .. } => {
                err("the pod's first container is not running".into())
            }
            CtlRequest::Exec { .. } => err("container is not running".into()),
            CtlRequest::Resize {
                exec_id,
                rows,
                cols,
            } => resize_reply(vm, exec_id, rows, cols),
        }
    }
}

/// The VM's resource usage, as a control reply.
pub(super) fn stats_reply(vm: &Vmm) -> CtlReply {
    match vm.agent.request(HostRequest::Stats, REQUEST_TIMEOUT) {
        Ok(Reply::Stats(stats)) => CtlReply::Stats { stats },
        Ok(other) => CtlReply::Error {
            message: format!("unexpected reply {other:?}"),
        },
        Err(e) => CtlReply::Error {
            message: request_error_text(e),
        },
    }
}

/// A new window size for process `exec_id`'s terminal, as a control reply.
pub(super) fn resize_reply(vm: &Vmm, exec_id: u32, rows: u16, cols: u16) -> CtlReply {
    let req = HostRequest::ResizeTty {
        exec_id,
        rows,
        cols,
    };
    match vm.agent.request(req, REQUEST_TIMEOUT) {
        Ok(_) => CtlReply::Ok,
        Err(e) => CtlReply::Error {
            message: request_error_text(e),
        },
    }
}

pub(super) fn request_error_text(e: RequestError) -> String {
    match e {
        RequestError::Agent(e) => e.message,
        RequestError::Timeout => "the guest agent did not answer in time".into(),
        RequestError::Gone => "container not running".into(),
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

pub(super) fn spawn_stdin_pump(agent: AgentConn, stream: StreamId, mut input: File) {
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
