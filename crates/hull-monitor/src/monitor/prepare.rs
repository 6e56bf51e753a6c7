//! Phase 1: everything on the host before QEMU starts. Input is checked before anything
//! exists; then the state directory, the namespaces, the signal thread, and the devices' host
//! sides (staging, virtiofsd, taps).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use hull_oci::{Bundle, ShareTree, VmPlan};
use hull_qemu::{Accel, AccelChoice};
use hull_state::StateDir;

use super::{Monitor, StateGuard};
use crate::agent::Event;
use crate::assets::{Assets, GuestKind};
use crate::devices::{self, DeviceOptions, HostCtx, NetSetup, VmDevice};
use crate::host_probe::{self, HostProbe};
use crate::{log, sys, MonitorError};

/// What the host side holds for the rest of the monitor's life.
pub struct Host {
    /// The management API (from the create phase on). First: dropped before `guard` removes
    /// the state directory.
    pub api: Option<super::manage::ApiHandle>,
    pub sd: StateDir,
    pub guard: StateGuard,
    pub bundle: Bundle,
    pub plan: VmPlan,
    pub assets: Assets,
    pub accel: AccelChoice,
    pub tsc_khz: Option<u64>,
    pub devices: Vec<Box<dyn VmDevice>>,
    pub ev_tx: Sender<Event>,
    pub ev_rx: Receiver<Event>,
    /// Whether the guest has a console (hvc0).
    pub console: bool,
    /// While true, a fatal signal aborts the monitor (nothing has been reported yet).
    pub abortable: Arc<AtomicBool>,
    /// The guest network (sent to the agent at boot).
    pub network: hull_protocol::NetworkConfig,
    /// Host interfaces wired into the VM (recorded for `delete` after a crash).
    pub net_interfaces: Vec<String>,
    /// Cloned from a template, or booted (and why).
    pub start: crate::template::Start,
    /// The engine's cgroup for the container. Last: left after the devices' processes ended.
    pub cgroup: Option<crate::cgroup::Membership>,
}

impl Monitor {
    pub(super) fn prepare_host(&mut self, bundle: Bundle) -> Result<Host, MonitorError> {
        let sd = StateDir::new(&self.opts.root, &self.opts.id)?;
        // Not a pod's later container (`run` checked): no other namespace can be joined.
        bundle.refuse_joined_namespaces()?;
        self.check_terminal(&bundle)?;
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let plan = VmPlan::from_bundle(&bundle, host_cpus)?;
        let cgroup = self.join_cgroup(&bundle, &plan)?;
        if !plan.publish.is_empty() && bundle.network_namespace().is_some() {
            return Err(hull_oci::OciError::Invalid {
                path: bundle.config_path.clone(),
                field: format!("annotations[{:?}]", hull_oci::publish::ANNOTATION_PUBLISH),
                problem: "ports are published by hull only on user-mode networking (a spec \
                          without a network namespace); with an engine's network namespace, \
                          the engine publishes them"
                    .into(),
            }
            .into());
        }
        let probe = host_probe::load_or_probe(&self.opts.root, &self.opts.self_exe);
        let mut accel = self.choose_accel(&probe)?;
        let kind =
            crate::assets::choose_guest(plan.arch, plan.emulation, accel.accel == Accel::Kvm);
        let assets = Assets::locate(kind)?;
        let console = guest_console()?;
        if let GuestKind::System(_) = kind {
            // Another architecture's machine: KVM cannot run it.
            accel = AccelChoice {
                accel: Accel::Tcg,
                kvm_unusable: None,
            };
        }
        if kind != GuestKind::Native {
            log::info(&format!("the container's programs are {}", kind.describe()));
        }
        if let Some(notice) = accel.notice() {
            log::info(&notice);
            if std::io::stderr().is_terminal() {
                eprintln!("{notice}");
            }
        }
        // Signals are caught from here on; the thread that handles them starts after unshare.
        let signals = catch_signals()?;
        sd.create()?;
        let guard = StateGuard {
            sd: sd.clone(),
            keep: false,
        };
        // Must precede every thread of this process.
        sys::private_mount_namespace()?;
        self.own_namespaces(&bundle)?;
        let netns = bundle.network_namespace();
        if let Some(ns) = &netns {
            sys::enter_network_namespace(ns.as_deref())?;
        }
        let (ev_tx, ev_rx) = mpsc::channel();
        let abortable = Arc::new(AtomicBool::new(true));
        let wired = Arc::new(Mutex::new(Vec::new()));
        spawn_signal_thread(
            signals,
            ev_tx.clone(),
            abortable.clone(),
            sd.clone(),
            wired.clone(),
        )?;

        let hooks_ran = self.run_host_hooks(&bundle, &accel)?;
        // An engine's network namespace holds the interfaces it configured; a new one is empty
        // unless a hook just put one there (docker's prestart hook moves the veth in).
        let net = match netns {
            Some(Some(_)) => NetSetup::inspect()?,
            Some(None) if hooks_ran => NetSetup::inspect()?,
            _ => NetSetup::default(),
        };
        // No network namespace in the spec (runc's host network): user-mode networking.
        let user_net = netns.is_none();
        let mut network = match user_net {
            true => devices::user_net_config(),
            false => net.guest.clone(),
        };
        let net_interfaces = net.names();
        *wired.lock().unwrap_or_else(|e| e.into_inner()) = net_interfaces.clone();
        // A container in an engine's network namespace may become a pod's first container:
        // its VM then needs a volumes share for the later containers' bind mounts.
        let pod_capable = matches!(netns, Some(Some(_)));
        let user_net = match user_net {
            true => Some(devices::user_net_backend(&plan)?),
            false => None,
        };
        let start = crate::template::choose(&plan, user_net.as_ref())?;
        let template = start == crate::template::Start::Clone;
        if template && !net.interfaces.is_empty() {
            // A clone's NICs have the template's placeholder MACs (see devices::net).
            for (i, iface) in network.interfaces.iter_mut().enumerate() {
                iface.device_mac = Some(devices::placeholder_mac(i));
            }
        }
        let opts = DeviceOptions {
            console,
            volumes: pod_capable || plan.tree(ShareTree::Volumes).next().is_some(),
            template,
            net,
            user_net,
        };
        let mut host = Host {
            api: None,
            sd,
            guard,
            bundle,
            plan: plan.clone(),
            assets,
            accel,
            tsc_khz: probe.tsc_khz,
            devices: devices::from_plan(&plan, opts),
            ev_tx,
            ev_rx,
            console,
            abortable,
            network,
            net_interfaces,
            start,
            cgroup,
        };
        self.start_backends(&mut host)?;
        Ok(host)
    }

