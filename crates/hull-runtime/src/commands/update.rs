//! `update [flags] [-r resources.json] ID`: runc's resource update, applied to the VM.
//!
//! The container's VM is its resource boundary, so the limits that size it are applied there,
//! through the monitor's management API (`api.sock`, the same calls as `hull vm resize`):
//! - the memory limit → the guest's memory (balloon target): the limit plus the guest's
//!   overhead, as at create; `-1` (no limit) → all the VM was started with;
//! - CPU quota/period (docker's `--cpus`) → the vCPUs online: the quota's CPUs rounded up;
//!   `-1` (no quota) → the VM's maximum.
//!
//! Every limit also goes into the container's cgroup in the guest (`CtlRequest::Update` → the
//! agent), first: CPU shares, cpuset, pids, swap and memory reservation are applied there only;
//! what the guest kernel refuses fails the update (naming the field) before the VM is resized.
//!
//! Docker (go-runc) sends `--resources -` with JSON on stdin, podman `--resources FILE`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hull_api::{Client, ClientError, VmInfo};
use hull_monitor::control::CtlRequest;
use hull_state::Status;
use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::Ctx;

/// runc's `update` flags. Sizes accept runc's units (`512m`, `1g`) as well as bytes.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Read the new resources from this JSON file (an OCI `linux.resources` object); `-` reads
    /// stdin. Every other flag is then ignored.
    #[arg(short = 'r', long)]
    pub resources: Option<PathBuf>,
    /// Block I/O weight (refused by the guest: no io.weight, no block devices).
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period, µs.
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota, µs; -1 for none.
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period, µs (refused: cgroup v2 has none).
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime, µs (refused: cgroup v2 has none).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (the guest cgroup's cpu.weight).
    #[arg(long)]
    pub cpu_share: Option<u64>,
    /// The guest's CPUs to use, e.g. 0-3,7 (cpuset.cpus).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use (cpuset.mems).
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit: bytes or with a unit (k, m, g); -1 for none.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory: Option<i64>,
    /// Memory reservation (memory.low).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory_reservation: Option<i64>,
    /// Memory + swap limit; -1 for unlimited (memory.swap.max; the VM has no swap device).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory_swap: Option<i64>,
    /// Most processes (pids.max).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (refused: a VM has no RDT).
    #[arg(long)]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (refused: a VM has no RDT).
    #[arg(long)]
    pub mem_bw_schema: Option<String>,
    /// The container.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

/// runc's sizes (docker's `units.RAMInBytes`): bytes, or a number with b, k, m, g, t (binary
/// multiples, an optional trailing `b`/`ib`); `-1` is "no limit".
fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or e.g. 512m, 1g)"))?;
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use k, m, g or t)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl UpdateArgs {
    /// The flags as an OCI resources object (what `-r` would have said).
    fn to_resources(&self) -> Result<LinuxResources> {
        if self.l3_cache_schema.is_some() || self.mem_bw_schema.is_some() {
            bail!("--l3-cache-schema/--mem-bw-schema: a container's VM has no Intel RDT");
        }
        let mut memory = LinuxMemory::default();
        memory
            .set_limit(self.memory)
            .set_reservation(self.memory_reservation)
            .set_swap(self.memory_swap);
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(self.cpu_share)
            .set_quota(self.cpu_quota)
            .set_period(self.cpu_period)
            .set_realtime_period(self.cpu_rt_period)
            .set_realtime_runtime(self.cpu_rt_runtime)
            .set_cpus(self.cpuset_cpus.clone())
            .set_mems(self.cpuset_mems.clone());
        let mut r = LinuxResources::default();
        r.set_memory(Some(memory)).set_cpu(Some(cpu));
        if let Some(limit) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            r.set_pids(Some(pids));
        }
        if let Some(w) = self.blkio_weight {
            let mut b = oci_spec::runtime::LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        Ok(r)
    }
}

/// Reads `-r`: a file, or stdin for `-`.
fn read_resources(path: &Path) -> Result<LinuxResources> {
    let (text, name) = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("read the resources from stdin")?;
        (s, "stdin".to_owned())
    } else {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("read the resources file {}", path.display()))?;
        (s, path.display().to_string())
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{name}: not an OCI linux.resources JSON object"))
}

/// What the VM does with a resources object.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VmChange {
    /// Guest memory, MiB; `Some(None)`: all the VM has (no limit).
    pub memory_mib: Option<Option<u64>>,
    /// vCPUs online; `Some(None)`: the VM's maximum (no quota).
    pub vcpus: Option<Option<u32>>,
    /// What applies to the guest's cgroup only, not to the VM's size (for the log).
    pub not_applied: Vec<&'static str>,
}

/// Maps OCI resources onto the VM. A field that is absent or 0 changes nothing (docker sends
/// zeros for what it leaves alone).
pub fn vm_change(r: &LinuxResources) -> VmChange {
    let mut c = VmChange::default();
    if let Some(m) = r.memory() {
        c.memory_mib = match m.limit() {
            Some(-1) => Some(None),
            Some(l) if l > 0 => Some(hull_oci::memory_mib_for_limit(l)),
            _ => None,
        };
        if m.reservation().is_some_and(|v| v != 0) {
            c.not_applied.push("memory reservation");
        }
        if m.swap().is_some_and(|v| v != 0) {
            c.not_applied.push("memory+swap limit");
        }
    }
    if let Some(cpu) = r.cpu() {
        c.vcpus = match cpu.quota() {
            Some(-1) => Some(None),
            q => hull_oci::vcpus_for_quota(q, cpu.period().or(Some(100_000)))
                .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
        };
        if cpu.shares().is_some_and(|v| v != 0) {
            c.not_applied.push("CPU shares");
        }
        if cpu.cpus().as_deref().is_some_and(|v| !v.is_empty()) {
            c.not_applied.push("cpuset CPUs");
        }
        if cpu.mems().as_deref().is_some_and(|v| !v.is_empty()) {
            c.not_applied.push("cpuset memory nodes");
        }
        if cpu.realtime_runtime().is_some_and(|v| v != 0)
            || cpu.realtime_period().is_some_and(|v| v != 0)
        {
            c.not_applied.push("CPU realtime");
        }
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() != 0) {
        c.not_applied.push("pids limit");
    }
    if r.block_io().as_ref().is_some_and(|b| b.weight().is_some()) {
        c.not_applied.push("block I/O weight");
    }
    c
}

