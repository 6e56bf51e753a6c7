//! The VMM's jail (issue 10 item 6): QEMU and virtiofsd under seccomp, QEMU as the unprivileged
//! `hull` user, guest RAM out of core dumps; and a guest cannot read host files
//! outside its rootfs and volumes through the shared filesystems (virtio-9p of a template
//! clone, virtio-fs of a cold boot) with symlinks or `..`.

mod common;

use std::path::Path;

use common::{create_detached, Bundle, Root, VM_TIMEOUT};
use serde_json::json;

/// A host file outside every bundle and volume (absolute path the guest tries), one per test.
fn host_secret(id: &str) -> String {
    format!("/etc/hull-jail-secret-{id}")
}

fn status_field(pid: u32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The hull user's uid; fails naming how to create it.
fn hull_uid() -> u32 {
    let out = std::process::Command::new("id")
        .args(["-u", "hull"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "no user `hull` on this host: QEMU runs as root. Create it with scripts/setup.sh, or \
         `useradd --system --no-create-home --shell /usr/sbin/nologin hull`"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The hull user's primary group.
fn hull_gid() -> u32 {
    let out = std::process::Command::new("id")
        .args(["-g", "hull"])
        .output()
        .unwrap();
    assert!(out.status.success(), "no user `hull`: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Every descendant of `pid` with its `comm`.
fn descendants(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in common::children(p) {
            let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default();
            out.push((c, comm.trim().to_owned()));
            todo.push(c);
        }
    }
    out
}

/// A token nobody can guess.
fn token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("hull-jail-token-{:x}-{}", t, std::process::id())
}

/// Escape attempts, each printing what it read; then the volume's own file.
const SCRIPT: &str = r#"
try() { echo "== $1"; cat "$1" 2>&1; }
for p in /abs-link /outside-link "/up$SECRET" "/up$OUTSIDE" \
         "/../../../..$SECRET" "/../../../..$OUTSIDE" \
         "/data/../../../..$SECRET" "/data/../../../..$OUTSIDE" \
         "/data/escape$SECRET" "/data/escape$OUTSIDE" /data/abs \
         "/data/sub/../../../../..$SECRET"; do
  try "$p"
done
ls -la / /up/ /data/escape/ 2>&1
echo "== own"; cat /data/own
echo "== root own"; cat /rootfs-own
"#;

/// Runs the escape attempts in a container (`template`: cloned from a template, else cold
/// boot), checks the VMM's processes while it runs, and that no attempt read a secret.
fn jail(id: &str, template: bool) {
    hull_uid();
    let root = Root::new();
    let secret = token();
    let host_secret = host_secret(id);
    std::fs::write(&host_secret, format!("{secret}\n")).unwrap();
    // A second secret in a temp directory beside the bundle and the volume.
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("secret");
    std::fs::write(&outside_file, format!("{secret}\n")).unwrap();
    let outside_file = outside_file.to_str().unwrap().to_owned();

    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("own"), "volume-ok\n").unwrap();
    std::fs::create_dir(vol.path().join("sub")).unwrap();
    let link = |target: &str, at: &Path| std::os::unix::fs::symlink(target, at).unwrap();
    link("../../../../../../../../..", &vol.path().join("escape"));
    link(&outside_file, &vol.path().join("abs"));

    // sync: a 9p volume may hold the written data in the guest's page cache a while.
    let script = format!("{{ {SCRIPT} }} > /data/out 2>&1; sync; touch /data/done; sleep 1000");
    let mut b = Bundle::busybox(&["sh", "-c", &script]);
    let rootfs = b.rootfs();
    link(&host_secret, &rootfs.join("abs-link"));
    link(&outside_file, &rootfs.join("outside-link"));
    link("../../../../../../../../..", &rootfs.join("up"));
    std::fs::write(rootfs.join("rootfs-own"), "rootfs-ok\n").unwrap();
    let src = vol.path().to_str().unwrap().to_owned();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "rw"]
        }));
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("OUTSIDE={outside_file}")));
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("SECRET={host_secret}")));
        c["annotations"] = json!({"org.hull.vm.template": if template { "on" } else { "off" }});
    });

    let monitor = create_detached(&root, &b, id);
    let out = root.cmd(&["start", id]).output().unwrap();
    assert!(out.status.success(), "start: {out:?}");
    let done = vol.path().join("done");
    hull_testkit::wait::wait_for("the escape attempts", VM_TIMEOUT, || {
        done.exists().then_some(())
    });

    // The VMM's processes, while the VM runs.
    let procs = descendants(monitor);
    let qemu: Vec<u32> = procs
        .iter()
        .filter(|(_, c)| c.starts_with("qemu-system"))
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU under the monitor: {procs:?}");
    let qemu = qemu[0];
    assert_eq!(status_field(qemu, "Seccomp:"), "2", "QEMU's seccomp");
    // Its own uid (no other VM's QEMU has it), the hull user's group.
    let uid = hull_monitor::jail::VM_UID_BASE + monitor;
    assert_eq!(
        status_field(qemu, "Uid:"),
        format!("{uid}\t{uid}\t{uid}\t{uid}"),
        "QEMU runs as its VM's uid"
    );
    let gid = hull_gid();
    assert_eq!(
        status_field(qemu, "Gid:"),
        format!("{gid}\t{gid}\t{gid}\t{gid}"),
        "QEMU runs with the hull user's group"
    );
    assert_eq!(status_field(qemu, "NoNewPrivs:"), "1");
    let caps = u64::from_str_radix(&status_field(qemu, "CapEff:"), 16).unwrap();
    if template {
        // 9p passthrough: the file capabilities only: CHOWN, DAC_OVERRIDE, FOWNER, FSETID,
        // MKNOD (no CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, ...).
        let files = [0, 1, 3, 4, 27].iter().fold(0u64, |m, b| m | 1 << b);
        assert_eq!(caps, files, "QEMU's capabilities {caps:x}");
    } else {
        assert_eq!(caps, 0, "a cold boot's QEMU has no capabilities");
    }
    let vfsd: Vec<u32> = procs
        .iter()
        .filter(|(_, c)| c.starts_with("virtiofsd"))
        .map(|(p, _)| *p)
        .collect();
    if template {
        assert!(vfsd.is_empty(), "a clone's shares are QEMU's 9p: {procs:?}");
    } else {
        assert!(!vfsd.is_empty(), "a cold boot has virtiofsd: {procs:?}");
        // --sandbox=namespace: each virtiofsd forks its server into new namespaces; the parent
        // only waits for it, with no capability left.
        let servers: Vec<u32> = vfsd
            .iter()
            .copied()
            .filter(|p| !common::children(*p).iter().any(|c| vfsd.contains(c)))
            .collect();
        assert!(!servers.is_empty(), "{procs:?}");
        for p in &vfsd {
            if servers.contains(p) {
                assert_eq!(status_field(*p, "Seccomp:"), "2", "virtiofsd {p}'s seccomp");
                let ns =
                    |pid: u32, kind: &str| std::fs::read_link(format!("/proc/{pid}/ns/{kind}"));
                for kind in ["mnt", "pid", "net"] {
                    assert_ne!(
                        ns(*p, kind).unwrap(),
                        ns(monitor, kind).unwrap(),
                        "virtiofsd {p} has a {kind} namespace of its own"
                    );
                }
            } else {
                assert_eq!(status_field(*p, "CapEff:"), "0000000000000000");
            }
        }
    }
    let smaps = std::fs::read_to_string(format!("/proc/{qemu}/smaps")).unwrap();
    let ram = guest_ram_flags(&smaps, template);
    assert!(
        ram.split_whitespace().any(|f| f == "dd"),
        "guest RAM is not MADV_DONTDUMP: VmFlags {ram}"
    );

    let seen = std::fs::read_to_string(vol.path().join("out")).unwrap();
    eprintln!("what the guest saw ({id}):\n{seen}");
    assert!(!seen.contains(&secret), "a guest read a host file:\n{seen}");
    assert!(seen.contains("== own\nvolume-ok\n"), "{seen}");
    assert!(seen.contains("== root own\nrootfs-ok\n"), "{seen}");

    let out = root.cmd(&["delete", "--force", id]).output().unwrap();
    assert!(out.status.success(), "delete: {out:?}");
    root.assert_clean(id);
    let _ = std::fs::remove_file(&host_secret);
}

/// `VmFlags` of the guest RAM mapping: the template's memory file of a clone, QEMU's memfd
/// of a cold boot.
fn guest_ram_flags(smaps: &str, template: bool) -> String {
    let mut in_ram = false;
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let path = l.split_whitespace().nth(5).unwrap_or_default();
            in_ram = if template {
                path.ends_with("/memory")
            } else {
                path.starts_with("/memfd:mem")
            };
        } else if in_ram {
            if let Some(f) = l.strip_prefix("VmFlags:") {
                return f.trim().to_owned();
            }
        }
    }
    panic!("no guest RAM mapping in QEMU's smaps");
}

#[test]
fn a_template_clone_runs_jailed_and_its_9p_shares_hold() {
    jail("jail9p", true);
}

#[test]
fn a_cold_boot_runs_jailed_and_its_virtio_fs_shares_hold() {
    jail("jailvfs", false);
}
