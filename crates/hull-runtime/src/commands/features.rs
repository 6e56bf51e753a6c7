//! `features`: what this runtime really supports (runtime-spec features.md).

use anyhow::Result;
use serde_json::json;

use crate::Ctx;

pub fn features(_ctx: &Ctx, _a: liboci_cli::Features) -> Result<i32> {
    let start = match std::env::var(hull_monitor::template::ENV).as_deref() {
        Ok("off") => "cold boot with virtio-fs shares (HULL_VM_TEMPLATE=off)",
        _ => "clone of a VM template, copy-on-write memory, shares over virtio-9p (default; HULL_VM_TEMPLATE=off or the annotation turns it off)",
    };
    let v = json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "mountOptions": [
            "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
            "sync", "async", "relatime", "norelatime", "strictatime", "noatime", "atime",
            "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable",
            "runbindable", "remount", "nosymfollow", "symfollow",
            // Recursive attributes, with mount_setattr(2) and AT_RECURSIVE.
            "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
            "rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rnoatime", "ratime",
            "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow"
        ],
        "linux": {
            // In the guest; a user namespace with linux.uidMappings/gidMappings, a time
            // namespace with linux.timeOffsets (crates/hull-agent/src/userns.rs).
            "namespaces": ["mount", "pid", "uts", "ipc", "network", "cgroup", "user", "time"],
            "capabilities": caps(),
            // linux.resources go into the container's cgroup v2 in the guest
            // (crates/hull-agent/src/cgroup.rs); what the guest kernel cannot do is refused.
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            // Enforced by the guest agent (crates/hull-agent/src/seccomp.rs); seccomp notify
            // (listenerPath, SCMP_ACT_NOTIFY) and SCMP_ACT_TRACE are refused.
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_LOG"
                ],
                "operators": [
                    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"
                ],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
                ],
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
                ]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.hull.vm": "each container runs in its own QEMU VM",
            "io.github.hull.vm.start": start,
            hull_oci::ANNOTATION_VM_TEMPLATE: "on (default) or off: clone the VM from a template (VMs of one shape share read-only memory pages) or boot it",
            hull_oci::ANNOTATION_MEMORY_MIB: "guest RAM in MiB",
            hull_oci::ANNOTATION_VCPUS: "number of vCPUs",
            hull_oci::ANNOTATION_MAX_VCPUS: "most vCPUs the management API can put online (default: the starting vCPUs)",
            "io.github.hull.api": "management API (REST, OpenAPI api/hull-vm.openapi.json) on <root>/<id>/api.sock: info, metrics, pause/resume, memory (balloon) and vCPU resize",
            hull_oci::ANNOTATION_ROOTFS_CACHE: "guest caching of the rootfs: always (default) or auto",
            hull_oci::publish::ANNOTATION_PUBLISH: "ports published on user-mode networking (no network namespace in the spec): [IP:]HOST:CONTAINER[/tcp|udp], comma-separated",
            "io.github.hull.network": "the network namespace's interfaces are wired into the VM (tap + tc mirred); no network namespace = QEMU user-mode networking",
            "io.github.hull.foreign-architectures": foreign(),
            "io.github.hull.process": "applied in the guest: linux.personality (domain; flags refused), process.scheduler, process.ioPriority, process.execCPUAffinity (exec), oomScoreAdj, rlimits, linux.sysctl, domainname; ID-mapped mounts (idmap, mount uidMappings) refused (exit 3)",
            "io.github.hull.pods": "a container joining a running hull container's network namespace runs in its VM",
            "io.github.hull.resources": "enforced in the guest's cgroup v2 (one per container, seen as / with a cgroup namespace): memory limit/reservation/swap, pids limit, cpu shares/quota/period/burst/idle/cpus/mems, unified; refused (create fails, exit 3): disableOOMKiller, realtime CPU, blockIO (the guest kernel has no io.weight, the VM no block devices), hugepageLimits (no hugetlb controller), rdma, network; devices: not filtered (the VM's devices are the agent's)"
        }
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

/// The foreign architectures this host's guest directory can run, and how (see README
/// "Foreign architectures"): e.g. `arm64 (user, system), arm (user)`.
fn foreign() -> String {
    use hull_monitor::assets::{installed, GuestKind};
    let list: Vec<String> = hull_oci::arch::ALL
        .into_iter()
        .filter(|a| *a != hull_oci::Arch::host())
        .filter_map(|a| {
            let modes: Vec<&str> = [
                (installed(GuestKind::User(a)), "user"),
                (installed(GuestKind::System(a)), "system"),
            ]
            .into_iter()
            .filter_map(|(ok, m)| ok.then_some(m))
            .collect();
            (!modes.is_empty()).then(|| format!("{a} ({})", modes.join(", ")))
        })
        .collect();
    let list = match list.is_empty() {
        true => "none (scripts/setup.sh --arch arm64,arm)".to_string(),
        false => list.join(", "),
    };
    format!(
        "{list}; the bundle's architecture: annotation org.hull.vm.arch, else the ELF header of \
         process.args[0]; org.hull.vm.emulation=user|system"
    )
}

fn caps() -> Vec<String> {
    [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ]
    .iter()
    .map(|c| format!("CAP_{c}"))
    .collect()
}
