//! Linux capability numbers for the OCI capability names, and the masks built from them.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// The kernel's number of a capability (linux/capability.h).
pub fn number(cap: Capability) -> u32 {
    use Capability::*;
    match cap {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A capability set as a bit mask (bit n = capability n).
pub fn mask(set: Option<&Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .fold(0, |m, c| m | 1u64 << number(*c))
}

/// The capability changes a process asks for, as masks, prepared before fork.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapPlan {
    /// Bounding set to keep (`None`: leave the bounding set alone).
    pub bounding: Option<u64>,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapPlan {
    pub fn new(c: &LinuxCapabilities) -> Self {
        Self {
            bounding: c.bounding().as_ref().map(|s| mask(Some(s))),
            effective: mask(c.effective().as_ref()),
            permitted: mask(c.permitted().as_ref()),
            inheritable: mask(c.inheritable().as_ref()),
            ambient: mask(c.ambient().as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_names() {
        // Spot checks against linux/capability.h, through the OCI (serde) names.
        for (name, n) in [
            ("CAP_CHOWN", 0),
            ("CAP_KILL", 5),
            ("CAP_NET_BIND_SERVICE", 10),
            ("CAP_SYS_ADMIN", 21),
            ("CAP_AUDIT_WRITE", 29),
            ("CAP_SETFCAP", 31),
            ("CAP_CHECKPOINT_RESTORE", 40),
        ] {
            let cap: Capability = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(number(cap), n, "{name}");
        }
    }

    #[test]
    fn masks() {
        let set: Capabilities = serde_json::from_str(r#"["CAP_KILL","CAP_AUDIT_WRITE"]"#).unwrap();
        assert_eq!(mask(Some(&set)), (1 << 5) | (1 << 29));
        assert_eq!(mask(None), 0);
    }
}
