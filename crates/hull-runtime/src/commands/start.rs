//! `start`: tell the monitor to start the container's process. Waits (with a deadline) for a
//! `create` still in flight.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hull_monitor::control::CtlRequest;
use hull_state::{StateDir, StateError, Status};
use oci_spec::runtime::Hooks;

use crate::Ctx;

const CREATE_WAIT: Duration = Duration::from_secs(120);
/// Deadline for the monitor's answer to start, before the guest's startContainer hooks.
const START_WAIT: Duration = Duration::from_secs(60);

pub fn start(ctx: &Ctx, a: liboci_cli::Start) -> Result<i32> {
    start_container(ctx, &a.container_id)
}

/// `start` proper (also the second half of `run --detach`).
pub fn start_container(ctx: &Ctx, id: &str) -> Result<i32> {
    let sd = StateDir::new(&ctx.root, id)?;
    let deadline = Instant::now() + CREATE_WAIT;
    let st = loop {
        match super::load(ctx, id) {
            Ok((_, st)) => break st,
            // The directory exists but state.json does not yet: create is still booting.
            Err(e)
                if sd.exists()
                    && matches!(
                        e.downcast_ref::<StateError>(),
                        Some(StateError::NotFound(_))
                    ) =>
            {
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "container {id:?} is still being created after {CREATE_WAIT:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    match st.status {
        Status::Created => {}
        Status::Stopped => return Err(anyhow!("cannot start a container that has stopped")),
        _ => return Err(anyhow!("cannot start an already running container")),
    }
    // The guest runs the startContainer hooks before the process: their time comes on top.
    let hooks = hull_oci::read_spec(&st.bundle.join("config.json"))
        .map(|spec| hull_oci::hooks::timeout_of(&spec, Hooks::start_container))
        .unwrap_or_default();
    let deadline = START_WAIT + hooks;
    super::call(&sd, &CtlRequest::Start, deadline)?;
    Ok(0)
}
