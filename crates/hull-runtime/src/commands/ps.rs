//! `ps [--format table|json] ID`: the host PIDs that stand for the container's processes.
//!
//! Mapping: the container's processes live in the guest; on the host each is represented by the
//! process engines wait on: the monitor (for the init process and the VM) and one host process
//! per `exec`. Those are what `ps` lists (`docker top`/`ctr task ps` then inspect them).

use std::time::Duration;

use anyhow::{anyhow, Result};
use hull_monitor::control::{CtlReply, CtlRequest};

use crate::Ctx;

pub fn ps(ctx: &Ctx, a: liboci_cli::Ps) -> Result<i32> {
    let (sd, st) = super::load(ctx, &a.container_id)?;
    let pids = if st.status == hull_state::Status::Stopped {
        Vec::new()
    } else {
        match super::call(&sd, &CtlRequest::Ps, Duration::from_secs(10))? {
            CtlReply::Ps { pids } => pids,
            other => return Err(anyhow!("unexpected answer {other:?}")),
        }
    };
    if a.format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let mut args = vec![
        "-o".to_string(),
        "uid,pid,ppid,c,stime,tty,time,cmd".to_string(),
    ];
    args.extend(a.ps_options.iter().cloned());
    let out = std::process::Command::new("ps")
        .arg("-e")
        .args(&args)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    for (i, line) in text.lines().enumerate() {
        let pid = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<i32>().ok());
        if i == 0 || pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
