//! Memory reclaim: does a VM's memory go back to the host? One detached `sleep 1000` container
//! with 512 MiB of guest RAM and a tmpfs on `/fill`; its host cost is the PSS the management
//! API reports (`GET /v1/vm/metrics` `host.pss_kib`: QEMU + virtiofsd + the monitor), read
//! (a) idle, (b) while the container holds 200 MiB of `/dev/urandom` in `/fill` (random: nothing
//! can be deduplicated), (c) after `rm`: free page reporting (on in every VM) reports the freed
//! pages ~2 s later in blocks of ≥ 2 MiB and QEMU discards them, (d) after the balloon
//! inflated to 256 MiB (`PUT /v1/vm/memory`), (e) after it deflated back to 512 MiB. Every
//! figure is read until it settles (two reads 2 s apart within 1 MiB, bounded).
//!
//! A cold boot's RAM is a shared memfd (QEMU discards with `fallocate(PUNCH_HOLE)`); a
//! clone's is a private mapping of its template's file (the punch is filtered out and
//! `madvise(DONTNEED)` drops the clone's private copies). For a clone the template file's
//! allocated size is read at each point too: a page the clone faults in where the file has a
//! hole (the template's own free pages) is allocated in the file (tmpfs: a read or write fault
//! through a private mapping fills the hole with a zeroed page), i.e. on the host, outside the
//! PSS of any process that does not map it; [`Point::host_kib`] counts it, like the memory
//! case's "incl. template file".

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hull_api::Client;
use serde_json::{json, Value};

use crate::hull::{StateRoot, TemplateFile, VmStart};
use crate::procs::{self, Proc};
use crate::report::Failures;
use crate::{host, memory, ttw, Ctx};

/// Guest RAM of the VM.
pub const VM_MIB: u64 = 512;
/// What the container writes into its tmpfs.
pub const FILL_MIB: u64 = 200;
/// The balloon's target in (d).
pub const INFLATED_MIB: u64 = 256;
/// Two reads this far apart …
const STABLE_OVER: Duration = Duration::from_secs(2);
/// … that differ by less than this (KiB) are settled.
const STABLE_KIB: u64 = 1024;
/// Between two reads.
const POLL: Duration = Duration::from_millis(500);
/// Bound of the settling of (a) and (b).
const IDLE_BOUND: Duration = Duration::from_secs(30);
/// Bound of the settling after `rm` and after a resize.
const RECLAIM_BOUND: Duration = Duration::from_secs(60);

/// One host process serving the VM, as the API reports it.
#[derive(Debug, Clone)]
pub struct HostProc {
    pub name: String,
    pub pid: u32,
    pub pss_kib: u64,
}

/// The VM's cost at one point, read until it settled.
#[derive(Debug, Clone, Default)]
pub struct Point {
    /// Host PSS at the last read, KiB.
    pub pss_kib: u64,
    /// Two reads [`STABLE_OVER`] apart differed by less than 1 MiB before the bound.
    pub settled: bool,
    /// Seconds from the end of the action to the first read of the final level (every read
    /// from then on within 1 MiB of the last).
    pub level_s: f64,
    /// Seconds from the end of the action to the last read.
    pub waited_s: f64,
    /// Every read: (seconds since the end of the action, host PSS KiB).
    pub trace: Vec<(f64, u64)>,
    /// The processes of the last read.
    pub processes: Vec<HostProc>,
    /// The guest's `MemTotal` and `MemFree` at the last read, KiB.
    pub guest_total_kib: Option<u64>,
    pub guest_free_kib: Option<u64>,
    /// A clone's template memory file, allocated (`st_blocks`), at the last read, KiB.
    pub template_alloc_kib: Option<u64>,
    /// Of a clone's QEMU PSS at the last read: the template file's pages it maps, and its
    /// copy-on-write (anonymous) pages of that mapping, KiB (`/proc/PID/smaps`).
    pub template_pss_kib: Option<u64>,
    pub cow_kib: Option<u64>,
    /// How long the action before this point took (start, exec, resize call), ms.
    pub action_ms: f64,
}

