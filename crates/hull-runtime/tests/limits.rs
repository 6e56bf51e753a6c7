//! `linux.resources` and capabilities enforced in the guest (real VMs): the container's cgroup
//! (v2, one per container) with its limits, seen as `/` through a cgroup namespace and joined by
//! exec'd processes; limits the guest cannot apply fail create (exit 3, the field named); the
//! capability sets decide whether a raw socket can be opened.

mod common;

use std::process::Stdio;

use common::{
    exec_sh, finish, run, run_cmd, spawn, wait_ready, wait_status, Bundle, Root, VM_TIMEOUT,
};
use serde_json::{json, Value};

/// The spec with a cgroup namespace added to runc's default ones.
fn with_cgroup_ns(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
}

/// `pids.limit`: forks beyond it fail with EAGAIN; through its cgroup namespace the container
/// sees its cgroup as `/` with the limit in `pids.max`, and an exec'd process is in it too.
#[test]
fn pids_limit_stops_a_fork_loop_and_exec_joins_the_cgroup() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup /sys/fs/cgroup/pids.max; \
         ( for i in $(seq 30); do sleep 60 & done ) 2>&1; \
         echo current=$(cat /sys/fs/cgroup/pids.current); \
         kill -9 $(pidof sleep) 2>/dev/null; touch /ready; \
         while [ ! -e /done ]; do sleep 0.05; done; echo finished",
    ]);
    b.edit(|c| {
        with_cgroup_ns(c);
        c["linux"]["resources"]["pids"] = json!({"limit": 12});
    });
    let mut cmd = run_cmd(&root, &b, "lim-pids");
    let child = spawn(&mut cmd, false);
    wait_status(&root, "lim-pids", "running");
    wait_ready(&b, "the fork loop to end");
    let ex = exec_sh(
        &root,
        "lim-pids",
        "cat /proc/self/cgroup; wc -l < /sys/fs/cgroup/cgroup.procs; touch /done",
    );
    let exo = ex.stdout_str();
    let lines: Vec<&str> = exo.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"0::/"),
        "exec'd process's cgroup: {ex}"
    );
    // The init, its `sleep` and the exec'd shell and its `wc` (or what is left of them).
    let procs: u32 = lines
        .get(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        procs >= 2,
        "the exec'd process is in the container's cgroup: {ex}"
    );

    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(lines.first(), Some(&"0::/"), "{out}");
    assert_eq!(lines.get(1), Some(&"12"), "pids.max: {out}");
    assert!(
        so.contains("can't fork: Resource temporarily unavailable"),
        "the loop hits the limit: {out}"
    );
    assert!(so.contains("current=12"), "{out}");
    assert!(so.contains("finished"), "{out}");
    root.assert_clean("lim-pids");
}

/// Memory and CPU limits land in the container's cgroup files, converted like runc does; without
/// a cgroup namespace the container sees the guest's hierarchy and its place in it.
#[test]
fn memory_and_cpu_limits_are_written_to_the_containers_cgroup() {
    let root = Root::new();
    let id = "lim-mem";
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /proc/self/cgroup; cd /sys/fs/cgroup/hull/lim-mem && \
         for f in memory.max memory.low memory.swap.max memory.high cpu.max cpu.weight; do \
         echo $f=$(cat $f); done",
    ]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({
            "limit": 64u64 << 20, "reservation": 32u64 << 20, "swap": 96u64 << 20
        });
        c["linux"]["resources"]["cpu"] = json!({"shares": 1024, "quota": 50000, "period": 100000});
        c["linux"]["resources"]["unified"] = json!({"memory.high": (60u64 << 20).to_string()});
    });
    let out = run(&root, &b, id, None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    assert_eq!(so.lines().next(), Some("0::/hull/lim-mem"), "{out}");
    for want in [
        format!("memory.max={}", 64u64 << 20),
        format!("memory.low={}", 32u64 << 20),
        format!("memory.swap.max={}", 32u64 << 20),
        format!("memory.high={}", 60u64 << 20),
        "cpu.max=50000 100000".into(),
        "cpu.weight=39".into(),
    ] {
        assert!(so.lines().any(|l| l == want), "{want} expected: {out}");
    }
    root.assert_clean(id);
}

/// `hull-runtime create` as engines run it: stdio to files, the error on stderr.
fn create(root: &Root, b: &Bundle, id: &str) -> common::Out {
    let mut c = root.cmd(&["create", "--bundle"]);
    c.arg(b.path()).arg(id);
    c.stdin(Stdio::null())
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(b.path().join("stderr")).unwrap());
    let st = c.status().unwrap();
    common::Out {
        code: st.code(),
        stdout: Vec::new(),
        stderr: std::fs::read(b.path().join("stderr")).unwrap(),
    }
}

