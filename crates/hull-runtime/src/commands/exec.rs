//! `exec`: another process in the container's VM. This process (or, with --detach, a child it
//! forks) is the exec's host process: the pid-file PID, alive as long as the exec'd process and
//! exiting with its status. Its stdio fds (or a terminal's slave) go to the monitor over the
//! control socket (SCM_RIGHTS), which relays them.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hull_monitor::control::{CtlClient, CtlReply, CtlRequest};
use hull_monitor::tty;
use hull_state::Status;
use oci_spec::runtime::{Capabilities, Capability, ExecCPUAffinityBuilder, Process};

use super::CodedError;
use crate::Ctx;

/// runc's `exec` flags, and `--cpu-affinity`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// CPUs the process runs on once it is in the container (a list such as `0-1,3`): its
    /// `execCPUAffinity.final`, overriding the process file's and config.json's
    #[arg(long = "cpu-affinity", value_name = "CPUS")]
    pub cpu_affinity: Option<String>,
    #[command(flatten)]
    pub base: liboci_cli::Exec,
}

pub fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32> {
    let a = &args.base;
    super::refuse_preserved_fds(a.preserve_fds)?;
    refuse_sub_cgroup(a)?;
    let (sd, st) = super::load(ctx, &a.container_id)?;
    match st.status {
        Status::Running if st.paused => {
            return Err(anyhow!(
                "cannot exec in a paused container{}: its VM's vCPUs are stopped, resume it \
                 first",
                if a.ignore_paused {
                    " (--ignore-paused cannot apply: nothing runs in a paused VM to start it)"
                } else {
                    ""
                }
            ))
        }
        Status::Running => {}
        _ => {
            return Err(anyhow!(
                "cannot exec in a stopped or not yet started container: container not running"
            ))
        }
    }
    let process = build_process(a, &st.bundle, args.cpu_affinity.as_deref())?;
    let terminal = process.terminal().unwrap_or(false);

    // A terminal: a pty pair, master to the engine, slave to the monitor.
    let pty = if terminal {
        let sock = a
            .console_socket
            .as_ref()
            .ok_or_else(|| anyhow!("process.terminal is set: --console-socket is required"))?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = tty::open_pty(size)?;
        tty::send_to_console_socket(sock, &pty.master)?;
        Some(pty)
    } else {
        None
    };
    let ctl = sd.short("ctl.sock")?;
    let fds: Vec<i32> = match &pty {
        Some(p) => vec![p.slave.as_raw_fd()],
        None => vec![0, 1, 2],
    };
    let mut client = CtlClient::send(
        &ctl.path,
        &CtlRequest::Exec {
            process: Box::new(process),
        },
        &fds,
    )
    .map_err(|e| {
        anyhow!(
            "container {:?} is not reachable ({e}): container not running",
            a.container_id
        )
    })?;
    let exec_id = match client.next(Some(Duration::from_secs(60)))? {
        Some(CtlReply::Started { exec_id, .. }) => exec_id,
        Some(CtlReply::Error { message }) => return Err(anyhow!("exec failed: {message}")),
        other => return Err(anyhow!("exec failed: unexpected answer {other:?}")),
    };
    let slave = pty.map(|p| p.slave);

    if a.detach {
        // SAFETY: this process is single-threaded; the child only calls async-signal-safe
        // functions and plain Rust on its own copies before waiting.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Parent { child } => {
                if let Some(p) = &a.pid_file {
                    hull_monitor::sys::write_pid_file(p, child.as_raw())?;
                }
                return Ok(0);
            }
            nix::unistd::ForkResult::Child => {
                let _ = nix::unistd::setsid();
                hull_monitor::sys::close_stdio();
                std::process::exit(wait_exit(&ctl.path, &mut client, exec_id, slave.as_ref()));
            }
        }
    }
    if let Some(p) = &a.pid_file {
        hull_monitor::sys::write_pid_file(p, std::process::id() as i32)?;
    }
    Ok(wait_exit(&ctl.path, &mut client, exec_id, slave.as_ref()))
}

