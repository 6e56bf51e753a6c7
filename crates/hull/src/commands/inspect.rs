//! `hull inspect`: containers and images as JSON (an array, docker's main keys).

use serde_json::{json, Value};

use super::Ctx;
use crate::container::Container;
use crate::error::{Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull inspect web
  hull inspect --type image busybox";

/// Show containers or images as JSON.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct InspectArgs {
    /// Only look for this kind of object: container or image.
    #[arg(long = "type", value_parser = ["container", "image"])]
    pub kind: Option<String>,
    /// Containers (ids, prefixes, names) or images (names, ids, prefixes).
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let want = |k: &str| a.kind.as_deref().map_or(true, |w| w == k);
    for name in &a.names {
        if want("container") {
            if let Ok(c) = ctx.containers().find(name) {
                out.push(container_json(ctx, &c));
                continue;
            }
        }
        if want("image") {
            let store = ctx.store()?;
            if let Ok(img) = store.resolve(name) {
                let config = store.config(&img)?;
                out.push(json!({
                    "Id": img.id,
                    "RepoTags": img.names,
                    "RepoDigests": img.repo_digests,
                    "Created": img.created,
                    "Os": img.platform.os,
                    "Architecture": img.platform.architecture,
                    "Variant": img.platform.variant,
                    "Size": img.size,
                    "Config": config.config(),
                    "RootFS": {"Type": "layers", "Layers": img.layers},
                    "Digest": img.digest,
                }));
                continue;
            }
        }
        missing.push(name.clone());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&Value::Array(out))
            .map_err(|e| Error::Failed(format!("printing the objects as JSON: {e}")))?
    );
    if missing.is_empty() {
        Ok(0)
    } else {
        Err(Error::Failed(format!(
            "no such object: {}",
            missing.join(", ")
        )))
    }
}

fn container_json(ctx: &Ctx, c: &Container) -> Value {
    let rt = ctx.runtime();
    let status = super::status(&rt, c);
    let state = rt.state(c.id());
    let r = &c.record;
    let config: Value = std::fs::read(c.bundle().join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or(Value::Null);
    let exit_code = match &status {
        super::Status::Exited { code, .. } => *code,
        _ => 0,
    };
    json!({
        "Id": r.id,
        "Name": r.name,
        "Created": r.created,
        "Path": r.command.first(),
        "Args": r.command.get(1..).unwrap_or_default(),
        "State": {
            "Status": status.state(),
            "Running": matches!(status, super::Status::Running { .. } | super::Status::Paused { .. }),
            "Paused": matches!(status, super::Status::Paused { .. }),
            "Pid": state.as_ref().filter(|s| s.alive()).map(|s| s.monitor_pid).unwrap_or(0),
            "ExitCode": exit_code,
            "StartedAt": r.started_at,
            "FinishedAt": r.finished_at,
        },
        "Image": r.image_id,
        "ImageName": r.image,
        "LogPath": r.log_path,
        "Config": {
            "Hostname": r.hostname,
            "User": config["process"]["user"],
            "Env": config["process"]["env"],
            "Cmd": r.command,
            "WorkingDir": config["process"]["cwd"],
            "Tty": r.tty,
            "OpenStdin": r.interactive,
            "StopSignal": r.stop_signal,
        },
        "HostConfig": {
            "Binds": r.volumes,
            "PortBindings": r.ports,
            "NetworkMode": r.network,
            "AutoRemove": r.auto_remove,
            "Memory": config["linux"]["resources"]["memory"]["limit"],
            "CpuQuota": config["linux"]["resources"]["cpu"]["quota"],
            "CpuPeriod": config["linux"]["resources"]["cpu"]["period"],
            "ReadonlyRootfs": config["root"]["readonly"],
        },
        "GraphDriver": {
            "Name": "overlay",
            "Data": {"MergedDir": c.rootfs(), "UpperDir": c.upper(), "WorkDir": c.work()},
        },
        "Bundle": c.bundle(),
    })
}
