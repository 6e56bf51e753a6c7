//! Time-to-workload of `true`: (a) bare QEMU boot of the same kernel with a power-off init,
//! (b) `hull-runtime run` with the VM cloned from a template (the default), (b′) the same with
//! the VM booted (`HULL_VM_TEMPLATE=off`), (c) `runc run`, interleaved run by run so that noise
//! hits all four; plus the monitor's phase timings of every (b) and (b′). The warm-up round
//! builds the template; every timed clone run must then be a clone (`vm_start`), or it fails.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};

use crate::hull::{Container, StateRoot, TemplateFile, VmStart};
use crate::procs::Proc;
use crate::report::Failures;
use crate::Ctx;

/// The timed `hull-runtime run`s of one VM start mode.
#[derive(Debug, Default)]
pub struct HullRuns {
    pub ms: Vec<f64>,
    /// The monitor's `HULL_TIMINGS_FILE` of each run.
    pub timings: Vec<Map<String, Value>>,
}

#[derive(Debug, Default)]
pub struct Ttw {
    pub bare_ms: Vec<f64>,
    /// (b): template clones.
    pub clone: HullRuns,
    /// (b′): cold boots.
    pub cold: HullRuns,
    pub runc_ms: Vec<f64>,
    /// Each timed round's four figures (`None`: that run failed), for per-round ratios.
    pub rounds: Vec<Round>,
    /// The warm-up clone run that built the template: its wall time and timings.
    pub build_run: Option<(f64, Map<String, Value>)>,
    /// The template(s) in the clone runs' state root, and `builds.log`'s lines at the end.
    pub templates: Vec<TemplateFile>,
    pub template_builds: usize,
}

/// One interleaved round: the same host noise for all four.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    pub bare: Option<f64>,
    pub clone: Option<f64>,
    pub cold: Option<f64>,
    pub runc: Option<f64>,
}

impl Ttw {
    /// `f` of every round where it is defined (e.g. clone / bare of the same round).
    pub fn per_round(&self, f: impl Fn(&Round) -> Option<f64>) -> Vec<f64> {
        self.rounds.iter().filter_map(f).collect()
    }

    pub fn mode(&self, m: VmStart) -> &HullRuns {
        match m {
            VmStart::Clone => &self.clone,
            VmStart::Cold => &self.cold,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn tail(path: &Path) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// (a): QEMU with `argv` from its start to its exit.
fn bare(ctx: &Ctx, argv: &[String]) -> Result<f64> {
    let log = ctx.logs.join("bare-qemu.stderr");
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log)?);
    let t0 = Instant::now();
    let mut p = Proc::spawn("bare QEMU boot", &mut c)?;
    let (st, t1) = p.finish(Duration::from_secs(120))?;
    if !st.success() {
        bail!("bare QEMU boot failed ({st}): {}", tail(&log));
    }
    Ok(ms(t1 - t0))
}

/// (b): `hull-runtime run` from its start to its exit, and the monitor's timings.
pub fn hull(
    ctx: &Ctx,
    root: &StateRoot,
    bundle: &Path,
    id: &str,
) -> Result<(f64, Map<String, Value>)> {
    let tfile = ctx.work.join(format!("timings-{id}.json"));
    let _ = std::fs::remove_file(&tfile);
    let t0 = Instant::now();
    let mut c = Container::run(
        root,
        &ctx.runtime,
        bundle,
        id,
        &ctx.logs,
        None,
        &[("HULL_TIMINGS_FILE", &tfile)],
    )?;
    let (st, t1) = c.proc.finish(Duration::from_secs(180))?;
    if !st.success() {
        bail!("hull-runtime run {id} failed ({st}): {}", c.stderr_text());
    }
    let timings = crate::hull::read_timings(&tfile);
    Ok((ms(t1 - t0), timings))
}

/// (c): `runc run` from its start to its exit.
fn runc(ctx: &Ctx, runc: &Path, bundle: &Path, id: &str) -> Result<f64> {
    let log = ctx.logs.join(format!("{id}.runc.stderr"));
    let mut c = Command::new(runc);
    c.arg("--root")
        .arg(ctx.work.join("runc"))
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log)?);
    let t0 = Instant::now();
    let mut p = Proc::spawn("runc run", &mut c)?;
    let (st, t1) = p.finish(Duration::from_secs(60))?;
    if !st.success() {
        bail!("runc run {id} failed ({st}): {}", tail(&log));
    }
    Ok(ms(t1 - t0))
}

