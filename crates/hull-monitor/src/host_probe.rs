//! Facts about the host that hold until it reboots, probed once per boot and cached in
//! `<root>/.host-probe`: whether KVM can run a guest (and why not), and the host TSC frequency
//! (for TCG guests, see `hull_qemu::tsc`). A container start then costs one small file read.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostProbe {
    boot_id: String,
    /// Why KVM cannot run a standard guest here; `None` if it can.
    pub kvm_unusable: Option<String>,
    /// Host TSC frequency in kHz, if it could be measured.
    pub tsc_khz: Option<u64>,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The cached probe of this boot, or a fresh one (then cached; a failed write only costs the
/// next start another probe). `self_exe probe-kvm` is the KVM probe guest.
pub fn load_or_probe(root: &Path, self_exe: &Path) -> HostProbe {
    let cache = root.join(".host-probe");
    let boot_id = boot_id();
    if let Some(p) = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<HostProbe>(&b).ok())
        .filter(|p| p.boot_id == boot_id)
    {
        return p;
    }
    let mut probe = Command::new(self_exe);
    probe.arg("probe-kvm");
    let p = HostProbe {
        boot_id,
        kvm_unusable: hull_qemu::accel::kvm_usable(Some(probe)).err(),
        tsc_khz: hull_qemu::tsc::host_tsc_khz(Duration::from_millis(10)),
    };
    let _ = std::fs::create_dir_all(root);
    let tmp = cache.with_extension(format!("tmp{}", std::process::id()));
    // A cache only: a probe that cannot be saved is measured again next time.
    let saved = serde_json::to_vec(&p).map(|json| std::fs::write(&tmp, json));
    if let Ok(Ok(())) = saved {
        let _ = std::fs::rename(&tmp, &cache);
    }
    p
}
