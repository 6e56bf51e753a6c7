//! Idle containers: what hull's QEMU command line is (the probe), how long N concurrent starts
//! take until all are `running`, and what they cost in memory once settled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::hull::{self, Container, StateRoot};
use crate::procs::{self, Mem};
use crate::Ctx;

/// What one idle container shows about the VMs hull starts.
pub struct Probe {
    /// `state.json` "accel".
    pub accel: String,
    /// QEMU's argv as the monitor started it (argv[0] included).
    pub qemu_argv: Vec<String>,
    /// `/proc/PID/exe` of that QEMU.
    pub qemu_exe: PathBuf,
}

fn find_qemu(monitor: i32) -> Option<i32> {
    procs::tree(monitor)
        .into_iter()
        .find(|&p| procs::comm(p).starts_with("qemu"))
}

/// Starts one idle container, reads what its VM runs with, and stops it (also a warm-up).
pub fn probe(ctx: &Ctx, idle_bundle: &Path) -> Result<Probe> {
    let root = StateRoot::new()?;
    let mut c = vec![Container::run(
        &root,
        &ctx.runtime,
        idle_bundle,
        "probe",
        &ctx.logs,
        None,
        &[],
    )?];
    hull::wait_running(&root, &ctx.runtime, &mut c, ctx.boot_timeout(1))?;
    let state = root.state_file("probe").context("state.json of probe")?;
    let accel = state["accel"].as_str().unwrap_or("?").to_string();
    let monitor = hull::monitor_pid(&root, "probe")?;
    let qemu = procs::poll_until(
        "QEMU under the probe's monitor",
        Duration::from_secs(10),
        || Ok(find_qemu(monitor)),
    )?;
    let qemu_argv = procs::cmdline(qemu);
    let qemu_exe = std::fs::read_link(format!("/proc/{qemu}/exe")).unwrap_or_default();
    if qemu_argv.is_empty() {
        bail!("could not read QEMU's command line (pid {qemu})");
    }
    stop_all(&root, &mut c)?;
    Ok(Probe {
        accel,
        qemu_argv,
        qemu_exe,
    })
}

/// One round of N concurrent idle containers.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub n: usize,
    /// From the first `run` until all report `running`.
    pub all_running_ms: f64,
    pub total: Mem,
    pub qemu: Mem,
    pub virtiofsd: Mem,
    pub monitor: Mem,
    /// PSS changed by ≤ 1 % over 1 s before the 30 s deadline.
    pub settled: bool,
    pub settle_s: f64,
    /// From SIGKILLing the monitors until no process belongs to the root any more.
    pub cleanup_ms: f64,
    /// Processes that still belonged to the root after the cleanup deadline.
    pub leftovers: Vec<i32>,
}

fn sample(root: &StateRoot, ids: &[String]) -> Result<Group> {
    let mut g = Group {
        n: ids.len(),
        ..Group::default()
    };
    for id in ids {
        let monitor = hull::monitor_pid(root, id)?;
        for pid in procs::tree(monitor) {
            let Some(m) = procs::mem(pid) else { continue };
            let name = procs::comm(pid);
            if name.starts_with("qemu") {
                g.qemu += m;
            } else if name.starts_with("virtiofsd") {
                g.virtiofsd += m;
            } else {
                g.monitor += m;
            }
            g.total += m;
        }
    }
    Ok(g)
}

const SETTLE_DEADLINE: Duration = Duration::from_secs(30);

/// Samples the total PSS every second until it changes by ≤ 1 % (deadline 30 s).
fn settle(root: &StateRoot, ids: &[String]) -> Result<Group> {
    let t0 = Instant::now();
    let mut prev = sample(root, ids)?;
    loop {
        // The one fixed pause of the harness: the settle sampling interval.
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            procs::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
        }
        let mut cur = sample(root, ids)?;
        let delta = (cur.total.pss_kib as f64 - prev.total.pss_kib as f64).abs();
        let settled = delta <= 0.01 * prev.total.pss_kib as f64;
        if settled || t0.elapsed() >= SETTLE_DEADLINE {
            cur.settled = settled;
            cur.settle_s = t0.elapsed().as_secs_f64();
            return Ok(cur);
        }
        prev = cur;
    }
}

/// SIGKILLs the monitors (QEMU and virtiofsd die with them) and waits for every process that
/// belongs to the root to be gone; the PIDs left at the deadline.
fn stop_all(root: &StateRoot, cs: &mut [Container]) -> Result<Vec<i32>> {
    for c in cs.iter_mut() {
        c.proc.kill(libc::SIGKILL);
    }
    for c in cs.iter_mut() {
        c.proc.finish(Duration::from_secs(10))?;
    }
    Ok(root.wait_no_processes(Duration::from_secs(10)))
}

/// Starts `n` idle containers at once, times until all are `running`, lets memory settle,
/// measures it, and kills everything.
pub fn group(ctx: &Ctx, idle_bundle: &Path, n: usize, tag: &str) -> Result<Group> {
    let root = StateRoot::new()?;
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let t0 = Instant::now();
    let mut cs = Vec::with_capacity(n);
    for id in &ids {
        cs.push(Container::run(
            &root,
            &ctx.runtime,
            idle_bundle,
            id,
            &ctx.logs,
            None,
            &[],
        )?);
    }
    let seen = hull::wait_running(&root, &ctx.runtime, &mut cs, ctx.boot_timeout(n))?;
    let all_running = seen.iter().max().copied().unwrap_or(t0) - t0;
    let mut g = settle(&root, &ids)?;
    for c in cs.iter_mut() {
        c.check_alive()?;
    }
    g.all_running_ms = all_running.as_secs_f64() * 1e3;
    let t_kill = Instant::now();
    g.leftovers = stop_all(&root, &mut cs)?;
    g.cleanup_ms = t_kill.elapsed().as_secs_f64() * 1e3;
    Ok(g)
}
