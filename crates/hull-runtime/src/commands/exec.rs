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
use oci_spec::runtime::Process;

use crate::Ctx;

pub fn exec(ctx: &Ctx, a: liboci_cli::Exec) -> Result<i32> {
    super::refuse_preserved_fds(a.preserve_fds)?;
    let (sd, st) = super::load(ctx, &a.container_id)?;
    if st.status != Status::Running {
        return Err(anyhow!(
            "cannot exec in a stopped or not yet started container: container not running"
        ));
    }
    let process = build_process(&a, &st.bundle)?;
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

/// The process to run: `--process FILE`, or the container's process with the command line
/// and flags applied (runc's behaviour).
fn build_process(a: &liboci_cli::Exec, bundle: &Path) -> Result<Process> {
    if let Some(p) = &a.process {
        let text =
            std::fs::read(p).with_context(|| format!("read process file {}", p.display()))?;
        return serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a valid OCI process", p.display()));
    }
    if a.command.is_empty() {
        return Err(anyhow!("exec needs a command (or --process)"));
    }
    let spec = hull_oci::read_spec(&bundle.join("config.json"))?;
    let mut p = spec.process().clone().unwrap_or_default();
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
    Ok(p)
}
