//! `hull vm`: a running container's VM through its management API (`api.sock` in the
//! runtime's state directory of the container, `hull_api::Client`): what it is and how it is
//! sized, what it uses, pause and resume, memory and vCPU resize.

use std::time::Duration;

use hull_api::{Client, Metrics, VmInfo, VmStart, VmState};
use hull_state::StateDir;

use super::Ctx;
use crate::error::{Context, Error, Result};
use crate::format::{self, Table};

const EXAMPLES: &str = "\
Examples:
  hull vm info web
  hull vm metrics --format json web
  hull vm pause web && hull vm resume web
  hull vm resize web --memory 512m --cpus 2";

const RESIZE_EXAMPLES: &str = "\
Examples:
  hull vm resize web --memory 1g
  hull vm resize web --cpus 1
  hull vm resize web -m 384m --cpus 2 --format json

The memory can go down to what the guest does not use and up to what the VM was started
with (hull run -m: the limit plus 64 MiB), the vCPUs up to the VM's maximum. Memory first,
then vCPUs; a refused request changes nothing.";

/// How long a request may take: longer than the server's own deadline (60 s), so its answer
/// (504, with a reason) arrives before the client gives up.
const API_TIMEOUT: Duration = Duration::from_secs(75);

/// Show and change a running container's VM: size, pause, metrics.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct VmArgs {
    #[command(subcommand)]
    pub cmd: VmCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum VmCommand {
    /// Show what the VM is and how it is sized (vCPUs, memory, kernel, uptime).
    #[command(after_help = "Examples:\n  hull vm info web\n  hull vm info --format json web")]
    Info(TargetArgs),
    /// Show what the VM uses: guest memory and CPU time, host memory of its processes.
    #[command(
        after_help = "Examples:\n  hull vm metrics web\n  hull vm metrics --format json web"
    )]
    Metrics(TargetArgs),
    /// Stop the VM's vCPUs (the container's processes stop until resumed).
    #[command(after_help = "Examples:\n  hull vm pause web")]
    Pause(TargetArgs),
    /// Run a paused VM's vCPUs again.
    #[command(after_help = "Examples:\n  hull vm resume web")]
    Resume(TargetArgs),
    /// Change the VM's memory and/or the number of its vCPUs online.
    #[command(after_help = RESIZE_EXAMPLES)]
    Resize(ResizeArgs),
}

/// One container, and how to print the answer.
#[derive(clap::Args, Debug)]
pub struct TargetArgs {
    /// Output format: table (for people) or json (the API's JSON).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// The container (id, id prefix or name).
    pub container: String,
}

#[derive(clap::Args, Debug)]
pub struct ResizeArgs {
    /// Memory the guest should have: 512m, 1g, 1024k or bytes, a whole number of MiB.
    #[arg(short = 'm', long, value_name = "SIZE", value_parser = parse_memory_mib)]
    pub memory: Option<u64>,
    /// vCPUs the guest should have online (a whole number, at least 1).
    #[arg(long, value_name = "N", value_parser = parse_vcpus)]
    pub cpus: Option<u32>,
    #[command(flatten)]
    pub target: TargetArgs,
}

pub fn vm(ctx: &Ctx, a: VmArgs) -> Result<i32> {
    match a.cmd {
        VmCommand::Info(t) => {
            let api = client(ctx, &t.container)?;
            let info = api
                .info()
                .with_context(|| format!("cannot read the VM of container {}", t.container))?;
            print_info(&info, &t.format);
        }
        VmCommand::Metrics(t) => {
            let api = client(ctx, &t.container)?;
            let metrics = api
                .metrics()
                .with_context(|| format!("cannot read the metrics of container {}", t.container))?;
            match t.format.as_str() {
                "json" => println!("{}", to_json(&metrics)),
                _ => print!("{}", metrics_table(&metrics)),
            }
        }
        VmCommand::Pause(t) => {
            let api = client(ctx, &t.container)?;
            let info = api
                .pause()
                .with_context(|| format!("cannot pause the VM of container {}", t.container))?;
            print_info(&info, &t.format);
        }
        VmCommand::Resume(t) => {
            let api = client(ctx, &t.container)?;
            let info = api
                .resume()
                .with_context(|| format!("cannot resume the VM of container {}", t.container))?;
            print_info(&info, &t.format);
        }
        VmCommand::Resize(r) => {
            let info = resize(ctx, &r)?;
            print_info(&info, &r.target.format);
        }
    }
    Ok(0)
}

