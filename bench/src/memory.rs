//! Idle containers: what hull's QEMU command line is (the probe), how long N concurrent starts
//! take until all are `running`, and what they cost in memory once settled, for template clones
//! and cold boots.
//!
//! A clone maps its template's RAM file copy-on-write: the file's pages it reads are shared
//! (their PSS is split among the clones mapping them), the pages it writes become its own
//! anonymous pages. The file itself sits on the state root's tmpfs, paid once per shape, also
//! for the pages no clone maps: [`Group::template_pss_kib`] and the root's
//! [`TemplateFile`](crate::hull::TemplateFile) give the honest total (PSS without the mapped
//! file pages, plus the whole file).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::hull::{self, Container, StateRoot, TemplateFile, VmStart};
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

/// Starts one idle container in `mode`, reads what its VM runs with, and stops it (also a
/// warm-up).
pub fn probe(ctx: &Ctx, idle_bundle: &Path, mode: VmStart) -> Result<Probe> {
    let root = StateRoot::with_mode(mode)?;
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
    if is_clone(&qemu_argv) != (mode == VmStart::Clone) {
        bail!(
            "the probe's VM should be a {} but QEMU runs {qemu_argv:?}",
            mode.name()
        );
    }
    stop_all(&root, &mut c)?;
    Ok(Probe {
        accel,
        qemu_argv,
        qemu_exe,
    })
}

/// The RAM file of a QEMU command line (`memory-backend-file,…,mem-path=P,…`).
pub fn mem_path(argv: &[String]) -> Option<String> {
    argv.iter()
        .filter(|a| a.starts_with("memory-backend-file,"))
        .flat_map(|a| a.split(','))
        .find_map(|kv| kv.strip_prefix("mem-path="))
        .map(str::to_string)
}

/// Whether a QEMU command line is a template clone's (waits for a saved state, RAM from the
/// template's file).
pub fn is_clone(argv: &[String]) -> bool {
    argv.iter().any(|a| a == "-incoming") && mem_path(argv).is_some()
}

/// Of the mappings of the template's RAM file `path` in `/proc/PID/smaps`: (PSS of the file's
/// pages, anonymous = copy-on-write pages) in KiB. The anonymous pages of a private mapping
/// are the process's own (counted in full in PSS).
pub fn parse_template_smaps(text: &str, path: &str) -> (u64, u64) {
    let (mut pss, mut anon) = (0u64, 0u64);
    let mut inside = false;
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let first = f.next().unwrap_or("");
        let is_header = first.contains('-')
            && first
                .split('-')
                .all(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if is_header {
            inside = l.split_whitespace().nth(5) == Some(path);
            continue;
        }
        if !inside {
            continue;
        }
        let kib = || {
            f.clone()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Pss:" => pss += kib(),
            "Anonymous:" => anon += kib(),
            _ => {}
        }
    }
    (pss.saturating_sub(anon), anon)
}

/// One round of N concurrent idle containers.
#[derive(Debug, Clone)]
pub struct Group {
    pub mode: VmStart,
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
    /// QEMUs that are template clones (by their command line).
    pub clones: usize,
    /// PSS of the template file's shared pages mapped by the clones (in `total`), KiB.
    pub template_pss_kib: u64,
    /// The clones' copy-on-write pages of guest RAM (anonymous, in `total`), KiB.
    pub cow_kib: u64,
    /// The templates in the root (a clone group: the one they were cloned from).
    pub templates: Vec<TemplateFile>,
}

impl Group {
    fn empty(mode: VmStart, n: usize) -> Self {
        Self {
            mode,
            n,
            all_running_ms: 0.0,
            total: Mem::default(),
            qemu: Mem::default(),
            virtiofsd: Mem::default(),
            monitor: Mem::default(),
            settled: false,
            settle_s: 0.0,
            cleanup_ms: 0.0,
            leftovers: Vec::new(),
            clones: 0,
            template_pss_kib: 0,
            cow_kib: 0,
            templates: Vec::new(),
        }
    }

    /// The template RAM files' allocated size (KiB), paid once per shape.
    pub fn template_alloc_kib(&self) -> u64 {
        self.templates.iter().map(|t| t.alloc_bytes / 1024).sum()
    }

    /// Everything once: PSS without the template file's mapped pages, plus the whole file
    /// (KiB).
    pub fn honest_total_kib(&self) -> u64 {
        self.total.pss_kib - self.template_pss_kib.min(self.total.pss_kib)
            + self.template_alloc_kib()
    }
}

