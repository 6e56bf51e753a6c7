//! The container's cgroup in the guest (cgroup v2, the guest kernel's only hierarchy): one per
//! container, `/sys/fs/cgroup/hull/<id>`, with the controllers the guest kernel has, and
//! `linux.resources` written into it before any of the container's processes enters it. Every
//! process of the container (the init and each exec'd one) joins it in the forked child before it
//! enters the container's namespaces, so a cgroup namespace shows it as `/`.
//!
//! Conversions are runc's (cgroup v1 values of the spec → v2 files). What the guest kernel
//! cannot do is refused with the spec field named ([`Error::Spec`]: the host reports an invalid
//! bundle), never silently dropped; so is a value the kernel refuses.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::error::{io_errno, Context, Error, Result};

/// Where the agent mounts the cgroup2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The parent of the containers' cgroups, under [`CGROUP_ROOT`].
const PARENT: &str = "hull";

/// The controllers a container's cgroup gets, when the guest kernel has them.
const CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// The kernel options a controller needs (for the message that refuses a field).
fn config_of_controller(controller: &str) -> &'static str {
    match controller {
        "memory" => "CONFIG_MEMCG",
        "pids" => "CONFIG_CGROUP_PIDS",
        "cpu" => "CONFIG_CGROUP_SCHED, CONFIG_FAIR_GROUP_SCHED",
        "cpuset" => "CONFIG_CPUSETS",
        "io" => "CONFIG_BLK_CGROUP",
        "hugetlb" => "CONFIG_HUGETLBFS, CONFIG_CGROUP_HUGETLB",
        "rdma" => "CONFIG_CGROUP_RDMA",
        "misc" => "CONFIG_CGROUP_MISC",
        _ => "a kernel with this controller",
    }
}

/// The kernel options an interface file needs beyond its controller.
fn config_of_file(file: &str) -> Option<&'static str> {
    match file {
        "cpu.max" | "cpu.max.burst" => Some("CONFIG_CFS_BANDWIDTH"),
        "io.weight" => Some("CONFIG_BLK_CGROUP_IOCOST"),
        "memory.swap.max" => Some("CONFIG_SWAP"),
        _ => None,
    }
}

/// One value for one interface file of the container's cgroup, from one spec field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub file: String,
    pub value: String,
    /// The spec field, as errors name it (`linux.resources.memory.limit`).
    pub field: String,
}

/// What `linux.resources` asks of the container's cgroup, in the order it is written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub settings: Vec<Setting>,
}

/// A limit of the spec as a cgroup v2 value: 0 is unset, -1 is `max` (runc's `numToStr`).
fn limit_value(v: i64) -> Option<String> {
    match v {
        0 => None,
        -1 => Some("max".into()),
        v => Some(v.to_string()),
    }
}

/// runc's `ConvertCPUSharesToCgroupV2Value`: [2, 262144] onto cpu.weight's [1, 10000].
pub fn cpu_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// runc's `ConvertBlkIOToIOWeightValue`: [10, 1000] onto io.weight's [1, 10000].
fn io_weight(weight: u16) -> u64 {
    1 + (u64::from(weight).saturating_sub(10) * 9999) / 990
}

/// runc's `ConvertMemorySwapToCgroupV2Value`: the spec's swap is memory + swap (v1), v2's
/// memory.swap.max is the swap alone.
fn swap_value(swap: i64, memory: i64) -> std::result::Result<Option<String>, &'static str> {
    if memory == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    if swap == -1 || swap == 0 {
        return Ok(limit_value(swap));
    }
    if memory == 0 || memory == -1 {
        return Err("a swap limit needs a memory limit");
    }
    if memory < 0 {
        return Err("the memory limit is negative");
    }
    if swap < memory {
        return Err("the memory+swap limit must be at least the memory limit");
    }
    Ok(Some((swap - memory).to_string()))
}

