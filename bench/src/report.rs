//! The markdown report and the JSON results.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::host::Header;
use crate::image::{self, Image};
use crate::io::{Io, MIB};
use crate::memory::Group;
use crate::net::{self, Net, Serve};
use crate::stats::{round, summary_json, Summary};
use crate::ttw::Ttw;

/// Host phases in the order the monitor goes through them (ms since the monitor started).
const HOST_PHASES: [&str; 10] = [
    "host_prepared_ms",
    "virtiofsd_spawned_ms",
    "qemu_spawned_ms",
    "qmp_ready_ms",
    "agent_connected_ms",
    "agent_ready_ms",
    "container_created_ms",
    "process_started_ms",
    "process_exited_ms",
    "teardown_done_ms",
];
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
    pub guest: Vec<Io>,
    /// (write, read) MiB/s on the host.
    pub host: Vec<(f64, f64)>,
}

pub struct Report {
    pub header: Header,
    pub runs: usize,
    pub qemu_argv: Vec<String>,
    pub bare_argv: Vec<String>,
    pub ttw: Option<Ttw>,
    /// Groups of idle containers: [1 container runs, 10 containers runs].
    pub memory: Vec<Vec<Group>>,
    pub density: Option<Vec<Group>>,
    pub io: Option<IoRuns>,
    pub net: Option<Net>,
    pub image: Option<Image>,
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

fn phase_values(timings: &[Map<String, Value>], key: &str) -> Vec<f64> {
    timings
        .iter()
        .filter_map(|t| t.get(key)?.as_f64())
        .collect()
}

/// Per run `t[key] - t[prev]`.
fn phase_deltas(timings: &[Map<String, Value>], key: &str, prev: Option<&str>) -> Vec<f64> {
    timings
        .iter()
        .filter_map(|t| {
            let v = t.get(key)?.as_f64()?;
            let p = match prev {
                Some(p) => t.get(p)?.as_f64()?,
                None => 0.0,
            };
            Some(v - p)
        })
        .collect()
}

/// Phases in their known order, then any the monitor added since (alphabetically).
/// One table row per phase in `keys` (median time and median delta to the previous phase);
/// returns the last phase.
fn phase_rows<'a>(
    s: &mut String,
    timings: &[Map<String, Value>],
    keys: &'a [String],
) -> Option<&'a str> {
    let median = |x: Option<Summary>| x.map(|x| x.median).unwrap_or(f64::NAN);
    for (k, at, d) in phase_summaries(timings, keys) {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {:.1} |",
            k.trim_end_matches("_ms"),
            median(at),
            median(d)
        );
    }
    keys.last().map(String::as_str)
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
        .flat_map(|t| t.keys().cloned())
        .filter(|k| !host.contains(k) && !guest.contains(k))
        .collect();
    extra.sort();
    extra.dedup();
    host.retain(|k| timings.iter().any(|t| t.contains_key(k)));
    let mut guest: Vec<String> = guest
        .into_iter()
        .filter(|k| timings.iter().any(|t| t.contains_key(k)))
        .collect();
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
    json!({
        "containers": gs.first().map(|g| g.n),
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

impl Report {
    pub fn new(header: Header, runs: usize, qemu_argv: &[String]) -> Self {
        Self {
            header,
            runs,
            qemu_argv: qemu_argv.to_vec(),
            bare_argv: Vec::new(),
            ttw: None,
            memory: Vec::new(),
            density: None,
            io: None,
            net: None,
            image: None,
            failures: Failures::default(),
        }
    }

    fn ttw_summaries(&self) -> Option<[Option<Summary>; 3]> {
        let t = self.ttw.as_ref()?;
        Some([
            Summary::of(&t.bare_ms),
            Summary::of(&t.hull_ms),
            Summary::of(&t.runc_ms),
        ])
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
            "runtime `{}` · guest `{}` · TCG tb-size: {}\n",
            h.runtime.display(),
            h.guest_dir.display(),
            if h.tb_size_mib == "default" {
                "hull's default".to_string()
            } else {
                format!("{} MiB (HULL_TCG_TB_SIZE_MIB)", h.tb_size_mib)
            }
        );

        if let (Some(t), Some([a, b, c])) = (&self.ttw, self.ttw_summaries()) {
            let _ = writeln!(
                s,
                "### Time to workload: `true` in a busybox bundle (ms, median (min–max))\n"
            );
            let _ = writeln!(s, "| case | ms |\n|---|---:|");
            let _ = writeln!(
                s,
                "| (a) bare QEMU boot, same kernel + machine, power-off init | {} |",
                mmm(&a, 0)
            );
            let _ = writeln!(s, "| (b) `hull-runtime run` | {} |", mmm(&b, 0));
            let _ = writeln!(s, "| (c) `runc run` | {} |", mmm(&c, 0));
            if let Some(r) = ratio(&b, &a) {
                let _ = writeln!(s, "| **b / a** (target ≤ 1.25) | **{r:.2}×** |");
            }
            if let Some(r) = ratio(&b, &c) {
                let _ = writeln!(s, "| b / c | {r:.1}× |");
            }
            let (host, guest) = phase_order(&t.timings);
            if !host.is_empty() {
                let _ = writeln!(s, "\n### Phases of (b) (median ms; Δ = median of per-run differences to the previous phase)\n");
                let _ = writeln!(
                    s,
                    "| phase (host, since monitor start) | at | Δ |\n|---|---:|---:|"
                );
                if let Some(last) = phase_rows(&mut s, &t.timings, &host) {
                    let exit: Vec<f64> = t
                        .timings
                        .iter()
                        .zip(&t.hull_ms)
                        .filter_map(|(m, wall)| Some(wall - m.get(last)?.as_f64()?))
                        .collect();
                    let _ = writeln!(
                        s,
                        "| runtime start→exit minus the above (exec, process exit) | | {:.1} |",
                        Summary::of(&exit).map(|x| x.median).unwrap_or(f64::NAN)
                    );
                }
                let _ = writeln!(
                    s,
                    "\n| phase (guest CLOCK_BOOTTIME) | at | Δ |\n|---|---:|---:|"
                );
                phase_rows(&mut s, &t.timings, &guest);
            }
            s.push('\n');
        }

        if !self.memory.is_empty() {
            let _ = writeln!(s, "### Memory of idle containers (`sleep 1000`, 256 MiB guest RAM, after PSS settled; MiB, median (min–max))\n");
            let _ = writeln!(s, "| containers | PSS / container | RSS / container | PSS total | PSS QEMU | PSS virtiofsd | PSS monitor | settled |");
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---|");
            for gs in self.memory.iter().filter(|gs| !gs.is_empty()) {
                let n = gs.first().map(|g| g.n).unwrap_or(1).max(1) as f64;
                let per = |f: &dyn Fn(&Group) -> u64| {
                    Summary::of(&gs.iter().map(|g| mib(f(g)) / n).collect::<Vec<_>>())
                };
                let tot = Summary::of(&gs.iter().map(|g| mib(g.total.pss_kib)).collect::<Vec<_>>());
                let settled = gs.iter().filter(|g| g.settled).count();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
                    n,
                    mmm(&per(&|g| g.total.pss_kib), 1),
                    mmm(&per(&|g| g.total.rss_kib), 1),
                    mmm(&tot, 1),
                    mmm(&per(&|g| g.qemu.pss_kib), 1),
                    mmm(&per(&|g| g.virtiofsd.pss_kib), 1),
                    mmm(&per(&|g| g.monitor.pss_kib), 1),
                    settled,
                    gs.len()
                );
            }
            s.push('\n');
        }

        if let Some(gs) = self.density.as_ref().filter(|gs| !gs.is_empty()) {
            let n = gs.first().map(|g| g.n).unwrap_or(0);
            let all = Summary::of(
                &gs.iter()
                    .map(|g| g.all_running_ms / 1e3)
                    .collect::<Vec<_>>(),
            );
            let pss = Summary::of(&gs.iter().map(|g| mib(g.total.pss_kib)).collect::<Vec<_>>());
            let cleanup = Summary::of(&gs.iter().map(|g| g.cleanup_ms).collect::<Vec<_>>());
            let left: Vec<i32> = gs.iter().flat_map(|g| g.leftovers.clone()).collect();
            let _ = writeln!(
                s,
                "### Density: {n} idle containers started at once (median (min–max))\n"
            );
            let _ = writeln!(s, "| all `running` (s) | PSS total (MiB) | kill → no process left (ms) | processes left |");
            let _ = writeln!(s, "|---:|---:|---:|---|");
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |\n",
                mmm(&all, 2),
                mmm(&pss, 1),
                mmm(&cleanup, 0),
                if left.is_empty() {
                    "none".to_string()
                } else {
                    format!("{left:?}")
                }
            );
        }

        if let Some(io) = &self.io {
            let col =
                |f: &dyn Fn(&Io) -> f64| Summary::of(&io.guest.iter().map(f).collect::<Vec<_>>());
            let hw = Summary::of(&io.host.iter().map(|h| h.0).collect::<Vec<_>>());
            let hr = Summary::of(&io.host.iter().map(|h| h.1).collect::<Vec<_>>());
            let _ = writeln!(s, "### Shared-fs I/O: {MIB} MiB sequential, `dd bs=1M` (MiB/s, median (min–max); guest RAM 512 MiB)\n");
            let _ = writeln!(s, "| where | write (conv=fsync) | read (guest cache dropped) | write / host | read / host |");
            let _ = writeln!(s, "|---|---:|---:|---:|---:|");
            let _ = writeln!(
                s,
                "| host (same filesystem) | {} | {} | 1 | 1 |",
                mmm(&hw, 0),
                mmm(&hr, 0)
            );
            for (name, w, r) in [
                (
                    "guest, rootfs share",
                    col(&|i| i.rootfs_write),
                    col(&|i| i.rootfs_read),
                ),
                (
                    "guest, bind mount",
                    col(&|i| i.bind_write),
                    col(&|i| i.bind_read),
                ),
            ] {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {} | {:.2} | {:.2} |",
                    mmm(&w, 0),
                    mmm(&r, 0),
                    ratio(&w, &hw).unwrap_or(f64::NAN),
                    ratio(&r, &hr).unwrap_or(f64::NAN)
                );
            }
            s.push('\n');
        }

        if let Some(n) = &self.net {
            net_markdown(&mut s, n);
        }

        if let Some(i) = &self.image {
            image_markdown(&mut s, i);
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
            "failures": self.failures.0,
        });
        if let (Some(t), Some([a, b, c])) = (&self.ttw, self.ttw_summaries()) {
            let (host, guest) = phase_order(&t.timings);
            let mut phases = Map::new();
            for keys in [&host, &guest] {
                for (k, at, d) in phase_summaries(&t.timings, keys) {
                    phases.insert(
                        k.to_string(),
                        json!({"at": summary_json(&at), "delta": summary_json(&d)}),
                    );
                }
            }
            v["time_to_workload"] = json!({
                "bare_qemu_boot_ms": summary_json(&a),
                "hull_run_ms": summary_json(&b),
                "runc_run_ms": summary_json(&c),
                "ratio_hull_over_bare": ratio(&b, &a).map(round),
                "ratio_hull_over_runc": ratio(&b, &c).map(round),
                "bare_qemu_argv": self.bare_argv,
                "phases": phases,
                "timings_per_run": t.timings,
            });
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
            let col = |f: &dyn Fn(&Io) -> f64| {
                summary_json(&Summary::of(&io.guest.iter().map(f).collect::<Vec<_>>()))
            };
            v["io"] = json!({
                "size_mib": MIB,
                "host_write_mib_s": summary_json(&Summary::of(&io.host.iter().map(|h| h.0).collect::<Vec<_>>())),
                "host_read_mib_s": summary_json(&Summary::of(&io.host.iter().map(|h| h.1).collect::<Vec<_>>())),
                "rootfs_write_mib_s": col(&|i| i.rootfs_write),
                "rootfs_read_mib_s": col(&|i| i.rootfs_read),
                "bind_write_mib_s": col(&|i| i.bind_write),
                "bind_read_mib_s": col(&|i| i.bind_read),
            });
        }
        v
    }
}