impl Point {
    pub fn pss_mib(&self) -> f64 {
        self.pss_kib as f64 / 1024.0
    }

    /// What the host holds for this VM, every page once: PSS without the template file's
    /// pages it maps, plus the whole allocated template file (a clone; else the PSS), KiB.
    pub fn host_kib(&self) -> u64 {
        match self.template_alloc_kib {
            Some(file) => {
                self.pss_kib - self.template_pss_kib.unwrap_or(0).min(self.pss_kib) + file
            }
            None => self.pss_kib,
        }
    }

    pub fn host_mib(&self) -> f64 {
        self.host_kib() as f64 / 1024.0
    }

    pub fn json(&self) -> Value {
        json!({
            "pss_kib": self.pss_kib,
            "host_kib_incl_template_file": self.host_kib(),
            "template_file_pages_pss_kib": self.template_pss_kib,
            "copy_on_write_kib": self.cow_kib,
            "settled": self.settled,
            "level_s": crate::stats::round(self.level_s),
            "waited_s": crate::stats::round(self.waited_s),
            "action_ms": crate::stats::round(self.action_ms),
            "guest_total_kib": self.guest_total_kib,
            "guest_free_kib": self.guest_free_kib,
            "template_file_allocated_kib": self.template_alloc_kib,
            "processes": self
                .processes
                .iter()
                .map(|p| json!({"name": p.name, "pid": p.pid, "pss_kib": p.pss_kib}))
                .collect::<Vec<_>>(),
            "reads_s_pss_kib": self
                .trace
                .iter()
                .map(|&(t, k)| json!([crate::stats::round(t), k]))
                .collect::<Vec<_>>(),
        })
    }
}

/// One run of one mode.
#[derive(Debug, Clone)]
pub struct Run {
    pub mode: VmStart,
    /// (a) idle; `action_ms`: `run --detach` until it returned.
    pub idle: Point,
    /// (b) holding [`FILL_MIB`]; `action_ms`: the exec that wrote it.
    pub holding: Point,
    /// (c) after `rm`; `action_ms`: the exec of `rm`.
    pub freed: Point,
    /// (d) balloon inflated to [`INFLATED_MIB`]; `action_ms`: the API call.
    pub inflated: Point,
    /// (e) balloon deflated to [`VM_MIB`]; `action_ms`: the API call.
    pub deflated: Point,
    /// QEMU processes on the host when the run started (theirs share PSS pages).
    pub other_qemus: usize,
    /// Processes of the root still alive after `delete --force` (10 s deadline).
    pub leftovers: Vec<i32>,
    /// (f) a clone's template file, allocated, once the clone ended (its monitor punched the
    /// template's recorded holes again), KiB.
    pub template_after_kib: Option<u64>,
}