/// `hull-runtime run` in `root`'s mode whose `vm_start` must be that mode's (`warm_up`: the
/// template may be built).
pub fn hull_checked(
    ctx: &Ctx,
    root: &StateRoot,
    mode: VmStart,
    bundle: &Path,
    id: &str,
    warm_up: bool,
) -> Result<(f64, Map<String, Value>)> {
    let (ms, t) = hull(ctx, root, bundle, id)?;
    mode.check(&t, warm_up)
        .with_context(|| format!("{} run {id}", mode.name()))?;
    Ok((ms, t))
}

/// Runs `bundle` (a short-lived process, same VM shape as what follows) once in `root` (clone
/// mode) so that its template exists before anything is timed; the run's timings.
pub fn build_template(
    ctx: &Ctx,
    root: &StateRoot,
    bundle: &Path,
    id: &str,
) -> Result<(f64, Map<String, Value>)> {
    let r = hull_checked(ctx, root, VmStart::Clone, bundle, id, true)?;
    if root.templates().is_empty() {
        bail!(
            "the warm-up clone run {id} left no template in {}",
            root.path().display()
        );
    }
    Ok(r)
}

/// One discarded warm-up round (it builds the template), then `runs` rounds of a, b, b′, c. A
/// failed run (a clone that was not a clone included) is recorded in `failures` and left out.
pub fn run(
    ctx: &Ctx,
    bare_argv: &[String],
    bundle: &Path,
    runs: usize,
    failures: &mut Failures,
) -> Result<Ttw> {
    let clone_root = StateRoot::with_mode(VmStart::Clone)?;
    let cold_root = StateRoot::with_mode(VmStart::Cold)?;
    let mut r = Ttw::default();
    for i in 0..=runs {
        let warm_up = i == 0;
        let round = if warm_up {
            "warm-up".to_string()
        } else {
            format!("{i}/{runs}")
        };
        let a = failures.record(
            &format!("time-to-workload (a) bare boot, round {round}"),
            bare(ctx, bare_argv),
        )?;
        let b = failures.record(
            &format!("time-to-workload (b) hull-runtime run, template clone, round {round}"),
            hull_checked(
                ctx,
                &clone_root,
                VmStart::Clone,
                bundle,
                &format!("tc{i}"),
                warm_up,
            ),
        )?;
        if warm_up && clone_root.templates().is_empty() {
            bail!(
                "no template after the warm-up round in {}: clones cannot be timed",
                clone_root.path().display()
            );
        }
        let b2 = failures.record(
            &format!("time-to-workload (b') hull-runtime run, cold boot, round {round}"),
            hull_checked(
                ctx,
                &cold_root,
                VmStart::Cold,
                bundle,
                &format!("tb{i}"),
                warm_up,
            ),
        )?;
        let c = match ctx.runc.as_deref() {
            Some(bin) => failures.record(
                &format!("time-to-workload (c) runc run, round {round}"),
                runc(
                    ctx,
                    bin,
                    bundle,
                    &format!("hull-bench-{}-{i}", std::process::id()),
                ),
            )?,
            None => None,
        };
        let show = |x: Option<f64>| {
            x.map(|x| format!("{x:.0} ms"))
                .unwrap_or_else(|| "-".into())
        };
        let start = |x: &Option<(f64, Map<String, Value>)>| {
            x.as_ref()
                .and_then(|(_, t)| t.get("vm_start")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "-".into())
        };
        eprintln!(
            "hull-bench: time-to-workload {round}: bare {}, hull {} {}, hull {} {}, runc {}",
            show(a),
            start(&b),
            show(b.as_ref().map(|b| b.0)),
            start(&b2),
            show(b2.as_ref().map(|b| b.0)),
            show(c)
        );
        if warm_up {
            r.build_run = b;
            continue;
        }
        r.rounds.push(Round {
            bare: a,
            clone: b.as_ref().map(|x| x.0),
            cold: b2.as_ref().map(|x| x.0),
            runc: c,
        });
        r.bare_ms.extend(a);
        for (runs, x) in [(&mut r.clone, b), (&mut r.cold, b2)] {
            if let Some((ms, t)) = x {
                runs.ms.push(ms);
                runs.timings.push(t);
            }
        }
        r.runc_ms.extend(c);
    }
    r.templates = clone_root.templates();
    r.template_builds = clone_root.template_builds();
    if r.template_builds > 1 {
        failures.record::<()>(
            "time-to-workload: template builds",
            Err(anyhow::anyhow!(
                "{} template builds in the clone runs' state root (builds.log), expected 1 \
                 (the warm-up's)",
                r.template_builds
            )),
        )?;
    }
    Ok(r)
}
