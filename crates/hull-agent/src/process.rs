//! Starting a process of the container: everything is prepared in the agent, then the child
//! (created with fork, the agent being multithreaded) enters the namespaces, sets up the root
//! (init) or joins it (exec), switches user and capabilities, and execs. Failures before exec come
//! back on a CLOEXEC status pipe, so the reply to the host says exactly what went wrong.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{ForkResult, Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process, Spec};

use crate::attrs::Attrs;
use crate::caps::CapPlan;
use crate::container::Container;
use crate::error::{Context, Error, Result};
use crate::lookup;
use crate::seccomp::SeccompPlan;
use crate::stdio::{self, ChildStdio, ParentStdio};
use crate::sys;

/// Which process is started.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The container's init: new namespaces and root file system.
    Init,
    /// A process joining the running init's namespaces and root.
    Exec { init_pid: i32 },
}

/// A started process, as the agent keeps it.
pub struct Spawned {
    /// PID in the agent's (the VM's initial) PID namespace.
    pub pid: i32,
    pub started_ns: u64,
    pub stdio: ParentStdio,
}

/// The process's settings, converted before fork.
struct ExecPlan {
    arg0: String,
    argv: Vec<CString>,
    env: Vec<String>,
    cwd: PathBuf,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    umask: Mode,
    rlimits: Vec<(libc::__rlimit_resource_t, u64, u64, String)>,
    no_new_privs: bool,
    caps: Option<CapPlan>,
    oom_score_adj: Option<i32>,
    attrs: Attrs,
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::msg(format!("{what} {s:?} contains a NUL byte")))
}

fn rlimit_resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

impl ExecPlan {
    fn new(spec: &Spec, p: &Process, target: Target) -> Result<Self> {
        let args = p.args().as_deref().unwrap_or_default();
        let arg0 = args
            .first()
            .cloned()
            .ok_or_else(|| Error::msg("process args must not be empty"))?;
        let argv = args
            .iter()
            .map(|a| cstring(a, "argument"))
            .collect::<Result<_>>()?;
        let env = p.env().clone().unwrap_or_default();
        let user = p.user();
        Ok(Self {
            arg0,
            argv,
            env,
            cwd: p.cwd().clone(),
            uid: Uid::from_raw(user.uid()),
            gid: Gid::from_raw(user.gid()),
            groups: user
                .additional_gids()
                .iter()
                .flatten()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            umask: Mode::from_bits_truncate(user.umask().unwrap_or(0o022) as libc::mode_t),
            rlimits: p
                .rlimits()
                .iter()
                .flatten()
                .map(|r| {
                    (
                        rlimit_resource(r.typ()),
                        r.soft(),
                        r.hard(),
                        r.typ().to_string(),
                    )
                })
                .collect(),
            no_new_privs: p.no_new_privileges() == Some(true),
            caps: p.capabilities().as_ref().map(CapPlan::new),
            oom_score_adj: p.oom_score_adj(),
            attrs: Attrs::new(spec, p, matches!(target, Target::Exec { .. }))?,
        })
    }
}

