//! Bundle → VM plan: what the VM needs (memory, vCPUs) and which host paths it shares.

use std::path::PathBuf;

use crate::{bundle::is_bind_mount, Bundle, OciError};

/// Guest RAM when the bundle asks for nothing else.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Annotation that sets the guest RAM in MiB.
pub const ANNOTATION_MEMORY_MIB: &str = "org.hull.vm.memory_mib";
/// Annotation that sets the number of vCPUs.
pub const ANNOTATION_VCPUS: &str = "org.hull.vm.vcpus";
/// Annotation that sets the most vCPUs the VM can have online (the management API's
/// `PUT /v1/vm/vcpus`); default: the vCPUs it starts with (no extra vCPU threads, the
/// template shape of a VM that does not ask for more).
pub const ANNOTATION_MAX_VCPUS: &str = "org.hull.vm.max_vcpus";
/// Annotation that sets the most memory (MiB) the VM can be given later (the management API's
/// `PUT /v1/vm/memory`, `hull-runtime update --memory`); default: the memory it starts with.
/// QEMU gets this much RAM and a balloon takes the difference away at boot.
pub const ANNOTATION_MAX_MEMORY_MIB: &str = "org.hull.vm.max_memory_mib";
/// The most vCPUs a VM is created with.
pub const MAX_VCPUS: u32 = 64;
/// RAM the guest kernel and agent need on top of a container's memory limit.
const GUEST_OVERHEAD_MIB: u64 = 64;
/// The least memory a VM gets, MiB.
pub const MIN_MEMORY_MIB: u64 = 128;

/// The VM memory (MiB) for a container memory limit in bytes: the limit plus what the guest
/// kernel and agent need, at least [`MIN_MEMORY_MIB`]. `None` for no limit (0 or negative).
pub fn memory_mib_for_limit(limit: i64) -> Option<u64> {
    (limit > 0).then(|| {
        (limit as u64)
            .div_ceil(1 << 20)
            .saturating_add(GUEST_OVERHEAD_MIB)
            .max(MIN_MEMORY_MIB)
    })
}

/// The vCPUs for a CFS quota and period (µs): the quota's CPUs rounded up (docker's
/// `--cpus 1.5` is quota 150000, period 100000: 2 vCPUs). `None` for no quota (unset, 0,
/// or -1) or no period.
pub fn vcpus_for_quota(quota: Option<i64>, period: Option<u64>) -> Option<u64> {
    match (quota, period) {
        (Some(q), Some(p)) if q > 0 && p > 0 => Some((q as u64).div_ceil(p)),
        _ => None,
    }
}

/// Annotation that sets how the guest caches the rootfs: `always` (default) or `auto`.
pub const ANNOTATION_ROOTFS_CACHE: &str = "org.hull.rootfs.cache";

/// Annotation that picks the backend of user-mode networking (a spec without a network
/// namespace): `passt` or `slirp` (QEMU's built-in stack).
pub const ANNOTATION_NET_BACKEND: &str = "org.hull.net.backend";

/// Annotation that turns VM templates on or off for this container: `on` (the runtime's
/// default) or `off` (a cold boot with virtio-fs, e.g. for a tenant that must not share
/// memory pages with other VMs).
pub const ANNOTATION_VM_TEMPLATE: &str = "org.hull.vm.template";

/// The program behind user-mode networking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetBackend {
    /// `passt`, a process of its own that QEMU reaches over a unix stream socket.
    Passt,
    /// QEMU's built-in user-mode stack (libslirp).
    Slirp,
}

impl NetBackend {
    pub const NAMES: &'static str = "\"passt\", \"slirp\"";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passt => "passt",
            Self::Slirp => "slirp",
        }
    }

    /// `None` for anything but `passt` or `slirp`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "passt" => Some(Self::Passt),
            "slirp" => Some(Self::Slirp),
            _ => None,
        }
    }
}

/// Which virtio-fs share a host path goes into. The rootfs share is cached in the guest without
/// revalidation, which makes exec fast (a binary's pages stay cached between runs); volumes
/// (bind mounts, often shared with the host or other containers) stay coherent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareTree {
    Rootfs,
    Volumes,
}

/// Guest caching of a share (virtiofsd's `--cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsCache {
    /// Data and metadata cached until evicted: host-side edits of files the guest has already
    /// seen may stay invisible to it.
    Always,
    /// Revalidated after a second and on every open (close-to-open coherence).
    Auto,
}

