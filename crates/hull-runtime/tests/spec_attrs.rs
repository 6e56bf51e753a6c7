//! Spec fields the guest agent applies between fork and exec (real VMs): user namespaces with
//! uid/gid mappings, time namespace offsets, recursive mount attributes (mount_setattr),
//! personality, scheduler, I/O priority and an exec'd process's CPU affinity; and what cannot be
//! honoured (ID-mapped mounts, personality flags, mappings without a user namespace) is refused
//! with exit 3 naming the field, leaving nothing behind.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::{exec_sh, finish, run, run_until_ready, spawn, Bundle, Root, VM_TIMEOUT};
use serde_json::json;

fn chown_tree(path: &std::path::Path, id: u32) {
    let st = std::process::Command::new("chown")
        .args(["-R", "-h", &format!("{id}:{id}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "chown -R {id} {}", path.display());
}

/// A user namespace with runc's usual mapping: the container's root is host uid 100000 (in the
/// guest kernel, which sees the host's IDs through the shares). `/proc/self/uid_map` shows the
/// mapping, the container is root in it, files it writes to a volume belong to 100000 on the
/// host, a root-only file of the host stays unreadable, and an exec'd process is in the same
/// namespace.
#[test]
fn user_namespace_maps_the_containers_root_to_an_unprivileged_host_id() {
    let root = Root::new();
    let id = "userns";
    let vol = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::write(vol.path().join("secret"), "host root only\n").unwrap();
    std::fs::set_permissions(
        vol.path().join("secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::create_dir(vol.path().join("mine")).unwrap();
    chown_tree(&vol.path().join("mine"), 100000);
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; \
         echo written > /vol/mine/file && echo wrote; \
         cat /vol/secret 2>&1 || echo secret-denied; \
         touch /ready; while [ ! -e /done ]; do sleep 0.05; done; echo finished",
    ]);
    chown_tree(&b.rootfs(), 100000);
    let volume = vol.path().to_str().unwrap().to_string();
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/vol", "type": "bind", "source": volume, "options": ["rbind", "rw"]
        }));
    });
    let child = run_until_ready(&root, &b, id);
    let ex = exec_sh(&root, id, "cat /proc/self/uid_map; id -u; touch /done");
    let exo = ex.stdout_str();
    let words: Vec<&str> = exo.split_whitespace().collect();
    assert_eq!(words, ["0", "100000", "65536", "0"], "exec: {ex}");

    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    let lines: Vec<Vec<&str>> = so.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "uid_map: {out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "gid_map: {out}");
    assert_eq!(lines[2], ["0"], "uid in the container: {out}");
    assert_eq!(lines[3], ["0"], "gid in the container: {out}");
    assert!(so.contains("wrote"), "{out}");
    assert!(
        so.contains("secret-denied"),
        "a host-root file is not the container root's: {out}"
    );
    assert!(!so.contains("host root only"), "{out}");
    assert!(so.contains("finished"), "{out}");
    let meta = std::fs::metadata(vol.path().join("mine/file")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (100000, 100000),
        "the container root's file belongs to the mapped host ID"
    );
    root.assert_clean(id);
}

/// Time namespace offsets: the container's boot time clock (and so /proc/uptime) runs a year
/// ahead, the guest's does not; an exec'd process sees the container's clocks.
#[test]
fn time_namespace_offsets_move_the_containers_clocks() {
    let root = Root::new();
    let id = "timens";
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cut -d. -f1 /proc/uptime; touch /ready; while [ ! -e /done ]; do sleep 0.05; done",
    ]);
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({
            "boottime": {"secs": 31536000, "nanosecs": 0},
            "monotonic": {"secs": 86400}
        });
    });
    let child = run_until_ready(&root, &b, id);
    let ex = exec_sh(&root, id, "cut -d. -f1 /proc/uptime; touch /done");
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    for (who, text) in [("init", out.stdout_str()), ("exec", ex.stdout_str())] {
        let up: u64 = text.trim().parse().unwrap_or(0);
        assert!(
            (31536000..31536000 + 3600).contains(&up),
            "{who}: uptime {up} should be a year plus the VM's: {out} {ex}"
        );
    }
    root.assert_clean(id);
}