impl Limits {
    /// Converts `linux.resources`; `available` are the guest kernel's controllers. Refuses what
    /// the guest cannot apply, naming the field.
    pub fn plan(r: Option<&LinuxResources>, available: &BTreeSet<String>) -> Result<Self> {
        let mut l = Planner {
            available,
            settings: Vec::new(),
        };
        let Some(r) = r else {
            return Ok(Self::default());
        };
        if let Some(m) = r.memory() {
            l.memory(m)?;
        }
        if let Some(p) = r.pids() {
            if p.limit() != 0 {
                let v = if p.limit() < 0 {
                    "max".into()
                } else {
                    p.limit().to_string()
                };
                l.set("pids", "pids.max", v, "linux.resources.pids.limit")?;
            }
        }
        if let Some(c) = r.cpu() {
            l.cpu(c)?;
        }
        if let Some(b) = r.block_io() {
            l.block_io(b)?;
        }
        l.refused_lists(r)?;
        for h in r.hugepage_limits().iter().flatten() {
            let field = "linux.resources.hugepageLimits";
            let file = format!("hugetlb.{}.max", h.page_size());
            l.set("hugetlb", &file, h.limit().to_string(), field)?;
        }
        // Sorted: a HashMap's order changes from run to run.
        let unified: BTreeMap<_, _> = r.unified().iter().flatten().collect();
        for (key, value) in unified {
            l.unified(key, value)?;
        }
        Ok(Self {
            settings: l.settings,
        })
    }
}

struct Planner<'a> {
    available: &'a BTreeSet<String>,
    settings: Vec<Setting>,
}

