//! `delete [--force] ID`: remove every trace of a stopped container; with --force, kill first.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hull_monitor::control::CtlRequest;
use hull_state::{StateDir, StateError, Status};

use crate::Ctx;

const STOP_WAIT: Duration = Duration::from_secs(10);

pub fn delete(ctx: &Ctx, a: liboci_cli::Delete) -> Result<i32> {
    delete_container(ctx, &a.container_id, a.force)
}

/// Removes the tc redirects and taps that a monitor which did not end normally (SIGKILL) left
/// in the engine's network namespace; a monitor that ended normally left none.
fn cleanup_network(st: &hull_state::ContainerState) {
    let Some(netns) = &st.netns else { return };
    if st.net_interfaces.is_empty() || super::pid_alive(st.monitor_pid) {
        return;
    }
    if let Err(e) = hull_net::host::cleanup_netns(netns, &st.net_interfaces) {
        hull_monitor::log::write("warning", &format!("cleaning up {}: {e}", netns.display()));
    }
}

/// `delete --force`: used to undo a half-done `run --detach`.
pub fn force_delete(ctx: &Ctx, id: &str) -> Result<i32> {
    delete_container(ctx, id, true)
}

fn delete_container(ctx: &Ctx, container_id: &str, force: bool) -> Result<i32> {
    let sd = StateDir::new(&ctx.root, container_id)?;
    let st = match super::load(ctx, container_id) {
        Ok((_, st)) => Some(st),
        Err(e) => match e.downcast_ref::<StateError>() {
            Some(StateError::NotFound(_)) if force => None,
            _ => return Err(e),
        },
    };
    let _lock = if sd.exists() { Some(sd.lock()?) } else { None };
    if let Some(st) = &st {
        if st.status != Status::Stopped {
            // Like runc: a created container (nothing runs yet) is deleted without --force.
            if !force && st.status != Status::Created {
                return Err(anyhow!(
                    "cannot delete container {} that is not stopped: {}",
                    container_id,
                    serde_json::to_value(st.status)?
                        .as_str()
                        .unwrap_or("running")
                ));
            }
            let _ = super::call(
                &sd,
                &CtlRequest::Kill {
                    signal: libc::SIGKILL,
                    all: true,
                },
                Duration::from_secs(5),
            );
            let deadline = Instant::now() + STOP_WAIT;
            while super::pid_alive(st.monitor_pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if super::pid_alive(st.monitor_pid) {
                // Its QEMU and virtiofsd die with it (PDEATHSIG), its mounts with its namespace.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(st.monitor_pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    if let Some(st) = &st {
        cleanup_network(st);
        // A monitor that ended normally removed it; one that was killed could not.
        if let Some(rel) = &st.cgroup {
            if let Err(e) = hull_monitor::cgroup::remove(rel, STOP_WAIT) {
                hull_monitor::log::write("warning", &format!("{e}"));
            }
        }
    }
    // A killed monitor's QEMU and backends may still be exiting (PDEATHSIG).
    sd.remove_settled(Duration::from_secs(2))?;
    // The console log a monitor kept for its error message (its VM died) goes with the rest.
    let _ = std::fs::remove_file(hull_monitor::kept_console(container_id));
    // poststop hooks run after the container is gone; failures are warnings (runtime-spec).
    if let Some(st) = &st {
        if let Ok(spec) = hull_oci::read_spec(&st.bundle.join("config.json")) {
            let hooks = spec
                .hooks()
                .as_ref()
                .and_then(|h| h.poststop().clone())
                .unwrap_or_default();
            let mut stopped = st.clone();
            stopped.status = Status::Stopped;
            if let Err(e) =
                hull_oci::hooks::run_hooks("poststop", &hooks, &stopped.oci().to_string())
            {
                hull_monitor::log::write("warning", &e.to_string());
            }
        }
    }
    Ok(0)
}