/// Recursive mount attributes: `rro` and `rnoexec` on a bind mount (mount_setattr with
/// AT_RECURSIVE), `nosymfollow` on another: writes fail with EROFS, an executable does not run,
/// a symlink is not followed; the plain bind next to them stays writable. `rootfsPropagation`
/// makes `/` shared.
#[test]
fn recursive_mount_attributes_are_applied() {
    let root = Root::new();
    let id = "rattrs";
    let vol = tempfile::tempdir_in("/tmp").unwrap();
    std::fs::copy("/bin/busybox", vol.path().join("bb")).unwrap();
    std::os::unix::fs::symlink("bb", vol.path().join("link")).unwrap();
    let volume = vol.path().to_str().unwrap().to_string();
    let b = {
        let mut b = Bundle::busybox(&[
            "sh",
            "-c",
            "touch /ro/x 2>&1 || echo ro-refused; /ro/bb true 2>&1 || echo exec-refused; \
             cat /nosym/link >/dev/null 2>&1 || echo symlink-refused; \
             touch /rw/y && echo rw-ok; grep -E ' /(ro|nosym) ' /proc/self/mountinfo; \
             awk '$5 == \"/\" {print \"root:\", $0}' /proc/self/mountinfo",
        ]);
        b.edit(|c| {
            c["linux"]["rootfsPropagation"] = json!("rshared");
            let m = c["mounts"].as_array_mut().unwrap();
            for (dest, opts) in [
                ("/ro", json!(["rbind", "rro", "rnoexec", "rnosuid"])),
                ("/nosym", json!(["rbind", "nosymfollow"])),
                ("/rw", json!(["rbind", "rw"])),
            ] {
                m.push(json!({
                    "destination": dest, "type": "bind", "source": volume, "options": opts
                }));
            }
        });
        b
    };
    let out = run(&root, &b, id, None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    for want in ["ro-refused", "exec-refused", "symlink-refused", "rw-ok"] {
        assert!(so.contains(want), "{want} expected: {out}");
    }
    assert!(so.contains("Read-only file system"), "EROFS: {out}");
    let ro = so.lines().find(|l| l.contains(" /ro ")).unwrap_or_default();
    assert!(
        ro.contains("ro,") && ro.contains("nosuid") && ro.contains("noexec"),
        "/ro mount flags: {out}"
    );
    let nosym = so
        .lines()
        .find(|l| l.contains(" /nosym "))
        .unwrap_or_default();
    assert!(nosym.contains("nosymfollow"), "/nosym mount flags: {out}");
    assert!(vol.path().join("y").exists(), "the rw bind wrote through");
    let slash = so
        .lines()
        .find(|l| l.starts_with("root:"))
        .unwrap_or_default();
    assert!(
        slash.contains("shared:"),
        "rootfsPropagation rshared: {out}"
    );
    root.assert_clean(id);
}

/// `linux.personality`, `process.scheduler` and `process.ioPriority` on the init; an exec'd
/// process's `execCPUAffinity` (final CPU list) on a 2-vCPU VM.
#[test]
fn personality_scheduler_io_priority_and_exec_cpu_affinity() {
    let root = Root::new();
    let id = "pattrs";
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "uname -m; cut -d' ' -f19,41 /proc/self/stat; ionice; \
         grep Cpus_allowed_list /proc/self/status; \
         touch /ready; while [ ! -e /done ]; do sleep 0.05; done",
    ]);
    b.edit(|c| {
        c["annotations"] = json!({"org.hull.vm.vcpus": "2"});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
        // For exec'd processes only: the init keeps every CPU.
        c["process"]["execCPUAffinity"] = json!({"final": "0"});
    });
    let child = run_until_ready(&root, &b, id);
    exec_flags(&root, id);
    let process = json!({
        "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/bin:/usr/bin"],
        "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; touch /done"],
        "execCPUAffinity": {"initial": "0", "final": "1"}
    });
    let pfile = b.path().join("exec-process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let mut exec = root.cmd(&["exec", "--process"]);
    exec.arg(&pfile).arg(id);
    let ex = finish(spawn(&mut exec, false), None, VM_TIMEOUT);
    assert_eq!(ex.code, Some(0), "exec: {ex}");
    assert_eq!(
        ex.stdout_str().split_whitespace().collect::<Vec<_>>(),
        ["Cpus_allowed_list:", "1"],
        "exec: {ex}"
    );
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(lines.first(), Some(&"i686"), "LINUX32 personality: {out}");
    assert_eq!(lines.get(1), Some(&"7 3"), "nice 7, SCHED_BATCH (3): {out}");
    assert_eq!(lines.get(2), Some(&"best-effort: prio 6"), "{out}");
    assert_eq!(
        lines
            .get(3)
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["Cpus_allowed_list:", "0-1"]),
        "the init keeps every CPU: {out}"
    );
    root.assert_clean(id);
}