impl Planner<'_> {
    fn need(&self, controller: &str, field: &str) -> Result<()> {
        if self.available.contains(controller) {
            return Ok(());
        }
        Err(Error::spec(
            field,
            format!(
                "the guest kernel has no {controller} controller (needs {})",
                config_of_controller(controller)
            ),
        ))
    }

    fn set(&mut self, controller: &str, file: &str, value: String, field: &str) -> Result<()> {
        self.need(controller, field)?;
        self.settings.push(Setting {
            file: file.into(),
            value,
            field: field.into(),
        });
        Ok(())
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<()> {
        const F: &str = "linux.resources.memory";
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::spec(
                format!("{F}.disableOOMKiller"),
                "cgroup v2 (the guest's only hierarchy) cannot disable the OOM killer",
            ));
        }
        if let Some(v) = m.limit().and_then(limit_value) {
            self.set("memory", "memory.max", v, &format!("{F}.limit"))?;
        }
        if let Some(v) = m.reservation().and_then(limit_value) {
            self.set("memory", "memory.low", v, &format!("{F}.reservation"))?;
        }
        // Unset is 0: with an unlimited memory, swap is unlimited too (runc).
        let swap = m.swap().unwrap_or(0);
        let field = format!("{F}.swap");
        let v = swap_value(swap, m.limit().unwrap_or(0))
            .map_err(|why| Error::spec(&field, format!("{swap}: {why}")))?;
        if let Some(v) = v {
            self.set("memory", "memory.swap.max", v, &field)?;
        }
        // kernel, kernelTCP (deprecated), swappiness, useHierarchy, checkBeforeUpdate: cgroup v1
        // only; runc ignores them on v2 too.
        Ok(())
    }

    fn cpu(&mut self, c: &LinuxCpu) -> Result<()> {
        const F: &str = "linux.resources.cpu";
        if c.realtime_runtime().is_some_and(|v| v != 0)
            || c.realtime_period().is_some_and(|v| v != 0)
        {
            return Err(Error::spec(
                format!("{F}.realtimeRuntime"),
                "cgroup v2 (the guest's only hierarchy) has no realtime CPU limits",
            ));
        }
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            let v = cpu_weight(shares).to_string();
            self.set("cpu", "cpu.weight", v, &format!("{F}.shares"))?;
        }
        let (quota, period) = (c.quota().unwrap_or(0), c.period().unwrap_or(0));
        if quota != 0 || period != 0 {
            let mut v = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            if period != 0 {
                v = format!("{v} {period}");
            }
            let field = if quota != 0 { "quota" } else { "period" };
            self.set("cpu", "cpu.max", v, &format!("{F}.{field}"))?;
        }
        if let Some(b) = c.burst() {
            self.set("cpu", "cpu.max.burst", b.to_string(), &format!("{F}.burst"))?;
        }
        if let Some(idle) = c.idle() {
            self.set("cpu", "cpu.idle", idle.to_string(), &format!("{F}.idle"))?;
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpuset", "cpuset.cpus", cpus.into(), &format!("{F}.cpus"))?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpuset", "cpuset.mems", mems.into(), &format!("{F}.mems"))?;
        }
        Ok(())
    }

    fn block_io(&mut self, b: &LinuxBlockIo) -> Result<()> {
        const F: &str = "linux.resources.blockIO";
        if let Some(w) = b.weight().filter(|w| *w != 0) {
            let v = io_weight(w).to_string();
            self.set("io", "io.weight", v, &format!("{F}.weight"))?;
        }
        let lists = [
            ("weightDevice", b.weight_device().as_ref().map(Vec::len)),
            (
                "throttleReadBpsDevice",
                b.throttle_read_bps_device().as_ref().map(Vec::len),
            ),
            (
                "throttleWriteBpsDevice",
                b.throttle_write_bps_device().as_ref().map(Vec::len),
            ),
            (
                "throttleReadIOPSDevice",
                b.throttle_read_iops_device().as_ref().map(Vec::len),
            ),
            (
                "throttleWriteIOPSDevice",
                b.throttle_write_iops_device().as_ref().map(Vec::len),
            ),
        ];
        if let Some((name, _)) = lists.iter().find(|(_, n)| n.unwrap_or(0) > 0) {
            return Err(Error::spec(
                format!("{F}.{name}"),
                "names host block devices: the VM has none (its file systems are shares)",
            ));
        }
        Ok(())
    }

    /// Fields of cgroup v1 or devices the VM does not have.
    fn refused_lists(&self, r: &LinuxResources) -> Result<()> {
        if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
            self.need("rdma", "linux.resources.rdma")?;
            return Err(Error::spec(
                "linux.resources.rdma",
                "the VM has no RDMA device",
            ));
        }
        if let Some(n) = r.network() {
            if n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                return Err(Error::spec(
                    "linux.resources.network",
                    "net_cls/net_prio are cgroup v1 controllers; the guest has cgroup v2 only",
                ));
            }
        }
        Ok(())
    }

    fn unified(&mut self, key: &str, value: &str) -> Result<()> {
        let field = format!("linux.resources.unified[{key:?}]");
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(Error::spec(
                field,
                "not the name of a cgroup interface file",
            ));
        }
        if matches!(
            key,
            "cgroup.procs" | "cgroup.threads" | "cgroup.subtree_control"
        ) {
            return Err(Error::spec(field, "the runtime manages this file"));
        }
        let controller = key.split('.').next().unwrap_or_default();
        if controller != "cgroup" && !self.available.contains(controller) {
            return Err(Error::spec(
                field,
                format!(
                    "the guest kernel has no {controller} controller (needs {})",
                    config_of_controller(controller)
                ),
            ));
        }
        self.settings.push(Setting {
            file: key.into(),
            value: value.into(),
            field,
        });
        Ok(())
    }
}

