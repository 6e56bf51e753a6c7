//! A later container of a pod: it shares the network namespace of a running hull container (the
//! pod's first container, whose VM is the pod's sandbox), so it runs in that VM, not in one of
//! its own.
//!
//! Its monitor process is a thin one: it is the pid-file PID that engines wait for, and exits
//! with the member's status; it serves the member's own `ctl.sock` (so `hull-runtime` treats
//! every container alike) by forwarding each request, wrapped in `CtlRequest::Member`, to the
//! pod monitor's `ctl.sock`. The pod monitor owns the VM: it stages the member's rootfs and
//! volumes in its shares and has the agent create it (`pod` phase of the monitor).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{self, Sender};

use hull_oci::Bundle;
use hull_state::{ContainerState, StateDir, Status};

use crate::control::{self, ControlRequest, CtlClient, CtlReply, CtlRequest};
use crate::{log, sys, tty, MonitorError, Options};

/// How long the pod's monitor may take to create a container in its VM (hooks come on top).
const CREATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// What the member's host process reacts to.
enum MemberEvent {
    Control(ControlRequest),
    /// The member's init runs.
    Started,
    /// The member's init ended with this (shell-style) status.
    Exited(i32),
    /// The pod's monitor went away.
    Gone(String),
}

impl From<ControlRequest> for MemberEvent {
    fn from(c: ControlRequest) -> Self {
        MemberEvent::Control(c)
    }
}

/// The pod (the first container of a VM) whose network namespace is the one at `netns`.
pub struct Pod {
    pub id: String,
    pub state: ContainerState,
    pub sd: StateDir,
}

/// The running hull container of `root` whose monitor is in the network namespace `netns`
/// (compared by identity: engines name it `/proc/<PID>/ns/net` or `/run/netns/...`).
pub fn find_pod(root: &Path, netns: &Path) -> Option<Pod> {
    let want = ns_identity(netns)?;
    for id in hull_state::list(root).ok()? {
        let Ok(sd) = StateDir::new(root, &id) else {
            continue;
        };
        let Ok(state) = sd.load() else { continue };
        if state.sandbox.is_some() || state.status == Status::Stopped {
            continue;
        }
        let theirs = ns_identity(Path::new(&format!("/proc/{}/ns/net", state.monitor_pid)));
        if theirs == Some(want) && hull_state::process_alive(state.monitor_pid) {
            return Some(Pod { id, state, sd });
        }
    }
    None
}

/// (device, inode) of a namespace file.
fn ns_identity(p: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.dev(), m.ino()))
}

/// The pod member's life: created in the pod's VM, started on request, ended with its init.
pub fn run(
    opts: &Options,
    ready: Option<&mut File>,
    bundle: Bundle,
    pod: Pod,
) -> Result<i32, MonitorError> {
    let sd = StateDir::new(&opts.root, &opts.id)?;
    let pod_ctl = pod.sd.short("ctl.sock")?;
    sd.create()?;
    let mut guard = crate::monitor::StateGuard {
        sd: sd.clone(),
        keep: false,
    };
    // Where engines look for the container's network: the pod's (it is one namespace).
    if let Some(ns) = bundle.network_namespace().flatten() {
        sys::enter_network_namespace(Some(&ns))?;
    }
    let stdio = member_stdio(opts, &bundle)?;
    // The files the pod's monitor shares into the VM, as detached mount trees: its staging
    // namespace does not see mounts made here after it started (an engine's rootfs overlay).
    let plan = hull_oci::VmPlan::from_bundle(&bundle, 1)?;
    let trees = plan
        .shares
        .iter()
        .map(|s| sys::clone_tree(&s.host_path))
        .collect::<Result<Vec<_>, _>>()?;
    let raw: Vec<i32> = stdio
        .iter()
        .chain(trees.iter())
        .map(|f| f.as_raw_fd())
        .collect();
    let create = CtlRequest::CreateMember {
        id: opts.id.clone(),
        bundle: bundle.dir.clone(),
    };
    let mut conn =
        CtlClient::send(&pod_ctl.path, &create, &raw).map_err(MonitorError::sys(format!(
            "asking the pod's monitor ({}) to create the container",
            pod.id
        )))?;
    drop((stdio, trees));
    // The pod's monitor creates it in the guest (createContainer hooks included).
    let deadline = CREATE_DEADLINE
        + hull_oci::hooks::timeout_of(&bundle.spec, oci_spec::runtime::Hooks::create_container);
    match conn.next(Some(deadline)) {
        Ok(Some(CtlReply::Created { .. })) => {}
        Ok(Some(CtlReply::Error { message })) => return Err(MonitorError::Agent(message)),
        other => {
            return Err(MonitorError::Agent(format!(
                "the pod's monitor ({}) did not create the container: {other:?}",
                pod.id
            )))
        }
    }
    let mut state = member_state(opts, &bundle, &pod);
    sd.save(&state)?;
    if let Some(p) = &opts.pid_file {
        sys::write_pid_file(p, std::process::id() as i32)?;
    }
    let (ev_tx, ev_rx) = mpsc::channel();
    control::serve(crate::monitor::bind(&sd, "ctl.sock")?, ev_tx.clone()).map_err(|source| {
        MonitorError::Sys {
            what: "starting the control socket's thread".into(),
            source,
        }
    })?;
    spawn_pod_reader(conn, ev_tx);
    if let Some(r) = ready {
        let _ = writeln!(
            r,
            "{}",
            serde_json::json!({"ok": true, "pid": std::process::id()})
        );
    }
    guard.keep = true;
    if matches!(opts.mode, crate::Mode::Run) {
        start_now(&opts.id, &pod_ctl.path)?;
    }
    let status = serve(&opts.id, &pod_ctl.path, &ev_rx, &sd, &mut state);
    state.status = Status::Stopped;
    state.pid = 0;
    state.exit_status = Some(status);
    let _ = sd.save(&state);
    sys::close_stdio();
    let _ = std::fs::remove_file(sd.path("ctl.sock"));
    if matches!(opts.mode, crate::Mode::Run) {
        let _ = sd.remove();
    }
    Ok(status)
}