impl Run {
    pub fn points(&self) -> [(&'static str, &Point); 5] {
        [
            ("idle", &self.idle),
            ("holding", &self.holding),
            ("freed", &self.freed),
            ("inflated", &self.inflated),
            ("deflated", &self.deflated),
        ]
    }

    /// MiB of the fill that came back after `rm` (b − c).
    pub fn returned_mib(&self) -> f64 {
        self.holding.pss_mib() - self.freed.pss_mib()
    }

    /// MiB the fill cost the host (b − a).
    pub fn fill_cost_mib(&self) -> f64 {
        self.holding.pss_mib() - self.idle.pss_mib()
    }

    /// MiB above idle after `rm` (c − a).
    pub fn kept_mib(&self) -> f64 {
        self.freed.pss_mib() - self.idle.pss_mib()
    }

    /// [`Run::returned_mib`], [`Run::fill_cost_mib`], [`Run::kept_mib`] of what the host
    /// holds, the template file included ([`Point::host_kib`]).
    pub fn host_returned_mib(&self) -> f64 {
        self.holding.host_mib() - self.freed.host_mib()
    }

    pub fn host_fill_cost_mib(&self) -> f64 {
        self.holding.host_mib() - self.idle.host_mib()
    }

    pub fn host_kept_mib(&self) -> f64 {
        self.freed.host_mib() - self.idle.host_mib()
    }

    pub fn json(&self) -> Value {
        let mut points = serde_json::Map::new();
        for (name, p) in self.points() {
            points.insert(name.to_string(), p.json());
        }
        json!({
            "vm_start": self.mode.name(),
            "other_qemus_at_start": self.other_qemus,
            "returned_mib": crate::stats::round(self.returned_mib()),
            "fill_cost_mib": crate::stats::round(self.fill_cost_mib()),
            "above_idle_after_free_mib": crate::stats::round(self.kept_mib()),
            "incl_template_file": {
                "returned_mib": crate::stats::round(self.host_returned_mib()),
                "fill_cost_mib": crate::stats::round(self.host_fill_cost_mib()),
                "above_idle_after_free_mib": crate::stats::round(self.host_kept_mib()),
            },
            "points": points,
            "template_file_allocated_after_end_kib": self.template_after_kib,
            "leftover_pids": self.leftovers,
        })
    }
}

/// Every run of both modes.
#[derive(Debug, Default)]
pub struct Reclaim {
    pub clone: Vec<Run>,
    pub cold: Vec<Run>,
    /// The clone runs' template(s).
    pub templates: Vec<TemplateFile>,
}

impl Reclaim {
    pub fn mode(&self, m: VmStart) -> &[Run] {
        match m {
            VmStart::Clone => &self.clone,
            VmStart::Cold => &self.cold,
        }
    }

    fn mode_mut(&mut self, m: VmStart) -> &mut Vec<Run> {
        match m {
            VmStart::Clone => &mut self.clone,
            VmStart::Cold => &mut self.cold,
        }
    }
}

/// The bundle's config: 512 MiB of guest RAM and a tmpfs on `/fill` big enough for the fill.
pub fn edit_config(config: &mut Value) {
    config["annotations"] = json!({"org.hull.vm.memory_mib": VM_MIB.to_string()});
    if let Some(m) = config["mounts"].as_array_mut() {
        m.push(json!({
            "destination": "/fill",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=300m"]
        }));
    }
}

/// The exec of (b): writes the fill and prints its size.
pub fn fill_script() -> String {
    let bytes = FILL_MIB << 20;
    format!("head -c {bytes} /dev/urandom > /fill/x && wc -c < /fill/x")
}

/// Seconds from the first read that is within [`STABLE_KIB`] of the last read, with every
/// read after it too (when the level was reached).
pub fn level_time(trace: &[(f64, u64)]) -> f64 {
    let Some(&(mut at, last)) = trace.last() else {
        return 0.0;
    };
    for &(t, k) in trace.iter().rev() {
        if k.abs_diff(last) >= STABLE_KIB {
            break;
        }
        at = t;
    }
    at
}

/// Whether the last read and the latest read at least [`STABLE_OVER`] before it differ by
/// less than [`STABLE_KIB`].
pub fn is_stable(trace: &[(f64, u64)]) -> bool {
    let Some(&(t, last)) = trace.last() else {
        return false;
    };
    trace
        .iter()
        .rev()
        .find(|(u, _)| t - u >= STABLE_OVER.as_secs_f64())
        .is_some_and(|&(_, old)| old.abs_diff(last) < STABLE_KIB)
}

fn sleep_interruptibly(d: Duration) -> Result<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        procs::check_interrupted()?;
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    Ok(())
}

/// The allocated size of a file, KiB.
fn alloc_kib(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.blocks() / 2)
}

