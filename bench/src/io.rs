//! Shared-fs I/O: sequential write (`conv=fsync`) then read of a 256 MiB file with `dd`, inside
//! the guest on the rootfs share and on a bind mount, and on the host for comparison; then the
//! latency of exec'ing a binary from each share (`EXECS` × `busybox true` in a loop, after
//! dropping the guest's page cache). Side by side for the two transports: virtio-9p (QEMU's own
//! 9p server, in template clones) and virtio-fs (virtiofsd, in cold boots).
//!
//! In the guest the page cache is dropped between write and read, so the read goes through
//! the share to QEMU's 9p server or virtiofsd, which read from the host page cache; the host's
//! own read is therefore also from its page cache (the harness never drops the host's caches).
//! busybox `dd` prints no throughput, so the guest wraps it in busybox `time` and the figure is
//! 256 MiB / elapsed; GNU `dd` on the host prints its own.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::hull::{Container, StateRoot, VmStart};
use crate::procs;
use crate::Ctx;

pub const MIB: u64 = 256;
/// Execs per exec-latency loop.
pub const EXECS: u32 = 200;

/// MiB/s of the four transfers, ms per exec from each share.
#[derive(Debug, Clone, Copy, Default)]
pub struct Io {
    pub rootfs_write: f64,
    pub rootfs_read: f64,
    pub bind_write: f64,
    pub bind_read: f64,
    pub rootfs_exec_ms: f64,
    pub bind_exec_ms: f64,
}

/// The container's script: `@@ <share> <write|read|exec>` markers, then what `time` printed.
/// The exec loop runs `busybox true` by path (the shell execs it: no applet shortcut for a
/// path) from the rootfs (`/bin/busybox`) and from a copy on the bind mount, the guest's page
/// cache dropped first.
pub fn guest_script() -> String {
    format!(
        "exec 2>&1; set -e\n\
         cp /bin/busybox /data/busybox\n\
         for t in rootfs:/ddtest:/bin/busybox bind:/data/ddtest:/data/busybox; do\n\
           n=${{t%%:*}}; r=${{t#*:}}; f=${{r%%:*}}; b=${{r#*:}}\n\
           echo \"@@ $n write\"; time dd if=/dev/zero of=$f bs=1M count={MIB} conv=fsync\n\
           echo 3 > /proc/sys/vm/drop_caches\n\
           echo \"@@ $n read\"; time dd if=$f of=/dev/null bs=1M\n\
           rm -f $f\n\
           echo 3 > /proc/sys/vm/drop_caches\n\
           echo \"@@ $n exec\"\n\
           time sh -c 'i=0; while [ $i -lt {EXECS} ]; do \"$0\" true; i=$((i+1)); done' $b\n\
         done\n\
         rm -f /data/busybox\n"
    )
}

/// The bundle's config: the script, 512 MiB of guest RAM, a bind mount on /data, and /proc/sys
/// writable (for drop_caches).
pub fn edit_config(config: &mut serde_json::Value, bind_source: &Path) {
    config["process"]["args"] = json!(["sh", "-c", guest_script()]);
    config["annotations"] = json!({"org.hull.vm.memory_mib": "512"});
    if let Some(ro) = config["linux"]["readonlyPaths"].as_array_mut() {
        ro.retain(|p| p != "/proc/sys");
    }
    if let Some(m) = config["mounts"].as_array_mut() {
        m.push(json!({
            "destination": "/data",
            "type": "bind",
            "source": bind_source,
            "options": ["rbind", "rw"]
        }));
    }
}

/// Seconds of one transfer from what `dd` (GNU: "…copied, 1.23 s, …") or busybox `time`
/// ("real\t0m 1.23s") printed.
pub fn parse_seconds(text: &str) -> Option<f64> {
    for l in text.lines() {
        if let Some((_, rest)) = l.split_once(" copied, ") {
            return rest.split_whitespace().next()?.parse().ok();
        }
    }
    for l in text.lines() {
        if let Some(rest) = l.trim_start().strip_prefix("real") {
            let compact: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
            let (mins, secs) = compact.split_once('m')?;
            let secs = secs.strip_suffix('s')?;
            return Some(mins.parse::<f64>().ok()? * 60.0 + secs.parse::<f64>().ok()?);
        }
    }
    None
}

fn mib_per_s(text: &str, what: &str) -> Result<f64> {
    let s = parse_seconds(text).with_context(|| format!("no timing for {what} in:\n{text}"))?;
    Ok(MIB as f64 / s.max(1e-6))
}

