//! `pause` / `resume`: stop and continue the VM's vCPUs (QMP `stop`/`cont`).

use std::time::Duration;

use anyhow::{anyhow, Result};
use hull_monitor::control::CtlRequest;
use hull_state::Status;

use crate::Ctx;

fn pause_or_resume(ctx: &Ctx, id: &str, req: CtlRequest) -> Result<i32> {
    let (sd, st) = super::load(ctx, id)?;
    if st.status != Status::Running {
        return Err(anyhow!("container not running"));
    }
    super::call(&sd, &req, Duration::from_secs(10))?;
    Ok(0)
}

pub fn pause(ctx: &Ctx, a: liboci_cli::Pause) -> Result<i32> {
    pause_or_resume(ctx, &a.container_id, CtlRequest::Pause)
}

pub fn resume(ctx: &Ctx, a: liboci_cli::Resume) -> Result<i32> {
    pause_or_resume(ctx, &a.container_id, CtlRequest::Resume)
}