impl FsCache {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Auto => "auto",
        }
    }
}

/// One host path shared into the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub host_path: PathBuf,
    pub tree: ShareTree,
    /// Path inside its tree.
    pub share_path: String,
    /// The bind mount it serves (`None` for the rootfs).
    pub mount_index: Option<usize>,
    pub is_dir: bool,
}

/// What the monitor builds for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// Memory the guest has when the container starts, MiB.
    pub memory_mib: u32,
    /// RAM QEMU gets: the most the guest can be given (at least `memory_mib`).
    pub max_memory_mib: u32,
    /// vCPUs online when the container starts.
    pub vcpus: u32,
    /// vCPUs QEMU creates: the most that can be online (at least `vcpus`).
    pub max_vcpus: u32,
    /// The rootfs first (in [`ShareTree::Rootfs`]), then one share per bind mount (in
    /// [`ShareTree::Volumes`]).
    pub shares: Vec<Share>,
    pub rootfs_cache: FsCache,
    /// Ports published on user-mode networking (`org.hull.net.publish`).
    pub publish: Vec<crate::publish::PortForward>,
    /// The user-mode network's backend the bundle asks for (`org.hull.net.backend`; `None`:
    /// the runtime's default).
    pub net_backend: Option<NetBackend>,
    /// Whether the bundle asks for a VM template (`org.hull.vm.template`; `None`: the
    /// runtime's default).
    pub template: Option<bool>,
    /// The architecture of the container's programs (see [`crate::arch`]).
    pub arch: crate::Arch,
    /// How a foreign `arch` is emulated, if the bundle says (`org.hull.vm.emulation`;
    /// `None`: the runtime's default).
    pub emulation: Option<crate::Emulation>,
}

impl VmPlan {
    /// Whether the container's architecture is not the host's.
    pub fn is_foreign(&self) -> bool {
        self.arch != crate::Arch::host()
    }
}

impl VmPlan {
    /// The shares of one tree.
    pub fn tree(&self, tree: ShareTree) -> impl Iterator<Item = &Share> {
        self.shares.iter().filter(move |s| s.tree == tree)
    }
}

impl VmPlan {
    /// Translates a validated bundle. `host_cpus` caps the vCPU count.
    pub fn from_bundle(b: &Bundle, host_cpus: u32) -> Result<Self, OciError> {
        let annotations = b.spec.annotations().clone().unwrap_or_default();
        let annotation = |key: &str| -> Result<Option<u64>, OciError> {
            annotations
                .get(key)
                .map(|v| {
                    v.parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| OciError::Invalid {
                            path: b.config_path.clone(),
                            field: format!("annotations[{key:?}]"),
                            problem: format!("{v:?} is not a positive integer"),
                        })
                })
                .transpose()
        };
        let resources = b.spec.linux().as_ref().and_then(|l| l.resources().as_ref());

        let memory_mib = match annotation(ANNOTATION_MEMORY_MIB)? {
            Some(m) => m.max(MIN_MEMORY_MIB),
            None => resources
                .and_then(|r| r.memory().as_ref())
                .and_then(|m| m.limit())
                .and_then(memory_mib_for_limit)
                .unwrap_or(u64::from(DEFAULT_MEMORY_MIB)),
        };
        let max_memory_mib = annotation(ANNOTATION_MAX_MEMORY_MIB)?
            .unwrap_or(memory_mib)
            .max(memory_mib);
        let vcpus = match annotation(ANNOTATION_VCPUS)? {
            Some(n) => n,
            None => resources
                .and_then(|r| r.cpu().as_ref())
                .and_then(|c| vcpus_for_quota(c.quota(), c.period()))
                .unwrap_or(1),
        };
        let vcpus = vcpus.clamp(1, u64::from(host_cpus.max(1)));
        let max_vcpus = annotation(ANNOTATION_MAX_VCPUS)?
            .unwrap_or(vcpus)
            .clamp(vcpus, u64::from(MAX_VCPUS).max(vcpus));

        let rootfs_cache = match annotations.get(ANNOTATION_ROOTFS_CACHE).map(String::as_str) {
            None | Some("always") => FsCache::Always,
            Some("auto") => FsCache::Auto,
            Some(other) => {
                return Err(OciError::Invalid {
                    path: b.config_path.clone(),
                    field: format!("annotations[{ANNOTATION_ROOTFS_CACHE:?}]"),
                    problem: format!("{other:?} is not one of \"always\", \"auto\""),
                })
            }
        };

