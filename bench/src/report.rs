//! The markdown report and the JSON results.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::host::Header;
use crate::hull::{TemplateFile, VmStart};
use crate::image::{self, Image};
use crate::io::{Io, EXECS, MIB};
use crate::memory::Group;
use crate::net::{self, Net, Serve};
use crate::reclaim::{self, Reclaim, Run as ReclaimRun};
use crate::stats::{round, summary_json, Summary};
use crate::ttw::{HullRuns, Round, Ttw};

/// Host phases in the order the monitor goes through them (ms since the monitor started); a
/// start has those of its mode (virtiofsd in a cold boot, `restored` in a clone).
const HOST_PHASES: [&str; 11] = [
    "host_prepared_ms",
    "virtiofsd_spawned_ms",
    "qemu_spawned_ms",
    "qmp_ready_ms",
    "restored_ms",
    "agent_connected_ms",
    "agent_ready_ms",
    "container_created_ms",
    "process_started_ms",
    "process_exited_ms",
    "teardown_done_ms",
];
/// Timings that are no phase (reported on their own).
const NOT_PHASES: [&str; 2] = ["vm_start", "template_build_ms"];
/// Guest phases (guest CLOCK_BOOTTIME ms).
const GUEST_PHASES: [&str; 4] = [
    "guest_agent_start_ms",
    "guest_agent_ready_ms",
    "guest_process_started_ms",
    "guest_process_exited_ms",
];