/// Forwards control requests until the pod's monitor says the member exited (or goes away).
fn serve(
    id: &str,
    pod_ctl: &Path,
    ev_rx: &mpsc::Receiver<MemberEvent>,
    sd: &StateDir,
    state: &mut ContainerState,
) -> i32 {
    let mut inflight = Vec::new();
    let status = loop {
        let Ok(ev) = ev_rx.recv() else { break 137 };
        match ev {
            MemberEvent::Control(c) => {
                inflight.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
                inflight.push(forward(id, pod_ctl, c));
            }
            MemberEvent::Started => {
                state.status = Status::Running;
                let _ = sd.save(state);
            }
            MemberEvent::Exited(status) => break status,
            MemberEvent::Gone(why) => {
                log::error(&format!("the pod's VM went away: {why}"));
                break 137;
            }
        }
    };
    // The request that ended the member (a kill) may not have had its reply relayed yet:
    // exiting now would close its caller's connection without one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while inflight.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    status
}

/// `run`: the member starts at once.
fn start_now(id: &str, pod_ctl: &Path) -> Result<(), MonitorError> {
    let req = CtlRequest::Member {
        id: id.to_owned(),
        request: Box::new(CtlRequest::Start),
    };
    match control::call(pod_ctl, &req, std::time::Duration::from_secs(60)) {
        Ok(CtlReply::Ok) => Ok(()),
        Ok(CtlReply::Error { message }) => Err(MonitorError::Agent(message)),
        Ok(other) => Err(MonitorError::Agent(format!(
            "unexpected reply to start: {other:?}"
        ))),
        Err(e) => Err(MonitorError::sys("starting the container in the pod's VM")(
            e,
        )),
    }
}

/// Relays one request (with its fds) to the pod's monitor and every reply line back.
fn forward(id: &str, pod_ctl: &Path, c: control::ControlRequest) -> std::thread::JoinHandle<()> {
    let id = id.to_owned();
    let pod_ctl = pod_ctl.to_owned();
    std::thread::spawn(move || {
        let req = CtlRequest::Member {
            id,
            request: Box::new(c.request),
        };
        let raw: Vec<i32> = c.fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut conn = match CtlClient::send(&pod_ctl, &req, &raw) {
            Ok(conn) => conn,
            Err(e) => {
                let message = format!("container not running: the pod's monitor: {e}");
                let _ = c.reply.send(CtlReply::Error { message });
                return;
            }
        };
        drop(c.fds);
        while let Ok(Some(r)) = conn.next(None) {
            if c.reply.send(r).is_err() {
                return;
            }
        }
    })
}

/// Reads the member's create connection: `started`, then `exited`, as events.
fn spawn_pod_reader(mut conn: CtlClient, events: Sender<MemberEvent>) {
    std::thread::spawn(move || loop {
        let ev = match conn.next(None) {
            Ok(Some(CtlReply::Started { .. })) => MemberEvent::Started,
            Ok(Some(CtlReply::Exited { status })) => MemberEvent::Exited(status),
            Ok(Some(other)) => {
                log::debug(&format!("pod monitor: {other:?}"));
                continue;
            }
            Ok(None) => MemberEvent::Gone("the pod's monitor closed the connection".into()),
            Err(e) => MemberEvent::Gone(format!("reading from the pod's monitor: {e}")),
        };
        let end = !matches!(ev, MemberEvent::Started);
        if events.send(ev).is_err() || end {
            return;
        }
    });
}

/// The member's stdio for the pod's VM: our own fds, or a terminal whose master goes to the
/// console socket (the slave goes to the pod's monitor).
fn member_stdio(opts: &Options, b: &Bundle) -> Result<Vec<OwnedFd>, MonitorError> {
    let dup = |fd: i32| -> Result<OwnedFd, MonitorError> {
        // SAFETY: fds 0-2 are open for the life of this process (the runtime gave them).
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        borrowed
            .try_clone_to_owned()
            .map_err(MonitorError::sys(format!("dup fd {fd}")))
    };
    if !b.terminal() {
        return Ok(vec![dup(0)?, dup(1)?, dup(2)?]);
    }
    let Some(sock) = &opts.console_socket else {
        return Err(hull_oci::OciError::Invalid {
            path: b.config_path.clone(),
            field: "process.terminal".into(),
            problem: "true, but there is no --console-socket".into(),
        }
        .into());
    };
    let size = b
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.console_size())
        .map(|s| (s.height() as u16, s.width() as u16));
    let pty = tty::open_pty(size)?;
    tty::send_to_console_socket(sock, &pty.master)?;
    Ok(vec![pty.slave])
}

fn member_state(opts: &Options, b: &Bundle, pod: &Pod) -> ContainerState {
    let mut st =
        crate::monitor::container_state(&opts.id, b, &pod.state.accel, Vec::new(), Status::Created);
    // The network namespace and its wiring are the pod's.
    st.netns = None;
    // Its host process is not the VM's: the VM is accounted in the pod's cgroup.
    st.cgroup = None;
    st.sandbox = Some(pod.id.clone());
    st
}