/// Memory first, then vCPUs; the VM afterwards.
fn resize(ctx: &Ctx, r: &ResizeArgs) -> Result<VmInfo> {
    let name = &r.target.container;
    if r.memory.is_none() && r.cpus.is_none() {
        return Err(Error::Invalid(
            "nothing to resize: give --memory SIZE, --cpus N or both (see 'hull vm resize --help')"
                .into(),
        ));
    }
    let api = client(ctx, name)?;
    if let (Some(_), Some(cpus)) = (r.memory, r.cpus) {
        // Checked before the memory changes, so that a refused --cpus leaves the VM as it was.
        let info = api
            .info()
            .with_context(|| format!("cannot read the VM of container {name}"))?;
        if cpus > info.vcpus.max {
            return Err(Error::Invalid(format!(
                "--cpus {cpus} is above the maximum of {} vCPUs of container {name}'s VM \
                 (nothing was changed)",
                info.vcpus.max
            )));
        }
    }
    let mut after = None;
    if let Some(mib) = r.memory {
        let info = api
            .resize_memory(mib)
            .with_context(|| format!("cannot resize the memory of container {name}"))?;
        after = Some(info);
    }
    if let Some(cpus) = r.cpus {
        let info = api.set_vcpus(cpus).with_context(|| match &after {
            Some(m) => format!(
                "cannot set the vCPUs of container {name} (its memory is now {} MiB)",
                m.memory_mib.target
            ),
            None => format!("cannot set the vCPUs of container {name}"),
        })?;
        after = Some(info);
    }
    after.ok_or_else(|| Error::Invalid("give --memory and/or --cpus".into()))
}

/// The API client of a running container's VM.
fn client(ctx: &Ctx, name: &str) -> Result<Client> {
    let c = ctx.containers().find(name)?;
    let rt = ctx.runtime();
    if !super::status(&rt, &c).alive() {
        return Err(Error::Failed(format!(
            "container {name} is not running: it has no VM"
        )));
    }
    let dir = StateDir::new(&rt.root, c.id())
        .map_err(|e| Error::Failed(format!("container {name}: {e}")))?;
    Ok(Client::new(dir.path("api.sock")).with_timeout(API_TIMEOUT))
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn print_info(info: &VmInfo, format: &str) {
    match format {
        "json" => println!("{}", to_json(info)),
        _ => print!("{}", info_table(info)),
    }
}

/// `key:   value` lines, the values aligned.
fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$}   {v}\n", format!("{k}:")))
        .collect()
}

fn mib_or_unknown(mib: Option<u64>, state: VmState) -> String {
    match (mib, state) {
        (Some(m), _) => format!("{m} MiB"),
        (None, VmState::Paused) => "unknown (paused)".into(),
        (None, VmState::Running) => "unknown (the guest did not answer)".into(),
    }
}

fn info_table(i: &VmInfo) -> String {
    let m = &i.memory_mib;
    key_values(&[
        ("ID", i.id.clone()),
        ("State", state_name(i.state).into()),
        ("Accelerator", i.accelerator.clone()),
        ("Machine", i.machine.clone()),
        (
            "vCPUs",
            format!("{} online / {} max", i.vcpus.online, i.vcpus.max),
        ),
        ("Memory configured", format!("{} MiB", m.configured)),
        ("Memory target", format!("{} MiB", m.target)),
        ("Guest memory total", mib_or_unknown(m.guest_total, i.state)),
        (
            "Guest memory available",
            mib_or_unknown(m.guest_available, i.state),
        ),
        ("Kernel", i.kernel.clone()),
        ("Started", i.started_at.clone()),
        (
            "Uptime",
            format::human_duration(i64::try_from(i.uptime_s).unwrap_or(i64::MAX)),
        ),
        (
            "VM start",
            match i.vm_start {
                VmStart::Clone => "clone (of a VM template)",
                VmStart::Cold => "cold (booted its kernel)",
            }
            .into(),
        ),
    ])
}

fn state_name(s: VmState) -> &'static str {
    match s {
        VmState::Running => "running",
        VmState::Paused => "paused",
    }
}

