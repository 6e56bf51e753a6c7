//! `hull kill`: a signal (default SIGKILL) to running containers.

use super::Ctx;
use crate::error::{Context, Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull kill web
  hull kill -s HUP web";

/// Send a signal to running containers (default SIGKILL).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "KILL", value_parser = super::parse_signal)]
    pub signal: String,
    /// The containers (ids, id prefixes or names).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<i32> {
    super::for_each(&a.containers, |name| {
        let c = ctx.containers().find(name)?;
        let rt = ctx.runtime();
        if !super::status(&rt, &c).alive() {
            return Err(Error::Failed(format!(
                "cannot kill container {name}: it is not running"
            )));
        }
        rt.kill(c.id(), &a.signal)
            .with_context(|| format!("cannot kill container {name}"))?;
        println!("{name}");
        Ok(())
    })
}
