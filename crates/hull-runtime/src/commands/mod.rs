//! One file per runc command.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hull_monitor::control::{self, CtlReply, CtlRequest};
use hull_state::{ContainerState, StateDir, Status};

use crate::Ctx;

/// An error that carries its own exit code (e.g. the monitor's classification).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodedError {
    pub code: i32,
    pub message: String,
}

/// `--preserve-fds N`: the host's open files cannot follow the process into its VM, so N > 0 is
/// refused (a configuration error) rather than silently dropped.
pub fn refuse_preserved_fds(n: i32) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    Err(CodedError {
        code: 3,
        message: format!(
            "--preserve-fds {n}: open files of the host cannot be passed to a process in the \
             container's VM"
        ),
    }
    .into())
}

/// Exit code for an error: its own code if it has one, else 1 like runc.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<CodedError>().map(|c| c.code).unwrap_or(1)
}

/// The `hull-monitor` binary: `HULL_MONITOR`, else next to this executable, else on PATH.
pub fn monitor_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HULL_MONITOR") {
        return p.into();
    }
    if let Ok(exe) = std::env::current_exe() {
        let p = exe.with_file_name("hull-monitor");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("hull-monitor")
}

/// `hull-monitor container …` with the options common to run and create.
pub fn monitor_command(
    ctx: &Ctx,
    id: &str,
    bundle: &std::path::Path,
    pid_file: Option<&std::path::Path>,
    console_socket: Option<&std::path::Path>,
) -> Result<Command> {
    let bundle =
        std::fs::canonicalize(bundle).with_context(|| format!("bundle {}", bundle.display()))?;
    let mut cmd = Command::new(monitor_binary());
    cmd.arg0("hull-monitor");
    cmd.arg("container")
        .arg("--root")
        .arg(&ctx.root)
        .arg("--id")
        .arg(id)
        .arg("--bundle")
        .arg(bundle);
    if let Some(p) = pid_file {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        };
        cmd.arg("--pid-file").arg(p);
    }
    if let Some(s) = console_socket {
        cmd.arg("--console-socket").arg(s);
    }
    if let Some(a) = &ctx.accel {
        cmd.arg("--accel").arg(a);
    }
    if let Some(l) = &ctx.global.log {
        cmd.arg("--log").arg(l);
    }
    if let Some(f) = &ctx.global.log_format {
        cmd.arg("--log-format").arg(f);
    }
    if ctx.global.debug {
        cmd.arg("--debug");
    }
    Ok(cmd)
}

pub use hull_state::process_alive as pid_alive;

/// Loads a container's state; a monitor that died without recording an exit means stopped.
pub fn load(ctx: &Ctx, id: &str) -> Result<(StateDir, ContainerState)> {
    let sd = StateDir::new(&ctx.root, id)?;
    let mut st = sd.load()?;
    if st.status != Status::Stopped && !pid_alive(st.monitor_pid) {
        st.status = Status::Stopped;
        st.pid = 0;
    }
    Ok((sd, st))
}

/// Sends a control request to a container's monitor.
pub fn call(sd: &StateDir, req: &CtlRequest, timeout: Duration) -> Result<CtlReply> {
    let ctl = sd.short("ctl.sock")?;
    let reply = control::call(&ctl.path, req, timeout).map_err(|e| {
        anyhow!(
            "container {:?} is not reachable ({e}): container not running",
            sd.id
        )
    })?;
    match reply {
        CtlReply::Error { message } => Err(anyhow!(message)),
        other => Ok(other),
    }
}