fn api_failed(what: &str, e: ClientError) -> anyhow::Error {
    anyhow!(e).context(what.to_owned())
}

pub fn update(ctx: &Ctx, a: UpdateArgs) -> Result<i32> {
    let resources = match &a.resources {
        Some(path) => read_resources(path)?,
        None => a.to_resources()?,
    };
    let (sd, st) = super::load(ctx, &a.container_id)?;
    if st.status == Status::Stopped {
        bail!("container {} is stopped: nothing to update", a.container_id);
    }
    if let Some(pod) = &st.sandbox {
        bail!(
            "container {} runs in the VM of pod sandbox {pod}: its resources are the VM's, \
             update {pod}",
            a.container_id
        );
    }
    let update = CtlRequest::Update {
        resources: Box::new(resources.clone()),
    };
    super::call(&sd, &update, Duration::from_secs(30))
        .with_context(|| format!("update the cgroup of container {}", a.container_id))?;
    let change = vm_change(&resources);
    if !change.not_applied.is_empty() {
        hull_monitor::log::debug(&format!(
            "update {}: applied in the guest's cgroup only, not to the VM's size: {}",
            a.container_id,
            change.not_applied.join(", ")
        ));
    }
    if change.memory_mib.is_none() && change.vcpus.is_none() {
        return Ok(0);
    }
    let api = Client::new(sd.path("api.sock"));
    let info = api
        .info()
        .map_err(|e| api_failed("read the VM's size", e))?;
    apply(&api, &info, &change)?;
    Ok(0)
}

/// Memory first, then vCPUs; each call changes nothing when it fails.
fn apply(api: &Client, info: &VmInfo, change: &VmChange) -> Result<()> {
    if let Some(m) = change.memory_mib {
        let mib = m.unwrap_or(info.memory_mib.configured);
        if mib != info.memory_mib.target {
            api.resize_memory(mib)
                .map_err(|e| api_failed(&format!("set the VM's memory to {mib} MiB"), e))?;
        }
    }
    if let Some(v) = change.vcpus {
        let n = v.unwrap_or(info.vcpus.max);
        if n != info.vcpus.online {
            api.set_vcpus(n)
                .map_err(|e| api_failed(&format!("put {n} vCPUs online"), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("-1"), Ok(-1));
        assert!(parse_size("lots").unwrap_err().contains("\"lots\""));
        assert!(parse_size("5x").unwrap_err().contains("unit"));
    }

    #[test]
    fn memory_limit_and_quota_size_the_vm_like_create() {
        let c = vm_change(&res(
            r#"{"memory": {"limit": 268435456}, "cpu": {"quota": 150000, "period": 100000}}"#,
        ));
        assert_eq!(c.memory_mib, Some(Some(256 + 64)));
        assert_eq!(c.vcpus, Some(Some(2)));
        assert!(c.not_applied.is_empty());
    }

    #[test]
    fn unlimited_means_the_vms_maximum_and_zeros_change_nothing() {
        let c = vm_change(&res(r#"{"memory": {"limit": -1}, "cpu": {"quota": -1}}"#));
        assert_eq!((c.memory_mib, c.vcpus), (Some(None), Some(None)));
        // What docker sends for `docker update --cpu-shares 512`: zeros elsewhere.
        let c = vm_change(&res(
            r#"{"memory": {"limit": 0, "reservation": 0, "swap": 0}, "cpu": {"shares": 512, "quota": 0, "period": 0}, "pids": {"limit": 0}}"#,
        ));
        assert_eq!((c.memory_mib, c.vcpus), (None, None));
        assert_eq!(c.not_applied, ["CPU shares"]);
    }

    #[test]
    fn a_quota_without_period_uses_the_kernels_default_period() {
        let c = vm_change(&res(r#"{"cpu": {"quota": 250000}}"#));
        assert_eq!(c.vcpus, Some(Some(3)));
    }

    #[test]
    fn flags_become_the_same_resources() {
        use clap::Parser;
        #[derive(Parser)]
        struct P {
            #[command(flatten)]
            a: UpdateArgs,
        }
        let p = P::try_parse_from([
            "update",
            "--memory",
            "256m",
            "--cpu-quota",
            "200000",
            "--cpu-period",
            "100000",
            "--pids-limit",
            "50",
            "c1",
        ])
        .unwrap();
        let c = vm_change(&p.a.to_resources().unwrap());
        assert_eq!(c.memory_mib, Some(Some(320)));
        assert_eq!(c.vcpus, Some(Some(2)));
        assert_eq!(c.not_applied, ["pids limit"]);
        let p = P::try_parse_from(["update", "--memory", "-1", "c1"]).unwrap();
        assert_eq!(
            vm_change(&p.a.to_resources().unwrap()).memory_mib,
            Some(None)
        );
        let p = P::try_parse_from(["update", "--l3-cache-schema", "L3:0=f", "c1"]).unwrap();
        assert!(p.a.to_resources().is_err());
    }
}