fn sample(root: &StateRoot, mode: VmStart, ids: &[String]) -> Result<Group> {
    let mut g = Group::empty(mode, ids.len());
    for id in ids {
        let monitor = hull::monitor_pid(root, id)?;
        for pid in procs::tree(monitor) {
            let Some(m) = procs::mem(pid) else { continue };
            let name = procs::comm(pid);
            if name.starts_with("qemu") {
                g.qemu += m;
                let argv = procs::cmdline(pid);
                if let (true, Some(path)) = (is_clone(&argv), mem_path(&argv)) {
                    g.clones += 1;
                    let smaps =
                        std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
                    let (pss, cow) = parse_template_smaps(&smaps, &path);
                    g.template_pss_kib += pss;
                    g.cow_kib += cow;
                }
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
fn settle(root: &StateRoot, mode: VmStart, ids: &[String]) -> Result<Group> {
    let t0 = Instant::now();
    let mut prev = sample(root, mode, ids)?;
    loop {
        // The one fixed pause of the harness: the settle sampling interval.
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            procs::check_interrupted()?;
            std::thread::sleep(Duration::from_millis(50).min(next - Instant::now()));
        }
        let mut cur = sample(root, mode, ids)?;
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

/// Starts `n` idle containers at once in `root` (whose mode is `mode`; a clone root holds its
/// template already), times until all are `running`, lets memory settle, measures it, and kills
/// everything. An error if a clone group's VMs are not all clones, or a template was built.
pub fn group(
    ctx: &Ctx,
    root: &StateRoot,
    mode: VmStart,
    idle_bundle: &Path,
    n: usize,
    tag: &str,
) -> Result<Group> {
    let builds = root.template_builds();
    let ids: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let t0 = Instant::now();
    let mut cs = Vec::with_capacity(n);
    for id in &ids {
        cs.push(Container::run(
            root,
            &ctx.runtime,
            idle_bundle,
            id,
            &ctx.logs,
            None,
            &[],
        )?);
    }
    let seen = hull::wait_running(root, &ctx.runtime, &mut cs, ctx.boot_timeout(n))?;
    let all_running = seen.iter().max().copied().unwrap_or(t0) - t0;
    let mut g = settle(root, mode, &ids)?;
    for c in cs.iter_mut() {
        c.check_alive()?;
    }
    g.all_running_ms = all_running.as_secs_f64() * 1e3;
    if mode == VmStart::Clone {
        g.templates = root.templates();
    }
    let t_kill = Instant::now();
    g.leftovers = stop_all(root, &mut cs)?;
    g.cleanup_ms = t_kill.elapsed().as_secs_f64() * 1e3;
    let want = if mode == VmStart::Clone { n } else { 0 };
    if g.clones != want {
        bail!(
            "{} of {n} VMs are template clones in a {} group",
            g.clones,
            mode.name()
        );
    }
    let built = root.template_builds() - builds.min(root.template_builds());
    if built > 0 {
        bail!(
            "{built} template build(s) during a timed group (builds.log): the template should \
             have been built before"
        );
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_mappings_in_smaps() {
        let smaps = "\
55d0a000-55d0b000 r-xp 00000000 fd:00 123  /usr/bin/qemu-system-x86_64
Rss:                 100 kB
Pss:                  50 kB
Anonymous:             0 kB
7f0000000000-7f0010000000 rw-p 00000000 00:1b 77  /dev/shm/hbX/.templates/0123abcd/memory
Size:             262144 kB
Rss:               40000 kB
Pss:               25000 kB
Shared_Clean:      30000 kB
Private_Dirty:     10000 kB
Anonymous:         10000 kB
7f1000000000-7f1000001000 rw-p 00000000 00:00 0
Pss:                 999 kB
Anonymous:           999 kB
";
        let path = "/dev/shm/hbX/.templates/0123abcd/memory";
        assert_eq!(parse_template_smaps(smaps, path), (15000, 10000));
        assert_eq!(parse_template_smaps(smaps, "/other/memory"), (0, 0));
        assert_eq!(parse_template_smaps("", path), (0, 0));
    }

    #[test]
    fn clone_command_lines() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let clone = v(&[
            "-object",
            "memory-backend-file,id=mem,size=256M,mem-path=/t/k/memory,share=off",
            "-incoming",
            "defer",
        ]);
        assert!(is_clone(&clone));
        assert_eq!(mem_path(&clone).as_deref(), Some("/t/k/memory"));
        assert!(!is_clone(&v(&[
            "-object",
            "memory-backend-memfd,id=mem,size=256M,share=on"
        ])));
    }

    #[test]
    fn honest_total_counts_the_template_file_once() {
        let mut g = Group::empty(VmStart::Clone, 2);
        g.total.pss_kib = 60_000;
        g.template_pss_kib = 20_000;
        g.templates.push(TemplateFile {
            alloc_bytes: 50_000 * 1024,
            ..TemplateFile::default()
        });
        assert_eq!(g.honest_total_kib(), 90_000);
    }
}