/// Runs that failed: the harness reports them and goes on with the other runs (a failed run is
/// a finding too); only an interrupt stops it.
#[derive(Debug, Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    /// `Ok(Some(v))` for a success, `Ok(None)` for a recorded failure, `Err` if interrupted.
    pub fn record<T>(&mut self, what: &str, r: anyhow::Result<T>) -> anyhow::Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if crate::procs::interrupted() => Err(e),
            Err(e) => {
                let msg = format!("{what}: {e:#}");
                eprintln!("hull-bench: FAILED {msg}");
                self.0.push(msg);
                Ok(None)
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct IoRuns {
    /// Template clones (virtio-9p).
    pub clone: Vec<Io>,
    /// Cold boots (virtio-fs).
    pub cold: Vec<Io>,
    /// (write, read) MiB/s on the host.
    pub host: Vec<(f64, f64)>,
}

impl IoRuns {
    pub fn guest(&self, m: VmStart) -> &[Io] {
        match m {
            VmStart::Clone => &self.clone,
            VmStart::Cold => &self.cold,
        }
    }

    pub fn guest_mut(&mut self, m: VmStart) -> &mut Vec<Io> {
        match m {
            VmStart::Clone => &mut self.clone,
            VmStart::Cold => &mut self.cold,
        }
    }
}

pub struct Report {
    pub header: Header,
    pub runs: usize,
    /// QEMU's command line of a booted VM (the bare boot's source) and of a clone.
    pub qemu_argv: Vec<String>,
    pub clone_qemu_argv: Vec<String>,
    pub bare_argv: Vec<String>,
    pub ttw: Option<Ttw>,
    /// Series of groups of idle containers, one per (containers, mode).
    pub memory: Vec<Vec<Group>>,
    /// The templates the cases cloned from: (case, file).
    pub templates: Vec<(String, TemplateFile)>,
    pub density: Option<Vec<Group>>,
    pub io: Option<IoRuns>,
    pub net: Option<Net>,
    pub image: Option<Image>,
    pub reclaim: Option<Reclaim>,
    pub foreign: Option<crate::foreign::Foreign>,
    pub failures: Failures,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "12.3 (11.0–13.1)" with `prec` decimals, or "-".
fn mmm(s: &Option<Summary>, prec: usize) -> String {
    match s {
        Some(s) if s.samples.len() > 1 => {
            format!("{:.p$} ({:.p$}–{:.p$})", s.median, s.min, s.max, p = prec)
        }
        Some(s) => format!("{:.p$}", s.median, p = prec),
        None => "-".into(),
    }
}

fn ratio(a: &Option<Summary>, b: &Option<Summary>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

/// A phase's time in one start; a phase the start did not go through is absent or 0.
fn phase(t: &Map<String, Value>, key: &str) -> Option<f64> {
    t.get(key)?.as_f64().filter(|&v| v != 0.0)
}

fn phase_values(timings: &[Map<String, Value>], key: &str) -> Vec<f64> {
    timings.iter().filter_map(|t| phase(t, key)).collect()
}

/// Per run `t[key] - t[prev]`.
fn phase_deltas(timings: &[Map<String, Value>], key: &str, prev: Option<&str>) -> Vec<f64> {
    timings
        .iter()
        .filter_map(|t| {
            let v = phase(t, key)?;
            let p = match prev {
                Some(p) => phase(t, p)?,
                None => 0.0,
            };
            Some(v - p)
        })
        .collect()
}

/// Rows of phases side by side for the two VM start modes: per mode, the median time and the
/// median delta to the previous phase that mode went through ("–": not in that mode). `keys`:
/// every phase of either mode, in order.
fn phase_rows_by_mode(s: &mut String, t: &Ttw, keys: &[String]) {
    let per_mode = |m: VmStart| {
        let runs = t.mode(m);
        let (h, g) = phase_order(&runs.timings);
        let mine: Vec<String> = keys
            .iter()
            .filter(|k| h.contains(k) || g.contains(k))
            .cloned()
            .collect();
        phase_summaries(&runs.timings, &mine)
            .into_iter()
            .map(|(k, at, d)| (k.to_string(), (at, d)))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let clone = per_mode(VmStart::Clone);
    let cold = per_mode(VmStart::Cold);
    let cell = |x: Option<&(Option<Summary>, Option<Summary>)>| match x {
        Some((at, d)) => {
            let m = |v: &Option<Summary>| v.as_ref().map(|v| v.median).unwrap_or(f64::NAN);
            format!("{:.1} | {:.1}", m(at), m(d))
        }
        None => "– | –".into(),
    };
    for k in keys {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            k.trim_end_matches("_ms"),
            cell(clone.get(k)),
            cell(cold.get(k))
        );
    }
}

/// Per run: the runtime's wall time minus the monitor's last host phase (exec into the monitor,
/// process exit).
fn exit_overhead(runs: &HullRuns) -> Option<Summary> {
    let (host, _) = phase_order(&runs.timings);
    let last = host.last()?;
    let v: Vec<f64> = runs
        .timings
        .iter()
        .zip(&runs.ms)
        .filter_map(|(m, wall)| Some(wall - phase(m, last)?))
        .collect();
    Summary::of(&v)
}

/// For each phase in `keys`: its time and its delta to the previous phase, summarized.
fn phase_summaries<'a>(
    timings: &[Map<String, Value>],
    keys: &'a [String],
) -> Vec<(&'a str, Option<Summary>, Option<Summary>)> {
    let mut prev: Option<&str> = None;
    keys.iter()
        .map(|k| {
            let at = Summary::of(&phase_values(timings, k));
            let d = Summary::of(&phase_deltas(timings, k, prev));
            prev = Some(k);
            (k.as_str(), at, d)
        })
        .collect()
}

fn phase_order(timings: &[Map<String, Value>]) -> (Vec<String>, Vec<String>) {
    let mut host: Vec<String> = HOST_PHASES.iter().map(|s| s.to_string()).collect();
    let guest: Vec<String> = GUEST_PHASES.iter().map(|s| s.to_string()).collect();
    let mut extra: Vec<String> = timings
        .iter()
        .flat_map(|t| t.iter())
        .filter(|(k, v)| {
            v.is_number()
                && !host.contains(k)
                && !guest.contains(k)
                && !NOT_PHASES.contains(&k.as_str())
        })
        .map(|(k, _)| k.clone())
        .collect();
    extra.sort();
    extra.dedup();
    let seen = |k: &String| timings.iter().any(|t| phase(t, k).is_some());
    host.retain(seen);
    let mut guest: Vec<String> = guest.into_iter().filter(seen).collect();
    extra.retain(seen);
    guest.extend(extra);
    (host, guest)
}

fn group_summaries(gs: &[Group]) -> Value {
    let n = gs.first().map(|g| g.n).unwrap_or(1).max(1) as f64;
    let per = |f: &dyn Fn(&Group) -> u64| {
        Summary::of(&gs.iter().map(|g| mib(f(g)) / n).collect::<Vec<_>>())
    };
    let total =
        |f: &dyn Fn(&Group) -> u64| Summary::of(&gs.iter().map(|g| mib(f(g))).collect::<Vec<_>>());
    let honest = per(&|g| g.honest_total_kib());
    json!({
        "vm_start": gs.first().map(|g| g.mode.name()),
        "containers": gs.first().map(|g| g.n),
        "template_clones": gs.iter().map(|g| g.clones).collect::<Vec<_>>(),
        "pss_mib_per_container_template_file_pages": summary_json(&per(&|g| g.template_pss_kib)),
        "mib_per_container_copy_on_write": summary_json(&per(&|g| g.cow_kib)),
        "template_file_allocated_mib": summary_json(&Summary::of(&gs.iter().map(|g| mib(g.template_alloc_kib())).collect::<Vec<_>>())),
        "mib_per_container_incl_template_file": summary_json(&honest),
        "all_running_ms": summary_json(&Summary::of(&gs.iter().map(|g| g.all_running_ms).collect::<Vec<_>>())),
        "pss_mib_per_container": summary_json(&per(&|g| g.total.pss_kib)),
        "rss_mib_per_container": summary_json(&per(&|g| g.total.rss_kib)),
        "pss_mib_total": summary_json(&total(&|g| g.total.pss_kib)),
        "rss_mib_total": summary_json(&total(&|g| g.total.rss_kib)),
        "pss_mib_per_container_qemu": summary_json(&per(&|g| g.qemu.pss_kib)),
        "pss_mib_per_container_virtiofsd": summary_json(&per(&|g| g.virtiofsd.pss_kib)),
        "pss_mib_per_container_monitor": summary_json(&per(&|g| g.monitor.pss_kib)),
        "rss_mib_per_container_qemu": summary_json(&per(&|g| g.qemu.rss_kib)),
        "rss_mib_per_container_virtiofsd": summary_json(&per(&|g| g.virtiofsd.rss_kib)),
        "rss_mib_per_container_monitor": summary_json(&per(&|g| g.monitor.rss_kib)),
        "settled": gs.iter().map(|g| g.settled).collect::<Vec<_>>(),
        "settle_s": gs.iter().map(|g| round(g.settle_s)).collect::<Vec<_>>(),
        "cleanup_ms": summary_json(&Summary::of(&gs.iter().map(|g| g.cleanup_ms).collect::<Vec<_>>())),
        "leftover_pids": gs.iter().flat_map(|g| g.leftovers.clone()).collect::<Vec<_>>(),
    })
}

/// The three rows of hull vs runc: (label, hull, runc, decimals).
fn net_rows(n: &Net) -> [(String, Option<Summary>, Option<Summary>, usize); 3] {
    [
        (
            format!(
                "TCP host → container, {} MiB through `nc` (MiB/s)",
                net::MIB
            ),
            Net::h2c(&n.hull),
            Net::h2c(&n.runc),
            1,
        ),
        (
            format!(
                "TCP container → host, {} MiB through `nc` (MiB/s)",
                net::MIB
            ),
            Net::c2h(&n.hull),
            Net::c2h(&n.runc),
            1,
        ),
        (
            format!(
                "TCP connect host → container (ms, median of {} per run)",
                net::CONNECTS
            ),
            Net::connect(&n.hull),
            Net::connect(&n.runc),
            2,
        ),
    ]
}

fn net_markdown(s: &mut String, n: &Net) {
    let _ = writeln!(
        s,
        "### Network: the container's veth (MTU {}) to a peer namespace, busybox `nc` / `httpd` (median (min–max))\n",
        net::MTU
    );
    let _ = writeln!(
        s,
        "| from / to the engine's namespace | hull | runc | hull / runc |\n|---|---:|---:|---:|"
    );
    for (name, h, r, prec) in net_rows(n) {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} |",
            mmm(&h, prec),
            mmm(&r, prec),
            ratio(&h, &r)
                .map(|x| format!("{x:.2}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    let _ = writeln!(
        s,
        "| TCP connects slower than {:.0} ms (SYN resent), all runs | {} | {} | |",
        net::SLOW_CONNECT_MS,
        Net::slow_connects(&n.hull),
        Net::slow_connects(&n.runc)
    );
    let fresh = Summary::of(&n.fresh_ms);
    let joined = Summary::of(&n.joined_ms);
    let diff = Summary::of(&n.diff_ms);
    let _ = writeln!(
        s,
        "\n| time to workload, `hull-runtime run` of `true` | ms |\n|---|---:|"
    );
    let _ = writeln!(
        s,
        "| fresh network namespace (default spec: no interface) | {} |",
        mmm(&fresh, 0)
    );
    let _ = writeln!(
        s,
        "| the engine's namespace joined (its veth wired into the VM) | {} |",
        mmm(&joined, 0)
    );
    let _ = writeln!(s, "| joined − fresh (per round) | {} |", mmm(&diff, 0));
    let all: Vec<Map<String, Value>> = n
        .fresh_timings
        .iter()
        .chain(&n.joined_timings)
        .cloned()
        .collect();
    let (host, _) = phase_order(&all);
    if !host.is_empty() {
        let _ = writeln!(
            s,
            "\n| phase (host; median Δ to the previous, ms) | fresh | joined |\n|---|---:|---:|"
        );
        let median = |x: &Option<Summary>| x.as_ref().map(|x| x.median).unwrap_or(f64::NAN);
        for ((k, _, df), (_, _, dj)) in phase_summaries(&n.fresh_timings, &host)
            .into_iter()
            .zip(phase_summaries(&n.joined_timings, &host))
        {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.1} |",
                k.trim_end_matches("_ms"),
                median(&df),
                median(&dj)
            );
        }
    }
    s.push('\n');
}

fn serve_json(side: &[Serve]) -> Value {
    json!({
        "host_to_container_mib_s": summary_json(&Net::h2c(side)),
        "container_to_host_mib_s": summary_json(&Net::c2h(side)),
        "connect_ms_median_per_run": summary_json(&Net::connect(side)),
        "slow_connects": Net::slow_connects(side),
        "connect_ms_samples_per_run": side
            .iter()
            .map(|r| r.connect_ms.iter().map(|&x| round(x)).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    })
}

fn net_json(n: &Net) -> Value {
    let [h2c, c2h, connect] = net_rows(n).map(|(_, h, r, _)| ratio(&h, &r).map(round));
    let all: Vec<Map<String, Value>> = n
        .fresh_timings
        .iter()
        .chain(&n.joined_timings)
        .cloned()
        .collect();
    let (host, _) = phase_order(&all);
    let mut phases = Map::new();
    for ((k, _, df), (_, _, dj)) in phase_summaries(&n.fresh_timings, &host)
        .into_iter()
        .zip(phase_summaries(&n.joined_timings, &host))
    {
        phases.insert(
            k.to_string(),
            json!({"delta_fresh": summary_json(&df), "delta_joined": summary_json(&dj)}),
        );
    }
    json!({
        "size_mib": net::MIB,
        "connects_per_run": net::CONNECTS,
        "mtu": net::MTU,
        "hull": serve_json(&n.hull),
        "runc": serve_json(&n.runc),
        "ratio_hull_over_runc": {
            "host_to_container": h2c,
            "container_to_host": c2h,
            "connect": connect,
        },
        "time_to_workload": {
            "fresh_netns_ms": summary_json(&Summary::of(&n.fresh_ms)),
            "engine_netns_ms": summary_json(&Summary::of(&n.joined_ms)),
            "engine_minus_fresh_ms": summary_json(&Summary::of(&n.diff_ms)),
            "host_phases": phases,
            "timings_fresh_per_run": n.fresh_timings,
            "timings_engine_netns_per_run": n.joined_timings,
        },
    })
}

fn ratio_text(a: &Option<Summary>, b: &Option<Summary>) -> String {
    ratio(a, b)
        .map(|x| format!("{x:.2}×"))
        .unwrap_or_else(|| "-".into())
}

/// Pulls: (label, summary) of hull, skopeo, podman.
fn image_pulls(i: &Image) -> [(String, Option<Summary>); 3] {
    [
        (
            "`hull pull` (download, verify, unpack into the store)".into(),
            Summary::of(&i.hull_pull_ms),
        ),
        (
            "`skopeo copy` to an OCI layout (download, verify, no unpack)".into(),
            Summary::of(&i.skopeo_ms),
        ),
        (
            match &i.podman {
                Some(v) => {
                    format!("`podman pull`, private overlay store (download, verify, unpack; {v})")
                }
                None => "`podman pull` (podman not installed)".into(),
            },
            Summary::of(&i.podman_ms),
        ),
    ]
}

fn image_markdown(s: &mut String, i: &Image) {
    let _ = writeln!(
        s,
        "### Images: pull of a {}-layer image ({:.1} MiB gzip, {:.1} MiB of tar: busybox + {} layers of {}×{} MiB random files) from a local `docker-registry`, fresh store each run (ms, median (min–max))\n",
        i.layers,
        i.blob_mib,
        i.tar_mib,
        image::RANDOM_LAYERS,
        image::FILES_PER_LAYER,
        image::FILE_MIB
    );
    let [h, sk, pd] = image_pulls(i);
    let _ = writeln!(s, "| pull | ms | hull / this |\n|---|---:|---:|");
    for (name, x) in [&h, &sk, &pd] {
        let _ = writeln!(s, "| {name} | {} | {} |", mmm(x, 0), ratio_text(&h.1, x));
    }
    let a = Summary::of(&i.runtime_ms);
    let b = Summary::of(&i.hull_run_none_ms);
    let c = Summary::of(&i.hull_run_ms);
    let _ = writeln!(
        s,
        "\n**Time to workload of `true` in the demo image (`guest/demo/build.sh`, loaded once; ms, median (min–max))**\n"
    );
    let _ = writeln!(s, "| case | ms |\n|---|---:|");
    let _ = writeln!(
        s,
        "| (a) `hull-runtime run`, bundle = the demo's layer unpacked + `hull-runtime spec` | {} |",
        mmm(&a, 0)
    );
    let _ = writeln!(
        s,
        "| (b) `hull run --rm --network none hull-demo true` | {} |",
        mmm(&b, 0)
    );
    let _ = writeln!(
        s,
        "| (c) `hull run --rm hull-demo true` (default network: QEMU user-mode) | {} |",
        mmm(&c, 0)
    );
    let _ = writeln!(
        s,
        "| **b / a** (image layer: overlay, spec, supervisor) | **{}** |",
        ratio_text(&b, &a)
    );
    let _ = writeln!(s, "| c / a | {} |\n", ratio_text(&c, &a));
}

fn image_json(i: &Image) -> Value {
    let [h, sk, pd] = image_pulls(i);
    let a = Summary::of(&i.runtime_ms);
    let b = Summary::of(&i.hull_run_none_ms);
    let c = Summary::of(&i.hull_run_ms);
    json!({
        "pull": {
            "layers": i.layers,
            "blob_mib": round(i.blob_mib),
            "tar_mib": round(i.tar_mib),
            "podman_version": i.podman,
            "hull_pull_ms": summary_json(&h.1),
            "skopeo_copy_ms": summary_json(&sk.1),
            "podman_pull_ms": summary_json(&pd.1),
            "ratio_hull_over_skopeo": ratio(&h.1, &sk.1).map(round),
            "ratio_hull_over_podman": ratio(&h.1, &pd.1).map(round),
        },
        "time_to_workload": {
            "hull_runtime_run_ms": summary_json(&a),
            "hull_run_network_none_ms": summary_json(&b),
            "hull_run_ms": summary_json(&c),
            "ratio_hull_run_none_over_runtime": ratio(&b, &a).map(round),
            "ratio_hull_run_over_runtime": ratio(&c, &a).map(round),
        },
    })
}

/// The time-to-workload summaries: bare, clone, cold, runc.
struct TtwSummaries {
    bare: Option<Summary>,
    clone: Option<Summary>,
    cold: Option<Summary>,
    runc: Option<Summary>,
}

fn ttw_summaries(t: &Ttw) -> TtwSummaries {
    TtwSummaries {
        bare: Summary::of(&t.bare_ms),
        clone: Summary::of(&t.clone.ms),
        cold: Summary::of(&t.cold.ms),
        runc: Summary::of(&t.runc_ms),
    }
}

/// Both modes' timings, for the union of their phases.
fn all_timings(t: &Ttw) -> Vec<Map<String, Value>> {
    t.clone
        .timings
        .iter()
        .chain(&t.cold.timings)
        .cloned()
        .collect()
}

fn ttw_markdown(s: &mut String, t: &Ttw) {
    let x = ttw_summaries(t);
    let _ = writeln!(
        s,
        "### Time to workload: `true` in a busybox bundle (ms, median (min–max))\n"
    );
    let _ = writeln!(s, "| case | ms | / (a) |\n|---|---:|---:|");
    let rel = |v: &Option<Summary>| ratio_text(v, &x.bare);
    for (name, v) in [
        (
            "(a) bare QEMU boot, same kernel + machine, power-off init",
            &x.bare,
        ),
        (
            "(b) `hull-runtime run`, VM cloned from a template (default; rootfs over virtio-9p)",
            &x.clone,
        ),
        (
            "(b′) `hull-runtime run`, VM booted (`HULL_VM_TEMPLATE=off`; rootfs over virtio-fs)",
            &x.cold,
        ),
        ("(c) `runc run`", &x.runc),
    ] {
        let _ = writeln!(s, "| {name} | {} | {} |", mmm(v, 0), rel(v));
    }
    let _ = writeln!(
        s,
        "| **b / a**: clone / bare (target ≤ 0.5) | | **{}** |",
        ratio_text(&x.clone, &x.bare)
    );
    let _ = writeln!(
        s,
        "| **b′ / a**: cold / bare | | **{}** |",
        ratio_text(&x.cold, &x.bare)
    );
    let _ = writeln!(
        s,
        "| b / b′: clone / cold | | {} |",
        ratio_text(&x.clone, &x.cold)
    );
    for (name, v) in per_round_ratios(t) {
        let _ = writeln!(s, "| {name} | | {} |", mmm(&v, 2));
    }
    let _ = writeln!(
        s,
        "| b / c, b′ / c: the price of the VM | | {}, {} |",
        ratio_text(&x.clone, &x.runc),
        ratio_text(&x.cold, &x.runc)
    );
    let build = t.build_run.as_ref().map(|(wall, tm)| {
        format!(
            "the warm-up round built it ({}: template build {:.0} ms, that run {:.0} ms)",
            tm.get("vm_start").and_then(Value::as_str).unwrap_or("?"),
            tm.get("template_build_ms")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN),
            wall
        )
    });
    let starts = |r: &HullRuns| {
        let mut v: Vec<String> = r
            .timings
            .iter()
            .map(|t| {
                t.get("vm_start")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        v.sort();
        v.dedup();
        v.join(", ")
    };
    let _ = writeln!(
        s,
        "\nTemplate: {}; `builds.log` has {} line(s) after all rounds; `vm_start` of the timed runs: \
         (b) {}, (b′) {} (a timed (b) that is not `clone` fails).",
        build.unwrap_or_else(|| "the warm-up round failed".into()),
        t.template_builds,
        starts(&t.clone),
        starts(&t.cold)
    );
    let all = all_timings(t);
    let (host, guest) = phase_order(&all);
    if !host.is_empty() {
        let _ = writeln!(s, "\n### Phases of (b) clone and (b′) cold (median ms; Δ = median of per-run differences to the previous phase of that mode)\n");
        let _ = writeln!(
            s,
            "| phase (host, since monitor start) | clone at | clone Δ | cold at | cold Δ |\n|---|---:|---:|---:|---:|"
        );
        phase_rows_by_mode(s, t, &host);
        let m = |r: &HullRuns| {
            exit_overhead(r)
                .map(|x| format!("{:.1}", x.median))
                .unwrap_or_else(|| "–".into())
        };
        let _ = writeln!(
            s,
            "| runtime start→exit minus the above (exec, process exit) | | {} | | {} |",
            m(&t.clone),
            m(&t.cold)
        );
        let _ = writeln!(
            s,
            "\n| phase (guest CLOCK_BOOTTIME) | clone at | clone Δ | cold at | cold Δ |\n|---|---:|---:|---:|---:|"
        );
        phase_rows_by_mode(s, t, &guest);
    }
    s.push('\n');
}

/// Ratios within each round (same host noise for both), summarized: (label, summary).
fn per_round_ratios(t: &Ttw) -> [(&'static str, Option<Summary>); 3] {
    let r = |f: fn(&Round) -> Option<f64>| Summary::of(&t.per_round(f));
    [
        (
            "b / a per round, median (min–max)",
            r(|x| Some(x.clone? / x.bare?)),
        ),
        (
            "b′ / a per round, median (min–max)",
            r(|x| Some(x.cold? / x.bare?)),
        ),
        (
            "b / b′ per round, median (min–max)",
            r(|x| Some(x.clone? / x.cold?)),
        ),
    ]
}

fn ttw_json(t: &Ttw, bare_argv: &[String]) -> Value {
    let x = ttw_summaries(t);
    let [pa, pb, pc] = per_round_ratios(t).map(|(_, v)| summary_json(&v));
    let phases = |r: &HullRuns| {
        let (host, guest) = phase_order(&r.timings);
        let mut phases = Map::new();
        for keys in [&host, &guest] {
            for (k, at, d) in phase_summaries(&r.timings, keys) {
                phases.insert(
                    k.to_string(),
                    json!({"at": summary_json(&at), "delta": summary_json(&d)}),
                );
            }
        }
        Value::Object(phases)
    };
    json!({
        "bare_qemu_boot_ms": summary_json(&x.bare),
        "hull_clone_run_ms": summary_json(&x.clone),
        "hull_cold_run_ms": summary_json(&x.cold),
        "runc_run_ms": summary_json(&x.runc),
        "ratio_clone_over_bare": ratio(&x.clone, &x.bare).map(round),
        "ratio_cold_over_bare": ratio(&x.cold, &x.bare).map(round),
        "ratio_clone_over_cold": ratio(&x.clone, &x.cold).map(round),
        "ratio_clone_over_runc": ratio(&x.clone, &x.runc).map(round),
        "ratio_cold_over_runc": ratio(&x.cold, &x.runc).map(round),
        "per_round_clone_over_bare": pa,
        "per_round_cold_over_bare": pb,
        "per_round_clone_over_cold": pc,
        "rounds_ms": t
            .rounds
            .iter()
            .map(|r| json!({"bare": r.bare.map(round), "clone": r.clone.map(round), "cold": r.cold.map(round), "runc": r.runc.map(round)}))
            .collect::<Vec<_>>(),
        "bare_qemu_argv": bare_argv,
        "template_build_run": t.build_run.as_ref().map(|(ms, tm)| json!({"ms": round(*ms), "timings": tm})),
        "template_builds": t.template_builds,
        "templates": t.templates.iter().map(TemplateFile::json).collect::<Vec<_>>(),
        "phases_clone": phases(&t.clone),
        "phases_cold": phases(&t.cold),
        "exit_overhead_ms_clone": summary_json(&exit_overhead(&t.clone)),
        "exit_overhead_ms_cold": summary_json(&exit_overhead(&t.cold)),
        "timings_per_run_clone": t.clone.timings,
        "timings_per_run_cold": t.cold.timings,
    })
}

/// Summary of `f` per container over a series.
fn per_container(gs: &[Group], f: &dyn Fn(&Group) -> u64) -> Option<Summary> {
    let n = gs.first().map(|g| g.n).unwrap_or(1).max(1) as f64;
    Summary::of(&gs.iter().map(|g| mib(f(g)) / n).collect::<Vec<_>>())
}

fn memory_markdown(s: &mut String, memory: &[Vec<Group>], templates: &[(String, TemplateFile)]) {
    let series: Vec<&Vec<Group>> = memory.iter().filter(|gs| !gs.is_empty()).collect();
    let _ = writeln!(s, "### Memory of idle containers (`sleep 1000`, 256 MiB guest RAM, after PSS settled; MiB, median (min–max))\n");
    let _ = writeln!(s, "| VM start | containers | PSS / container | RSS / container | PSS total | PSS QEMU | of which template file pages | of which copy-on-write guest RAM | PSS virtiofsd | PSS monitor | settled |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for gs in &series {
        let g0 = &gs[0];
        let per = |f: &dyn Fn(&Group) -> u64| per_container(gs, f);
        let tot = Summary::of(&gs.iter().map(|g| mib(g.total.pss_kib)).collect::<Vec<_>>());
        let settled = gs.iter().filter(|g| g.settled).count();
        let clone_only = |v: Option<Summary>| match g0.mode {
            VmStart::Clone => mmm(&v, 1),
            VmStart::Cold => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
            g0.mode.name(),
            g0.mode.fs(),
            g0.n,
            mmm(&per(&|g| g.total.pss_kib), 1),
            mmm(&per(&|g| g.total.rss_kib), 1),
            mmm(&tot, 1),
            mmm(&per(&|g| g.qemu.pss_kib), 1),
            clone_only(per(&|g| g.template_pss_kib)),
            clone_only(per(&|g| g.cow_kib)),
            mmm(&per(&|g| g.virtiofsd.pss_kib), 1),
            mmm(&per(&|g| g.monitor.pss_kib), 1),
            settled,
            gs.len()
        );
    }
    if !templates.is_empty() {
        let _ = writeln!(
            s,
            "\n**Template RAM files on the state root's tmpfs (one per VM shape, paid once however many clones; MiB)**\n"
        );
        let _ = writeln!(
            s,
            "| case | key | RAM file size | allocated (`du`, st_blocks) | device state file | build (ms) |\n|---|---|---:|---:|---:|---:|"
        );
        for (case, t) in templates {
            let _ = writeln!(
                s,
                "| {case} | `{}` | {:.0} | {:.1} | {:.2} | {} |",
                t.key,
                t.size_bytes as f64 / 1048576.0,
                t.alloc_bytes as f64 / 1048576.0,
                t.state_bytes as f64 / 1048576.0,
                t.build_ms
                    .map(|b| format!("{b:.0}"))
                    .unwrap_or_else(|| "?".into())
            );
        }
    }
    // Clone vs cold per container, with the template file counted in.
    let find = |n: usize, m: VmStart| {
        series
            .iter()
            .find(|gs| gs[0].n == n && gs[0].mode == m)
            .copied()
    };
    let mut ns: Vec<usize> = series.iter().map(|gs| gs[0].n).collect();
    ns.sort_unstable();
    ns.dedup();
    if ns.iter().any(|&n| find(n, VmStart::Clone).is_some()) {
        let _ = writeln!(
            s,
            "\n**Per idle container, clone vs cold (MiB, median (min–max)); \"incl. template file\": PSS without the template file's pages, plus the whole allocated file / containers: every page counted once**\n"
        );
        let _ = writeln!(
            s,
            "| containers | clone PSS | clone incl. template file | cold PSS | clone / cold (PSS) | target (clone PSS) |\n|---:|---:|---:|---:|---:|---|"
        );
        for n in ns {
            let clone = find(n, VmStart::Clone);
            let cold = find(n, VmStart::Cold);
            let pss =
                |gs: Option<&Vec<Group>>| gs.and_then(|gs| per_container(gs, &|g| g.total.pss_kib));
            let honest = clone.and_then(|gs| per_container(gs, &|g| g.honest_total_kib()));
            let target = match n {
                1 => "≤ 40",
                10 => "≤ 30",
                _ => "",
            };
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {} | {} | {target} |",
                mmm(&pss(clone), 1),
                mmm(&honest, 1),
                mmm(&pss(cold), 1),
                ratio_text(&pss(clone), &pss(cold)),
            );
        }
    }
    s.push('\n');
}

fn density_markdown(s: &mut String, gs: &[Group]) {
    let n = gs.first().map(|g| g.n).unwrap_or(0);
    let mode = gs.first().map(|g| g.mode).unwrap_or(VmStart::Clone);
    let all = Summary::of(
        &gs.iter()
            .map(|g| g.all_running_ms / 1e3)
            .collect::<Vec<_>>(),
    );
    let pss = Summary::of(&gs.iter().map(|g| mib(g.total.pss_kib)).collect::<Vec<_>>());
    let honest = Summary::of(
        &gs.iter()
            .map(|g| mib(g.honest_total_kib()))
            .collect::<Vec<_>>(),
    );
    let cleanup = Summary::of(&gs.iter().map(|g| g.cleanup_ms).collect::<Vec<_>>());
    let left: Vec<i32> = gs.iter().flat_map(|g| g.leftovers.clone()).collect();
    let clones: Vec<String> = gs.iter().map(|g| format!("{}/{}", g.clones, g.n)).collect();
    let _ = writeln!(
        s,
        "### Density: {n} idle containers started at once, {} ({}) (median (min–max))\n",
        mode.name(),
        mode.fs()
    );
    let _ = writeln!(s, "| all `running` (s) | PSS total (MiB) | incl. template file (MiB) | template clones | kill → no process left (ms) | processes left |");
    let _ = writeln!(s, "|---:|---:|---:|---|---:|---|");
    let mut cl = clones.clone();
    cl.dedup();
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |\n",
        mmm(&all, 2),
        mmm(&pss, 1),
        mmm(&honest, 1),
        cl.join(", "),
        mmm(&cleanup, 0),
        if left.is_empty() {
            "none".to_string()
        } else {
            format!("{left:?}")
        }
    );
}

fn io_markdown(s: &mut String, io: &IoRuns) {
    let col = |m: VmStart, f: &dyn Fn(&Io) -> f64| {
        Summary::of(&io.guest(m).iter().map(f).collect::<Vec<_>>())
    };
    let hw = Summary::of(&io.host.iter().map(|h| h.0).collect::<Vec<_>>());
    let hr = Summary::of(&io.host.iter().map(|h| h.1).collect::<Vec<_>>());
    let _ = writeln!(s, "### Shared-fs I/O: virtio-9p (clone) vs virtio-fs (cold); {MIB} MiB sequential, `dd bs=1M` (MiB/s), and exec latency (ms per exec of `busybox true` from the share, {EXECS} in a loop, guest cache dropped first); median (min–max), guest RAM 512 MiB\n");
    let _ = writeln!(
        s,
        "| share, transfer | host (same filesystem) | virtio-9p (clone) | virtio-fs (cold) | 9p / virtio-fs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    type Getter = fn(&Io) -> f64;
    let rows: [(&str, Option<&Option<Summary>>, Getter, usize); 6] = [
        (
            "rootfs share, write (conv=fsync), MiB/s",
            Some(&hw),
            |i| i.rootfs_write,
            0,
        ),
        (
            "rootfs share, read (guest cache dropped), MiB/s",
            Some(&hr),
            |i| i.rootfs_read,
            0,
        ),
        ("rootfs share, exec, ms", None, |i| i.rootfs_exec_ms, 2),
        (
            "bind mount, write (conv=fsync), MiB/s",
            Some(&hw),
            |i| i.bind_write,
            0,
        ),
        (
            "bind mount, read (guest cache dropped), MiB/s",
            Some(&hr),
            |i| i.bind_read,
            0,
        ),
        ("bind mount, exec, ms", None, |i| i.bind_exec_ms, 2),
    ];
    for (name, host, f, prec) in rows {
        let p9 = col(VmStart::Clone, &f);
        let vfs = col(VmStart::Cold, &f);
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} |",
            host.map(|h| mmm(h, 0)).unwrap_or_else(|| "–".into()),
            mmm(&p9, prec),
            mmm(&vfs, prec),
            ratio(&p9, &vfs)
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    s.push('\n');
}

fn io_json(io: &IoRuns) -> Value {
    let side = |m: VmStart| {
        let col = |f: &dyn Fn(&Io) -> f64| {
            summary_json(&Summary::of(&io.guest(m).iter().map(f).collect::<Vec<_>>()))
        };
        json!({
            "vm_start": m.name(),
            "fs": m.fs(),
            "rootfs_write_mib_s": col(&|i| i.rootfs_write),
            "rootfs_read_mib_s": col(&|i| i.rootfs_read),
            "rootfs_exec_ms": col(&|i| i.rootfs_exec_ms),
            "bind_write_mib_s": col(&|i| i.bind_write),
            "bind_read_mib_s": col(&|i| i.bind_read),
            "bind_exec_ms": col(&|i| i.bind_exec_ms),
        })
    };
    json!({
        "size_mib": MIB,
        "execs_per_loop": EXECS,
        "host_write_mib_s": summary_json(&Summary::of(&io.host.iter().map(|h| h.0).collect::<Vec<_>>())),
        "host_read_mib_s": summary_json(&Summary::of(&io.host.iter().map(|h| h.1).collect::<Vec<_>>())),
        "clone": side(VmStart::Clone),
        "cold": side(VmStart::Cold),
    })
}

/// Per run `f`, summarized.
fn reclaim_col(runs: &[ReclaimRun], f: impl Fn(&ReclaimRun) -> f64) -> Option<Summary> {
    Summary::of(&runs.iter().map(f).collect::<Vec<_>>())
}

fn reclaim_markdown(s: &mut String, r: &Reclaim) {
    let _ = writeln!(
        s,
        "### Memory reclaim: host PSS of one {} MiB VM (QEMU + virtiofsd + monitor, as `GET /v1/vm/metrics` sums it) idle, holding {} MiB of `/dev/urandom` in a tmpfs, after `rm` (free page reporting), after the balloon went to {} MiB and back (MiB, median (min–max))\n",
        reclaim::VM_MIB,
        reclaim::FILL_MIB,
        reclaim::INFLATED_MIB
    );
    let _ = writeln!(
        s,
        "Each figure is read every 0.5 s until two reads 2 s apart differ by < 1 MiB (30 s bound idle and holding, 60 s after `rm` and a resize); \"level after\" is when the final level was first read, from the end of the action; \"settled\" counts the runs that settled before the bound.\n"
    );
    for m in VmStart::BOTH {
        let runs = r.mode(m);
        if runs.is_empty() {
            continue;
        }
        let clone = m == VmStart::Clone;
        let _ = writeln!(
            s,
            "**{} ({}; RAM: {})**\n",
            m.name(),
            m.fs(),
            if clone {
                "private mapping of the template's file"
            } else {
                "shared memfd"
            }
        );
        let _ = write!(
            s,
            "| point | host PSS | − idle | action (s) | level after (s) | settled | guest MemTotal / MemFree |"
        );
        if clone {
            let _ = write!(
                s,
                " template file allocated | host incl. template file | − idle |"
            );
        }
        let _ = writeln!(
            s,
            "\n|---|---:|---:|---:|---:|---|---:|{}",
            if clone { "---:|---:|---:|" } else { "" }
        );
        type Get = fn(&ReclaimRun) -> &reclaim::Point;
        let rows: [(String, &str, Get); 5] = [
            ("(a) idle, `sleep 1000`".into(), "`run --detach`", |x| {
                &x.idle
            }),
            (
                format!("(b) holding {} MiB in `/fill` (tmpfs)", reclaim::FILL_MIB),
                "the write",
                |x| &x.holding,
            ),
            (
                "(c) after `rm /fill/x` (free page reporting)".into(),
                "`rm`",
                |x| &x.freed,
            ),
            (
                format!(
                    "(d) balloon inflated, {} → {} MiB",
                    reclaim::VM_MIB,
                    reclaim::INFLATED_MIB
                ),
                "PUT",
                |x| &x.inflated,
            ),
            (
                format!(
                    "(e) balloon deflated, {} → {} MiB",
                    reclaim::INFLATED_MIB,
                    reclaim::VM_MIB
                ),
                "PUT",
                |x| &x.deflated,
            ),
        ];
        for (i, (name, action, get)) in rows.iter().enumerate() {
            let pss = reclaim_col(runs, |x| get(x).pss_mib());
            let delta = reclaim_col(runs, |x| get(x).pss_mib() - x.idle.pss_mib());
            let act = reclaim_col(runs, |x| get(x).action_ms / 1e3);
            let level = reclaim_col(runs, |x| get(x).level_s);
            let settled = runs.iter().filter(|x| get(x).settled).count();
            let guest = |f: fn(&reclaim::Point) -> Option<u64>| {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|x| f(get(x)))
                    .map(|k| k as f64 / 1024.0)
                    .collect();
                Summary::of(&v)
                    .map(|x| format!("{:.0}", x.median))
                    .unwrap_or_else(|| "?".into())
            };
            let _ = write!(
                s,
                "| {name} | {} | {} | {action} {} | {} | {settled}/{} | {} / {} |",
                mmm(&pss, 1),
                if i == 0 {
                    "–".to_string()
                } else {
                    mmm(&delta, 1)
                },
                mmm(&act, 1),
                mmm(&level, 1),
                runs.len(),
                guest(|p| p.guest_total_kib),
                guest(|p| p.guest_free_kib),
            );
            if clone {
                let tf: Vec<f64> = runs
                    .iter()
                    .filter_map(|x| get(x).template_alloc_kib)
                    .map(|k| k as f64 / 1024.0)
                    .collect();
                let host = reclaim_col(runs, |x| get(x).host_mib());
                let host_delta = reclaim_col(runs, |x| get(x).host_mib() - x.idle.host_mib());
                let _ = write!(
                    s,
                    " {} | {} | {} |",
                    mmm(&Summary::of(&tf), 1),
                    mmm(&host, 1),
                    if i == 0 {
                        "–".to_string()
                    } else {
                        mmm(&host_delta, 1)
                    }
                );
            }
            s.push('\n');
        }
        let cost = reclaim_col(runs, ReclaimRun::fill_cost_mib);
        let back = reclaim_col(runs, ReclaimRun::returned_mib);
        let kept = reclaim_col(runs, ReclaimRun::kept_mib);
        let share = reclaim_col(runs, |x| {
            100.0 * x.returned_mib() / x.fill_cost_mib().max(1e-9)
        });
        let _ = writeln!(
            s,
            "\nThe {} MiB cost the host **{} MiB** (b − a); after `rm`, **{} MiB came back** (b − c; {} % of b − a), and the VM stayed {} MiB above idle (c − a).",
            reclaim::FILL_MIB,
            mmm(&cost, 1),
            mmm(&back, 1),
            mmm(&share, 0),
            mmm(&kept, 1)
        );
        if clone {
            let growth = reclaim_col(runs, |x| {
                let k = |p: &reclaim::Point| p.template_alloc_kib.unwrap_or(0) as f64 / 1024.0;
                k(&x.deflated) - k(&x.idle)
            });
            let host_cost = reclaim_col(runs, ReclaimRun::host_fill_cost_mib);
            let host_back = reclaim_col(runs, ReclaimRun::host_returned_mib);
            let host_kept = reclaim_col(runs, ReclaimRun::host_kept_mib);
            let after = reclaim_col(runs, |x| {
                x.template_after_kib.unwrap_or(0) as f64 / 1024.0
                    - x.idle.template_alloc_kib.unwrap_or(0) as f64 / 1024.0
            });
            let _ = writeln!(
                s,
                "The template's memory file (tmpfs, shared by the clones of this shape, in no process's PSS where unmapped) grew by **{} MiB** from (a) to (e): a clone's fault on a hole of the file (a page free in the template) allocates a zeroed page in the file, and discarding the clone's copy does not free it while the clone runs. Counting it (\"host incl. template file\": PSS without the file's mapped pages, plus the whole file): the fill cost the host {} MiB, {} MiB came back after `rm`, and the host kept {} MiB more than at (a). (f) Once the clone ended (its monitor punched the template's recorded holes again), the file was **{} MiB** from its size at (a).",
                mmm(&growth, 1),
                mmm(&host_cost, 1),
                mmm(&host_back, 1),
                mmm(&host_kept, 1),
                mmm(&after, 1)
            );
        }
        let left: Vec<i32> = runs.iter().flat_map(|x| x.leftovers.clone()).collect();
        let others: Vec<usize> = runs.iter().map(|x| x.other_qemus).collect();
        let _ = writeln!(
            s,
            "Processes left after `delete --force`: {}. Other QEMUs on the host at the start of each run: {others:?}.\n",
            if left.is_empty() {
                "none".to_string()
            } else {
                format!("{left:?}")
            }
        );
    }
}

fn reclaim_json(r: &Reclaim) -> Value {
    let side = |m: VmStart| {
        let runs = r.mode(m);
        let col = |f: &dyn Fn(&ReclaimRun) -> f64| summary_json(&reclaim_col(runs, f));
        json!({
            "vm_start": m.name(),
            "fs": m.fs(),
            "pss_mib_idle": col(&|x| x.idle.pss_mib()),
            "pss_mib_holding": col(&|x| x.holding.pss_mib()),
            "pss_mib_after_free": col(&|x| x.freed.pss_mib()),
            "after_free_level_s": col(&|x| x.freed.level_s),
            "pss_mib_inflated": col(&|x| x.inflated.pss_mib()),
            "pss_mib_deflated": col(&|x| x.deflated.pss_mib()),
            "inflate_call_ms": col(&|x| x.inflated.action_ms),
            "deflate_call_ms": col(&|x| x.deflated.action_ms),
            "fill_cost_mib": col(&|x| x.fill_cost_mib()),
            "returned_mib": col(&|x| x.returned_mib()),
            "above_idle_after_free_mib": col(&|x| x.kept_mib()),
            "incl_template_file": {
                "host_mib_idle": col(&|x| x.idle.host_mib()),
                "host_mib_holding": col(&|x| x.holding.host_mib()),
                "host_mib_after_free": col(&|x| x.freed.host_mib()),
                "host_mib_inflated": col(&|x| x.inflated.host_mib()),
                "host_mib_deflated": col(&|x| x.deflated.host_mib()),
                "fill_cost_mib": col(&|x| x.host_fill_cost_mib()),
                "returned_mib": col(&|x| x.host_returned_mib()),
                "above_idle_after_free_mib": col(&|x| x.host_kept_mib()),
            },
            "runs": runs.iter().map(ReclaimRun::json).collect::<Vec<_>>(),
        })
    };
    json!({
        "vm_memory_mib": reclaim::VM_MIB,
        "fill_mib": reclaim::FILL_MIB,
        "inflated_mib": reclaim::INFLATED_MIB,
        "templates": r.templates.iter().map(TemplateFile::json).collect::<Vec<_>>(),
        "clone": side(VmStart::Clone),
        "cold": side(VmStart::Cold),
    })
}

impl Report {
    pub fn new(header: Header, runs: usize, qemu_argv: &[String]) -> Self {
        Self {
            header,
            runs,
            qemu_argv: qemu_argv.to_vec(),
            clone_qemu_argv: Vec::new(),
            bare_argv: Vec::new(),
            ttw: None,
            memory: Vec::new(),
            templates: Vec::new(),
            density: None,
            io: None,
            net: None,
            image: None,
            reclaim: None,
            foreign: None,
            failures: Failures::default(),
        }
    }

    pub fn markdown(&self) -> String {
        let h = &self.header;
        let mut s = String::new();
        let _ = writeln!(s, "## hull benchmark\n");
        let _ = writeln!(
            s,
            "{} · checkout {} · accel **{}** · QEMU {} · guest kernel config `{}` · {} · {} cores · host {} · {} runs per case",
            h.date, h.checkout, h.accel, h.qemu, h.kernel_key, h.cpu, h.cores, h.host_kernel, self.runs
        );
        let _ = writeln!(
            s,
            "load average at start {} · other QEMU processes on the host {}{}",
            h.load_at_start,
            h.other_qemus,
            if h.other_qemus > 0 {
                " (they share PSS pages and CPU with the figures below)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "runtime `{}` · guest `{}` · TCG tb-size: {} · state roots (and templates) in `{}`{}\n",
            h.runtime.display(),
            h.guest_dir.display(),
            if h.tb_size_mib == "default" {
                "hull's default".to_string()
            } else {
                format!("{} MiB (HULL_TCG_TB_SIZE_MIB)", h.tb_size_mib)
            },
            h.state_parent.display(),
            if h.state_tmpfs {
                " (tmpfs)"
            } else {
                " (**not tmpfs**: templates' RAM files are on disk)"
            }
        );

        if let Some(t) = &self.ttw {
            ttw_markdown(&mut s, t);
        }
        if self.memory.iter().any(|gs| !gs.is_empty()) {
            memory_markdown(&mut s, &self.memory, &self.templates);
        }
        if let Some(gs) = self.density.as_ref().filter(|gs| !gs.is_empty()) {
            density_markdown(&mut s, gs);
        }
        if let Some(io) = &self.io {
            io_markdown(&mut s, io);
        }
        if let Some(n) = &self.net {
            net_markdown(&mut s, n);
        }
        if let Some(i) = &self.image {
            image_markdown(&mut s, i);
        }
        if let Some(r) = &self.reclaim {
            reclaim_markdown(&mut s, r);
        }
        if let Some(f) = &self.foreign {
            f.markdown(&mut s);
        }

        if !self.failures.0.is_empty() {
            let _ = writeln!(
                s,
                "### Failed runs ({}; left out of the figures above)\n",
                self.failures.0.len()
            );
            for f in &self.failures.0 {
                let one_line: String = f.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = one_line.chars().take(400).collect();
                let _ = writeln!(s, "- {short}");
            }
            s.push('\n');
        }
        s
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "header": self.header.json(),
            "runs": self.runs,
            "hull_qemu_argv": self.qemu_argv,
            "hull_qemu_argv_clone": self.clone_qemu_argv,
            "failures": self.failures.0,
            "templates": self
                .templates
                .iter()
                .map(|(case, t)| {
                    let mut j = t.json();
                    j["case"] = json!(case);
                    j
                })
                .collect::<Vec<_>>(),
        });
        if let Some(t) = &self.ttw {
            v["time_to_workload"] = ttw_json(t, &self.bare_argv);
        }
        if !self.memory.is_empty() {
            v["memory"] = Value::Array(self.memory.iter().map(|g| group_summaries(g)).collect());
        }
        if let Some(gs) = &self.density {
            v["density"] = group_summaries(gs);
        }
        if let Some(n) = &self.net {
            v["network"] = net_json(n);
        }
        if let Some(i) = &self.image {
            v["image"] = image_json(i);
        }
        if let Some(io) = &self.io {
            v["io"] = io_json(io);
        }
        if let Some(r) = &self.reclaim {
            v["reclaim"] = reclaim_json(r);
        }
        if let Some(f) = &self.foreign {
            v["foreign"] = f.json();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn clone_run() -> Map<String, Value> {
        t(&[
            ("vm_start", json!("clone")),
            ("template_build_ms", json!(0.0)),
            ("host_prepared_ms", json!(1.0)),
            ("virtiofsd_spawned_ms", json!(0.0)),
            ("qemu_spawned_ms", json!(2.0)),
            ("qmp_ready_ms", json!(40.0)),
            ("restored_ms", json!(60.0)),
            ("agent_connected_ms", json!(61.0)),
            ("teardown_done_ms", json!(300.0)),
        ])
    }

    fn cold_run() -> Map<String, Value> {
        t(&[
            ("vm_start", json!("cold")),
            ("host_prepared_ms", json!(1.0)),
            ("virtiofsd_spawned_ms", json!(1.5)),
            ("qemu_spawned_ms", json!(2.0)),
            ("qmp_ready_ms", json!(45.0)),
            ("restored_ms", json!(0.0)),
            ("agent_connected_ms", json!(46.0)),
            ("teardown_done_ms", json!(900.0)),
        ])
    }

    #[test]
    fn phases_skip_what_a_mode_did_not_go_through() {
        let (host, guest) = phase_order(&[clone_run()]);
        assert_eq!(
            host,
            [
                "host_prepared_ms",
                "qemu_spawned_ms",
                "qmp_ready_ms",
                "restored_ms",
                "agent_connected_ms",
                "teardown_done_ms"
            ]
        );
        assert!(guest.is_empty(), "{guest:?}");
        // qemu_spawned's delta is to host_prepared in a clone (no virtiofsd).
        let d = phase_deltas(&[clone_run()], "qemu_spawned_ms", Some("host_prepared_ms"));
        assert_eq!(d, [1.0]);
        let (host, _) = phase_order(&[cold_run()]);
        assert!(host.contains(&"virtiofsd_spawned_ms".to_string()));
        assert!(!host.contains(&"restored_ms".to_string()));
    }

    fn reclaim_run(mode: VmStart, mib: [u64; 5]) -> ReclaimRun {
        let p = |m: u64| reclaim::Point {
            pss_kib: m << 10,
            settled: true,
            level_s: 3.0,
            action_ms: 1500.0,
            guest_total_kib: Some(500 << 10),
            guest_free_kib: Some(400 << 10),
            template_alloc_kib: (mode == VmStart::Clone).then_some(30 << 10),
            ..reclaim::Point::default()
        };
        ReclaimRun {
            mode,
            idle: p(mib[0]),
            holding: p(mib[1]),
            freed: p(mib[2]),
            inflated: p(mib[3]),
            deflated: p(mib[4]),
            other_qemus: 0,
            leftovers: vec![],
            template_after_kib: None,
        }
    }

    #[test]
    fn reclaim_tables() {
        let r = Reclaim {
            clone: vec![reclaim_run(VmStart::Clone, [80, 285, 90, 88, 88])],
            cold: vec![reclaim_run(VmStart::Cold, [120, 325, 125, 122, 122])],
            templates: vec![],
        };
        let mut s = String::new();
        reclaim_markdown(&mut s, &r);
        assert!(
            s.contains("**clone (virtio-9p; RAM: private mapping"),
            "{s}"
        );
        assert!(
            s.contains("| (c) after `rm /fill/x` (free page reporting) | 90.0 | 10.0 | `rm` 1.5 | 3.0 | 1/1 | 500 / 400 | 30.0 | 120.0 | 10.0 |"),
            "{s}"
        );
        assert!(
            s.contains("cost the host **205.0 MiB** (b − a); after `rm`, **195.0 MiB came back** (b − c; 95 % of b − a), and the VM stayed 10.0 MiB above idle"),
            "{s}"
        );
        assert!(s.contains("grew by **0.0 MiB**"), "{s}");
        let j = reclaim_json(&r);
        assert_eq!(j["cold"]["returned_mib"]["median"], json!(200.0));
        assert_eq!(
            j["clone"]["runs"][0]["points"]["freed"]["pss_kib"],
            json!(90 << 10)
        );
    }

    #[test]
    fn ttw_side_by_side() {
        let ttw = Ttw {
            bare_ms: vec![500.0, 600.0],
            clone: HullRuns {
                ms: vec![240.0, 260.0],
                timings: vec![clone_run(), clone_run()],
            },
            cold: HullRuns {
                ms: vec![1000.0, 1000.0],
                timings: vec![cold_run(), cold_run()],
            },
            runc_ms: vec![25.0],
            rounds: vec![
                Round {
                    bare: Some(500.0),
                    clone: Some(240.0),
                    cold: Some(1000.0),
                    runc: Some(25.0),
                },
                Round {
                    bare: Some(600.0),
                    clone: Some(260.0),
                    cold: Some(1000.0),
                    runc: None,
                },
            ],
            template_builds: 1,
            ..Ttw::default()
        };
        let mut s = String::new();
        ttw_markdown(&mut s, &ttw);
        assert!(
            s.contains("clone / bare (target ≤ 0.5) | | **0.45×**"),
            "{s}"
        );
        assert!(s.contains("cold / bare | | **1.82×**"), "{s}");
        assert!(s.contains("| restored | 60.0 | 20.0 | – | – |"), "{s}");
        assert!(
            s.contains("| virtiofsd_spawned | – | – | 1.5 | 0.5 |"),
            "{s}"
        );
        assert!(
            s.contains("| qemu_spawned | 2.0 | 1.0 | 2.0 | 0.5 |"),
            "{s}"
        );
        assert!(s.contains("(b) clone, (b′) cold"), "{s}");
        assert!(
            s.contains("| b / a per round, median (min–max) | | 0.46 (0.43–0.48) |"),
            "{s}"
        );
        let j = ttw_json(&ttw, &[]);
        assert_eq!(j["ratio_clone_over_bare"], json!(0.455));
    }
}
