//! `hull supervise ID` (internal, started by `hull run -d`): waits for a detached container's
//! VM to exit, copying its terminal (stdin, when `--tty`) into the container's log, then
//! records the exit and unmounts the root file system — or, with `--rm`, removes the
//! container. `hull rm` takes the container's lock first, so the two never race.

use std::os::fd::AsFd;
use std::time::Duration;

use super::Ctx;
use crate::error::{Error, Result};
use crate::tty;

#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    /// The container's full id.
    pub id: String,
    /// stdin is the container's terminal (a pty master): copy it into the log.
    #[arg(long)]
    pub tty: bool,
}

pub fn supervise(ctx: &Ctx, a: SuperviseArgs) -> Result<i32> {
    let c = ctx.containers().find(&a.id)?;
    if c.id() != a.id {
        return Err(Error::Invalid(format!(
            "supervise needs a full container id, not {:?}",
            a.id
        )));
    }
    let copier = if a.tty {
        let master = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(Error::io("taking the container's terminal"))?;
        let mut log = super::open_log(&c.log())?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tty::drain_to(master, &mut log);
            let _ = tx.send(());
        });
        Some(rx)
    } else {
        None
    };
    if let Some(st) = ctx.runtime().state(c.id()) {
        crate::runtime::wait_pid_exit(st.monitor_pid);
    }
    if let Some(rx) = copier {
        // The terminal closes with the VM; do not wait long for the last bytes.
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
    super::finish(ctx, &c, None)?;
    Ok(0)
}
