//! `hull rm`: removes containers: VM (with `-f`), runtime state, root file system mount,
//! directory. A running container is refused without `-f`.

use super::Ctx;
use crate::container::LOCK_TIMEOUT;
use crate::error::{Context, Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull rm web
  hull rm -f web worker";

/// Remove containers.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct RmArgs {
    /// Kill and remove running containers too.
    #[arg(short, long)]
    pub force: bool,
    /// The containers (ids, id prefixes or names).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    super::for_each(&a.containers, |name| {
        let c = ctx.containers().find(name)?;
        let Some(lock) = c.lock(LOCK_TIMEOUT)? else {
            // Removed meanwhile (--rm).
            println!("{name}");
            return Ok(());
        };
        let Some(c) = c.reload()? else {
            println!("{name}");
            return Ok(());
        };
        if super::status(&ctx.runtime(), &c).alive() && !a.force {
            return Err(Error::Failed(format!(
                "cannot remove container {name}: it is running (stop it first, or hull rm -f)"
            )));
        }
        super::destroy(ctx, &c).with_context(|| format!("removing container {name}"))?;
        drop(lock);
        // Its supervisor ends once it sees the container gone.
        if let Some(pid) = c.record.supervisor_pid {
            super::wait_pid_gone(pid, super::KILL_WAIT);
        }
        println!("{name}");
        Ok(())
    })
}
