//! `run`: create + start in the foreground. The process becomes the monitor (exec), so its PID,
//! stdio and signals are the container's, and its exit code is the container process's.
//! `run --detach` is `create` then `start`, returning once the container runs (like runc).

use std::os::unix::process::CommandExt;

use anyhow::{anyhow, Result};

use crate::Ctx;

pub fn run(ctx: &Ctx, a: liboci_cli::Run) -> Result<i32> {
    hull_state::validate_id(&a.container_id)?;
    super::refuse_preserved_fds(a.preserve_fds)?;
    if a.detach {
        super::create::create_container(
            ctx,
            &a.container_id,
            &a.bundle,
            a.pid_file.as_deref(),
            a.console_socket.as_deref(),
        )?;
        if let Err(e) = super::start::start_container(ctx, &a.container_id) {
            // Leave nothing behind, as a failed `run` would.
            let _ = super::delete::force_delete(ctx, &a.container_id);
            return Err(e);
        }
        return Ok(0);
    }
    let mut cmd = super::monitor_command(
        ctx,
        &a.container_id,
        &a.bundle,
        a.pid_file.as_deref(),
        a.console_socket.as_deref(),
    )?;
    let err = cmd.exec();
    Err(anyhow!(
        "cannot execute {}: {err}",
        super::monitor_binary().display()
    ))
}
