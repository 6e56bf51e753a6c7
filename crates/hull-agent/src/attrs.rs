//! Process attributes of the spec applied between fork and exec: `linux.personality`,
//! `process.scheduler`, `process.ioPriority` and `process.execCPUAffinity`. Each is converted
//! and checked before fork ([`Attrs::new`]), so a bad value fails create or exec with the field
//! named, and the child only makes system calls.

use nix::sched::CpuSet;
use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonalityDomain, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process,
    Spec,
};

use crate::error::{Context, Error, Result};
use crate::sys::{self, SchedAttr};

/// The converted attributes.
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    /// personality(2) persona.
    personality: Option<libc::c_ulong>,
    /// sched_setattr(2).
    scheduler: Option<SchedAttr>,
    /// ioprio_set(2) value (class << 13 | level).
    io_priority: Option<i32>,
    /// CPUs an exec'd process starts on (set first thing in the child) and ends on (set right
    /// before exec, once it is in the container's cgroup).
    affinity_initial: Option<CpuSet>,
    affinity_final: Option<CpuSet>,
}

impl Attrs {
    /// The attributes of `process` (of container `spec`); `exec`: an exec'd process (the only
    /// kind `execCPUAffinity` applies to, as the spec says).
    pub fn new(spec: &Spec, process: &Process, exec: bool) -> Result<Self> {
        let mut a = Self {
            personality: personality(spec)?,
            scheduler: process.scheduler().as_ref().map(scheduler).transpose()?,
            io_priority: process
                .io_priority()
                .as_ref()
                .map(io_priority)
                .transpose()?,
            ..Self::default()
        };
        if let (Some(aff), true) = (process.exec_cpu_affinity(), exec) {
            let parse = |field: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|list| cpu_set(list).map_err(|p| Error::spec(field, p)))
                    .transpose()
            };
            a.affinity_initial = parse("process.execCPUAffinity.initial", aff.initial())?;
            a.affinity_final = parse("process.execCPUAffinity.final", aff.cpu_affinity_final())?;
        }
        Ok(a)
    }

    /// First thing in the child: the initial CPU affinity.
    pub fn apply_initial(&self) -> Result<()> {
        if let Some(set) = &self.affinity_initial {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                .ctx(|| "process.execCPUAffinity.initial: sched_setaffinity".into())?;
        }
        Ok(())
    }

    /// In the container, before the user changes (real-time policies need privileges).
    pub fn apply(&self) -> Result<()> {
        if let Some(p) = self.personality {
            sys::personality(p).ctx(|| format!("linux.personality: personality({p:#x})"))?;
        }
        if let Some(attr) = &self.scheduler {
            sys::sched_setattr(attr).ctx(|| "process.scheduler: sched_setattr".into())?;
        }
        if let Some(v) = self.io_priority {
            sys::ioprio_set(v).ctx(|| "process.ioPriority: ioprio_set".into())?;
        }
        Ok(())
    }

    /// Right before exec: the final CPU affinity.
    pub fn apply_final(&self) -> Result<()> {
        if let Some(set) = &self.affinity_final {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), set)
                .ctx(|| "process.execCPUAffinity.final: sched_setaffinity".into())?;
        }
        Ok(())
    }
}

/// `linux.personality`: the domain; no flag is defined by the spec, so any is refused.
fn personality(spec: &Spec) -> Result<Option<libc::c_ulong>> {
    let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) else {
        return Ok(None);
    };
    if let Some(f) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(Error::spec(
            "linux.personality.flags",
            format!("{f:?}: no personality flag is supported (the spec defines none)"),
        ));
    }
    Ok(Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    }))
}

