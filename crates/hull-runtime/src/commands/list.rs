//! `list [--format table|json]`.

use std::io::Write;

use anyhow::Result;

use crate::Ctx;

pub fn list(ctx: &Ctx, a: liboci_cli::List) -> Result<i32> {
    let mut rows = Vec::new();
    for id in hull_state::list(&ctx.root)? {
        if let Ok((_, st)) = super::load(ctx, &id) {
            rows.push(st);
        }
    }
    let status = |st: &hull_state::ContainerState| {
        if st.paused && st.status == hull_state::Status::Running {
            "paused".to_string()
        } else {
            serde_json::to_value(st.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.format == "json" {
        let v: Vec<_> = rows
            .iter()
            .map(|st| {
                serde_json::json!({
                    "ociVersion": "1.2.0", "id": st.id, "pid": st.pid, "status": status(st),
                    "bundle": st.bundle, "rootfs": st.rootfs, "created": st.created, "owner": st.owner,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
    } else if a.quiet {
        for st in &rows {
            writeln!(out, "{}", st.id)?;
        }
    } else {
        writeln!(
            out,
            "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        )?;
        for st in &rows {
            writeln!(
                out,
                "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                st.id,
                st.pid,
                status(st),
                st.bundle.display(),
                st.created,
                if st.owner.is_empty() {
                    "root"
                } else {
                    &st.owner
                }
            )?;
        }
    }
    Ok(0)
}
