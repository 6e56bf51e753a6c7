//! Building a template: boot the clone's machine once, wait for the agent's `Hello`, let go
//! of the agent channel, pause, save the device state.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_net::host::Tap;
use hull_protocol::{
    AgentMessage, Frame, FrameReader, FrameWriter, HostMessage, HostRequest, Reply,
    PROTOCOL_VERSION,
};
use hull_qemu::{Memory, Netdev, QemuCommand, QmpClient};
use hull_state::StateDir;

use super::{sha256_hex, Meta};
use crate::sys::{self, Accepted, ChildGuard};
use crate::MonitorError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const SAVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the template of `clone_cmd` in `dir`: `memory` and `state`. The template VM is the
/// clone's machine with the memory file shared (the guest writes it), its shares' directories
/// empty, its NICs on taps wired to nothing and no published ports. `boot_timeout` bounds the
/// boot. Leaves only `memory`, `state` and `console.log`.
pub fn build(
    dir: &Path,
    clone_cmd: &QemuCommand,
    boot_timeout: Duration,
) -> Result<Meta, MonitorError> {
    let t0 = Instant::now();
    for share in &clone_cmd.fsdevs {
        let p = dir.join(&share.path);
        std::fs::create_dir_all(&p).map_err(MonitorError::sys(format!("mkdir {}", p.display())))?;
    }
    let taps = unwired_taps(clone_cmd)?;
    let q = template_command(clone_cmd, dir, &taps);
    let sd = StateDir {
        id: "template".into(),
        dir: dir.to_path_buf(),
    };
    let agent_listener = crate::monitor::bind(&sd, "agent.sock")?;
    let qmp_listener = crate::monitor::bind(&sd, "qmp.sock")?;
    let fds: Vec<RawFd> = taps.iter().map(|t| t.fd.as_raw_fd()).collect();
    let mut qemu = crate::monitor::spawn_qemu(&q, dir, &fds, false)?;
    let log = dir.join("qemu.log");
    let accepted = |l: &UnixListener, qemu: &mut ChildGuard, what: &str| match sys::accept_within(
        l,
        qemu,
        CONNECT_TIMEOUT,
    )? {
        Accepted::Stream(s) => Ok(s),
        Accepted::PeerDied(st) => Err(died(&log, st.to_string())),
        Accepted::TimedOut => Err(MonitorError::Agent(format!(
            "the template VM's QEMU did not open {what} within {CONNECT_TIMEOUT:?}"
        ))),
    };
    let mut qmp = QmpClient::handshake(
        accepted(&qmp_listener, &mut qemu, "its QMP socket")?,
        CONNECT_TIMEOUT,
    )?;
    let agent = accepted(&agent_listener, &mut qemu, "the agent channel")?;
    drop((agent_listener, qmp_listener));
    hello(&agent, boot_timeout).map_err(|e| match qemu.try_wait() {
        Some(st) => died(&log, st.to_string()),
        None => e,
    })?;
    // The host side stays connected: in the saved state the agent's port has its host, as it
    // will in every clone (whose QEMU connects at start), so the agent just reads on.
    qmp.stop()?;
    qmp.ignore_shared_memory()?;
    qmp.migrate("exec:cat > state")?;
    qmp.wait_migration(SAVE_TIMEOUT, Duration::from_millis(5))?;
    let _ = qmp.quit();
    qemu.wait_or_kill(Duration::from_secs(3));
    drop(agent);
    drop(taps);
    for leftover in ["agent.sock", "qmp.sock", "qemu.log"] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    for share in &clone_cmd.fsdevs {
        let _ = std::fs::remove_dir(dir.join(&share.path));
    }
    let state = std::fs::read(dir.join("state"))
        .map_err(MonitorError::sys(format!("read {}/state", dir.display())))?;
    let memory = dir.join("memory");
    let holes = super::holes_of(&memory).map_err(MonitorError::sys(format!(
        "find the holes of {}",
        memory.display()
    )))?;
    Ok(Meta {
        key: String::new(),
        memory_bytes: u64::from(clone_cmd.memory_mib) << 20,
        state_bytes: state.len() as u64,
        state_sha256: sha256_hex(&state),
        build_ms: t0.elapsed().as_millis() as u64,
        inputs: Vec::new(),
        holes,
    })
}

/// One unwired tap per tap NIC of the clone (named after the template and the NIC).
fn unwired_taps(clone_cmd: &QemuCommand) -> Result<Vec<Tap>, MonitorError> {
    let n = clone_cmd
        .netdevs
        .iter()
        .filter(|n| matches!(n, Netdev::TapFd { .. }))
        .count();
    (0..n)
        .map(|i| Ok(hull_net::host::unwired_tap(&format!("hulltpl{i}"))?))
        .collect()
}

/// The clone's command line as the template's: its own memory file, shared; the given taps;
/// no published ports; no incoming state.
fn template_command(clone_cmd: &QemuCommand, dir: &Path, taps: &[Tap]) -> QemuCommand {
    let mut q = clone_cmd.clone();
    q.name = "hull-template".into();
    // It saves its state through `exec:cat`.
    q.sandbox = Some(hull_qemu::Sandbox { spawn: true });
    q.memory = Memory::File {
        path: dir.join("memory"),
        share: true,
    };
    q.incoming = false;
    let mut taps = taps.iter();
    for n in &mut q.netdevs {
        match n {
            Netdev::TapFd { fd, .. } => {
                *fd = taps.next().map(|t| t.fd.as_raw_fd()).unwrap_or(-1);
            }
            Netdev::User { hostfwd, .. } => hostfwd.clear(),
            Netdev::Stream { .. } => {}
        }
    }
    q
}

/// The error for a template QEMU that exited: its log is kept outside the build directory
/// (which goes).
fn died(log: &Path, status: String) -> MonitorError {
    let kept = std::env::temp_dir().join(format!(
        "hull-template-{}-qemu.log",
        log.parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let log: PathBuf = match std::fs::copy(log, &kept) {
        Ok(_) => kept,
        Err(_) => log.to_path_buf(),
    };
    MonitorError::child_died("qemu", status, log)
}

/// Sends `Hello` and waits for its reply, within `timeout`.
fn hello(agent: &UnixStream, timeout: Duration) -> Result<(), MonitorError> {
    let msg = HostMessage {
        id: 1,
        request: HostRequest::Hello {
            version: PROTOCOL_VERSION,
        },
    };
    let json = serde_json::to_vec(&msg)
        .map_err(|e| MonitorError::Agent(format!("the hello request does not serialize: {e}")))?;
    FrameWriter::new(agent).write_control(&json)?;
    agent
        .set_read_timeout(Some(timeout))
        .map_err(MonitorError::sys("set the agent channel's timeout"))?;
    let mut r = FrameReader::new(agent);
    let timed_out = || {
        MonitorError::Agent(format!(
            "the template VM's agent did not answer within {timeout:?}"
        ))
    };
    loop {
        match r.read_frame() {
            Ok(Some(Frame::Control(json))) => match serde_json::from_slice(&json) {
                Ok(AgentMessage::Reply { id: 1, result }) => {
                    return match result {
                        Ok(Reply::Hello { .. }) => Ok(()),
                        Ok(other) => Err(MonitorError::Agent(format!(
                            "unexpected reply to hello: {other:?}"
                        ))),
                        Err(e) => Err(MonitorError::Agent(e.message)),
                    }
                }
                _ => continue,
            },
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(MonitorError::Agent(
                    "the template VM's agent channel closed before Hello".into(),
                ))
            }
            Err(hull_protocol::ProtocolError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(e.into()),
        }
    }
}