/// Waits for the exec'd process's exit status, passing window-size changes on.
fn wait_exit(
    ctl: &Path,
    client: &mut CtlClient,
    exec_id: u32,
    tty: Option<&std::os::fd::OwnedFd>,
) -> i32 {
    let mut last = None;
    loop {
        if let Some(t) = tty {
            let now = tty::window_size(t);
            if let (Some((rows, cols)), true) = (now, now != last) {
                last = now;
                let _ = hull_monitor::control::call(
                    ctl,
                    &CtlRequest::Resize {
                        exec_id,
                        rows,
                        cols,
                    },
                    Duration::from_secs(5),
                );
            }
        }
        let timeout = tty.map(|_| Duration::from_millis(200));
        match client.next(timeout) {
            Ok(Some(CtlReply::Exited { status })) => return status,
            Ok(Some(_)) => {}
            // The VM went away with the process in it: it was killed.
            Ok(None) => return 128 + libc::SIGKILL,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return 128 + libc::SIGKILL,
        }
    }
}

/// `--cgroup` (exec into a sub-cgroup of the container's) is refused, never ignored: the
/// container's cgroups are in its VM and the agent puts an exec'd process in the container's own.
fn refuse_sub_cgroup(a: &liboci_cli::Exec) -> Result<()> {
    match &a.cgroup {
        None => Ok(()),
        Some(c) => Err(CodedError {
            code: 3,
            message: format!(
                "--cgroup {c}: an exec'd process joins the container's cgroup in its VM; \
                 sub-cgroups are not supported"
            ),
        }
        .into()),
    }
}

/// The process to run: `--process FILE`, or the container's process with the command line
/// and flags applied (runc's behaviour). A process without its own `execCPUAffinity` gets
/// config.json's (as crun does); `--cpu-affinity` overrides both.
fn build_process(
    a: &liboci_cli::Exec,
    bundle: &Path,
    cpu_affinity: Option<&str>,
) -> Result<Process> {
    let spec = hull_oci::read_spec(&bundle.join("config.json"))?;
    let mut p = match &a.process {
        Some(file) => read_process_file(file)?,
        None => from_flags(a, spec.process().clone().unwrap_or_default())?,
    };
    let config_affinity = spec
        .process()
        .as_ref()
        .and_then(|c| c.exec_cpu_affinity().clone());
    if p.exec_cpu_affinity().is_none() {
        p.set_exec_cpu_affinity(config_affinity);
    }
    if let Some(cpus) = cpu_affinity {
        let aff = ExecCPUAffinityBuilder::default()
            .cpu_affinity_final(cpus)
            .build()
            .map_err(|e| CodedError {
                code: 3,
                message: format!("--cpu-affinity {cpus:?}: {e}"),
            })?;
        p.set_exec_cpu_affinity(Some(aff));
    }
    Ok(p)
}

fn read_process_file(file: &Path) -> Result<Process> {
    let text =
        std::fs::read(file).with_context(|| format!("read process file {}", file.display()))?;
    serde_json::from_slice(&text).map_err(|e| {
        CodedError {
            code: 3,
            message: format!("{}: not a valid OCI process: {e}", file.display()),
        }
        .into()
    })
}

/// The container's process with runc's exec flags applied.
fn from_flags(a: &liboci_cli::Exec, mut p: Process) -> Result<Process> {
    if a.command.is_empty() {
        return Err(anyhow!("exec needs a command (or --process)"));
    }
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(a.env.iter().map(|(k, v)| format!("{k}={v}")));
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = a.user {
        let mut u = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid.unwrap_or(0));
        p.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    add_caps(&mut p, &a.cap)?;
    Ok(p)
}

/// runc's `exec --cap`: each capability joins the bounding, effective and permitted sets (and
/// the ambient one when the process has inheritable capabilities).
fn add_caps(p: &mut Process, caps: &[String]) -> Result<()> {
    if caps.is_empty() {
        return Ok(());
    }
    let mut set = p.capabilities().clone().unwrap_or_default();
    for name in caps {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        // The spec's spelling (`CAP_SYS_TIME`) is the enum's serde name.
        let cap: Capability = serde_json::from_value(full.into()).map_err(|_| CodedError {
            code: 3,
            message: format!("--cap {name}: not a capability"),
        })?;
        let add = |s: &Option<Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.insert(cap);
            Some(s)
        };
        set.set_bounding(add(set.bounding()));
        set.set_effective(add(set.effective()));
        set.set_permitted(add(set.permitted()));
        if set.inheritable().as_ref().is_some_and(|i| !i.is_empty()) {
            set.set_ambient(add(set.ambient()));
        }
    }
    p.set_capabilities(Some(set));
    Ok(())
}
