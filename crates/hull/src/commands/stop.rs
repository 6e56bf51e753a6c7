//! `hull stop`: the container's stop signal (the image's StopSignal, `--stop-signal`, else
//! SIGTERM), then SIGKILL once the timeout has passed.

use std::time::Duration;

use super::{Ctx, KILL_WAIT};
use crate::error::{Context, Error, Result};
use crate::runtime::RuntimeError;

const EXAMPLES: &str = "\
Examples:
  hull stop web
  hull stop -t 0 web worker";

/// Stop running containers (stop signal, then SIGKILL after the timeout).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct StopArgs {
    /// Seconds to wait for the container to stop before killing it.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Signal to send first (default: the container's stop signal).
    #[arg(short, long, value_parser = super::parse_signal)]
    pub signal: Option<String>,
    /// The containers (ids, id prefixes or names).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn stop(ctx: &Ctx, a: StopArgs) -> Result<i32> {
    super::for_each(&a.containers, |name| {
        stop_one(ctx, name, a.signal.as_deref(), Duration::from_secs(a.time))
    })
}

fn stop_one(ctx: &Ctx, name: &str, signal: Option<&str>, timeout: Duration) -> Result<()> {
    let c = ctx.containers().find(name)?;
    let rt = ctx.runtime();
    if super::status(&rt, &c).alive() {
        let signal = signal.unwrap_or(&c.record.stop_signal);
        // It may stop on its own meanwhile: then there is nothing to signal.
        let _ = rt.kill(c.id(), signal);
        match rt.wait_stopped(c.id(), timeout) {
            Ok(()) => {}
            Err(RuntimeError::StillRunning { .. }) => {
                let _ = rt.kill(c.id(), "SIGKILL");
                rt.wait_stopped(c.id(), KILL_WAIT)
                    .with_context(|| format!("stopping {name}"))?;
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
    println!("{name}");
    Ok(())
}