        let mut shares = vec![Share {
            host_path: b.rootfs.clone(),
            tree: ShareTree::Rootfs,
            share_path: "rootfs".into(),
            mount_index: None,
            is_dir: true,
        }];
        for (i, m) in b
            .spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !is_bind_mount(m) {
                continue;
            }
            let src = m.source().clone().unwrap_or_default();
            let host_path = if src.is_absolute() {
                src
            } else {
                b.dir.join(src)
            };
            let is_dir = std::fs::metadata(&host_path)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            shares.push(Share {
                host_path,
                tree: ShareTree::Volumes,
                share_path: format!("{i}"),
                mount_index: Some(i),
                is_dir,
            });
        }
        let publish = match annotations.get(crate::publish::ANNOTATION_PUBLISH) {
            None => Vec::new(),
            Some(v) => crate::publish::parse_list(v).map_err(|problem| OciError::Invalid {
                path: b.config_path.clone(),
                field: format!("annotations[{:?}]", crate::publish::ANNOTATION_PUBLISH),
                problem,
            })?,
        };
        let net_backend = match annotations.get(ANNOTATION_NET_BACKEND) {
            None => None,
            Some(v) => Some(NetBackend::parse(v).ok_or_else(|| OciError::Invalid {
                path: b.config_path.clone(),
                field: format!("annotations[{ANNOTATION_NET_BACKEND:?}]"),
                problem: format!("{v:?} is not one of {}", NetBackend::NAMES),
            })?),
        };
        let template = match annotations.get(ANNOTATION_VM_TEMPLATE).map(String::as_str) {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => {
                return Err(OciError::Invalid {
                    path: b.config_path.clone(),
                    field: format!("annotations[{ANNOTATION_VM_TEMPLATE:?}]"),
                    problem: format!("{other:?} is not one of \"on\", \"off\""),
                })
            }
        };
        let arch = crate::arch::of_bundle(b)?;
        let emulation = crate::arch::emulation_of(b)?;
        Ok(Self {
            arch,
            emulation,
            memory_mib: u32::try_from(memory_mib).unwrap_or(u32::MAX),
            max_memory_mib: u32::try_from(max_memory_mib).unwrap_or(u32::MAX),
            template,
            vcpus: vcpus as u32,
            max_vcpus: max_vcpus as u32,
            shares,
            rootfs_cache,
            publish,
            net_backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn plan(config: Value) -> Result<VmPlan, OciError> {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        let b = Bundle::load(d.path())?;
        VmPlan::from_bundle(&b, 2)
    }

    fn base() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        })
    }

    #[test]
    fn defaults_are_256_mib_and_one_vcpu() {
        let p = plan(base()).unwrap();
        assert_eq!((p.memory_mib, p.vcpus), (DEFAULT_MEMORY_MIB, 1));
        assert_eq!(p.shares.len(), 1);
        assert_eq!(p.shares[0].share_path, "rootfs");
        assert_eq!(p.shares[0].tree, ShareTree::Rootfs);
        assert_eq!(p.rootfs_cache, FsCache::Always);
    }

    #[test]
    fn rootfs_cache_annotation_is_checked() {
        let mut c = base();
        c["annotations"] = json!({ANNOTATION_ROOTFS_CACHE: "auto"});
        assert_eq!(plan(c.clone()).unwrap().rootfs_cache, FsCache::Auto);
        c["annotations"] = json!({ANNOTATION_ROOTFS_CACHE: "sometimes"});
        let e = plan(c).unwrap_err().to_string();
        assert!(
            e.contains(ANNOTATION_ROOTFS_CACHE) && e.contains("\"sometimes\""),
            "{e}"
        );
    }

    #[test]
    fn template_annotation_is_checked() {
        let mut c = base();
        assert_eq!(plan(c.clone()).unwrap().template, None);
        c["annotations"] = json!({ANNOTATION_VM_TEMPLATE: "off"});
        assert_eq!(plan(c.clone()).unwrap().template, Some(false));
        c["annotations"] = json!({ANNOTATION_VM_TEMPLATE: "on"});
        assert_eq!(plan(c.clone()).unwrap().template, Some(true));
        c["annotations"] = json!({ANNOTATION_VM_TEMPLATE: "maybe"});
        let e = plan(c).unwrap_err().to_string();
        assert!(
            e.contains(ANNOTATION_VM_TEMPLATE) && e.contains("\"maybe\""),
            "{e}"
        );
    }

    #[test]
    fn net_backend_annotation_is_checked() {
        let mut c = base();
        assert_eq!(plan(c.clone()).unwrap().net_backend, None);
        c["annotations"] = json!({ANNOTATION_NET_BACKEND: "passt"});
        assert_eq!(
            plan(c.clone()).unwrap().net_backend,
            Some(NetBackend::Passt)
        );
        c["annotations"] = json!({ANNOTATION_NET_BACKEND: "slirp"});
        assert_eq!(
            plan(c.clone()).unwrap().net_backend,
            Some(NetBackend::Slirp)
        );
        c["annotations"] = json!({ANNOTATION_NET_BACKEND: "vde"});
        let e = plan(c).unwrap_err().to_string();
        assert!(
            e.contains(ANNOTATION_NET_BACKEND) && e.contains("\"vde\""),
            "{e}"
        );
    }

    #[test]
    fn memory_limit_sizes_the_vm_with_overhead() {
        let mut c = base();
        c["linux"] = json!({"resources": {"memory": {"limit": 512u64 << 20}}});
        assert_eq!(plan(c).unwrap().memory_mib, 512 + 64);
    }

    #[test]
    fn cpu_quota_rounds_up_and_is_capped_by_host_cpus() {
        let mut c = base();
        c["linux"] = json!({"resources": {"cpu": {"quota": 150000, "period": 100000}}});
        assert_eq!(plan(c.clone()).unwrap().vcpus, 2);
        c["linux"]["resources"]["cpu"]["quota"] = json!(800000);
        assert_eq!(plan(c).unwrap().vcpus, 2, "capped at host cpus");
    }

    #[test]
    fn max_memory_defaults_to_memory_and_is_at_least_memory() {
        let mut c = base();
        let p = plan(c.clone()).unwrap();
        assert_eq!(p.max_memory_mib, p.memory_mib);
        c["annotations"] = json!({ANNOTATION_MAX_MEMORY_MIB: "1024", ANNOTATION_MEMORY_MIB: "256"});
        let p = plan(c.clone()).unwrap();
        assert_eq!((p.memory_mib, p.max_memory_mib), (256, 1024));
        c["annotations"] = json!({ANNOTATION_MAX_MEMORY_MIB: "200", ANNOTATION_MEMORY_MIB: "256"});
        assert_eq!(plan(c.clone()).unwrap().max_memory_mib, 256);
        c["annotations"] = json!({ANNOTATION_MAX_MEMORY_MIB: "lots"});
        assert!(plan(c).is_err());
    }

    #[test]
    fn max_vcpus_defaults_to_vcpus_and_is_at_least_vcpus() {
        let p = plan(base()).unwrap();
        assert_eq!((p.vcpus, p.max_vcpus), (1, 1));
        let mut c = base();
        c["annotations"] = json!({ANNOTATION_MAX_VCPUS: "4", ANNOTATION_VCPUS: "2"});
        let p = plan(c.clone()).unwrap();
        assert_eq!((p.vcpus, p.max_vcpus), (2, 4));
        c["annotations"] = json!({ANNOTATION_MAX_VCPUS: "1", ANNOTATION_VCPUS: "2"});
        assert_eq!(plan(c.clone()).unwrap().max_vcpus, 2);
        c["annotations"] = json!({ANNOTATION_MAX_VCPUS: "0"});
        assert!(plan(c).is_err());
    }

    #[test]
    fn annotations_override_and_bad_values_are_named() {
        let mut c = base();
        c["annotations"] = json!({ANNOTATION_MEMORY_MIB: "1024"});
        assert_eq!(plan(c.clone()).unwrap().memory_mib, 1024);
        c["annotations"] = json!({ANNOTATION_VCPUS: "many"});
        let e = plan(c).unwrap_err().to_string();
        assert!(
            e.contains(ANNOTATION_VCPUS) && e.contains("\"many\""),
            "{e}"
        );
    }

    #[test]
    fn bind_mounts_become_shares_by_mount_index() {
        let mut c = base();
        c["mounts"] = json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "rw"]},
        ]);
        let p = plan(c).unwrap();
        assert_eq!(p.shares.len(), 2);
        assert_eq!(p.tree(ShareTree::Volumes).count(), 1);
        assert_eq!(p.shares[1].tree, ShareTree::Volumes);
        assert_eq!(p.shares[1].share_path, "1");
        assert_eq!(p.shares[1].mount_index, Some(1));
        assert!(p.shares[1].is_dir);
    }
}
