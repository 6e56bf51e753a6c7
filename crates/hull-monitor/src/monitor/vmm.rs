//! Phase 2: QEMU with the devices' command line, then its QMP and agent connections (QEMU is
//! the client of both sockets, so they exist before the guest runs).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;
use std::time::Duration;

use std::io::IsTerminal;

use hull_qemu::{Accel, Memory, QemuCommand, QmpClient};

use super::prepare::Host;
use super::{bind, env_u64, guest_timeout, Monitor};
use crate::agent::AgentConn;
use crate::sys::{self, Accepted, ChildGuard};
use crate::template::{self, Lease, Start};
use crate::{log, MonitorError};

const QEMU_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Loading a clone's device state (a few hundred KiB from tmpfs).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(20);

/// The running VMM and the two channels the monitor holds to it.
pub struct Vmm {
    pub qemu: ChildGuard,
    pub qmp: QmpClient,
    pub agent: AgentConn,
    /// Restored from a template (the guest needs fresh entropy and the time).
    pub restored: bool,
    /// The template's directory, for a clone (see `template::give_back_free_pages`).
    pub template_dir: Option<std::path::PathBuf>,
}

impl Monitor {
    pub(super) fn start_vmm(&mut self, host: &mut Host) -> Result<Vmm, MonitorError> {
        let agent_listener = bind(&host.sd, "agent.sock")?;
        let qmp_listener = bind(&host.sd, "qmp.sock")?;
        // QEMU (the VMM user, see `jail`) connects to both, from the state directory.
        crate::jail::let_in(&host.sd.dir)?;
        crate::jail::give(&host.sd.path("agent.sock"))?;
        crate::jail::give(&host.sd.path("qmp.sock"))?;
        let mut qcmd = self.qemu_command(host);
        let lease = self.template_lease(host, &mut qcmd);
        log::debug(&format!(
            "qemu: {} {:?}",
            qcmd.binary.display(),
            qcmd.args()
        ));
        let mut fds: Vec<_> = host.devices.iter().flat_map(|d| d.qemu_fds()).collect();
        // A clone reads its template's device state from an inherited descriptor (`fd:`).
        let state =
            match &lease {
                Some(l) => Some(File::open(&l.template.state).map_err(MonitorError::sys(
                    format!("open {}", l.template.state.display()),
                ))?),
                None => None,
            };
        fds.extend(state.as_ref().map(|f| f.as_raw_fd()));
        let mut qemu = spawn_qemu(&qcmd, &host.sd.dir, &fds, lease.is_some())?;
        self.timings.qemu_spawned_ms = self.ms();

        let what = "QEMU's QMP connection";
        let qmp_stream = self.accept(&qmp_listener, &mut qemu, host, what)?;
        let mut qmp = QmpClient::handshake(qmp_stream, QEMU_CONNECT_TIMEOUT)
            .map_err(|e| qemu_died_or(&mut qemu, &host.sd, "QMP handshake", e))?;
        self.timings.qmp_ready_ms = self.ms();
        let restored = lease.is_some();
        let template_dir = lease.as_ref().map(|l| l.template.dir.clone());
        if let (Some(lease), Some(state)) = (lease, state) {
            if let Err(e) = self.restore(&mut qmp, &mut qemu, host, lease, state) {
                // The template is gone (restore removed it); this VM boots instead.
                notice(&format!(
                    "hull: restoring the VM from its template failed, booting instead: {}",
                    super::error_chain(&e)
                ));
                qemu.kill();
                drop((qmp, agent_listener, qmp_listener));
                host.start = Start::ColdBoot("restoring the template failed".into());
                return self.start_vmm(host);
            }
        }
        let what = "QEMU's agent channel connection";
        let agent_stream = self.accept(&agent_listener, &mut qemu, host, what)?;
        drop((agent_listener, qmp_listener));
        let _ = std::fs::remove_file(host.sd.path("agent.sock"));
        let _ = std::fs::remove_file(host.sd.path("qmp.sock"));
        self.timings.agent_connected_ms = self.ms();
        let agent = AgentConn::start(agent_stream, host.ev_tx.clone())?;
        Ok(Vmm {
            qemu,
            qmp,
            agent,
            restored,
            template_dir,
        })
    }

