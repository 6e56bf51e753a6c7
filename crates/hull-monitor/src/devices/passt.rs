//! User-mode networking through `passt`, a process of its own: QEMU connects to its unix stream
//! socket (`-netdev stream`, QEMU ≥ 7.2) and passt turns the guest's frames into the host's
//! TCP/UDP sockets. Published ports are passt's listening sockets (`-t`/`-u`).
//!
//! The guest gets slirp's addresses (10.0.2.15/24 via 10.0.2.2, DNS forwarded at 10.0.2.3),
//! set on passt's command line, so the agent's static configuration is the same for both
//! backends; passt maps the gateway's address to the host's loopback, as slirp does.
//!
//! Lifetime: `--one-off` ends passt when QEMU's connection closes; PDEATHSIG ends it with the
//! monitor (it runs as the monitor's user, `--runas`, because a change of user would clear
//! PDEATHSIG, and passt's default, `nobody`, could not bind its socket in the state directory).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_oci::publish::PortForward;
use hull_qemu::{Device, Netdev, QemuCommand};

use super::user_net::{DNS, GATEWAY, GUEST, MAC, MTU};
use super::{DeadBackend, HostCtx, VmDevice};
use crate::sys::{self, ChildGuard};
use crate::MonitorError;

/// Socket passt listens on, relative to the state directory (QEMU's and passt's working
/// directory: the path stays short whatever the state root).
const SOCK: &str = "passt.sock";
/// passt writes its PID here after it listens: the readiness signal.
const PID_FILE: &str = "passt.pid";
const LOG: &str = "passt.log";
/// Bounds passt's startup (normally ~20-40 ms).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What to install when passt is missing.
pub const INSTALL: &str = "apt-get install passt";

/// passt on `PATH` (or `HULL_PASST`), if installed.
pub fn locate() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HULL_PASST") {
        return Some(PathBuf::from(p)).filter(|p| is_executable(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("passt"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// passt's port forwarding options for `publish`: `-t [ADDR/]HOST_PORT:CONTAINER_PORT`
/// (`-u` for UDP).
fn forward_args(publish: &[PortForward]) -> Vec<String> {
    publish
        .iter()
        .flat_map(|p| {
            let flag = match p.proto {
                hull_oci::publish::Proto::Tcp => "--tcp-ports",
                hull_oci::publish::Proto::Udp => "--udp-ports",
            };
            let addr = p.host_addr.map(|a| format!("{a}/")).unwrap_or_default();
            [
                flag.to_string(),
                format!("{addr}{}:{}", p.host_port, p.container_port),
            ]
        })
        .collect()
}

/// The user-mode NIC on a passt process, with the ports it publishes.
pub struct Passt {
    binary: PathBuf,
    publish: Vec<PortForward>,
    daemon: Option<ChildGuard>,
    log: PathBuf,
    files: Vec<PathBuf>,
}

impl Passt {
    pub fn new(binary: PathBuf, publish: Vec<PortForward>) -> Self {
        Self {
            binary,
            publish,
            daemon: None,
            log: PathBuf::new(),
            files: Vec::new(),
        }
    }

    fn command(&self, dir: &Path, pid_file: &Path) -> Command {
        let mut cmd = Command::new(&self.binary);
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        cmd.current_dir(dir)
            .args(["--foreground", "--one-off", "--quiet", "--stderr"])
            .arg(format!("--runas={uid}:{gid}"))
            .args(["--socket", SOCK])
            // Absolute: the PID file is read by the monitor, and it names the state directory
            // in passt's command line (as QEMU's and virtiofsd's do).
            .arg("--pid")
            .arg(pid_file)
            .args(["--address", &GUEST.to_string(), "--netmask", "24"])
            .args(["--gateway", &GATEWAY.to_string()])
            .args(["--dns-forward", &DNS.to_string()])
            .args(["--mtu", &MTU.to_string()])
            .args(forward_args(&self.publish));
        cmd
    }
}

impl VmDevice for Passt {
    fn start_backend(&mut self, ctx: &HostCtx) -> Result<(), MonitorError> {
        let (sock, pid_file) = (ctx.sd.path(SOCK), ctx.sd.path(PID_FILE));
        for p in [&sock, &pid_file] {
            let _ = std::fs::remove_file(p);
        }
        self.files = vec![sock, pid_file.clone()];
        self.log = ctx.sd.path(LOG);
        let log_file = std::fs::File::create(&self.log)
            .map_err(MonitorError::sys(format!("create {}", self.log.display())))?;
        let mut cmd = self.command(&ctx.sd.dir, &pid_file);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        sys::kill_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(MonitorError::sys(format!(
            "start {}",
            self.binary.display()
        )))?;
        let daemon = self.daemon.insert(ChildGuard::new("passt", child));

        // passt writes its PID file after listen(): QEMU can connect from then on.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
                // QEMU, as the VMM user, connects to it.
                return crate::jail::give(&ctx.sd.path(SOCK));
            }
            if let Some(status) = daemon.try_wait() {
                return Err(MonitorError::child_died(
                    "passt",
                    status.to_string(),
                    self.log.clone(),
                ));
            }
            if Instant::now() >= deadline {
                return Err(MonitorError::Sys {
                    what: format!(
                        "passt did not listen on {} within {START_TIMEOUT:?} (log {})",
                        ctx.sd.path(SOCK).display(),
                        self.log.display()
                    ),
                    source: std::io::ErrorKind::TimedOut.into(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn add_to(&self, q: &mut QemuCommand) {
        q.netdevs.push(Netdev::Stream {
            id: "unet0".into(),
            path: SOCK.into(),
        });
        q.devices.push(Device::VirtioNet {
            netdev: "unet0".into(),
            mac: MAC.into(),
            mtu: Some(MTU),
        });
    }

    fn dead_backend(&mut self) -> Option<DeadBackend> {
        let status = self.daemon.as_mut()?.try_wait()?;
        Some(DeadBackend {
            program: "passt",
            status: status.to_string(),
            log: self.log.clone(),
        })
    }

    fn host_pids(&self) -> Vec<(String, u32)> {
        self.daemon
            .iter()
            .map(|d| ("passt".to_owned(), d.id()))
            .collect()
    }

    fn stop(&mut self) {
        // QEMU has exited: passt (`--one-off`) follows its connection.
        if let Some(d) = &mut self.daemon {
            d.wait_or_kill(Duration::from_secs(1));
        }
        for p in self.files.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_become_passt_forwards() {
        let publish = hull_oci::publish::parse_list("8080:80, 127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(
            forward_args(&publish),
            ["--tcp-ports", "8080:80", "--udp-ports", "127.0.0.1/5353:53"]
        );
    }

    #[test]
    fn passt_gets_slirps_guest_addresses_and_a_relative_socket() {
        let p = Passt::new("passt".into(), Vec::new());
        let cmd = p.command(Path::new("/run/s"), Path::new("/run/s/passt.pid"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        for want in [
            "--one-off",
            "--socket passt.sock",
            "--pid /run/s/passt.pid",
            "--address 10.0.2.15 --netmask 24",
            "--gateway 10.0.2.2",
            "--dns-forward 10.0.2.3",
        ] {
            assert!(line.contains(want), "{want}: {line}");
        }
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/run/s")));
    }
}