    /// createRuntime and prestart hooks, on the host: the runtime environment (the network
    /// namespace, where engines' hooks wire the network) exists, and the VM's devices are
    /// fixed once QEMU starts (microvm has no hotplug), so they run before it. A failure
    /// fails create. Returns whether any ran.
    /// The ipc, uts and cgroup namespaces the spec asks for, held by this process (the PID
    /// engines and tools inspect), like runc's container init; the container's own are in the
    /// guest.
    fn own_namespaces(&self, bundle: &Bundle) -> Result<(), MonitorError> {
        use nix::sched::CloneFlags;
        use oci_spec::runtime::LinuxNamespaceType as T;
        let mut flags = CloneFlags::empty();
        for t in bundle.new_namespaces(&[T::Ipc, T::Uts, T::Cgroup]) {
            flags |= match t {
                T::Ipc => CloneFlags::CLONE_NEWIPC,
                T::Uts => CloneFlags::CLONE_NEWUTS,
                _ => CloneFlags::CLONE_NEWCGROUP,
            };
        }
        sys::unshare_namespaces(flags, bundle.spec.hostname().as_deref())
    }

    /// Into the engine's cgroup for the container before any child starts (`crate::cgroup`).
    /// A path that is not valid is an error; a host whose cgroups cannot be written (e.g. a
    /// read-only cgroupfs in a nested container) only loses the engine's accounting: logged.
    fn join_cgroup(
        &self,
        bundle: &Bundle,
        plan: &VmPlan,
    ) -> Result<Option<crate::cgroup::Membership>, MonitorError> {
        let Some(rel) =
            crate::cgroup::of_bundle(bundle).map_err(|e| hull_oci::OciError::Invalid {
                path: bundle.config_path.clone(),
                field: "linux.cgroupsPath".into(),
                problem: e.to_string(),
            })?
        else {
            return Ok(None);
        };
        let resources = bundle
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        let guest_mib = u64::from(plan.memory_mib.max(plan.max_memory_mib));
        let limits = crate::cgroup::HostLimits::for_vm(resources, guest_mib);
        match crate::cgroup::join(&rel, &limits) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                log::info(&format!(
                    "the VM's processes stay in the monitor's cgroup (engines' stats will not \
                     see them): {e}"
                ));
                Ok(None)
            }
        }
    }

    fn run_host_hooks(&self, bundle: &Bundle, accel: &AccelChoice) -> Result<bool, MonitorError> {
        let Some(h) = bundle.spec.hooks() else {
            return Ok(false);
        };
        let state = super::create::container_state(
            &self.opts.id,
            bundle,
            &accel.accel.to_string(),
            Vec::new(),
            hull_state::Status::Creating,
        );
        let json = state.oci().to_string();
        let create_runtime = h.create_runtime().clone().unwrap_or_default();
        hull_oci::hooks::run_hooks("createRuntime", &create_runtime, &json)?;
        let prestart = h.prestart().clone().unwrap_or_default();
        hull_oci::hooks::run_hooks("prestart", &prestart, &json)?;
        Ok(!create_runtime.is_empty() || !prestart.is_empty())
    }

    /// Stages every device's files, then starts every backend (virtiofsd, taps).
    fn start_backends(&mut self, host: &mut Host) -> Result<(), MonitorError> {
        let ctx = HostCtx {
            sd: &host.sd,
            assets: &host.assets,
            plan: &host.plan,
        };
        for d in host.devices.iter_mut() {
            d.stage(&ctx)?;
        }
        self.timings.host_prepared_ms = self.ms();
        for d in host.devices.iter_mut() {
            d.start_backend(&ctx)?;
        }
        self.timings.virtiofsd_spawned_ms = self.ms();
        Ok(())
    }

    /// `process.terminal` needs somewhere to put the terminal.
    fn check_terminal(&mut self, bundle: &Bundle) -> Result<(), MonitorError> {
        if !bundle.terminal() {
            return Ok(());
        }
        let size = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.console_size())
            .map(|b| (b.height() as u16, b.width() as u16));
        self.terminal = Some(size);
        if self.opts.console_socket.is_none() && !std::io::stdin().is_terminal() {
            return Err(hull_oci::OciError::Invalid {
                path: bundle.config_path.clone(),
                field: "process.terminal".into(),
                problem: "true, but there is no --console-socket and stdin is not a terminal"
                    .into(),
            }
            .into());
        }
        Ok(())
    }

    fn choose_accel(&self, probe: &HostProbe) -> Result<AccelChoice, MonitorError> {
        let forced = match (self.opts.accel, std::env::var("HULL_ACCEL")) {
            (Some(a), _) => Some(a),
            (None, Ok(v)) if !v.is_empty() => Some(v.parse()?),
            _ => None,
        };
        Ok(hull_qemu::accel::resolve(
            forced,
            probe.kvm_unusable.clone(),
        )?)
    }
}