/// What the guest kernel refuses or cannot do fails create (and run) as an invalid bundle,
/// naming the field and value, and leaves nothing behind.
#[test]
fn limits_the_guest_refuses_fail_create_naming_the_field() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    // The kernel's smallest CFS quota is 1 ms.
    b.edit(|c| c["linux"]["resources"]["cpu"] = json!({"quota": 500, "period": 100000}));
    let out = create(&root, &b, "lim-quota");
    assert_eq!(out.code, Some(3), "{out}");
    let se = out.stderr_str();
    assert!(se.contains("linux.resources.cpu.quota"), "{out}");
    assert!(
        se.contains("\"500 100000\"") && se.contains("cpu.max"),
        "{out}"
    );
    assert!(se.contains("config.json"), "{out}");
    root.assert_clean("lim-quota");

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["linux"]["resources"]["unified"] = json!({"memory.nosuch": "1"}));
    let out = run(&root, &b, "lim-unified", None);
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stderr_str()
            .contains("linux.resources.unified[\"memory.nosuch\"]: the guest kernel's cgroup has no file memory.nosuch"),
        "{out}"
    );
    root.assert_clean("lim-unified");

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 1 << 21}])
    });
    let out = run(&root, &b, "lim-huge", None);
    assert_eq!(out.code, Some(3), "{out}");
    let se = out.stderr_str();
    assert!(
        se.contains("linux.resources.hugepageLimits: the guest kernel has no hugetlb controller"),
        "{out}"
    );
    root.assert_clean("lim-huge");
}