/// KiB as MiB with one decimal.
fn kib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn metrics_table(m: &Metrics) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    match &m.guest_memory {
        Some(g) => {
            rows.push(("Guest memory total", kib(g.total_kib)));
            rows.push(("Guest memory free", kib(g.free_kib)));
            rows.push(("Guest memory available", kib(g.available_kib)));
            if let Some(c) = g.disk_caches_kib {
                rows.push(("Guest page cache", kib(c)));
            }
            if let (Some(i), Some(o)) = (g.swap_in_kib, g.swap_out_kib) {
                rows.push(("Guest swap in/out", format!("{} / {}", kib(i), kib(o))));
            }
            if let Some(f) = g.major_faults {
                rows.push(("Guest major faults", f.to_string()));
            }
            if let Some(f) = g.minor_faults {
                rows.push(("Guest minor faults", f.to_string()));
            }
        }
        None => rows.push((
            "Guest memory",
            "unknown (paused, or no statistics yet)".into(),
        )),
    }
    rows.push((
        "Guest CPU time",
        match m.guest_cpu_time_ns {
            Some(ns) => format!("{:.2} s", ns as f64 / 1e9),
            None => "unknown".into(),
        },
    ));
    rows.push((
        "Host PSS",
        format!(
            "{} ({} processes)",
            kib(m.host.pss_kib),
            m.host.processes.len()
        ),
    ));
    let mut out = key_values(&rows);

    let mut procs = Table::new(&["PROCESS", "PID", "PSS"]);
    for p in &m.host.processes {
        procs.row(vec![p.name.clone(), p.pid.to_string(), kib(p.pss_kib)]);
    }
    out.push('\n');
    out.push_str(&procs.render());
    if !m.net.is_empty() {
        let mut net = Table::new(&["INTERFACE", "RX", "TX", "RX PACKETS", "TX PACKETS"]);
        for n in &m.net {
            net.row(vec![
                n.interface.clone(),
                format::human_size(n.rx_bytes),
                format::human_size(n.tx_bytes),
                n.rx_packets.to_string(),
                n.tx_packets.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&net.render());
    }
    if !m.block.is_empty() {
        let mut block = Table::new(&["DEVICE", "READ", "WRITTEN", "READS", "WRITES"]);
        for b in &m.block {
            block.row(vec![
                b.device.clone(),
                format::human_size(b.read_bytes),
                format::human_size(b.write_bytes),
                b.read_ops.to_string(),
                b.write_ops.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&block.render());
    }
    out
}

/// `--memory SIZE` as docker writes sizes (512m, 1g, 1024k, 1.5g, bytes; an optional `b` or
/// `ib`), in MiB: the API sets the VM's memory in whole MiB.
pub fn parse_memory_mib(s: &str) -> std::result::Result<u64, String> {
    // clap's message names the flag and the value.
    let bad = || "not a size (like 512m, 1g, 1024k or bytes)".to_string();
    let lower = s.trim().to_ascii_lowercase();
    let t = match lower.strip_suffix("ib") {
        Some(rest) if rest.ends_with(['k', 'm', 'g', 't']) => rest,
        _ => lower
            .strip_suffix('b')
            .filter(|r| !r.is_empty())
            .unwrap_or(&lower),
    };
    let (num, shift) = match t.as_bytes().last() {
        Some(b'k') => (&t[..t.len() - 1], 10),
        Some(b'm') => (&t[..t.len() - 1], 20),
        Some(b'g') => (&t[..t.len() - 1], 30),
        Some(b't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return Err(bad());
    }
    let bytes: u128 = match num.parse::<u64>() {
        Ok(n) => u128::from(n) << shift,
        Err(_) => {
            let v: f64 = num.parse().map_err(|_| bad())?;
            (v * (1u64 << shift) as f64).round() as u128
        }
    };
    if bytes == 0 {
        return Err("the VM's memory must be at least 1m".into());
    }
    if bytes % (1 << 20) != 0 {
        let near = ((bytes + (1 << 19)) >> 20).max(1);
        return Err(format!(
            "not a whole number of MiB (the VM's memory is set in MiB: {near}m?)"
        ));
    }
    u64::try_from(bytes >> 20).map_err(|_| "too large".to_string())
}

/// `--cpus N`: vCPUs online, a whole number of at least 1.
pub fn parse_vcpus(s: &str) -> std::result::Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("the VM needs at least 1 vCPU online".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number of vCPUs".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_api::{GuestMemory, HostProcess, HostUsage, MemoryMib, NetCounters, Vcpus};

    #[test]
    fn sizes_are_read_like_docker_in_whole_mib() {
        assert_eq!(parse_memory_mib("512m").unwrap(), 512);
        assert_eq!(parse_memory_mib("512M").unwrap(), 512);
        assert_eq!(parse_memory_mib("512mb").unwrap(), 512);
        assert_eq!(parse_memory_mib("512MiB").unwrap(), 512);
        assert_eq!(parse_memory_mib("1g").unwrap(), 1024);
        assert_eq!(parse_memory_mib("1.5g").unwrap(), 1536);
        assert_eq!(parse_memory_mib("1024k").unwrap(), 1);
        assert_eq!(parse_memory_mib("268435456").unwrap(), 256);
        assert_eq!(parse_memory_mib("268435456b").unwrap(), 256);
        for (bad, says) in [
            ("0", "at least 1m"),
            ("0m", "at least 1m"),
            ("1000k", "whole number of MiB"),
            ("12345", "whole number of MiB"),
            ("", "not a size"),
            ("m", "not a size"),
            ("-1g", "not a size"),
            ("1x", "not a size"),
            ("1 g", "not a size"),
            ("99999999999999999999t", "too large"),
        ] {
            let err = parse_memory_mib(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        assert_eq!(parse_vcpus("2").unwrap(), 2);
        assert!(parse_vcpus("0").unwrap_err().contains("at least 1"));
        assert!(parse_vcpus("1.5").unwrap_err().contains("whole number"));
        assert!(parse_vcpus("-1").is_err());
    }

    fn info(state: VmState) -> VmInfo {
        VmInfo {
            id: "abc".into(),
            accelerator: "tcg".into(),
            machine: "microvm".into(),
            state,
            vcpus: Vcpus { online: 1, max: 2 },
            memory_mib: MemoryMib {
                configured: 256,
                target: 192,
                guest_total: (state == VmState::Running).then_some(170),
                guest_available: (state == VmState::Running).then_some(120),
            },
            kernel: "6.1.0-hull".into(),
            started_at: "2026-12-02T07:47:50Z".into(),
            uptime_s: 300,
            vm_start: VmStart::Cold,
        }
    }

    #[test]
    fn info_reads_as_aligned_key_values() {
        let text = info_table(&info(VmState::Running));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID:                       abc");
        for want in [
            "State:                    running",
            "vCPUs:                    1 online / 2 max",
            "Memory configured:        256 MiB",
            "Memory target:            192 MiB",
            "Guest memory total:       170 MiB",
            "Guest memory available:   120 MiB",
            "Kernel:                   6.1.0-hull",
            "Uptime:                   5 minutes",
            "VM start:                 cold (booted its kernel)",
        ] {
            assert!(lines.contains(&want), "{want:?} in\n{text}");
        }
        let paused = info_table(&info(VmState::Paused));
        assert!(
            paused.contains("Guest memory total:       unknown (paused)"),
            "{paused}"
        );
    }

    #[test]
    fn metrics_show_guest_memory_cpu_time_and_host_pss() {
        let m = Metrics {
            guest_memory: Some(GuestMemory {
                total_kib: 174_080,
                free_kib: 102_400,
                available_kib: 122_880,
                disk_caches_kib: Some(4096),
                swap_in_kib: None,
                swap_out_kib: None,
                major_faults: None,
                minor_faults: None,
            }),
            guest_cpu_time_ns: Some(1_500_000_000),
            host: HostUsage {
                pss_kib: 90_112,
                processes: vec![
                    HostProcess {
                        name: "qemu-system-x86_64".into(),
                        pid: 42,
                        pss_kib: 81_920,
                    },
                    HostProcess {
                        name: "hull-monitor".into(),
                        pid: 41,
                        pss_kib: 8192,
                    },
                ],
            },
            block: Vec::new(),
            net: vec![NetCounters {
                interface: "eth0".into(),
                rx_bytes: 1500,
                tx_bytes: 900,
                rx_packets: 3,
                tx_packets: 2,
            }],
        };
        let text = metrics_table(&m);
        for want in [
            "Guest memory total:       170.0 MiB",
            "Guest memory available:   120.0 MiB",
            "Guest page cache:         4.0 MiB",
            "Guest CPU time:           1.50 s",
            "Host PSS:                 88.0 MiB (2 processes)",
            "PROCESS              PID   PSS",
            "qemu-system-x86_64   42    80.0 MiB",
            "hull-monitor         41    8.0 MiB",
            "eth0        1.5kB   900B   3            2",
        ] {
            assert!(text.lines().any(|l| l == want), "{want:?} in\n{text}");
        }
        assert!(!text.contains("swap"), "{text}");
    }
}
