//! hull's benchmark harness. `cargo run --release -p hull-bench -- --help`; what each figure
//! means is in the README's "Benchmarks" section.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod bare;
mod foreign;
mod host;
mod hull;
mod image;
mod io;
mod memory;
mod net;
mod procs;
mod reclaim;
mod report;
mod stats;
mod ttw;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::hull::{StateRoot, VmStart};

/// Benchmarks hull against a bare QEMU boot and runc: time-to-workload, its phases, memory per
/// idle container, density, shared-fs I/O, networking, images (pull from a local registry,
/// `hull run` vs `hull-runtime run`), and memory reclaim (freed guest memory and the balloon
/// giving host memory back). Time-to-workload, memory, I/O and reclaim side by side for VMs
/// cloned from a template (the default) and booted (`HULL_VM_TEMPLATE=off`). Prints a markdown
/// report and writes JSON.
#[derive(Parser, Debug)]
#[command(name = "hull-bench")]
struct Args {
    /// Runs per case (plus one discarded warm-up round of time-to-workload).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Idle containers started at once in the density case (template clones, the default).
    #[arg(long, default_value_t = 10)]
    density: usize,
    /// Where to write the JSON results [default: <workspace>/target/hull-bench.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip the shared-fs I/O case (the slowest).
    #[arg(long)]
    skip_io: bool,
    /// Only these cases (comma-separated: ttw, memory, density, io, net, image, reclaim,
    /// foreign). `foreign` (arm64 containers in user and system mode against qemu-user on the
    /// host: a CPU job and time to workload; ~13 min with 3 runs under TCG) runs only when named.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Directory of the hull-runtime and hull-monitor (and `hull`, for the image case) to
    /// measure. Default: this checkout's, built first (`cargo build -p hull-runtime -p
    /// hull-monitor -p hull` in the profile of this binary) when run through `cargo run`; else
    /// the ones next to this binary; else /usr/local/bin.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// What every case needs.
pub struct Ctx {
    pub runtime: PathBuf,
    /// The `hull` command next to `runtime`, if there is one (the image case needs it).
    pub hull: Option<PathBuf>,
    pub runc: Option<PathBuf>,
    /// Scratch directory (bare initramfs, timings files, runc root, I/O files).
    pub work: PathBuf,
    /// Stdout/stderr of what the harness runs.
    pub logs: PathBuf,
}

impl Ctx {
    /// Deadline for `n` VMs booting at once under TCG on a small host (bounds a hang only).
    pub fn boot_timeout(&self, n: usize) -> Duration {
        Duration::from_secs(90 + 15 * n as u64)
    }
}

const CASES: [&str; 8] = [
    "ttw", "memory", "density", "io", "net", "image", "reclaim", "foreign",
];
/// Cases that run only when `--only` names them.
const OPT_IN: [&str; 1] = ["foreign"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn has_hull(dir: &Path) -> bool {
    dir.join("hull-runtime").is_file() && dir.join("hull-monitor").is_file()
}

/// The hull-runtime to measure (hull-runtime finds hull-monitor next to itself).
fn resolve_runtime(args: &Args) -> Result<PathBuf> {
    if let Some(d) = &args.bin_dir {
        if !has_hull(d) {
            bail!("{} has no hull-runtime and hull-monitor", d.display());
        }
        return Ok(d.join("hull-runtime"));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let (Some(cargo), true) = (
        std::env::var_os("CARGO"),
        matches!(profile, "release" | "debug"),
    ) {
        eprintln!("hull-bench: building hull-runtime, hull-monitor and hull ({profile})");
        let mut c = Command::new(cargo);
        c.current_dir(workspace_root()).args([
            "build",
            "-q",
            "-p",
            "hull-runtime",
            "-p",
            "hull-monitor",
            "-p",
            "hull",
        ]);
        if profile == "release" {
            c.arg("--release");
        }
        let st = c
            .status()
            .context("cargo build -p hull-runtime -p hull-monitor -p hull")?;
        if !st.success() {
            bail!("building hull-runtime/hull-monitor/hull failed (use --bin-dir to measure other binaries)");
        }
    }
    if has_hull(&dir) {
        return Ok(dir.join("hull-runtime"));
    }
    let installed = Path::new("/usr/local/bin");
    if has_hull(installed) {
        return Ok(installed.join("hull-runtime"));
    }
    bail!("no hull-runtime + hull-monitor next to this binary or in /usr/local/bin: run scripts/setup.sh or pass --bin-dir")
}

fn main() {
    procs::install_interrupt_handler();
    match real_main() {
        Ok(0) => {}
        Ok(n) => {
            eprintln!("hull-bench: {n} run(s) failed (listed in the report)");
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("hull-bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The number of failed runs.
fn real_main() -> Result<usize> {
    let args = Args::parse();
    if args.runs == 0 || args.density == 0 {
        bail!("--runs and --density must be at least 1");
    }
    for c in &args.only {
        if !CASES.contains(&c.as_str()) {
            bail!("unknown case {c:?} in --only (cases: {})", CASES.join(", "));
        }
    }
    let wants = |c: &str| {
        ((args.only.is_empty() && !OPT_IN.contains(&c)) || args.only.iter().any(|o| o == c))
            && !(c == "io" && args.skip_io)
    };
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/hull-bench.json"));

    let runtime = resolve_runtime(&args)?;
    let load_at_start = host::load_avg();
    let other_qemus = host::qemu_processes();
    let work_dir = tempfile::Builder::new()
        .prefix("hull-bench-")
        .tempdir()
        .context("create a scratch directory")?;
    let hull_bin = runtime
        .parent()
        .map(|d| d.join("hull"))
        .filter(|p| p.is_file());
    let mut rep_failures = report::Failures::default();
    let ctx = Ctx {
        runtime,
        hull: hull_bin,
        runc: hull_testkit::which("runc"),
        work: work_dir.path().to_path_buf(),
        logs: work_dir.path().join("logs"),
    };
    std::fs::create_dir_all(&ctx.logs)?;
    if ctx.runc.is_none() {
        // The comparison with runc is part of the figures: no silent partial report.
        bail!("runc not found: the runc comparison (case c) needs it: apt-get install runc");
    }

    eprintln!("hull-bench: preparing bundles");
    let ttw_bundle = hull_testkit::bundle::Bundle::busybox(&["true"]);
    let idle_bundle = hull_testkit::bundle::Bundle::busybox(&["sleep", "1000"]);

    eprintln!("hull-bench: probes (one idle container booted, one cloned: accelerator, QEMU command lines)");
    // The bare boot's command line comes from a booted VM (a clone's has no boot to copy).
    let probe = memory::probe(&ctx, idle_bundle.path(), VmStart::Cold)?;
    let clone_probe = rep_failures.record(
        "probe of a template clone",
        memory::probe(&ctx, idle_bundle.path(), VmStart::Clone),
    )?;
    let guest_dir = host::guest_dir();
    let state_parent = hull::state_parent();
    let header = host::Header {
        date: host::now_utc(),
        checkout: host::checkout_rev(&workspace_root()),
        accel: probe.accel.clone(),
        qemu: host::qemu_version(&probe.qemu_exe),
        kernel_key: host::kernel_key(&guest_dir),
        cpu: host::cpu_model(),
        cores: host::cores(),
        host_kernel: host::host_kernel(),
        runtime: ctx.runtime.clone(),
        guest_dir,
        tb_size_mib: std::env::var("HULL_TCG_TB_SIZE_MIB").unwrap_or_else(|_| "default".into()),
        load_at_start,
        other_qemus,
        state_tmpfs: hull::is_tmpfs(&state_parent),
        state_parent,
    };
    let mut rep = report::Report::new(header, args.runs, &probe.qemu_argv);
    rep.failures = rep_failures;
    rep.clone_qemu_argv = clone_probe.map(|p| p.qemu_argv).unwrap_or_default();

    if wants("ttw") {
        let initrd = ctx.work.join("bare-initramfs.cpio");
        bare::write_initramfs(&initrd)?;
        let argv = bare::bare_args(&probe.qemu_argv, &initrd);
        rep.bare_argv = argv.clone();
        let t = ttw::run(&ctx, &argv, ttw_bundle.path(), args.runs, &mut rep.failures)?;
        rep.templates
            .extend(t.templates.iter().map(|f| ("ttw".to_string(), f.clone())));
        rep.ttw = Some(t);
    }
    let idle = idle_bundle.path();
    if wants("memory") || wants("density") {
        // One root per mode for all the groups; the clone root's template is built first by a
        // short run of the same shape.
        let clone_root = StateRoot::with_mode(VmStart::Clone)?;
        let cold_root = StateRoot::with_mode(VmStart::Cold)?;
        rep.failures.record(
            "memory: building the template (a `true` run of the same shape)",
            ttw::build_template(&ctx, &clone_root, ttw_bundle.path(), "mwarm"),
        )?;
        rep.templates.extend(
            clone_root
                .templates()
                .into_iter()
                .map(|f| ("memory".to_string(), f)),
        );
        let root = |m: VmStart| match m {
            VmStart::Clone => &clone_root,
            VmStart::Cold => &cold_root,
        };
        let density_is_10 = args.density == 10;
        let mut sizes = vec![];
        if wants("memory") {
            sizes.push(1);
            sizes.push(10);
        }
        // (n, mode) series, rounds interleaved: each run does every series once.
        let mut series: Vec<(usize, VmStart, Vec<memory::Group>)> = Vec::new();
        for &n in &sizes {
            for m in VmStart::BOTH {
                series.push((n, m, Vec::new()));
            }
        }
        for i in 0..args.runs {
            for (n, m, gs) in series.iter_mut() {
                // With --density 10, the density runs are the clone figures for 10.
                if *n == 10 && *m == VmStart::Clone && density_is_10 && wants("density") {
                    continue;
                }
                let tag = format!("m{n}{}", &m.name()[..2]);
                gs.extend(group(
                    &ctx,
                    root(*m),
                    *m,
                    idle,
                    *n,
                    &tag,
                    i,
                    args.runs,
                    &mut rep.failures,
                )?);
            }
        }
        if wants("density") {
            let mut gs = Vec::new();
            for i in 0..args.runs {
                gs.extend(group(
                    &ctx,
                    &clone_root,
                    VmStart::Clone,
                    idle,
                    args.density,
                    "d",
                    i,
                    args.runs,
                    &mut rep.failures,
                )?);
            }
            if let Some(s) = series
                .iter_mut()
                .find(|(n, m, _)| *n == 10 && *m == VmStart::Clone && density_is_10)
            {
                s.2 = gs.clone();
            }
            rep.density = Some(gs);
        }
        rep.memory = series.into_iter().map(|(_, _, gs)| gs).collect();
    }
    if wants("io") {
        let bind_dir = tempfile::Builder::new()
            .prefix("hull-bench-bind-")
            .tempdir()
            .context("create the bind-mount source")?;
        let mut b = hull_testkit::bundle::Bundle::busybox(&["true"]);
        b.edit(|c| io::edit_config(c, bind_dir.path()));
        // The same VM shape (512 MiB, the bind mount) running `true`: builds the template.
        let mut warm = hull_testkit::bundle::Bundle::busybox(&["true"]);
        warm.edit(|c| {
            io::edit_config(c, bind_dir.path());
            c["process"]["args"] = serde_json::json!(["true"]);
        });
        let clone_root = StateRoot::with_mode(VmStart::Clone)?;
        let cold_root = StateRoot::with_mode(VmStart::Cold)?;
        rep.failures.record(
            "shared-fs I/O: building the template (a `true` run of the same shape)",
            ttw::build_template(&ctx, &clone_root, warm.path(), "iowarm"),
        )?;
        rep.templates.extend(
            clone_root
                .templates()
                .into_iter()
                .map(|f| ("io".to_string(), f)),
        );
        let mut r = report::IoRuns::default();
        for i in 0..args.runs {
            let run = format!("{}/{}", i + 1, args.runs);
            for (m, root) in [(VmStart::Clone, &clone_root), (VmStart::Cold, &cold_root)] {
                let g = rep.failures.record(
                    &format!(
                        "shared-fs I/O in the guest, {} ({}), run {run}",
                        m.name(),
                        m.fs()
                    ),
                    io::guest(&ctx, root, m, b.path(), &format!("io{}{i}", &m.name()[..2])),
                )?;
                if let Some(g) = g {
                    eprintln!(
                        "hull-bench: io {run} {} ({}): rootfs w {:.0} r {:.0} MiB/s exec {:.1} ms, \
                         bind w {:.0} r {:.0} MiB/s exec {:.1} ms",
                        m.name(),
                        m.fs(),
                        g.rootfs_write,
                        g.rootfs_read,
                        g.rootfs_exec_ms,
                        g.bind_write,
                        g.bind_read,
                        g.bind_exec_ms
                    );
                    r.guest_mut(m).push(g);
                }
            }
            let h = rep.failures.record(
                &format!("shared-fs I/O on the host, run {run}"),
                io::host(bind_dir.path()),
            )?;
            if let Some(h) = h {
                eprintln!("hull-bench: io {run}: host w {:.0} r {:.0} MiB/s", h.0, h.1);
                r.host.push(h);
            }
        }
        rep.io = Some(r);
    }
    if wants("net") {
        rep.net = Some(net::run(&ctx, args.runs, &mut rep.failures)?);
    }
    if wants("image") {
        rep.image = Some(image::run(&ctx, args.runs, &mut rep.failures)?);
    }
    if wants("reclaim") {
        let r = reclaim::run(&ctx, args.runs, &mut rep.failures)?;
        rep.templates.extend(
            r.templates
                .iter()
                .map(|f| ("reclaim".to_string(), f.clone())),
        );
        rep.reclaim = Some(r);
    }
    if wants("foreign") {
        rep.foreign = Some(foreign::run(
            &ctx,
            &probe.accel,
            args.runs,
            &mut rep.failures,
        )?);
    }

    let text = rep.markdown();
    println!("{text}");
    let json = rep.json();
    if let Some(d) = json_path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    std::fs::write(&json_path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    eprintln!("hull-bench: JSON written to {}", json_path.display());
    if !rep.failures.0.is_empty() {
        eprintln!(
            "hull-bench: logs of the failed runs kept in {}",
            work_dir.keep().join("logs").display()
        );
    }
    Ok(rep.failures.0.len())
}

/// Run `i` of `runs` of `n` idle containers started at once in `root` (mode `mode`); `None`
/// if it failed (recorded).
#[allow(clippy::too_many_arguments)]
fn group(
    ctx: &Ctx,
    root: &StateRoot,
    mode: VmStart,
    idle: &Path,
    n: usize,
    tag: &str,
    i: usize,
    runs: usize,
    failures: &mut report::Failures,
) -> Result<Option<memory::Group>> {
    let what = format!(
        "{n} idle container(s), {} ({}), run {}/{runs}",
        mode.name(),
        mode.fs(),
        i + 1
    );
    let g = failures.record(
        &what,
        memory::group(ctx, root, mode, idle, n, &format!("{tag}r{i}")),
    )?;
    if let Some(g) = &g {
        eprintln!(
            "hull-bench: {what}: all running after {:.0} ms, PSS {:.1} MiB total (settled: {}, \
             template file pages {:.1} MiB, copy-on-write {:.1} MiB), processes left after \
             kill: {:?}",
            g.all_running_ms,
            g.total.pss_kib as f64 / 1024.0,
            g.settled,
            g.template_pss_kib as f64 / 1024.0,
            g.cow_kib as f64 / 1024.0,
            g.leftovers
        );
    }
    Ok(g)
}