    /// The template to clone this VM from (built first if need be), with `q` turned into the
    /// clone's command line; `None`: boot. A template that cannot be built is reported and the
    /// VM boots with the same devices.
    fn template_lease(&mut self, host: &Host, q: &mut QemuCommand) -> Option<Lease> {
        if let Start::ColdBoot(why) = &host.start {
            log::debug(&format!("VM boots: {why}"));
            self.timings.vm_start = "cold".into();
            return None;
        }
        let boot = super::boot::boot_timeout(host.accel.accel);
        match template::acquire(&template::base_dir(&self.opts.root), q, |dir| {
            template::build(dir, q, boot)
        }) {
            Ok(lease) => {
                q.memory = Memory::File {
                    path: lease.template.memory.clone(),
                    share: false,
                };
                q.incoming = true;
                self.timings.vm_start = match lease.built_ms {
                    Some(ms) => {
                        self.timings.template_build_ms = ms as f64;
                        "clone+build".into()
                    }
                    None => "clone".into(),
                };
                Some(lease)
            }
            Err(e) => {
                notice(&format!(
                    "hull: no VM template, booting instead: {}",
                    super::error_chain(&e)
                ));
                self.timings.vm_start = "cold".into();
                None
            }
        }
    }

    /// Loads the template's device state into the clone (started with `-incoming defer`); it
    /// runs on by itself once loaded. A template that cannot be restored is removed.
    fn restore(
        &mut self,
        qmp: &mut QmpClient,
        qemu: &mut ChildGuard,
        host: &Host,
        lease: Lease,
        state_file: File,
    ) -> Result<(), MonitorError> {
        let state = lease.template.state.clone();
        let uri = format!("fd:{}", state_file.as_raw_fd());
        let every = Duration::from_millis(1);
        let loaded = qmp
            .ignore_shared_memory()
            .and_then(|_| qmp.migrate_incoming(&uri))
            .and_then(|_| qmp.wait_migration(RESTORE_TIMEOUT, every))
            .and_then(|_| match qmp.running()? {
                true => Ok(()),
                false => qmp.cont(),
            });
        match loaded {
            Ok(()) => {
                self.timings.restored_ms = self.ms();
                drop(state_file);
                Ok(())
            }
            Err(source) => {
                template::discard(lease);
                let during = format!("restoring {}: {source}", state.display());
                Err(qemu_death(qemu, &host.sd, &during)
                    .unwrap_or(MonitorError::Restore { state, source }))
            }
        }
    }

    /// Accepts QEMU's connection on `listener`, or says which process died or what timed out.
    fn accept(
        &self,
        listener: &UnixListener,
        qemu: &mut ChildGuard,
        host: &mut Host,
        what: &str,
    ) -> Result<UnixStream, MonitorError> {
        match sys::accept_within(listener, qemu, QEMU_CONNECT_TIMEOUT)? {
            Accepted::Stream(s) => Ok(s),
            Accepted::PeerDied(st) => {
                let dead = host.devices.iter_mut().find_map(|d| d.dead_backend());
                Err(match dead {
                    Some(d) => d.into(),
                    None => {
                        MonitorError::child_died("qemu", st.to_string(), host.sd.path("qemu.log"))
                    }
                })
            }
            Accepted::TimedOut => Err(guest_timeout(
                &host.sd,
                &self.opts.id,
                host.accel.accel,
                what,
                QEMU_CONNECT_TIMEOUT,
            )),
        }
    }

    /// QEMU's command line: the machine from the plan, then every device's part.
    fn qemu_command(&self, host: &Host) -> QemuCommand {
        let mut q = QemuCommand {
            binary: host.assets.qemu.clone(),
            name: format!("hull-{}", self.opts.id),
            machine: host.assets.kind.machine(),
            accel: host.accel.accel,
            tcg_tb_size_mib: env_u64("HULL_TCG_TB_SIZE_MIB").unwrap_or(64) as u32,
            vcpus: host.plan.max_vcpus,
            memory_mib: host.plan.max_memory_mib,
            memory: Memory::SharedMemfd,
            kernel: host.assets.kernel.clone(),
            initrd: host.assets.initrd.clone(),
            kernel_cmdline: self.kernel_cmdline(host),
            chardevs: Vec::new(),
            fsdevs: Vec::new(),
            netdevs: Vec::new(),
            devices: Vec::new(),
            qmp_chardev: "qmp".into(),
            incoming: false,
            sandbox: Some(hull_qemu::Sandbox { spawn: false }),
        };
        q.chardevs.push(hull_qemu::Chardev::SocketClient {
            id: "qmp".into(),
            path: "qmp.sock".into(),
        });
        for d in &host.devices {
            d.add_to(&mut q);
        }
        q
    }