/// The container's cgroup in the guest.
#[derive(Debug)]
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    /// Creates the cgroup of container `id` and writes `resources` into it (the agent, before it
    /// forks the container's init).
    pub fn create(id: &str, resources: Option<&LinuxResources>) -> Result<Self> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(Error::msg(format!(
                "container id {id:?} cannot name a cgroup"
            )));
        }
        let root = Path::new(CGROUP_ROOT);
        ensure_mounted(root)?;
        let available = controllers(root)?;
        let limits = Limits::plan(resources, &available)?;
        let enable: Vec<&str> = CONTROLLERS
            .into_iter()
            .filter(|c| available.contains(*c))
            .collect();
        let parent = root.join(PARENT);
        enable_controllers(root, &enable)?;
        make_dir(&parent)?;
        enable_controllers(&parent, &enable)?;
        let path = parent.join(id);
        make_dir(&path)?;
        let cg = Self { path };
        for s in &limits.settings {
            cg.write(s)?;
        }
        debug!(
            "cgroup {} ({} settings)",
            cg.path.display(),
            limits.settings.len()
        );
        Ok(cg)
    }

    /// `hull-runtime update`: writes `resources` (checked against the cgroup's controllers).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let limits = Limits::plan(Some(resources), &controllers(&self.path)?)?;
        for s in &limits.settings {
            self.write(s)?;
        }
        debug!(
            "cgroup {} updated ({} settings)",
            self.path.display(),
            limits.settings.len()
        );
        Ok(())
    }

    fn write(&self, s: &Setting) -> Result<()> {
        let path = self.path.join(&s.file);
        let (field, file, value) = (&s.field, &s.file, &s.value);
        // Never created: a key that names no file of the kernel is ENOENT, not EACCES.
        let written = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(value.as_bytes()));
        match written {
            Ok(()) => Ok(()),
            Err(e) if io_errno(&e) == Errno::ENOENT => {
                let needs = config_of_file(file)
                    .map(|c| format!(" (needs {c})"))
                    .unwrap_or_default();
                Err(Error::spec(
                    field,
                    format!("the guest kernel's cgroup has no file {file}{needs}"),
                ))
            }
            Err(e) => Err(Error::spec(
                field,
                format!(
                    "the guest kernel refused {value:?} for {file}: {}",
                    io_errno(&e).desc()
                ),
            )),
        }
    }

    /// Moves the calling process into the cgroup: the forked child, before it enters the
    /// container's namespaces (a new cgroup namespace is then rooted here).
    pub fn enter(&self) -> Result<()> {
        let procs = self.path.join("cgroup.procs");
        fs::write(&procs, b"0").ctx(|| format!("joining the cgroup {}", self.path.display()))
    }

    /// Removes the cgroup once the container is gone (the kernel refuses while it has
    /// processes; then it stays).
    pub fn remove(&self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            debug!("cgroup {} not removed: {e}", self.path.display());
        }
    }
}

/// Mounts the cgroup2 hierarchy at `root` unless it is there (the agent mounts it at boot).
fn ensure_mounted(root: &Path) -> Result<()> {
    if root.join("cgroup.controllers").exists() {
        return Ok(());
    }
    fs::create_dir_all(root).ctx(|| format!("creating {}", root.display()))?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some("cgroup2"), root, Some("cgroup2"), flags, None::<&str>)
        .ctx(|| format!("mounting cgroup2 on {}", root.display()))
}