/// `process.scheduler` as a `sched_attr`.
fn scheduler(s: &oci_spec::runtime::Scheduler) -> Result<SchedAttr> {
    use LinuxSchedulerPolicy::*;
    let policy = match s.policy() {
        SchedOther => 0,
        SchedFifo => 1,
        SchedRr => 2,
        SchedBatch => 3,
        SchedIdle => 5,
        SchedDeadline => 6,
        SchedIso => {
            return Err(Error::spec(
                "process.scheduler.policy",
                "SCHED_ISO is not implemented by Linux",
            ))
        }
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(Error::spec(
            "process.scheduler.nice",
            format!("{nice} is outside -20..19"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let priority = u32::try_from(priority).map_err(|_| {
        Error::spec(
            "process.scheduler.priority",
            format!("{priority} is negative"),
        )
    })?;
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        use LinuxSchedulerFlag::*;
        flags |= match f {
            SchedResetOnFork => 0x01,
            SchedFlagReclaim => 0x02,
            SchedFlagDLOverrun => 0x04,
            SchedFlagKeepPolicy => 0x08,
            SchedFlagKeepParams => 0x10,
            SchedFlagUtilClampMin => 0x20,
            SchedFlagUtilClampMax => 0x40,
        };
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: nice,
        sched_priority: priority,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
    })
}

/// `process.ioPriority` as an ioprio value.
fn io_priority(p: &oci_spec::runtime::LinuxIOPriority) -> Result<i32> {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let level = p.priority();
    if !(0..=7).contains(&level) {
        return Err(Error::spec(
            "process.ioPriority.priority",
            format!("{level} is outside 0..7"),
        ));
    }
    Ok((class << 13) | level as i32)
}

/// A CPU list as the kernel writes them: `0-3,7`.
pub fn cpu_set(list: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::new();
    let bad = |why: &str| format!("{list:?}: {why}");
    if list.trim().is_empty() {
        return Err(bad("empty CPU list"));
    }
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| bad(&format!("{s:?} is not a CPU number")))
        };
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return Err(bad(&format!("range {a}-{b} is backwards")));
        }
        for cpu in a..=b {
            set.set(cpu)
                .map_err(|_| bad(&format!("CPU {cpu} is beyond {}", CpuSet::count())))?;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: serde_json::Value, process: serde_json::Value) -> (Spec, Process) {
        let mut s = serde_json::json!({"ociVersion": "1.2.0", "root": {"path": "rootfs"}});
        s["linux"] = linux;
        let mut p = serde_json::json!({"cwd": "/", "args": ["true"], "user": {"uid": 0, "gid": 0}});
        for (k, v) in process.as_object().unwrap() {
            p[k] = v.clone();
        }
        s["process"] = p.clone();
        (
            serde_json::from_value(s).unwrap(),
            serde_json::from_value(p).unwrap(),
        )
    }

    #[test]
    fn cpu_lists_parse_like_the_kernel_writes_them() {
        let s = cpu_set("0-2,5").unwrap();
        for cpu in 0..8 {
            assert_eq!(s.is_set(cpu).unwrap(), [0, 1, 2, 5].contains(&cpu), "{cpu}");
        }
        assert!(cpu_set("3-1").unwrap_err().contains("backwards"));
        assert!(cpu_set("x").unwrap_err().contains("not a CPU number"));
        assert!(cpu_set("").is_err());
        assert!(cpu_set("100000").unwrap_err().contains("beyond"));
    }

    #[test]
    fn attributes_convert_and_bad_values_name_the_field() {
        let (s, p) = spec(
            serde_json::json!({"personality": {"domain": "LINUX32"}}),
            serde_json::json!({
                "scheduler": {"policy": "SCHED_BATCH", "nice": 7},
                "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
                "execCPUAffinity": {"initial": "0", "final": "1"}
            }),
        );
        let a = Attrs::new(&s, &p, true).unwrap();
        assert_eq!(a.personality, Some(8));
        let sch = a.scheduler.unwrap();
        assert_eq!((sch.sched_policy, sch.sched_nice), (3, 7));
        assert_eq!(a.io_priority, Some(3 << 13));
        assert!(a.affinity_final.unwrap().is_set(1).unwrap());
        // Not for the init.
        assert!(Attrs::new(&s, &p, false).unwrap().affinity_final.is_none());

        let (s, p) = spec(
            serde_json::json!({"personality": {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}}),
            serde_json::json!({}),
        );
        let e = Attrs::new(&s, &p, false).unwrap_err().to_string();
        assert!(e.starts_with("linux.personality.flags"), "{e}");
        let (s, p) = spec(
            serde_json::json!({}),
            serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 9}}),
        );
        let e = Attrs::new(&s, &p, false).unwrap_err().to_string();
        assert!(e.starts_with("process.ioPriority.priority"), "{e}");
        let (s, p) = spec(
            serde_json::json!({}),
            serde_json::json!({"execCPUAffinity": {"final": "2-1"}}),
        );
        let e = Attrs::new(&s, &p, true).unwrap_err().to_string();
        assert!(e.starts_with("process.execCPUAffinity.final"), "{e}");
    }
}
