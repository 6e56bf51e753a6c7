//! `events [--stats] [--interval S] ID`: resource usage read from the guest, as runc prints it.

use std::time::Duration;

use anyhow::{anyhow, Result};
use hull_monitor::control::{CtlReply, CtlRequest};
use serde_json::json;

use crate::Ctx;

fn stats_event(ctx: &Ctx, id: &str) -> Result<serde_json::Value> {
    let (sd, st) = super::load(ctx, id)?;
    if st.status == hull_state::Status::Stopped {
        return Err(anyhow!("container not running"));
    }
    let s = match super::call(&sd, &CtlRequest::Stats, Duration::from_secs(10))? {
        CtlReply::Stats { stats } => stats,
        other => return Err(anyhow!("unexpected answer {other:?}")),
    };
    Ok(json!({
        "type": "stats",
        "id": id,
        "data": {
            "cpu": {"usage": {"total": s.cpu_usage_ns}},
            "memory": {"usage": {"usage": s.memory_usage_bytes, "limit": s.memory_total_bytes}},
            "pids": {"current": s.pids},
        }
    }))
}

pub fn events(ctx: &Ctx, a: liboci_cli::Events) -> Result<i32> {
    if a.stats {
        println!("{}", stats_event(ctx, &a.container_id)?);
        return Ok(0);
    }
    let interval = Duration::from_secs(a.interval.max(1) as u64);
    loop {
        match stats_event(ctx, &a.container_id) {
            Ok(v) => println!("{v}"),
            Err(_) => return Ok(0),
        }
        std::thread::sleep(interval);
    }
}
