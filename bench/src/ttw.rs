//! Time-to-workload of `true`: (a) bare QEMU boot of the same kernel with a power-off init,
//! (b) `hull-runtime run`, (c) `runc run`, interleaved run by run so that noise hits all three;
//! plus the monitor's phase timings of every (b).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{Map, Value};

use crate::hull::{Container, StateRoot};
use crate::procs::Proc;
use crate::report::Failures;
use crate::Ctx;

#[derive(Debug, Default)]
pub struct Ttw {
    pub bare_ms: Vec<f64>,
    pub hull_ms: Vec<f64>,
    pub runc_ms: Vec<f64>,
    /// The monitor's `HULL_TIMINGS_FILE` of each (b).
    pub timings: Vec<Map<String, Value>>,
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
    let timings = std::fs::read_to_string(&tfile)
        .ok()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok())
        .unwrap_or_default();
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

/// One discarded warm-up round, then `runs` rounds of a, b, c. A failed run is recorded in
/// `failures` and left out.
pub fn run(
    ctx: &Ctx,
    bare_argv: &[String],
    bundle: &Path,
    runs: usize,
    failures: &mut Failures,
) -> Result<Ttw> {
    let root = StateRoot::new()?;
    let mut r = Ttw::default();
    for i in 0..=runs {
        let round = if i == 0 {
            "warm-up".to_string()
        } else {
            format!("{i}/{runs}")
        };
        let a = failures.record(
            &format!("time-to-workload (a) bare boot, round {round}"),
            bare(ctx, bare_argv),
        )?;
        let b = failures.record(
            &format!("time-to-workload (b) hull-runtime run, round {round}"),
            hull(ctx, &root, bundle, &format!("t{i}")),
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
        eprintln!(
            "hull-bench: time-to-workload {round}: bare {}, hull {}, runc {}",
            show(a),
            show(b.as_ref().map(|b| b.0)),
            show(c)
        );
        if i > 0 {
            r.bare_ms.extend(a);
            if let Some((b, t)) = b {
                r.hull_ms.push(b);
                r.timings.push(t);
            }
            r.runc_ms.extend(c);
        }
    }
    Ok(r)
}