/// Splits the container's output at the `@@` markers.
pub fn parse_guest(out: &str) -> Result<Io> {
    let mut sections: Vec<(String, String)> = Vec::new();
    for l in out.lines() {
        if let Some(name) = l.strip_prefix("@@ ") {
            sections.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(l);
            body.push('\n');
        }
    }
    let section = |name: &str| -> Result<&str> {
        sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_str())
            .with_context(|| format!("no '{name}' section in the container output:\n{out}"))
    };
    let get = |name: &str| -> Result<f64> { mib_per_s(section(name)?, name) };
    let exec_ms = |name: &str| -> Result<f64> {
        let body = section(name)?;
        let s = parse_seconds(body).with_context(|| format!("no timing for {name} in:\n{body}"))?;
        Ok(s * 1e3 / f64::from(EXECS))
    };
    Ok(Io {
        rootfs_write: get("rootfs write")?,
        rootfs_read: get("rootfs read")?,
        bind_write: get("bind write")?,
        bind_read: get("bind read")?,
        rootfs_exec_ms: exec_ms("rootfs exec")?,
        bind_exec_ms: exec_ms("bind exec")?,
    })
}

/// The guest's figures of one run in `root` (mode `mode`; a clone root holds the template
/// already: the run must be a clone).
pub fn guest(ctx: &Ctx, root: &StateRoot, mode: VmStart, bundle: &Path, id: &str) -> Result<Io> {
    let out = ctx.logs.join(format!("{id}.stdout"));
    let tfile = ctx.work.join(format!("timings-{id}.json"));
    let _ = std::fs::remove_file(&tfile);
    let mut c = Container::run(
        root,
        &ctx.runtime,
        bundle,
        id,
        &ctx.logs,
        Some(&out),
        &[("HULL_TIMINGS_FILE", &tfile)],
    )?;
    let (st, _) = c.proc.finish(Duration::from_secs(900))?;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    if !st.success() {
        bail!(
            "the I/O container failed ({st}):\n{text}\n{}",
            c.stderr_text()
        );
    }
    let timings = crate::hull::read_timings(&tfile);
    mode.check(&timings, false)?;
    parse_guest(&text)
}

fn host_dd(args: &[&str], what: &str) -> Result<f64> {
    let out = procs::output(
        "dd",
        Command::new("dd").args(args),
        Duration::from_secs(600),
    )?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("host dd ({what}) failed: {err}");
    }
    mib_per_s(&err, what)
}

/// The same transfers on the host, in `dir` (write with fsync; read from the page cache).
pub fn host(dir: &Path) -> Result<(f64, f64)> {
    let f = dir.join("ddtest");
    let of = format!("of={}", f.display());
    let iff = format!("if={}", f.display());
    let count = format!("count={MIB}");
    let w = host_dd(
        &["if=/dev/zero", &of, "bs=1M", &count, "conv=fsync"],
        "write",
    )?;
    let r = host_dd(&[&iff, "of=/dev/null", "bs=1M"], "read")?;
    let _ = std::fs::remove_file(&f);
    Ok((w, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_and_busybox_timings() {
        let gnu = "256+0 records in\n256+0 records out\n268435456 bytes (268 MB, 256 MiB) copied, 0.5 s, 537 MB/s\n";
        assert_eq!(parse_seconds(gnu), Some(0.5));
        let bb =
            "256+0 records in\n256+0 records out\nreal\t0m 2.50s\nuser\t0m 0.00s\nsys\t0m 1.00s\n";
        assert_eq!(parse_seconds(bb), Some(2.5));
        assert_eq!(parse_seconds("real\t1m 3.00s"), Some(63.0));
        assert_eq!(parse_seconds("nothing"), None);
    }

    #[test]
    fn guest_output_sections() {
        let out = "@@ rootfs write\nreal\t0m 2.00s\n@@ rootfs read\nreal\t0m 1.00s\n\
                   @@ rootfs exec\nreal\t0m 1.00s\n\
                   @@ bind write\nreal\t0m 4.00s\n@@ bind read\nreal\t0m 0.50s\n\
                   @@ bind exec\nreal\t0m 2.00s\n";
        let io = parse_guest(out).unwrap();
        assert_eq!(io.rootfs_write, 128.0);
        assert_eq!(io.rootfs_read, 256.0);
        assert_eq!(io.bind_write, 64.0);
        assert_eq!(io.bind_read, 512.0);
        assert_eq!(io.rootfs_exec_ms, 1e3 / f64::from(EXECS));
        assert_eq!(io.bind_exec_ms, 2e3 / f64::from(EXECS));
        assert!(parse_guest("@@ rootfs write\n").is_err());
    }

    #[test]
    fn config_edits() {
        let mut c = hull_testkit::bundle::default_spec();
        edit_config(&mut c, Path::new("/tmp/x"));
        assert!(!c["linux"]["readonlyPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/proc/sys"));
        assert_eq!(c["annotations"]["org.hull.vm.memory_mib"], "512");
        assert_eq!(
            c["mounts"].as_array().unwrap().last().unwrap()["destination"],
            "/data"
        );
    }
}