/// The controllers of the cgroup at `dir` (its `cgroup.controllers`).
fn controllers(dir: &Path) -> Result<BTreeSet<String>> {
    let path = dir.join("cgroup.controllers");
    let text = fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

fn enable_controllers(dir: &Path, which: &[&str]) -> Result<()> {
    if which.is_empty() {
        return Ok(());
    }
    let path = dir.join("cgroup.subtree_control");
    let line: Vec<String> = which.iter().map(|c| format!("+{c}")).collect();
    let line = line.join(" ");
    fs::write(&path, line.as_bytes()).ctx(|| format!("writing {line:?} to {}", path.display()))
}

fn make_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).ctx(|| format!("creating the cgroup {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> BTreeSet<String> {
        CONTROLLERS.iter().map(|c| c.to_string()).collect()
    }

    fn plan(json: &str, available: &BTreeSet<String>) -> Result<Vec<(String, String, String)>> {
        let r: LinuxResources = serde_json::from_str(json).unwrap();
        Ok(Limits::plan(Some(&r), available)?
            .settings
            .into_iter()
            .map(|s| (s.file, s.value, s.field))
            .collect())
    }

    fn files(json: &str) -> Vec<(String, String)> {
        plan(json, &all())
            .unwrap()
            .into_iter()
            .map(|(f, v, _)| (f, v))
            .collect()
    }

    fn pair(f: &str, v: &str) -> (String, String) {
        (f.into(), v.into())
    }

    #[test]
    fn runcs_conversions() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1), 1, "clamped like the kernel's shares");
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(io_weight(1000), 10_000);
        assert_eq!(swap_value(0, -1), Ok(Some("max".into())));
        assert_eq!(swap_value(-1, 100), Ok(Some("max".into())));
        assert_eq!(swap_value(0, 100), Ok(None));
        assert_eq!(swap_value(300, 100), Ok(Some("200".into())));
        assert!(swap_value(50, 100).is_err());
        assert!(swap_value(300, 0).is_err());
    }

    #[test]
    fn resources_become_cgroup_files() {
        let got = files(
            r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":134217728},
                "pids":{"limit":32},
                "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
                "blockIO":{"weight":500},
                "unified":{"pids.max":"40","memory.high":"max"}}"#,
        );
        assert_eq!(
            got,
            [
                pair("memory.max", "67108864"),
                pair("memory.low", "33554432"),
                pair("memory.swap.max", "67108864"),
                pair("pids.max", "32"),
                pair("cpu.weight", "39"),
                pair("cpu.max", "50000 100000"),
                pair("cpuset.cpus", "0"),
                pair("cpuset.mems", "0"),
                pair("io.weight", "4950"),
                pair("memory.high", "max"),
                pair("pids.max", "40"),
            ]
        );
    }

    #[test]
    fn zeros_are_unset_and_minus_one_is_max() {
        let got = files(
            r#"{"memory":{"limit":0,"reservation":0,"swap":0,"disableOOMKiller":false},
                "pids":{"limit":0},"cpu":{"shares":0,"quota":0,"period":0},
                "blockIO":{"weight":0,"weightDevice":[]},
                "devices":[{"allow":false,"access":"rwm"}]}"#,
        );
        assert!(got.is_empty(), "{got:?}");
        let got = files(r#"{"memory":{"limit":-1},"pids":{"limit":-1},"cpu":{"quota":-1}}"#);
        assert_eq!(
            got,
            [
                pair("memory.max", "max"),
                pair("memory.swap.max", "max"),
                pair("pids.max", "max"),
                pair("cpu.max", "max"),
            ]
        );
        assert_eq!(
            files(r#"{"cpu":{"period":50000}}"#),
            [pair("cpu.max", "max 50000")]
        );
    }

    #[test]
    fn a_missing_controller_refuses_the_field() {
        let mut some = all();
        some.remove("memory");
        let e = plan(r#"{"memory":{"limit":1048576}}"#, &some).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.memory.limit: the guest kernel has no memory controller (needs CONFIG_MEMCG)"
        );
        assert!(matches!(e, Error::Spec { .. }));
        let e = plan(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1}]}"#,
            &all(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.hugepageLimits: "),
            "{e}"
        );
        assert!(e.to_string().contains("CONFIG_CGROUP_HUGETLB"), "{e}");
        let e = plan(r#"{"unified":{"hugetlb.2MB.max":"1"}}"#, &all()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("linux.resources.unified[\"hugetlb.2MB.max\"]: "),
            "{e}"
        );
    }

    #[test]
    fn what_cgroup_v2_cannot_do_is_refused() {
        for (json, field) in [
            (
                r#"{"memory":{"disableOOMKiller":true}}"#,
                "memory.disableOOMKiller",
            ),
            (r#"{"memory":{"swap":1048576}}"#, "memory.swap"),
            (r#"{"cpu":{"realtimeRuntime":1000}}"#, "cpu.realtimeRuntime"),
            (
                r#"{"blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1}]}}"#,
                "blockIO.throttleReadBpsDevice",
            ),
            (r#"{"network":{"classID":1}}"#, "network"),
            (r#"{"unified":{"../x":"1"}}"#, "unified[\"../x\"]"),
            (
                r#"{"unified":{"cgroup.procs":"1"}}"#,
                "unified[\"cgroup.procs\"]",
            ),
        ] {
            let e = plan(json, &all()).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("linux.resources.{field}: ")),
                "{json}: {e}"
            );
        }
    }
}
