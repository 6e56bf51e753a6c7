//! `hull vm`: a detached container's VM through its management API, seen from inside the
//! container (`nproc`, `/proc/meminfo`): info and metrics (table and JSON), vCPU and memory
//! resize, pause/resume, and refusals (bad flags, above the VM's maximum, paused, unknown or
//! stopped container) that exit nonzero with a clear message and change nothing. The VM is a
//! default one (a clone of a VM template) given room to grow with `hull run --annotation`.

mod common;

use std::time::{Duration, Instant};

use common::{Hull, QUICK};
use serde_json::{json, Value};

/// `hull vm ARGS...` must fail with `code`, one line on stderr containing `says`.
#[track_caller]
fn refused(h: &Hull, args: &[&str], code: i32, says: &str) {
    let out = h.run(args);
    assert_eq!(out.code, Some(code), "{out}");
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected\n{out}");
    assert!(lines[0].starts_with("hull: "), "{out}");
    assert!(lines[0].contains(says), "expected {says:?}\n{out}");
    assert_eq!(out.stdout, "", "{out}");
}

#[test]
fn bad_input_is_refused_without_a_vm() {
    let h = Hull::new();
    refused(
        &h,
        &["vm", "resize", "--memory", "0", "x"],
        125,
        "the VM's memory must be at least 1m",
    );
    refused(
        &h,
        &["vm", "resize", "--memory", "lots", "x"],
        125,
        "not a size",
    );
    refused(
        &h,
        &["vm", "resize", "--memory", "1000k", "x"],
        125,
        "not a whole number of MiB",
    );
    refused(
        &h,
        &["vm", "resize", "--cpus", "0", "x"],
        125,
        "at least 1 vCPU",
    );
    refused(
        &h,
        &["vm", "resize", "--cpus", "1.5", "x"],
        125,
        "whole number of vCPUs",
    );
    refused(
        &h,
        &["vm", "info", "--format", "yaml", "x"],
        125,
        "invalid value 'yaml'",
    );
    refused(&h, &["vm", "resize", "x"], 1, "nothing to resize");
    for sub in ["info", "metrics", "pause", "resume"] {
        refused(&h, &["vm", sub, "nosuch"], 1, "no such container: nosuch");
    }
    refused(
        &h,
        &["vm", "resize", "--cpus", "1", "nosuch"],
        1,
        "no such container: nosuch",
    );
}

/// The container's VM as `hull vm info --format json` shows it.
fn info(h: &Hull, name: &str) -> Value {
    vm_json(h, &["info", name])
}