/// Reads the API's metrics every [`POLL`] from `since` (the end of the action) until the host
/// PSS is stable or `bound` has passed.
fn settle(api: &Client, since: Instant, bound: Duration, template: Option<&Path>) -> Result<Point> {
    let mut p = Point::default();
    loop {
        procs::check_interrupted()?;
        let m = api.metrics().context("GET /v1/vm/metrics")?;
        p.trace
            .push((since.elapsed().as_secs_f64(), m.host.pss_kib));
        p.pss_kib = m.host.pss_kib;
        p.processes = m
            .host
            .processes
            .iter()
            .map(|h| HostProc {
                name: h.name.clone(),
                pid: h.pid,
                pss_kib: h.pss_kib,
            })
            .collect();
        p.guest_total_kib = m.guest_memory.map(|g| g.total_kib);
        p.guest_free_kib = m.guest_memory.map(|g| g.free_kib);
        p.settled = is_stable(&p.trace);
        if p.settled || since.elapsed() >= bound {
            break;
        }
        sleep_interruptibly(POLL)?;
    }
    p.waited_s = since.elapsed().as_secs_f64();
    p.level_s = level_time(&p.trace);
    if let Some(path) = template {
        p.template_alloc_kib = alloc_kib(path);
        let qemu = p.processes.iter().find(|h| h.name.starts_with("qemu"));
        if let Some(q) = qemu {
            let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", q.pid))
                .with_context(|| format!("read /proc/{}/smaps", q.pid))?;
            let (pss, cow) = memory::parse_template_smaps(&smaps, &path.to_string_lossy());
            p.template_pss_kib = Some(pss);
            p.cow_kib = Some(cow);
        }
    }
    Ok(p)
}

/// Runs `cmd` (a hull-runtime command) to completion within `timeout`, stdout and stderr into
/// `<logs>/<log>.stdout|.stderr` (files, not pipes: a detached monitor inherits them); its
/// stdout.
fn runtime(ctx: &Ctx, cmd: &mut Command, log: &str, timeout: Duration) -> Result<String> {
    let out = ctx.logs.join(format!("{log}.stdout"));
    let err = ctx.logs.join(format!("{log}.stderr"));
    let what = format!(
        "hull-runtime {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).with_context(|| format!("create {}", out.display()))?)
        .stderr(File::create(&err).with_context(|| format!("create {}", err.display()))?);
    let mut p = Proc::spawn(&what, cmd)?;
    let (st, _) = p.finish(timeout)?;
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    if !st.success() {
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        bail!("{what} failed ({st}): {}", stderr.trim());
    }
    Ok(stdout)
}

/// A detached container: `delete --force`d on drop unless [`Detached::delete`] did it.
struct Detached<'a> {
    ctx: &'a Ctx,
    root: &'a StateRoot,
    id: String,
    deleted: bool,
}

impl Detached<'_> {
    fn delete(&mut self) -> Result<()> {
        self.deleted = true;
        runtime(
            self.ctx,
            &mut self
                .root
                .cmd(&self.ctx.runtime, &["delete", "--force", &self.id]),
            &format!("{}-delete", self.id),
            Duration::from_secs(60),
        )
        .map(|_| ())
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = self.delete();
            self.root.wait_no_processes(Duration::from_secs(10));
        }
    }
}

/// The template file a clone's QEMU maps (its `mem-path`).
fn template_of(processes: &[hull_api::HostProcess]) -> Option<PathBuf> {
    processes
        .iter()
        .filter(|p| p.name.starts_with("qemu"))
        .find_map(|p| memory::mem_path(&procs::cmdline(p.pid as i32)))
        .map(PathBuf::from)
}