/// `exec` from the command line: config.json's `execCPUAffinity` applies, `--cpu-affinity`
/// overrides it, `--cap` adds a capability (runc's flag), `--cgroup` and a malformed CPU list
/// are refused with exit 3.
fn exec_flags(root: &Root, id: &str) {
    let exec = |flags: &[&str], cmd: &str| {
        let mut c = root.cmd(&["exec"]);
        c.args(flags).arg(id).args(["sh", "-c", cmd]);
        finish(spawn(&mut c, false), None, VM_TIMEOUT)
    };
    let affinity = "grep Cpus_allowed_list /proc/self/status";
    let out = exec(&[], affinity);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout_str().split_whitespace().nth(1),
        Some("0"),
        "config.json's: {out}"
    );
    let out = exec(&["--cpu-affinity", "1"], affinity);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout_str().split_whitespace().nth(1),
        Some("1"),
        "the flag's: {out}"
    );

    const CAP_SYS_TIME: u32 = 25;
    let eff = |flags: &[&str]| {
        let out = exec(flags, "grep CapEff /proc/self/status");
        assert_eq!(out.code, Some(0), "{out}");
        let hex = out
            .stdout_str()
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        u64::from_str_radix(&hex, 16).unwrap_or_else(|_| panic!("CapEff: {out}"))
    };
    assert_eq!(
        eff(&[]) >> CAP_SYS_TIME & 1,
        0,
        "the bundle has no CAP_SYS_TIME"
    );
    assert_eq!(
        eff(&["--cap", "CAP_SYS_TIME"]) >> CAP_SYS_TIME & 1,
        1,
        "--cap adds it"
    );

    for (flags, word) in [
        (&["--cgroup", "sub"][..], "--cgroup sub"),
        (&["--cpu-affinity", "one"][..], "--cpu-affinity \"one\""),
        (&["--cap", "CAP_NOPE"][..], "--cap CAP_NOPE"),
    ] {
        let out = exec(flags, "true");
        assert_eq!(out.code, Some(3), "{flags:?}: {out}");
        assert!(out.stderr_str().contains(word), "{flags:?}: {out}");
    }
}

/// Fields the VM cannot honour are refused before anything starts (exit 3, the field named):
/// ID-mapped mounts, personality flags, mappings without a user namespace, offsets of an
/// unknown clock.
#[test]
fn fields_that_cannot_be_honoured_are_refused_naming_them() {
    let root = Root::new();
    let vol = tempfile::tempdir_in("/tmp").unwrap();
    let volume = vol.path().to_str().unwrap().to_string();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "mounts[",
            Box::new(move |c| {
                c["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/v", "type": "bind", "source": volume,
                    "options": ["rbind", "idmap"]
                }))
            }),
        ),
        (
            "linux.personality.flags",
            Box::new(|c| {
                c["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["X"]});
            }),
        ),
        (
            "linux.uidMappings",
            Box::new(|c| {
                c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1, "size": 1}]);
            }),
        ),
        (
            "linux.timeOffsets.realtime",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"type": "time"}));
                c["linux"]["timeOffsets"] = json!({"realtime": {"secs": 1}});
            }),
        ),
    ];
    for (i, (field, edit)) in cases.into_iter().enumerate() {
        let id = format!("refuse{i}");
        let mut b = Bundle::busybox(&["true"]);
        b.edit(|c| edit(c));
        let out = run(&root, &b, &id, None);
        assert_eq!(out.code, Some(3), "{field}: {out}");
        assert!(out.stderr_str().contains(field), "{field} named: {out}");
        root.assert_clean(&id);
    }
}

/// `features` lists what is applied: the user and time namespaces, the recursive mount options.
#[test]
fn features_list_user_and_time_namespaces_and_recursive_mount_options() {
    let out = std::process::Command::new(hull_testkit::hull_bin("hull-runtime"))
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    for want in ["user", "time"] {
        assert!(ns.contains(&json!(want)), "{want}: {ns:?}");
    }
    let opts = v["mountOptions"].as_array().unwrap();
    for want in ["rro", "rnoexec", "rnosymfollow", "nosymfollow"] {
        assert!(opts.contains(&json!(want)), "{want}: {opts:?}");
    }
    assert_eq!(
        v["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(false)
    );
}