/// `HULL_GUEST_CONSOLE`: `on` (default: the guest console goes to `<state>/console.log`) or
/// `off` (no console device; one device less to boot, and no log of the guest kernel).
fn guest_console() -> Result<bool, MonitorError> {
    match std::env::var("HULL_GUEST_CONSOLE").as_deref() {
        Err(_) | Ok("") | Ok("on") => Ok(true),
        Ok("off") => Ok(false),
        Ok(v) => Err(MonitorError::Setting {
            name: "HULL_GUEST_CONSOLE",
            value: v.into(),
            problem: "must be \"on\" or \"off\"",
        }),
    }
}

/// Catches the signals the monitor forwards or aborts on (delivered later by the signal thread).
fn catch_signals() -> Result<signal_hook::iterator::Signals, MonitorError> {
    use signal_hook::consts::*;
    signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
    ])
    .map_err(MonitorError::sys("install signal handlers"))
}

/// Forwards signals to the main loop. While `abortable` (booting, before the container is
/// created/started), SIGINT/SIGTERM/SIGHUP/SIGQUIT abort: the state directory goes, QEMU and
/// virtiofsd die with us (PDEATHSIG), mounts with our namespace, taps with their fds; the tc
/// redirects on the `wired` interfaces are removed here.
fn spawn_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    events: Sender<Event>,
    abortable: Arc<AtomicBool>,
    sd: StateDir,
    wired: Arc<Mutex<Vec<String>>>,
) -> Result<(), MonitorError> {
    use signal_hook::consts::*;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let fatal = matches!(sig, SIGINT | SIGTERM | SIGHUP | SIGQUIT);
                if fatal && abortable.load(Ordering::SeqCst) {
                    for name in wired.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        let _ = hull_net::host::detach(name);
                    }
                    // The main thread may still be creating files or mounts there.
                    let _ = sd.remove_settled(std::time::Duration::from_secs(2));
                    std::process::exit(128 + sig);
                }
                let _ = events.send(Event::Signal(sig));
            }
        })
        .map_err(MonitorError::sys("spawn signal thread"))?;
    Ok(())
}