/// The init process's namespaces and root, opened by the agent for an exec'd process.
struct JoinFds {
    ns: Vec<(File, CloneFlags, &'static str)>,
    root: File,
}

fn open_join_fds(c: &Container, init_pid: i32) -> Result<JoinFds> {
    let open = |path: String, flags: i32| {
        OpenOptions::new()
            .read(true)
            .custom_flags(flags | libc::O_CLOEXEC)
            .open(&path)
            .ctx(|| format!("container not running: opening {path}"))
    };
    let mut ns = Vec::new();
    for (flag, name) in &c.ns.join {
        ns.push((
            open(format!("/proc/{init_pid}/ns/{name}"), 0)?,
            *flag,
            *name,
        ));
    }
    let root = open(
        format!("/proc/{init_pid}/root"),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    Ok(JoinFds { ns, root })
}

/// The pod's namespaces a later container of a pod joins (from its first container's init).
fn open_pod_fds(c: &Container) -> Result<Vec<(File, CloneFlags, &'static str)>> {
    if c.ns.pod.is_empty() {
        return Ok(Vec::new());
    }
    let pid = c
        .pod_init_pid
        .ok_or_else(|| Error::msg("the pod's first container is not running"))?;
    c.ns.pod
        .iter()
        .map(|(flag, name)| {
            let path = format!("/proc/{pid}/ns/{name}");
            let f = File::open(&path).ctx(|| format!("the pod's {name} namespace: {path}"))?;
            Ok((f, *flag, *name))
        })
        .collect()
}

/// Messages on the status pipe: a tag byte, a little-endian u32 length, the payload.
const MSG_PID: u8 = b'P';
const MSG_ERROR: u8 = b'E';
/// The init is set up and waits for the go to exec (see [`prepare_init`]).
const MSG_READY: u8 = b'R';

fn send_status(fd: BorrowedFd<'_>, tag: u8, payload: &[u8]) {
    let mut msg = Vec::with_capacity(5 + payload.len());
    msg.push(tag);
    msg.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    msg.extend_from_slice(payload);
    let mut rest = &msg[..];
    while !rest.is_empty() {
        match nix::unistd::write(fd, rest) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// What the children reported: the PID of the grandchild (PID namespace), readiness, an error.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status {
    pid: Option<i32>,
    ready: bool,
    error: Option<String>,
}

fn parse_status(mut buf: &[u8]) -> Status {
    let mut st = Status::default();
    while buf.len() >= 5 {
        let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        let Some(payload) = buf.get(5..5 + len) else {
            break;
        };
        match buf[0] {
            MSG_PID if len == 4 => {
                st.pid = Some(i32::from_le_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            }
            MSG_ERROR => st.error = Some(String::from_utf8_lossy(payload).into_owned()),
            MSG_READY => st.ready = true,
            _ => {}
        }
        buf = &buf[5 + len..];
    }
    st
}

/// The container's init, set up in its namespaces and root (createContainer hooks done), waiting
/// for [`start_init`] to exec the user's process: `create` does the work, `start` only releases it.
pub struct PreparedInit {
    pid: i32,
    go: OwnedFd,
    status: File,
    stdio: stdio::PendingStdio,
}

impl PreparedInit {
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// A forked child and the agent's ends of its pipes.
struct Forked {
    child: nix::unistd::Pid,
    status: File,
    stdio: stdio::PendingStdio,
}

fn fork_child(
    c: &Container,
    target: Target,
    process: &Process,
    stdin: bool,
    go: Option<OwnedFd>,
) -> Result<Forked> {
    let plan = ExecPlan::new(&c.spec, process, target)?;
    let size = process
        .console_size()
        .map(|b| (b.height() as u16, b.width() as u16));
    let (parent_io, child_io) = stdio::make(process.terminal() == Some(true), stdin, size)?;
    let join = match target {
        Target::Init => None,
        Target::Exec { init_pid } => Some(open_join_fds(c, init_pid)?),
    };
    let pod = match target {
        Target::Init => open_pod_fds(c)?,
        Target::Exec { .. } => Vec::new(),
    };
    let (status_r, status_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;

    // SAFETY: the agent is multithreaded, so the child may only do what is safe after fork. It
    // runs `child_main` alone: plain system calls plus allocation (glibc's fork makes malloc
    // usable in the child); it never touches the agent's locks (state, channel writer), and it
    // ends in execve or _exit, never returning here.
    match unsafe { nix::unistd::fork() }.ctx(|| "fork".into())? {
        ForkResult::Child => {
            drop(status_r);
            let ctx = ChildCtx {
                c,
                target,
                plan: &plan,
                stdio: &child_io,
                join: join.as_ref(),
                pod: &pod,
                status: status_w.as_fd(),
                go: go.as_ref().map(|g| g.as_fd()),
            };
            child_main(&ctx)
        }
        ForkResult::Parent { child } => {
            drop((status_w, child_io, join, go, pod));
            Ok(Forked {
                child,
                status: File::from(status_r),
                stdio: parent_io,
            })
        }
    }
}

/// The process's PID in the agent's namespace: the grandchild's when it went into a new PID
/// namespace.
fn process_pid(c: &Container, forked: &Forked, st: &Status) -> Result<i32> {
    if c.ns.forks() {
        st.pid
            .ok_or_else(|| Error::msg("the process died before it was started"))
    } else {
        Ok(forked.child.as_raw())
    }
}

/// Starts `process` in container `c`; returns once it has exec'd, or with the child's error.
pub fn spawn(c: &Container, target: Target, process: &Process, stdin: bool) -> Result<Spawned> {
    let mut forked = fork_child(c, target, process, stdin, None)?;
    let mut buf = Vec::new();
    forked
        .status
        .read_to_end(&mut buf)
        .ctx(|| "reading the child's status".into())?;
    let started_ns = sys::boottime_ns();
    let st = parse_status(&buf);
    if let Some(e) = st.error {
        return Err(Error::Msg(e));
    }
    let pid = process_pid(c, &forked, &st)?;
    Ok(Spawned {
        pid,
        started_ns,
        stdio: forked.stdio.finish()?,
    })
}

/// Forks the container's init and sets it up up to the exec, which waits for [`start_init`].
pub fn prepare_init(c: &Container, process: &Process, stdin: bool) -> Result<PreparedInit> {
    let (go_r, go_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "creating a pipe".into())?;
    let mut forked = fork_child(c, Target::Init, process, stdin, Some(go_r))?;
    let mut buf = Vec::new();
    let st = loop {
        let st = parse_status(&buf);
        if st.error.is_some() || (st.ready && (st.pid.is_some() || !c.ns.forks())) {
            break st;
        }
        let mut chunk = [0u8; 512];
        match forked.status.read(&mut chunk) {
            Ok(0) => break st,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::msg(format!("reading the init's status: {e}"))),
        }
    };
    if let Some(e) = st.error {
        return Err(Error::Msg(e));
    }
    if !st.ready {
        return Err(Error::msg(
            "the container's init died while it was being set up",
        ));
    }
    let pid = process_pid(c, &forked, &st)?;
    Ok(PreparedInit {
        pid,
        go: go_w,
        status: forked.status,
        stdio: forked.stdio,
    })
}

/// Lets a prepared init run its startContainer hooks and exec; returns once it has exec'd.
pub fn start_init(p: PreparedInit) -> Result<Spawned> {
    let PreparedInit {
        pid,
        go,
        mut status,
        stdio,
    } = p;
    nix::unistd::write(&go, b"g").map_err(|e| {
        Error::msg(format!(
            "the container's init is gone before its start: {}",
            e.desc()
        ))
    })?;
    drop(go);
    let mut buf = Vec::new();
    status
        .read_to_end(&mut buf)
        .ctx(|| "reading the init's status".into())?;
    let started_ns = sys::boottime_ns();
    if let Some(e) = parse_status(&buf).error {
        return Err(Error::Msg(e));
    }
    // Nothing on the pipe: exec'd, or died (its exit was kept while spawning and follows).
    Ok(Spawned {
        pid,
        started_ns,
        stdio: stdio.finish()?,
    })
}

struct ChildCtx<'a> {
    c: &'a Container,
    target: Target,
    plan: &'a ExecPlan,
    stdio: &'a ChildStdio,
    join: Option<&'a JoinFds>,
    /// A pod member's init: the pod's namespaces to join before unsharing the rest.
    pod: &'a [(File, CloneFlags, &'static str)],
    status: BorrowedFd<'a>,
    /// Init prepared at create: wait for a byte here before the exec.
    go: Option<BorrowedFd<'a>>,
}

fn child_main(ctx: &ChildCtx<'_>) -> ! {
    let e = match child_setup(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    send_status(ctx.status, MSG_ERROR, e.to_string().as_bytes());
    sys::exit_now(1)
}

fn child_setup(ctx: &ChildCtx<'_>) -> Result<Infallible> {
    sys::reset_signals_for_exec().ctx(|| "resetting the signal mask".into())?;
    if let Some(adj) = ctx.plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("setting oom_score_adj to {adj}"))?;
    }
    debug!("child: forked");
    ctx.plan.attrs.apply_initial()?;
    // In a user namespace, raising a hard limit would need CAP_SYS_RESOURCE in the initial one.
    let early_rlimits = ctx.c.ns.has_user();
    if early_rlimits {
        set_rlimits(ctx.plan)?;
    }
    // Before the namespaces: a new cgroup namespace is rooted at the container's cgroup.
    ctx.c.cgroup.enter()?;
    enter_namespaces(ctx)?;
    if ctx.c.ns.forks() {
        // Only children enter the new (or joined) PID and time namespaces.
        // SAFETY: this process is single-threaded (a fork child), so fork has no caveats here.
        match unsafe { nix::unistd::fork() }.ctx(|| "fork into the PID namespace".into())? {
            ForkResult::Child => {}
            ForkResult::Parent { child } => {
                send_status(ctx.status, MSG_PID, &child.as_raw().to_le_bytes());
                sys::exit_now(0)
            }
        }
    }
    debug!("child: in namespaces");
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    ctx.stdio.install_pipes()?;
    match (ctx.target, ctx.join) {
        (Target::Init, _) => crate::container::setup_rootfs(ctx.c, |root| {
            let hooks = ctx.c.spec.hooks().as_ref();
            let list = hooks.and_then(|h| h.create_container().clone());
            let state = crate::hooks::state_json(ctx.c, "creating");
            crate::hooks::run(
                "createContainer",
                &list.unwrap_or_default(),
                &state,
                Some(root),
            )
        })?,
        (Target::Exec { .. }, Some(j)) => {
            nix::unistd::fchdir(&j.root).ctx(|| "entering the container's root".into())?;
            nix::unistd::chroot(".").ctx(|| "chroot to the container's root".into())?;
        }
        (Target::Exec { .. }, None) => {
            return Err(Error::msg("exec without the container's namespaces"))
        }
    }
    // Like runc: the pty comes from the container's devpts, so the process sees /dev/pts/N.
    let slave = ctx.stdio.install_pty()?;
    if let (Target::Init, Some(slave)) = (ctx.target, slave) {
        crate::container::mount_console(ctx.c, &slave)?;
    }
    debug!("child: root ready");
    if let Some(go) = ctx.go {
        send_status(ctx.status, MSG_READY, &[]);
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(go, &mut byte) {
                Ok(1) => break,
                Err(nix::errno::Errno::EINTR) => {}
                // The agent dropped the prepared init: never start.
                _ => sys::exit_now(1),
            }
        }
        let hooks = ctx.c.spec.hooks().as_ref();
        let list = hooks.and_then(|h| h.start_container().clone());
        let state = crate::hooks::state_json(ctx.c, "created");
        crate::hooks::run("startContainer", &list.unwrap_or_default(), &state, None)?;
    }
    finalize(ctx.plan, ctx.c.seccomp.as_ref(), early_rlimits)
}

