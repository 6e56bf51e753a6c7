//! `hull exec`: another process in a running container's VM (`hull-runtime exec`). The exit
//! code is the process's; 126/127 when it cannot be executed or found, 125 for hull's own
//! failures.

use std::process::Stdio;

use serde_json::Value;

use super::{Ctx, Status};
use crate::error::{Error, ExecError, Result};
use crate::runtime::Runtime;
use crate::spec;
use crate::tty::{self, ConsoleSocket};
use crate::{rootfs, users};

const EXAMPLES: &str = "\
Examples:
  hull exec web ls /www
  hull exec -it web sh
  hull exec -d -e MODE=bg -w /tmp -u nobody web sleep 60";

/// Run a command in a running container.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ExecArgs {
    /// Run the command in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open (pass it to the command).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=value, or KEY to pass hull's own).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = spec::parse_env)]
    pub env: Vec<String>,
    /// Working directory (absolute).
    #[arg(short, long, value_parser = spec::parse_workdir)]
    pub workdir: Option<String>,
    /// User to run as: user[:group], names or numbers.
    #[arg(short, long, value_parser = spec::parse_user)]
    pub user: Option<String>,
    /// The container (id, id prefix or name), then the command and its arguments.
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        num_args = 2..,
        trailing_var_arg = true
    )]
    pub container_and_command: Vec<String>,
}

pub fn exec(ctx: &Ctx, a: ExecArgs) -> Result<i32> {
    if !a.detach {
        tty::check_interactive_terminal(a.interactive, a.tty).map_err(Error::Invalid)?;
    }
    let name = &a.container_and_command[0];
    let command = &a.container_and_command[1..];
    let c = ctx.containers().find(name)?;
    let rt = ctx.runtime();
    match super::status(&rt, &c) {
        Status::Running { .. } => {}
        Status::Paused { .. } => {
            return Err(Error::Failed(format!("container {name} is paused")));
        }
        _ => return Err(Error::Failed(format!("container {name} is not running"))),
    }

    // The process starts from the container's (env, cwd, user), as runc's exec does.
    let config_path = c.bundle().join("config.json");
    let config: Value = std::fs::read(&config_path)
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .ok_or_else(|| Error::Failed(format!("cannot read {}", config_path.display())))?;
    let base_env: Vec<String> = config["process"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let extra_env = spec::expand_env(a.env.clone(), |k| std::env::var(k).ok());
    let env = spec::merge_env(&[&base_env, &extra_env]);
    let cwd = a
        .workdir
        .clone()
        .or_else(|| config["process"]["cwd"].as_str().map(String::from))
        .unwrap_or_else(|| "/".into());
    let user = match &a.user {
        Some(u) => Some(users::resolve_in_rootfs(&c.rootfs(), u)?),
        None => None,
    };
    let mounts: Vec<String> = config["mounts"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|m| m["destination"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let path_env = env.iter().rev().find_map(|e| e.strip_prefix("PATH="));
    rootfs::check_executable(&c.rootfs(), &command[0], path_env, &cwd, &mounts)?;

    let log = c.dir.join(format!("exec-{}.log", std::process::id()));
    let _remove_log = RemoveOnDrop(log.clone());
    let tty = a.tty && !a.detach;
    let console = if tty {
        Some(ConsoleSocket::new()?)
    } else {
        None
    };
    let mut cmd = rt.command();
    cmd.arg("--log")
        .arg(&log)
        .arg("--log-format")
        .arg("json")
        .arg("exec");
    if let Some(cs) = &console {
        cmd.arg("--tty").arg("--console-socket").arg(cs.path());
    }
    if a.detach {
        cmd.arg("--detach");
    }
    cmd.arg("--cwd").arg(&cwd);
    for e in &extra_env {
        cmd.arg("--env").arg(e);
    }
    if let Some(u) = &user {
        cmd.arg("--user").arg(format!("{}:{}", u.uid, u.gid));
        for g in &u.additional_gids {
            cmd.arg("--additional-gids").arg(g.to_string());
        }
    }
    cmd.arg(c.id()).arg("--").args(command);
    if a.detach {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else if !a.interactive {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd
        .spawn()
        .map_err(|source| crate::runtime::RuntimeError::Spawn {
            bin: rt.bin.clone(),
            source,
        })?;
    let status = match &console {
        Some(cs) => cs
            .receive(&mut child, std::time::Duration::from_secs(120))
            .and_then(|m| {
                tty::relay(m, a.interactive, || {
                    matches!(child.try_wait(), Ok(Some(_)) | Err(_))
                })
            })
            .and_then(|()| child.wait().map_err(tty::TtyError::Relay)),
        None => child.wait().map_err(tty::TtyError::Relay),
    };
    let errors = Runtime::logged_errors(&log);
    if let Some(msg) = errors.last() {
        let _ = child.kill();
        let _ = child.wait();
        let printed = !a.detach;
        return Err(match (ExecError::from_runtime_message(msg), printed) {
            (Some(e), true) => Error::Reported(e.exit_code()),
            (Some(e), false) => Error::Exec(e),
            (None, true) => Error::Reported(125),
            (None, false) => Error::Failed(msg.clone()),
        });
    }
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(125))
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
