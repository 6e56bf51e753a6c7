//! `hull-soak`: a fault-injection soak of `hull-runtime`. Runs `--cycles` create → start → exec →
//! kill → delete cycles of a busybox container, `--parallel` at a time, half of them cold boots
//! (`HULL_VM_TEMPLATE=off`: virtiofsd) and half clones; in a `--fault-rate` share of them one
//! SIGKILL (QEMU, virtiofsd or the monitor) at a random point (during/after create, after start,
//! during exec). After each cycle: the state after the fault (`stopped`, or gone if create
//! failed), the monitor's exit status, and leaks after `delete` (processes, state dir, mounts,
//! temp files, taps). The plan comes from a seeded RNG (`--seed` replays it).
//!
//! The VMs use the environment's `HULL_GUEST_DIR`, `HULL_TEMPLATE_DIR`, ... like the tests.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cycle;
mod procs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use cycle::{Fault, Outcome, Plan, Point, Target};

#[derive(Parser, Debug)]
#[command(
    about = "Fault-injection soak of hull-runtime: lifecycle cycles with SIGKILLs of QEMU, virtiofsd or the monitor"
)]
struct Args {
    /// Number of create/start/exec/kill/delete cycles.
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    /// Cycles running at the same time (threads, each with its own state root).
    #[arg(long, default_value_t = 20)]
    parallel: usize,
    /// Share of the cycles that get a fault (0 to 1).
    #[arg(long, default_value_t = 0.5)]
    fault_rate: f64,
    /// Seed of the plan (printed; pass it again to replay the same plan).
    #[arg(long)]
    seed: Option<u64>,
    /// Directory of hull-runtime and hull-monitor (default: $HULL_BIN_DIR, else the
    /// workspace's target/debug).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// splitmix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// The cycles: every other one a cold boot; a fault in `rate` of them.
fn plan(seed: u64, cycles: usize, rate: f64) -> Vec<Plan> {
    let mut rng = Rng(seed);
    let run = std::process::id();
    (0..cycles)
        .map(|index| {
            let cold = index % 2 == 1;
            let fault = (rng.unit() < rate).then(|| {
                let targets: &[Target] = if cold {
                    &[Target::Qemu, Target::Virtiofsd, Target::Monitor]
                } else {
                    &[Target::Qemu, Target::Monitor]
                };
                Fault {
                    target: rng.pick(targets),
                    point: rng.pick(&Point::ALL),
                    delay: std::time::Duration::from_millis(rng.next() % 3000),
                }
            });
            Plan {
                index,
                id: format!("soak{run}-{index}"),
                cold,
                fault,
            }
        })
        .collect()
}

fn default_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 32)
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.cycles == 0 || a.parallel == 0 || !(0.0..=1.0).contains(&a.fault_rate) {
        bail!("--cycles and --parallel must be at least 1, --fault-rate within 0..1");
    }
    let bin_dir = a
        .bin_dir
        .clone()
        .or_else(|| std::env::var_os("HULL_BIN_DIR").map(PathBuf::from))
        .unwrap_or_else(|| hull_testkit::workspace_root().join("target/debug"));
    let runtime = bin_dir.join("hull-runtime");
    let monitor = bin_dir.join("hull-monitor");
    for b in [&runtime, &monitor] {
        if !b.is_file() {
            bail!(
                "{} not found: build with `cargo build --workspace --bins` or pass --bin-dir",
                b.display()
            );
        }
    }
    // hull-runtime finds the monitor beside itself; say it anyway.
    std::env::set_var("HULL_MONITOR", &monitor);
    std::env::set_var("HULL_BIN_DIR", &bin_dir);
    procs::become_subreaper().context("PR_SET_CHILD_SUBREAPER")?;

    let seed = a.seed.unwrap_or_else(default_seed);
    println!(
        "hull-soak: seed {seed} (replay: --seed {seed}), {} cycles, {} in parallel, fault rate {}, binaries in {}",
        a.cycles,
        a.parallel,
        a.fault_rate,
        bin_dir.display()
    );
    let plans = Arc::new(plan(seed, a.cycles, a.fault_rate));
    let next = Arc::new(AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<(Plan, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let taps_before = cycle::host_taps();
    let started = Instant::now();

    let mut roots = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..a.parallel.min(a.cycles) {
        // Short path: socket paths under the root must fit sun_path.
        let root = tempfile::Builder::new()
            .prefix("hs")
            .tempdir_in("/tmp")
            .context("state root")?;
        let env = cycle::Env {
            runtime: runtime.clone(),
            root: root.path().to_path_buf(),
            taps_before: taps_before.clone(),
        };
        roots.push(root);
        let (plans, next, results) = (plans.clone(), next.clone(), results.clone());
        workers.push(std::thread::spawn(move || loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(p) = plans.get(i) else { break };
            let t0 = Instant::now();
            let out = cycle::run(&env, p);
            let verdict = if out.leaks.is_empty() && out.wrong.is_empty() && out.errors.is_empty() {
                "ok".to_string()
            } else {
                format!(
                    "{} leaks, {} wrong states, {} errors",
                    out.leaks.len(),
                    out.wrong.len(),
                    out.errors.len()
                )
            };
            let injected = out
                .injected
                .map(|t| format!("killed {}", t.name()))
                .unwrap_or_else(|| "no kill".into());
            eprintln!(
                "[{:>4}s] {}: {injected}; {}; {verdict} ({:.1}s)",
                started.elapsed().as_secs(),
                p.describe(),
                out.notes.join("; "),
                t0.elapsed().as_secs_f64()
            );
            results
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((p.clone(), out));
        }));
    }
    let mut panicked = 0;
    for w in workers {
        if w.join().is_err() {
            panicked += 1;
        }
    }

    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(PoisonError::into_inner));
    results.sort_by_key(|(p, _)| p.index);
    let count = |t: Target| {
        results
            .iter()
            .filter(|(_, o)| o.injected == Some(t))
            .count()
    };
    let (q, v, m) = (
        count(Target::Qemu),
        count(Target::Virtiofsd),
        count(Target::Monitor),
    );
    let leaks: usize = results.iter().map(|(_, o)| o.leaks.len()).sum();
    let wrong: usize = results.iter().map(|(_, o)| o.wrong.len()).sum();
    let errors: usize = results.iter().map(|(_, o)| o.errors.len()).sum::<usize>() + panicked;
    for (p, o) in &results {
        for l in &o.leaks {
            println!("leak: {}: {l}", p.describe());
        }
        for w in &o.wrong {
            println!("wrong state: {}: {w}", p.describe());
        }
        for e in &o.errors {
            println!("error: {}: {e}", p.describe());
        }
    }
    if panicked > 0 {
        println!("error: {panicked} worker threads panicked");
    }
    println!(
        "cycles {}, faults injected {} (qemu {q}, virtiofsd {v}, monitor {m}), leaks found {leaks}, wrong states {wrong}",
        results.len(),
        q + v + m
    );
    println!(
        "unexpected errors {errors}, seed {seed}, {}s",
        started.elapsed().as_secs()
    );
    drop(roots);
    if leaks > 0 || wrong > 0 || errors > 0 || results.len() != a.cycles {
        std::process::exit(1);
    }
    Ok(())
}
