//! The guest's CPUs: how many are online, and putting a number of them online.
//!
//! microvm has no CPU hotplug, so the VM is created with its maximum vCPUs and the agent
//! onlines and offlines them (`/sys/devices/system/cpu/cpuN/online`) on the host's request;
//! at boot it keeps `hull.vcpus=N` (kernel command line) online. cpu0 is always online.

use crate::error::{Error, Result};

const CPU_DIR: &str = "/sys/devices/system/cpu";

/// The number of CPUs in a sysfs CPU list such as `0-3,5` (`online`, `present`).
pub fn count_list(list: &str) -> u32 {
    list.trim()
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(r.parse::<u32>().is_ok()),
        })
        .sum()
}

fn count(file: &str) -> u32 {
    std::fs::read_to_string(format!("{CPU_DIR}/{file}"))
        .map(|s| count_list(&s))
        .unwrap_or(1)
        .max(1)
}

/// CPUs online (what `nproc` counts without affinity limits).
pub fn online() -> u32 {
    count("online")
}

/// CPUs present: the VM's vCPUs.
pub fn present() -> u32 {
    count("present")
}

/// `hull.vcpus=N` of a kernel command line.
pub fn boot_target(cmdline: &str) -> Option<u32> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hull.vcpus="))
        .and_then(|v| v.parse().ok())
}

/// Puts cpu0 .. cpu`n-1` online and every other CPU offline.
pub fn set_online(n: u32) -> Result<()> {
    let present = present();
    if n == 0 || n > present {
        return Err(Error::msg(format!(
            "cannot put {n} CPUs online: the VM has {present}"
        )));
    }
    // Up first, then down: the guest never has fewer CPUs than either count meanwhile.
    for cpu in (1..present).filter(|c| *c < n) {
        write_online(cpu, true)?;
    }
    for cpu in (1..present).filter(|c| *c >= n).rev() {
        write_online(cpu, false)?;
    }
    Ok(())
}

fn write_online(cpu: u32, on: bool) -> Result<()> {
    let path = format!("{CPU_DIR}/cpu{cpu}/online");
    let want = if on { "1" } else { "0" };
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == want) {
        return Ok(());
    }
    std::fs::write(&path, want).map_err(|e| {
        Error::msg(format!(
            "putting cpu{cpu} {}: {path}: {e}",
            if on { "online" } else { "offline" }
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_list("0\n"), 1);
        assert_eq!(count_list("0-3\n"), 4);
        assert_eq!(count_list("0-1,3,5-6"), 5);
        assert_eq!(count_list(""), 0);
    }

    #[test]
    fn boot_target_is_read_from_the_command_line() {
        assert_eq!(boot_target("quiet hull.vcpus=2 pci=off"), Some(2));
        assert_eq!(boot_target("quiet"), None);
    }
}