/// Creates (init) or joins (exec) the container's namespaces: a user namespace first, so it
/// owns the others; a time namespace gets its offsets before anything enters it.
fn enter_namespaces(ctx: &ChildCtx<'_>) -> Result<()> {
    let ns = &ctx.c.ns;
    match ctx.join {
        None => {
            for (fd, flag, name) in ctx.pod {
                nix::sched::setns(fd, *flag)
                    .ctx(|| format!("joining the pod's {name} namespace"))?;
                if *flag == CloneFlags::CLONE_NEWUSER {
                    crate::userns::become_root()?;
                }
            }
            if let Some(maps) = &ns.user {
                maps.enter_new()?;
            }
            nix::sched::unshare(ns.unshare).ctx(|| "creating namespaces".into())?;
            if let Some(offsets) = &ns.time_offsets {
                crate::userns::write_time_offsets(offsets)?;
            }
        }
        Some(j) => {
            for (fd, flag, name) in &j.ns {
                nix::sched::setns(fd, *flag)
                    .ctx(|| format!("joining the container's {name} namespace"))?;
                if *flag == CloneFlags::CLONE_NEWUSER {
                    match &ns.user {
                        Some(maps) => maps.become_root()?,
                        None => crate::userns::become_root()?,
                    }
                }
            }
        }
    }
    Ok(())
}

