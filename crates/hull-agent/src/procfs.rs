//! Reading /proc: the container's processes and resource usage.

use hull_protocol::Stats;

/// `PF_KTHREAD` in the flags field of /proc/PID/stat.
const PF_KTHREAD: u64 = 0x0020_0000;

/// ppid and flags from the text of /proc/PID/stat (the command name may contain anything,
/// so fields are counted from its closing parenthesis).
pub fn parse_stat(stat: &str) -> Option<(i32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) tpgid(5) flags(6).
    Some((f.get(1)?.parse().ok()?, f.get(6)?.parse().ok()?))
}

/// Whether a process is a kernel thread (kthreadd, its children, or PF_KTHREAD).
pub fn is_kernel_thread(pid: i32, ppid: i32, flags: u64) -> bool {
    pid == 2 || ppid == 2 || flags & PF_KTHREAD != 0
}

/// PIDs of all processes of the container: every process but the agent (PID 1) and kernel
/// threads.
pub fn container_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != 1)
        .filter(|&pid| {
            match std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                Some((ppid, flags)) => !is_kernel_thread(pid, ppid, flags),
                None => false, // gone meanwhile
            }
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// (total, available) memory in bytes from /proc/meminfo.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal").unwrap_or(0);
    let available = field("MemAvailable")
        .or_else(|| field("MemFree"))
        .unwrap_or(0);
    (total, available)
}

/// user + nice + system ticks of the `cpu` line of /proc/stat.
pub fn parse_cpu_ticks(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|rest| {
            rest.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Resource usage of the VM, which is the container's.
pub fn stats() -> Stats {
    let (total, available) =
        parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
    let ticks = parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    };
    Stats {
        memory_usage_bytes: total.saturating_sub(available),
        memory_total_bytes: total,
        cpu_usage_ns: ticks.saturating_mul(1_000_000_000 / hz),
        pids: container_pids().len() as u64,
    }
}

/// A field of /proc/meminfo (`Name:`) or /proc/vmstat (`name ` with its space), in its unit.
fn field_opt(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn field(text: &str, name: &str) -> u64 {
    field_opt(text, name).unwrap_or(0)
}

/// The guest's view of its memory, CPUs and kernel.
pub fn guest_status() -> hull_protocol::GuestStatus {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let vmstat = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    let ticks = parse_cpu_ticks(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
    let hz = match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as u64,
        _ => 100,
    };
    let major = field_opt(&vmstat, "pgmajfault ");
    hull_protocol::GuestStatus {
        mem_total_kib: field(&meminfo, "MemTotal"),
        mem_free_kib: field(&meminfo, "MemFree"),
        mem_available_kib: field(&meminfo, "MemAvailable"),
        cached_kib: field(&meminfo, "Cached"),
        minor_faults: field_opt(&vmstat, "pgfault ").map(|f| f.saturating_sub(major.unwrap_or(0))),
        major_faults: major,
        cpu_time_ns: ticks.saturating_mul(1_000_000_000 / hz),
        cpus_online: crate::cpus::online(),
        cpus_present: crate::cpus::present(),
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_names() {
        let s = "42 (a) b (c)) S 7 42 42 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(s), Some((7, 4194560)));
        let kthread = "3 (rcu_gp) I 2 0 0 0 -1 69238880 0 0";
        let (ppid, flags) = parse_stat(kthread).unwrap();
        assert!(is_kernel_thread(3, ppid, flags));
        assert!(is_kernel_thread(2, 0, 0x0020_0040));
        assert!(!is_kernel_thread(42, 7, 4194560));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn meminfo_and_cpu() {
        let m = "MemTotal:         245760 kB\nMemFree:          200000 kB\nMemAvailable:     220000 kB\n";
        assert_eq!(parse_meminfo(m), (245760 * 1024, 220000 * 1024));
        let s = "cpu  10 2 30 400 5 0 0 0 0 0\ncpu0 10 2 30 400 5 0 0 0 0 0\n";
        assert_eq!(parse_cpu_ticks(s), 42);
    }
}