    fn kernel_cmdline(&self, host: &Host) -> String {
        let console = host.console;
        let x86 = host.assets.kind.machine() == hull_qemu::Machine::Microvm;
        let mut cmdline =
            String::from("panic=-1 rcupdate.rcu_expedited=1 cryptomgr.notests random.trust_cpu=on");
        if x86 {
            cmdline.insert_str(
                0,
                "reboot=t tsc=reliable no_timer_check 8250.nr_uarts=0 pci=off ",
            );
        }
        if console {
            cmdline.insert_str(0, "console=hvc0 ");
        }
        if x86 && host.accel.accel == Accel::Tcg {
            // See hull_qemu::tsc: without it, TCG guests hang in TSC calibration on a busy host.
            if let Some(khz) = host.tsc_khz {
                cmdline.push_str(&format!(" tsc_early_khz={khz}"));
            }
        }
        // QEMU creates the most vCPUs the VM can have (no CPU hotplug on microvm): the agent
        // keeps the plan's online from boot (and the API changes that).
        cmdline.push_str(&format!(" hull.vcpus={}", host.plan.vcpus));
        if self.opts.debug {
            cmdline.push_str(" hull.debug");
        } else {
            cmdline.push_str(" quiet");
        }
        // For debugging the guest: extra kernel parameters, appended last so they win.
        if let Ok(extra) = std::env::var("HULL_KERNEL_CMDLINE_APPEND") {
            if !extra.trim().is_empty() {
                cmdline.push(' ');
                cmdline.push_str(extra.trim());
            }
        }
        cmdline
    }
}

/// A notice for the log, and for the user on a terminal.
fn notice(text: &str) {
    log::error(text);
    if std::io::stderr().is_terminal() {
        eprintln!("{text}");
    }
}

/// The error of a QMP exchange that failed: QEMU's exit and the end of its log when it died
/// (e.g. "cannot set up guest memory"), else what failed.
fn qemu_died_or(
    qemu: &mut ChildGuard,
    sd: &hull_state::StateDir,
    what: &str,
    e: hull_qemu::QmpError,
) -> MonitorError {
    qemu_death(qemu, sd, &format!("during the {what}")).unwrap_or_else(|| MonitorError::Sys {
        what: what.into(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// `ChildDied` with the end of QEMU's log if QEMU exits within half a second (a failed QMP
/// exchange is often QEMU going away); `None` if it still runs.
fn qemu_death(
    qemu: &mut ChildGuard,
    sd: &hull_state::StateDir,
    during: &str,
) -> Option<MonitorError> {
    let status = (0..250).find_map(|_| {
        let st = qemu.try_wait();
        if st.is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        st
    })?;
    Some(MonitorError::child_died(
        "qemu",
        format!("{status}, {during}"),
        sd.path("qemu.log"),
    ))
}

/// Starts QEMU in the state directory: its socket and log paths are relative to it, so they
/// stay short whatever the state root is. `fds` are inherited at their numbers (taps).
/// `clone`: it maps a template's memory file private, see [`crate::qemu_filter`].
pub(crate) fn spawn_qemu(
    q: &QemuCommand,
    dir: &std::path::Path,
    fds: &[std::os::fd::RawFd],
    clone: bool,
) -> Result<ChildGuard, MonitorError> {
    let log = dir.join("qemu.log");
    let log_file =
        File::create(&log).map_err(MonitorError::sys(format!("create {}", log.display())))?;
    let mut cmd = q.command();
    cmd.current_dir(dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    for fd in fds {
        sys::inherit_fd(&mut cmd, *fd);
    }
    match crate::jail::vmm_user() {
        Some(user) => crate::jail::run_as(&mut cmd, user, &crate::jail::capabilities(q)),
        None => log::debug("QEMU runs as root"),
    }
    // After the change of user, which would clear it.
    sys::kill_with_parent(&mut cmd);
    if clone {
        crate::qemu_filter::keep_template_file(&mut cmd)?;
    }
    let child = cmd
        .spawn()
        .map_err(MonitorError::sys(format!("start {}", q.binary.display())))?;
    Ok(ChildGuard::new("qemu", child))
}