/// `hull vm ARGS... --format json`, parsed.
#[track_caller]
fn vm_json(h: &Hull, args: &[&str]) -> Value {
    let mut all = vec!["vm"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let out = h.ok(&all);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{out}"))
}

/// What a refused request must not change.
fn sizing(h: &Hull, name: &str) -> Value {
    let i = info(h, name);
    json!({"vcpus": i["vcpus"], "target": i["memory_mib"]["target"], "state": i["state"]})
}

/// `hull exec NAME ARGS...`, its stdout.
#[track_caller]
fn exec(h: &Hull, name: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", name];
    all.extend_from_slice(args);
    h.ok(&all).stdout
}

fn nproc(h: &Hull, name: &str) -> u32 {
    exec(h, name, &["nproc"]).trim().parse().unwrap()
}

/// MemTotal in the container, KiB.
fn mem_total_kib(h: &Hull, name: &str) -> u64 {
    let meminfo = exec(h, name, &["cat", "/proc/meminfo"]);
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in {meminfo}"))
}

/// Waits until the container's MemTotal is `want` KiB (the guest follows the balloon a little
/// after the resize answers).
#[track_caller]
fn wait_mem_total(h: &Hull, name: &str, want: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = mem_total_kib(h, name);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "MemTotal is {now} KiB, not {want} KiB, after {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn info_metrics_resize_pause_resume_and_refusals_change_nothing() {
    let h = Hull::new().with_busybox();
    // A default VM (a template clone): 1 vCPU and 256 MiB, room for 2 vCPUs and 384 MiB.
    let out = h.ok(&[
        "run",
        "-d",
        "--name",
        "sized",
        "--annotation",
        "org.hull.vm.max_vcpus=2",
        "--annotation",
        "org.hull.vm.max_memory_mib=384",
        "busybox",
        "sleep",
        "1000",
    ]);
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{out}");
    h.wait_state("sized", "running");

    // info: every field, as the API's JSON.
    let i = info(&h, "sized");
    let typed: hull_api::VmInfo = serde_json::from_value(i.clone()).expect("a VmInfo");
    assert_eq!(serde_json::to_value(&typed).unwrap(), i, "extra fields");
    assert_eq!(i["id"], id.as_str(), "{i}");
    assert_eq!(i["state"], "running", "{i}");
    assert_eq!(i["machine"], "microvm", "{i}");
    assert!(
        ["kvm", "tcg"].contains(&i["accelerator"].as_str().unwrap()),
        "{i}"
    );
    assert_eq!(i["vm_start"], "clone", "{i}");
    assert_eq!(i["vcpus"], json!({"online": 1, "max": 2}), "{i}");
    assert_eq!(i["memory_mib"]["configured"], 384, "{i}");
    assert_eq!(i["memory_mib"]["target"], 256, "{i}");
    assert!(
        i["memory_mib"]["guest_total"].as_u64().unwrap() > 100,
        "{i}"
    );
    assert!(
        i["memory_mib"]["guest_available"].as_u64().unwrap() > 50,
        "{i}"
    );
    assert!(i["kernel"].as_str().unwrap().starts_with("6."), "{i}");
    assert!(i["started_at"].as_str().unwrap().ends_with('Z'), "{i}");
    assert!(i["uptime_s"].is_u64(), "{i}");
    // By id prefix too, and as a table for people.
    let table = h.ok(&["vm", "info", &id[..10]]).stdout;
    for want in [
        "ID:",
        id.as_str(),
        "State:",
        "running",
        "1 online / 2 max",
        "Memory configured:",
        "384 MiB",
        "Memory target:",
        "256 MiB",
        "Guest memory available:",
        "Kernel:",
        "Uptime:",
        "clone (of a VM template)",
    ] {
        assert!(table.contains(want), "{want:?} in\n{table}");
    }

    // metrics: guest memory, CPU time, host PSS per process.
    let m = vm_json(&h, &["metrics", "sized"]);
    let _: hull_api::Metrics = serde_json::from_value(m.clone()).expect("a Metrics");
    assert!(
        m["guest_memory"]["total_kib"].as_u64().unwrap() > 100 << 10,
        "{m}"
    );
    assert!(m["guest_cpu_time_ns"].as_u64().unwrap() > 0, "{m}");
    let procs = m["host"]["processes"].as_array().unwrap();
    assert!(
        procs
            .iter()
            .any(|p| p["name"] == "qemu-system-x86_64" && p["pss_kib"].as_u64().unwrap() > 0),
        "{m}"
    );
    let table = h.ok(&["vm", "metrics", "sized"]).stdout;
    for want in [
        "Guest memory total:",
        "Guest CPU time:",
        "Host PSS:",
        "PROCESS",
        "qemu-system-x86_64",
    ] {
        assert!(table.contains(want), "{want:?} in\n{table}");
    }

    // vCPUs 1 → 2 → 1 → 2, as nproc counts them.
    assert_eq!(nproc(&h, "sized"), 1);
    let r = vm_json(&h, &["resize", "sized", "--cpus", "2"]);
    assert_eq!(r["vcpus"], json!({"online": 2, "max": 2}), "{r}");
    assert_eq!(nproc(&h, "sized"), 2);
    let out = h.ok(&["vm", "resize", "sized", "--cpus", "1"]);
    assert!(out.stdout.contains("1 online / 2 max"), "{out}");
    assert_eq!(nproc(&h, "sized"), 1);
    let r = vm_json(&h, &["resize", "sized", "--cpus", "2"]);
    assert_eq!(r["vcpus"], json!({"online": 2, "max": 2}), "{r}");
    assert_eq!(nproc(&h, "sized"), 2);

    // Memory 256 → 384 MiB (the clone's balloon gives back what it held since the start):
    // the guest's MemTotal grows by exactly as much; 384 → 192 MiB: it shrinks by as much;
    // and back to 256.
    let full = mem_total_kib(&h, "sized");
    let r = vm_json(&h, &["resize", "sized", "--memory", "384m"]);
    assert_eq!(r["memory_mib"]["target"], 384, "{r}");
    let grown = full + (128 << 10);
    wait_mem_total(&h, "sized", grown, "256 → 384 MiB");
    let r = vm_json(&h, &["resize", "sized", "--memory", "192m"]);
    assert_eq!(r["memory_mib"]["target"], 192, "{r}");
    wait_mem_total(&h, "sized", grown - (192 << 10), "384 → 192 MiB");
    let r = vm_json(&h, &["resize", "sized", "--memory", "268435456"]);
    assert_eq!(r["memory_mib"]["target"], 256, "{r}");
    wait_mem_total(&h, "sized", full, "192 → 256 MiB");
    // Both at once: memory, then vCPUs; the answer is the VM afterwards.
    let r = vm_json(&h, &["resize", "sized", "-m", "229376k", "--cpus", "1"]);
    assert_eq!(r["memory_mib"]["target"], 224, "{r}");
    assert_eq!(r["vcpus"]["online"], 1, "{r}");
    assert_eq!(nproc(&h, "sized"), 1);
    let before = sizing(&h, "sized");

    // Refusals: nonzero exit, the reason (the server's own for API errors), nothing changed.
    let refusals: &[(&[&str], i32, &str)] = &[
        (&["--memory", "0"], 125, "at least 1m"),
        (&["--cpus", "0"], 125, "at least 1 vCPU"),
        (&[], 1, "nothing to resize"),
        (&["--cpus", "3"], 1, "above the VM's maximum of 2"),
        (
            &["--memory", "512m"],
            1,
            "above the VM's configured 384 MiB",
        ),
        (&["--memory", "16m"], 1, "below what it uses"),
        // Checked before the memory changes.
        (
            &["--memory", "192m", "--cpus", "3"],
            1,
            "nothing was changed",
        ),
        (
            &["--memory", "1g", "--cpus", "2"],
            1,
            "above the VM's configured",
        ),
    ];
    for (flags, code, says) in refusals {
        let mut args = vec!["vm", "resize", "sized"];
        args.extend_from_slice(flags);
        refused(&h, &args, *code, says);
        assert_eq!(sizing(&h, "sized"), before, "after {flags:?}");
    }
    let out = h.run(&["vm", "resize", "sized", "--cpus", "3"]);
    assert!(out.stderr.contains("(out_of_range)"), "{out}");
    assert!(out.stderr.contains("container sized"), "{out}");
    assert_eq!(nproc(&h, "sized"), 1);

    // Pause: the VM answers without its guest; the container's processes wait.
    let out = h.ok(&["vm", "pause", "sized"]);
    assert!(out.stdout.contains("paused"), "{out}");
    assert_eq!(h.ps_entry("sized").unwrap()["State"], "paused");
    let i = info(&h, "sized");
    assert_eq!(i["state"], "paused", "{i}");
    assert_eq!(i["memory_mib"]["guest_total"], Value::Null, "{i}");
    let table = h.ok(&["vm", "info", "sized"]).stdout;
    assert!(table.contains("unknown (paused)"), "{table}");
    let m = vm_json(&h, &["metrics", "sized"]);
    assert_eq!(m["guest_memory"], Value::Null, "{m}");
    refused(
        &h,
        &["vm", "resize", "sized", "--cpus", "2"],
        1,
        "resume it first",
    );
    let out = h.run_with(&["exec", "sized", "true"], None, QUICK);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("paused"), "{out}");
    assert_eq!(vm_json(&h, &["pause", "sized"])["state"], "paused");
    let r = vm_json(&h, &["resume", "sized"]);
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(h.ps_entry("sized").unwrap()["State"], "running");
    assert_eq!(nproc(&h, "sized"), 1);
    assert_eq!(sizing(&h, "sized"), before);

    // Stopped: no VM.
    h.ok(&["stop", "-t", "1", "sized"]);
    for sub in ["info", "metrics", "pause", "resume"] {
        refused(
            &h,
            &["vm", sub, "sized"],
            1,
            "container sized is not running",
        );
    }
    refused(
        &h,
        &["vm", "resize", "sized", "--cpus", "1"],
        1,
        "container sized is not running",
    );
    h.ok(&["rm", "sized"]);
    h.assert_clean();
}