/// One run in `root` (mode `mode`; a clone root holds the template already: the VM must be a
/// clone and no template may be built).
pub fn one(ctx: &Ctx, root: &StateRoot, mode: VmStart, bundle: &Path, id: &str) -> Result<Run> {
    let builds = root.template_builds();
    let other_qemus = host::qemu_processes();
    let mut c = Detached {
        ctx,
        root,
        id: id.to_string(),
        deleted: false,
    };
    let t = Instant::now();
    let mut cmd = root.cmd(&ctx.runtime, &["run", "--detach", "--bundle"]);
    cmd.arg(bundle).arg(id);
    runtime(ctx, &mut cmd, id, ctx.boot_timeout(1))?;
    let start_ms = t.elapsed().as_secs_f64() * 1e3;
    let status = root.cli_status(&ctx.runtime, id)?;
    if status != "running" {
        bail!("after `run --detach` {id} is {status:?}, not running");
    }
    let api = Client::new(root.path().join(id).join("api.sock"));
    let info = api.info().context("GET /v1/vm")?;
    let want = match mode {
        VmStart::Clone => hull_api::VmStart::Clone,
        VmStart::Cold => hull_api::VmStart::Cold,
    };
    if info.vm_start != want {
        bail!(
            "the API says the VM is {:?} in a {} run",
            info.vm_start,
            mode.name()
        );
    }
    if info.memory_mib.configured != VM_MIB {
        bail!(
            "the VM has {} MiB, the bundle asks for {VM_MIB}",
            info.memory_mib.configured
        );
    }
    let template = match mode {
        VmStart::Clone => {
            let m = api.metrics().context("GET /v1/vm/metrics")?;
            Some(template_of(&m.host.processes).with_context(|| {
                format!("no template memory file on the clone's QEMU command line ({id})")
            })?)
        }
        VmStart::Cold => None,
    };
    let tpl = template.as_deref();

    let mut idle = settle(&api, Instant::now(), IDLE_BOUND, tpl)?;
    idle.action_ms = start_ms;

    let t = Instant::now();
    let mut cmd = root.cmd(&ctx.runtime, &["exec", id, "sh", "-c", &fill_script()]);
    let out = runtime(
        ctx,
        &mut cmd,
        &format!("{id}-fill"),
        Duration::from_secs(600),
    )?;
    let write_ms = t.elapsed().as_secs_f64() * 1e3;
    if out.trim() != (FILL_MIB << 20).to_string() {
        bail!("the fill of /fill/x wrote {:?} bytes", out.trim());
    }
    let mut holding = settle(&api, Instant::now(), IDLE_BOUND, tpl)?;
    holding.action_ms = write_ms;

    let t = Instant::now();
    let mut cmd = root.cmd(&ctx.runtime, &["exec", id, "rm", "/fill/x"]);
    runtime(ctx, &mut cmd, &format!("{id}-rm"), Duration::from_secs(120))?;
    let rm_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut freed = settle(&api, Instant::now(), RECLAIM_BOUND, tpl)?;
    freed.action_ms = rm_ms;

    let resize = |mib: u64| -> Result<Point> {
        let t = Instant::now();
        let vm = api
            .resize_memory(mib)
            .with_context(|| format!("PUT /v1/vm/memory {{\"memory_mib\": {mib}}}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if vm.memory_mib.target != mib {
            bail!(
                "PUT /v1/vm/memory {mib}: the target is {} MiB afterwards",
                vm.memory_mib.target
            );
        }
        let mut p = settle(&api, Instant::now(), RECLAIM_BOUND, tpl)?;
        p.action_ms = ms;
        Ok(p)
    };
    let inflated = resize(INFLATED_MIB)?;
    let deflated = resize(VM_MIB)?;

    c.delete()?;
    let leftovers = root.wait_no_processes(Duration::from_secs(10));
    let template_after_kib = tpl.and_then(alloc_kib);
    if root.path().join(id).exists() {
        bail!(
            "`delete --force {id}` left {}",
            root.path().join(id).display()
        );
    }
    let built = root.template_builds().saturating_sub(builds);
    if built > 0 {
        bail!(
            "{built} template build(s) during a timed {} run (builds.log)",
            mode.name()
        );
    }
    Ok(Run {
        mode,
        idle,
        holding,
        freed,
        inflated,
        deflated,
        other_qemus,
        leftovers,
        template_after_kib,
    })
}

/// Builds the clone root's template with a `true` run of the same shape, then `runs` rounds of
/// one run per mode (clone, cold), each in its own state root.
pub fn run(ctx: &Ctx, runs: usize, failures: &mut Failures) -> Result<Reclaim> {
    let mut b = hull_testkit::bundle::Bundle::busybox(&["sleep", "1000"]);
    b.edit(edit_config);
    let mut warm = hull_testkit::bundle::Bundle::busybox(&["true"]);
    warm.edit(edit_config);
    let clone_root = StateRoot::with_mode(VmStart::Clone)?;
    let cold_root = StateRoot::with_mode(VmStart::Cold)?;
    failures.record(
        "reclaim: building the template (a `true` run of the same shape)",
        ttw::build_template(ctx, &clone_root, warm.path(), "rwarm"),
    )?;
    let mut r = Reclaim {
        templates: clone_root.templates(),
        ..Reclaim::default()
    };
    for i in 0..runs {
        let n = format!("{}/{runs}", i + 1);
        for (m, root) in [(VmStart::Clone, &clone_root), (VmStart::Cold, &cold_root)] {
            let id = format!("rc{}{i}", &m.name()[..2]);
            let x = failures.record(
                &format!("reclaim, {} ({}), run {n}", m.name(), m.fs()),
                one(ctx, root, m, b.path(), &id),
            )?;
            let Some(x) = x else { continue };
            eprintln!(
                "hull-bench: reclaim {n} {}: host PSS idle {:.1}, holding {FILL_MIB} MiB {:.1}, \
                 after rm {:.1} (level after {:.1} s{}), inflated to {INFLATED_MIB} {:.1}, \
                 deflated to {VM_MIB} {:.1} MiB; {:.1} of {:.1} MiB came back",
                m.name(),
                x.idle.pss_mib(),
                x.holding.pss_mib(),
                x.freed.pss_mib(),
                x.freed.level_s,
                if x.freed.settled { "" } else { ", not settled" },
                x.inflated.pss_mib(),
                x.deflated.pss_mib(),
                x.returned_mib(),
                x.fill_cost_mib(),
            );
            if !x.leftovers.is_empty() {
                failures.record::<()>(
                    &format!("reclaim, {} run {n}: cleanup", m.name()),
                    Err(anyhow::anyhow!(
                        "processes left after `delete --force`: {:?}",
                        x.leftovers
                    )),
                )?;
            }
            r.mode_mut(m).push(x);
        }
    }
    if !r.clone.is_empty() {
        r.templates = clone_root.templates();
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling() {
        let mib = |m: u64| m << 10;
        // Still falling: the reads 2 s apart differ by more than 1 MiB.
        let t = [(0.0, mib(300)), (1.0, mib(250)), (2.0, mib(120))];
        assert!(!is_stable(&t));
        // Flat over 2 s.
        let t = [
            (0.0, mib(300)),
            (1.0, mib(250)),
            (2.0, mib(120)),
            (3.0, mib(100)),
            (4.0, mib(100) + 500),
            (5.0, mib(100) + 300),
        ];
        assert!(is_stable(&t));
        assert_eq!(level_time(&t), 3.0);
        // Less than 2 s of reads: not yet.
        assert!(!is_stable(&[(0.0, 1), (1.5, 1)]));
        assert_eq!(level_time(&[]), 0.0);
        assert_eq!(level_time(&[(0.5, 7)]), 0.5);
    }

    #[test]
    fn config_and_script() {
        let mut c = hull_testkit::bundle::default_spec();
        edit_config(&mut c);
        assert_eq!(c["annotations"]["org.hull.vm.memory_mib"], "512");
        let fill = c["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(fill["destination"], "/fill");
        assert_eq!(fill["type"], "tmpfs");
        assert!(fill_script().contains("head -c 209715200 /dev/urandom > /fill/x"));
    }
}