/// The capability lines of /proc/self/status.
fn cap_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("Cap"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn cap_status(inh: u64, prm: u64, eff: u64, bnd: u64, amb: u64) -> Vec<String> {
    [
        ("CapInh", inh),
        ("CapPrm", prm),
        ("CapEff", eff),
        ("CapBnd", bnd),
        ("CapAmb", amb),
    ]
    .iter()
    .map(|(k, v)| format!("{k}: {v:016x}"))
    .collect()
}

const PING: &str = "grep ^Cap /proc/self/status; ping -c1 -W5 127.0.0.1; echo ping=$?";

/// runc's default capabilities lack CAP_NET_RAW: no raw socket, so busybox ping fails (its
/// ICMP datagram fallback is closed by the default ping_group_range); with CAP_NET_RAW in the
/// sets it works. The process's sets are the spec's.
#[test]
fn net_raw_decides_whether_a_raw_socket_opens() {
    const AUDIT_WRITE: u64 = 1 << 29;
    const KILL: u64 = 1 << 5;
    const NET_BIND_SERVICE: u64 = 1 << 10;
    const NET_RAW: u64 = 1 << 13;
    let default = AUDIT_WRITE | KILL | NET_BIND_SERVICE;
    let root = Root::new();

    let b = Bundle::busybox(&["sh", "-c", PING]);
    let out = run(&root, &b, "cap-noraw", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    // Ambient capabilities that are not inheritable cannot be raised (runc warns too).
    assert_eq!(
        cap_lines(&so),
        cap_status(0, default, default, default, 0),
        "{out}"
    );
    assert!(so.contains("ping=1"), "{out}");
    assert!(
        out.stderr_str().contains("permission denied"),
        "ping must fail for lack of permission: {out}"
    );
    root.assert_clean("cap-noraw");

    let mut b = Bundle::busybox(&["sh", "-c", PING]);
    b.edit(|c| {
        let caps = &mut c["process"]["capabilities"];
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            caps[set] = json!([
                "CAP_AUDIT_WRITE",
                "CAP_KILL",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW"
            ]);
        }
    });
    let out = run(&root, &b, "cap-raw", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    let all = default | NET_RAW;
    assert_eq!(cap_lines(&so), cap_status(all, all, all, all, all), "{out}");
    assert!(
        so.contains("1 packets transmitted, 1 packets received"),
        "{out}"
    );
    assert!(so.contains("ping=0"), "{out}");
    root.assert_clean("cap-raw");
}

/// `features` says cgroup v2 is used in the guest and which resources are enforced.
#[test]
fn features_report_the_guests_cgroup() {
    let root = Root::new();
    let out = root.cmd(&["features"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["linux"]["cgroup"]["v2"], true, "{f}");
    assert_eq!(f["linux"]["cgroup"]["v1"], false, "{f}");
    let r = f["annotations"]["io.github.hull.resources"]
        .as_str()
        .unwrap();
    assert!(
        r.contains("pids limit") && r.contains("hugepageLimits"),
        "{r}"
    );
}

/// `hull-runtime update` writes into the running container's cgroup; what the guest kernel
/// refuses fails the update, naming the field.
#[test]
fn update_changes_the_running_containers_cgroup() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "while [ ! -e /done ]; do sleep 0.05; done; cat /sys/fs/cgroup/pids.max",
    ]);
    b.edit(|c| {
        with_cgroup_ns(c);
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    let mut cmd = run_cmd(&root, &b, "lim-upd");
    let child = spawn(&mut cmd, false);
    wait_status(&root, "lim-upd", "running");
    let hr = |args: &[&str]| finish(spawn(&mut root.cmd(args), false), None, VM_TIMEOUT);
    let up = hr(&[
        "update",
        "--pids-limit",
        "7",
        "--cpu-share",
        "512",
        "lim-upd",
    ]);
    assert_eq!(up.code, Some(0), "update: {up}");
    let ex = hr(&[
        "exec",
        "lim-upd",
        "cat",
        "/sys/fs/cgroup/pids.max",
        "/sys/fs/cgroup/cpu.weight",
    ]);
    assert_eq!(ex.code, Some(0), "exec: {ex}");
    assert_eq!(ex.stdout_str(), "7\n20\n", "{ex}");

    let bad = hr(&[
        "update",
        "--cpu-quota",
        "500",
        "--cpu-period",
        "100000",
        "lim-upd",
    ]);
    assert_ne!(bad.code, Some(0), "{bad}");
    assert!(
        bad.stderr_str().contains("linux.resources.cpu.quota"),
        "{bad}"
    );
    std::fs::write(b.rootfs().join("done"), "").unwrap();
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout_str(), "7\n", "{out}");
    root.assert_clean("lim-upd");
}

/// The host cgroup at `linux.cgroupsPath` gets limits that hold the whole VM: memory = the
/// guest's RAM (64 MiB limit + 64 MiB) + hull's documented overhead, CPU = the spec's quota;
/// `update --cpu-quota` changes the host quota too; the cgroup goes with the container.
#[test]
fn host_cgroup_limits_hold_the_vm_and_follow_update() {
    let root = Root::new();
    let id = "lim-host";
    let rel = format!("hull-test-{}/lim-host", std::process::id());
    let mut b = Bundle::busybox(&["sh", "-c", "while [ ! -e /done ]; do sleep 0.05; done"]);
    let cg = format!("/{rel}");
    b.edit(|c| {
        c["linux"]["cgroupsPath"] = json!(cg);
        c["linux"]["resources"]["memory"] = json!({"limit": 64u64 << 20});
        c["linux"]["resources"]["cpu"] = json!({"quota": 150000, "period": 100000});
    });
    let child = spawn(&mut run_cmd(&root, &b, id), false);
    wait_status(&root, id, "running");
    let dirs = hull_testkit::cgroup_dirs(&rel);
    assert!(!dirs.is_empty(), "no host cgroup {rel}");
    let read = |file: &str| -> Vec<String> {
        dirs.iter()
            .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|s| s.trim().to_string())
            .collect()
    };
    let want_mem = ((128u64 + hull_monitor::cgroup::VM_OVERHEAD_MIB) << 20).to_string();
    let mem: Vec<String> = [read("memory.limit_in_bytes"), read("memory.max")].concat();
    assert_eq!(mem, [want_mem], "host memory limit");
    let cpu: Vec<String> = [read("cpu.cfs_quota_us"), read("cpu.max")].concat();
    assert!(
        cpu == ["150000"] || cpu == ["150000 100000"],
        "host CPU quota: {cpu:?}"
    );
    let up = finish(
        spawn(
            root.cmd(&[
                "update",
                "--cpu-quota",
                "50000",
                "--cpu-period",
                "100000",
                id,
            ])
            .stdin(Stdio::null()),
            false,
        ),
        None,
        VM_TIMEOUT,
    );
    assert_eq!(up.code, Some(0), "update: {up}");
    let cpu: Vec<String> = [read("cpu.cfs_quota_us"), read("cpu.max")].concat();
    assert!(
        cpu == ["50000"] || cpu == ["50000 100000"],
        "host CPU quota after update: {cpu:?}"
    );
    std::fs::write(b.rootfs().join("done"), "").unwrap();
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(hull_testkit::cgroup_dirs(&rel).is_empty(), "left after run");
    root.assert_clean(id);
}

/// A process allocating past `linux.resources.memory.limit` is OOM-killed inside the guest (its
/// cgroup's memory.events counts it) while the VM lives on; when it is the container's init, the
/// container ends killed (137), as runc's would.
#[test]
fn a_process_past_the_memory_limit_is_oom_killed_in_the_guest() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$?; \
         grep oom_kill /sys/fs/cgroup/memory.events",
    ]);
    b.edit(|c| {
        with_cgroup_ns(c);
        c["linux"]["resources"]["memory"] = json!({"limit": 32u64 << 20, "swap": 32u64 << 20});
    });
    let out = run(&root, &b, "lim-oom", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    assert!(
        so.contains("dd=137"),
        "dd SIGKILLed by the OOM killer: {out}"
    );
    assert!(
        so.lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "memory.events counts the OOM kill: {out}"
    );
    root.assert_clean("lim-oom");

    let mut b = Bundle::busybox(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 32u64 << 20, "swap": 32u64 << 20});
    });
    let out = run(&root, &b, "lim-oom-init", None);
    assert_eq!(out.code, Some(137), "the init OOM-killed: {out}");
    root.assert_clean("lim-oom-init");
}
