//! `kill [--all] ID [SIGNAL]` (default TERM; `KILL`, `SIGKILL` and `9` all work).

use std::time::Duration;

use anyhow::{anyhow, Result};
use hull_monitor::control::CtlRequest;
use hull_state::Status;

use crate::Ctx;

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    pub container_id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to all processes of the container.
    #[arg(short, long)]
    pub all: bool,
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<i32> {
    let signal = crate::signal::parse(&a.signal).map_err(|e| anyhow!(e))?;
    let (sd, st) = super::load(ctx, &a.container_id)?;
    if st.status == Status::Stopped {
        return Err(anyhow!("container not running"));
    }
    super::call(
        &sd,
        &CtlRequest::Kill { signal, all: a.all },
        Duration::from_secs(30),
    )?;
    Ok(0)
}