fn set_rlimits(p: &ExecPlan) -> Result<()> {
    for (res, soft, hard, name) in &p.rlimits {
        sys::setrlimit(*res, *soft, *hard).ctx(|| format!("setting {name}"))?;
    }
    Ok(())
}

/// The last steps, in the container's root: limits, user, capabilities, cwd, seccomp, exec.
///
/// Seccomp: with no_new_privs the filters go on right before execve. Without it the kernel
/// requires CAP_SYS_ADMIN to install them, so (like runc) they go on before the user and
/// capabilities change; the few calls after that (setgroups, setuid, capset, chdir, looking up
/// the executable, execve) must then be allowed by the profile, as runc requires too.
fn finalize(p: &ExecPlan, seccomp: Option<&SeccompPlan>, rlimits_set: bool) -> Result<Infallible> {
    if !rlimits_set {
        set_rlimits(p)?;
    }
    p.attrs.apply()?;
    if let Some(bounding) = p.caps.and_then(|c| c.bounding) {
        for cap in (0..64).take_while(|c| sys::cap_exists(*c)) {
            if bounding & (1 << cap) == 0 {
                sys::capbset_drop(cap)
                    .ctx(|| format!("dropping capability {cap} from the bounding set"))?;
            }
        }
    }
    // As root first (a directory only root may enter); again as the user if that failed.
    let early_cwd = nix::unistd::chdir(&p.cwd);
    if let (Some(s), false) = (seccomp, p.no_new_privs) {
        s.install()?;
    }
    if p.caps.is_some() {
        sys::set_keepcaps(true).ctx(|| "PR_SET_KEEPCAPS".into())?;
    }
    nix::unistd::setgroups(&p.groups).ctx(|| format!("setgroups to {:?}", p.groups))?;
    nix::unistd::setgid(p.gid).ctx(|| format!("setgid to {}", p.gid))?;
    nix::unistd::setuid(p.uid).ctx(|| format!("setuid to {}", p.uid))?;
    if let Some(caps) = p.caps {
        sys::set_keepcaps(false).ctx(|| "PR_SET_KEEPCAPS".into())?;
        sys::capset(caps.effective, caps.permitted, caps.inheritable)
            .ctx(|| "setting capabilities".into())?;
        // Like runc: an ambient capability that is not also inheritable cannot be raised (the
        // default `runc spec` asks for that); warn, don't fail.
        for cap in (0..64).filter(|c| caps.ambient & (1 << c) != 0) {
            if let Err(e) = sys::cap_ambient_raise(cap) {
                debug!("cannot raise ambient capability {cap}: {}", e.desc());
            }
        }
    }
    nix::sys::stat::umask(p.umask);
    if early_cwd.is_err() {
        nix::unistd::chdir(&p.cwd).map_err(|e| {
            Error::msg(format!(
                "chdir to cwd (\"{}\") set in config.json failed: {}",
                p.cwd.display(),
                e.desc()
            ))
        })?;
    }
    let mut env = p.env.clone();
    if lookup::env_get(&env, "HOME").is_none() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = lookup::passwd_home(&passwd, p.uid.as_raw()).unwrap_or_else(|| "/".into());
        env.push(format!("HOME={home}"));
    }
    let path = lookup::look_path(
        &p.arg0,
        lookup::env_get(&env, "PATH"),
        lookup::check_executable,
    )
    .map_err(Error::Msg)?;
    let envp = env
        .iter()
        .map(|e| cstring(e, "environment variable"))
        .collect::<Result<Vec<_>>>()?;
    let path_c = cstring(&path.to_string_lossy(), "executable path")?;
    if p.no_new_privs {
        nix::sys::prctl::set_no_new_privs().ctx(|| "PR_SET_NO_NEW_PRIVS".into())?;
    }
    p.attrs.apply_final()?;
    debug!("child: exec {}", Path::new(&path).display());
    if let (Some(s), true) = (seccomp, p.no_new_privs) {
        s.install()?;
    }
    let e = match nix::unistd::execve(&path_c, &p.argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(Error::msg(format!(
        "exec {}: {}",
        Path::new(&path).display(),
        e.desc()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn status_pipe_messages() {
        assert_eq!(parse_status(&[]), Status::default());
        let mut buf = msg(MSG_PID, &1234i32.to_le_bytes());
        assert_eq!(
            parse_status(&buf),
            Status {
                pid: Some(1234),
                ready: false,
                error: None
            }
        );
        buf.extend(msg(MSG_READY, &[]));
        assert!(parse_status(&buf).ready);
        buf.extend(msg(
            MSG_ERROR,
            b"exec: \"foo\": executable file not found in $PATH",
        ));
        let st = parse_status(&buf);
        assert_eq!(st.pid, Some(1234));
        assert_eq!(
            st.error.as_deref(),
            Some("exec: \"foo\": executable file not found in $PATH")
        );
        // A truncated message is ignored, not misread.
        assert_eq!(
            parse_status(&msg(MSG_ERROR, b"abc")[..6]),
            Status::default()
        );
    }

    #[test]
    fn exec_plan_from_process() {
        let p: Process = serde_json::from_str(
            r#"{"user":{"uid":1000,"gid":100,"additionalGids":[5,6]},"args":["sh","-c","x"],
                "env":["PATH=/bin"],"cwd":"/tmp","noNewPrivileges":true,
                "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":512}]}"#,
        )
        .unwrap();
        let spec = Spec::default();
        let plan = ExecPlan::new(&spec, &p, Target::Init).unwrap();
        assert_eq!(plan.arg0, "sh");
        assert_eq!(plan.argv.len(), 3);
        assert_eq!((plan.uid.as_raw(), plan.gid.as_raw()), (1000, 100));
        assert_eq!(plan.groups, vec![Gid::from_raw(5), Gid::from_raw(6)]);
        assert_eq!(plan.umask.bits(), 0o022);
        assert_eq!(
            plan.rlimits,
            vec![(libc::RLIMIT_NOFILE, 512, 1024, "RLIMIT_NOFILE".into())]
        );
        assert!(plan.no_new_privs && plan.caps.is_none());
        let empty: Process =
            serde_json::from_str(r#"{"user":{"uid":0,"gid":0},"args":[],"cwd":"/"}"#).unwrap();
        assert!(ExecPlan::new(&spec, &empty, Target::Init).is_err());
    }
}
