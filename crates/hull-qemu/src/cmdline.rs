//! The QEMU command line, built from typed structs (one per QEMU object), never string soup.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::Accel;

/// A character device backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chardev {
    /// Connects to a unix socket that the monitor listens on (QEMU is the client, so the
    /// connection exists before the guest runs and nothing the guest writes is lost).
    SocketClient { id: String, path: PathBuf },
    /// Appends everything to a file.
    File { id: String, path: PathBuf },
}

impl Chardev {
    fn arg(&self) -> String {
        match self {
            Chardev::SocketClient { id, path } => {
                format!("socket,id={id},path={},server=off", opt_path(path))
            }
            Chardev::File { id, path } => format!("file,id={id},path={}", opt_path(path)),
        }
    }
}

/// A network backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netdev {
    /// A tap device the monitor opened; QEMU inherits the fd at this number.
    TapFd { id: String, fd: i32 },
    /// QEMU's user-mode network stack (libslirp): outbound connections through the host's
    /// sockets, no host interface; `hostfwd` rules publish ports
    /// (`tcp:127.0.0.1:8080-:80`).
    User { id: String, hostfwd: Vec<String> },
    /// A unix stream socket that a network backend process (passt) listens on; QEMU connects
    /// (path relative to QEMU's working directory, the state directory).
    Stream { id: String, path: PathBuf },
}

impl Netdev {
    fn arg(&self) -> String {
        match self {
            // vhost=off: no /dev/vhost-net on these hosts, and QEMU must not try it.
            Netdev::TapFd { id, fd } => format!("tap,id={id},fd={fd},vhost=off"),
            Netdev::User { id, hostfwd } => {
                let mut a = format!("user,id={id}");
                for h in hostfwd {
                    a.push_str(",hostfwd=");
                    a.push_str(h);
                }
                a
            }
            Netdev::Stream { id, path } => format!(
                "stream,id={id},server=off,addr.type=unix,addr.path={}",
                opt_path(path)
            ),
        }
    }
}

/// Where the guest's RAM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Memory {
    /// An anonymous memfd, shared: vhost-user daemons (virtiofsd) map guest memory.
    SharedMemfd,
    /// A file (on tmpfs). `share`: the guest writes the file (a template being built);
    /// otherwise it is mapped copy-on-write (a clone of that template: pages it does not write
    /// stay shared with every other clone).
    File { path: PathBuf, share: bool },
}

/// A file system export of QEMU's own 9p server (`-fsdev local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fsdev {
    pub id: String,
    pub path: PathBuf,
}

impl Fsdev {
    fn arg(&self) -> String {
        // passthrough: files get the guest's owners and modes (QEMU runs as root);
        // multidevs=remap: the export has submounts, whose inode numbers may collide.
        format!(
            "local,id={},path={},security_model=passthrough,multidevs=remap",
            self.id,
            opt_path(&self.path)
        )
    }
}

/// A guest device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// The virtio-serial bus (virtio-mmio on microvm).
    VirtioSerial { id: String, max_ports: u32 },
    /// A console port (hvc0) on the virtio-serial bus.
    VirtConsole { chardev: String },
    /// A named port on the virtio-serial bus.
    VirtSerialPort { chardev: String, name: String },
    /// virtio-fs backed by a vhost-user daemon (virtiofsd).
    VhostUserFs {
        chardev: String,
        tag: String,
        queue_size: u32,
    },
    /// virtio-9p served by QEMU itself from an [`Fsdev`] (migratable while the guest has not
    /// mounted it).
    Virtio9p { fsdev: String, tag: String },
    /// A virtio-net NIC (virtio-mmio on microvm) on a netdev, with the MAC the guest must see
    /// and the MTU it is told (`None`: no MTU feature; the guest sets it).
    VirtioNet {
        netdev: String,
        mac: String,
        mtu: Option<u32>,
    },
    /// A memory balloon (`virtio-balloon-device`, virtio-mmio on microvm): the host sets a
    /// target (QMP `balloon`) and the guest gives pages back until it is met.
    VirtioBalloon {
        id: String,
        /// `free-page-reporting`: the guest reports pages it freed and QEMU discards them, so
        /// the host gets them back without any target.
        free_page_reporting: bool,
        /// `deflate-on-oom`: the guest takes pages back from the balloon rather than OOM-kill.
        deflate_on_oom: bool,
    },
}

impl Device {
    fn arg(&self) -> String {
        match self {
            Device::VirtioSerial { id, max_ports } => {
                format!("virtio-serial-device,id={id},max_ports={max_ports}")
            }
            Device::VirtConsole { chardev } => format!("virtconsole,chardev={chardev}"),
            Device::VirtSerialPort { chardev, name } => {
                format!("virtserialport,chardev={chardev},name={name}")
            }
            Device::VhostUserFs {
                chardev,
                tag,
                queue_size,
            } => {
                format!("vhost-user-fs-device,chardev={chardev},tag={tag},queue-size={queue_size}")
            }
            Device::Virtio9p { fsdev, tag } => {
                format!("virtio-9p-device,fsdev={fsdev},mount_tag={tag}")
            }
            Device::VirtioNet { netdev, mac, mtu } => {
                let mut a = format!("virtio-net-device,netdev={netdev},mac={mac}");
                if let Some(mtu) = mtu {
                    a.push_str(&format!(",host_mtu={mtu}"));
                }
                a
            }
            Device::VirtioBalloon {
                id,
                free_page_reporting,
                deflate_on_oom,
            } => {
                let onoff = |b: bool| if b { "on" } else { "off" };
                format!(
                    "virtio-balloon-device,id={id},free-page-reporting={},deflate-on-oom={}",
                    onoff(*free_page_reporting),
                    onoff(*deflate_on_oom)
                )
            }
        }
    }
}

/// The machine type, with the CPU it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// x86_64 `microvm`: no PCI, no firmware (the host's architecture, `qemu-system-x86_64`).
    Microvm,
    /// aarch64 `virt` (`qemu-system-aarch64`): GICv3, PSCI, virtio-mmio transports for the
    /// same `-device virtio-*-device` list as microvm, no firmware (the kernel's `Image` is
    /// loaded directly).
    ArmVirt,
}

impl Machine {
    fn arg(self) -> &'static str {
        match self {
            // microvm: no PCI, no firmware, no option ROMs, no 8259 PIC, no ISA serial. The PIT
            // and RTC stay: without kvmclock (TCG) the kernel calibrates the TSC against them
            // (pit=off hangs calibration, rtc=off costs ~2 s of boot).
            // dump-guest-core=off (both machines): guest RAM is MADV_DONTDUMP, never in a core
            // dump of QEMU.
            Machine::Microvm => {
                "microvm,memory-backend=mem,x-option-roms=off,pic=off,isa-serial=off,\
                 dump-guest-core=off"
            }
            Machine::ArmVirt => "virt,memory-backend=mem,gic-version=3,dump-guest-core=off",
        }
    }

    /// The CPU model under an accelerator.
    fn cpu(self, accel: Accel) -> &'static str {
        match (self, accel) {
            (_, Accel::Kvm) => "host",
            (Machine::Microvm, Accel::Tcg) => "max",
            // Pointer authentication with QEMU's own cheap algorithm: `max` with the
            // architected one spends much of TCG's time in QARMA.
            (Machine::ArmVirt, Accel::Tcg) => "max,pauth-impdef=on",
        }
    }
}

/// Everything QEMU is started with.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub binary: PathBuf,
    pub name: String,
    pub machine: Machine,
    pub accel: Accel,
    /// TCG translation-cache size in MiB (bounds QEMU's RSS under TCG).
    pub tcg_tb_size_mib: u32,
    /// vCPUs QEMU creates (`-smp`): the most the guest can have online (microvm has no CPU
    /// hotplug; the agent onlines and offlines them).
    pub vcpus: u32,
    pub memory_mib: u32,
    pub memory: Memory,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kernel_cmdline: String,
    pub chardevs: Vec<Chardev>,
    pub fsdevs: Vec<Fsdev>,
    pub netdevs: Vec<Netdev>,
    pub devices: Vec<Device>,
    /// Chardev id of the QMP monitor.
    pub qmp_chardev: String,
    /// Wait for the state of a saved VM (`migrate-incoming`) instead of booting.
    pub incoming: bool,
    /// QEMU's own seccomp sandbox (`-sandbox`), if any.
    pub sandbox: Option<Sandbox>,
}

/// QEMU's seccomp sandbox: obsolete system calls, privilege changes and scheduler/resource
/// changes are denied; `spawn` (fork/exec) is denied unless the VM needs it (a template's build
/// saves its state through `exec:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    pub spawn: bool,
}

impl Sandbox {
    fn arg(&self) -> String {
        format!(
            "on,obsolete=deny,elevateprivileges=deny,spawn={},resourcecontrol=deny",
            if self.spawn { "allow" } else { "deny" }
        )
    }
}

/// Escapes a value for QEMU's option syntax (a comma is written twice).
fn opt_path(p: &std::path::Path) -> String {
    p.display().to_string().replace(',', ",,")
}

impl QemuCommand {
    /// The argument vector (without the binary).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        push(
            "-name",
            format!("{},debug-threads=on", self.name.replace(',', ",,")),
        );
        push("-machine", self.machine.arg().to_string());
        push("-object", self.memory_arg());
        push("-m", format!("{}M", self.memory_mib));
        match self.accel {
            Accel::Kvm => push("-accel", "kvm".into()),
            Accel::Tcg => push("-accel", format!("tcg,tb-size={}", self.tcg_tb_size_mib)),
        }
        push("-cpu", self.machine.cpu(self.accel).into());
        push("-smp", self.vcpus.to_string());
        push("-kernel", self.kernel.display().to_string());
        push("-initrd", self.initrd.display().to_string());
        push("-append", self.kernel_cmdline.clone());
        for c in &self.chardevs {
            push("-chardev", c.arg());
        }
        for f in &self.fsdevs {
            push("-fsdev", f.arg());
        }
        for n in &self.netdevs {
            push("-netdev", n.arg());
        }
        for d in &self.devices {
            push("-device", d.arg());
        }
        push("-mon", format!("chardev={},mode=control", self.qmp_chardev));
        if self.incoming {
            push("-incoming", "defer".into());
        }
        if let Some(sb) = &self.sandbox {
            push("-sandbox", sb.arg());
        }
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            a.push(flag.to_string());
        }
        a.into_iter().map(OsString::from).collect()
    }

    fn memory_arg(&self) -> String {
        let size = self.memory_mib;
        match &self.memory {
            Memory::SharedMemfd => format!("memory-backend-memfd,id=mem,size={size}M,share=on"),
            Memory::File { path, share } => format!(
                "memory-backend-file,id=mem,size={size}M,mem-path={},share={}",
                opt_path(path),
                if *share { "on" } else { "off" }
            ),
        }
    }

    pub fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.binary);
        c.args(self.args());
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QemuCommand {
        QemuCommand {
            binary: "qemu-system-x86_64".into(),
            name: "hull-c1".into(),
            machine: Machine::Microvm,
            accel: Accel::Tcg,
            tcg_tb_size_mib: 32,
            vcpus: 2,
            memory_mib: 256,
            memory: Memory::SharedMemfd,
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initramfs.cpio".into(),
            kernel_cmdline: "console=hvc0 quiet".into(),
            sandbox: Some(Sandbox { spawn: false }),
            chardevs: vec![
                Chardev::SocketClient {
                    id: "agent".into(),
                    path: "/run/a,b/agent.sock".into(),
                },
                Chardev::File {
                    id: "con".into(),
                    path: "/run/x/console.log".into(),
                },
            ],
            devices: vec![
                Device::VirtioSerial {
                    id: "vser".into(),
                    max_ports: 2,
                },
                Device::VirtSerialPort {
                    chardev: "agent".into(),
                    name: "org.hull.agent.0".into(),
                },
            ],
            netdevs: vec![Netdev::TapFd {
                id: "net0".into(),
                fd: 7,
            }],
            fsdevs: Vec::new(),
            qmp_chardev: "qmp".into(),
            incoming: false,
        }
    }

    #[test]
    fn sandbox_denies_spawn_unless_asked() {
        let mut q = sample();
        let args = pairs(&q.args());
        assert!(args.contains(&(
            "-sandbox".into(),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into()
        )));
        q.sandbox = Some(Sandbox { spawn: true });
        assert!(pairs(&q.args())
            .iter()
            .any(|(k, v)| k == "-sandbox" && v.contains("spawn=allow")));
        q.sandbox = None;
        assert!(!pairs(&q.args()).iter().any(|(k, _)| k == "-sandbox"));
    }

    fn pairs(args: &[OsString]) -> Vec<(String, String)> {
        args.windows(2)
            .filter(|w| w[0].to_string_lossy().starts_with('-'))
            .map(|w| {
                (
                    w[0].to_string_lossy().into_owned(),
                    w[1].to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn tcg_gets_a_bounded_translation_cache_and_max_cpu() {
        let p = pairs(&sample().args());
        assert!(p.contains(&("-accel".into(), "tcg,tb-size=32".into())));
        assert!(p.contains(&("-cpu".into(), "max".into())));
        assert!(p.contains(&("-smp".into(), "2".into())));
    }

    #[test]
    fn balloon_has_free_page_reporting_and_no_deflate_on_oom() {
        let mut c = sample();
        c.devices.push(Device::VirtioBalloon {
            id: "balloon0".into(),
            free_page_reporting: true,
            deflate_on_oom: false,
        });
        let p = pairs(&c.args());
        assert!(p.contains(&(
            "-device".into(),
            "virtio-balloon-device,id=balloon0,free-page-reporting=on,deflate-on-oom=off".into()
        )));
    }

    #[test]
    fn kvm_uses_host_cpu() {
        let mut c = sample();
        c.accel = Accel::Kvm;
        let p = pairs(&c.args());
        assert!(p.contains(&("-accel".into(), "kvm".into())));
        assert!(p.contains(&("-cpu".into(), "host".into())));
    }

    #[test]
    fn memory_is_shareable_memfd_for_vhost_user() {
        let p = pairs(&sample().args());
        assert!(p.contains(&(
            "-object".into(),
            "memory-backend-memfd,id=mem,size=256M,share=on".into()
        )));
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let p = pairs(&sample().args());
        assert!(p.contains(&(
            "-chardev".into(),
            "socket,id=agent,path=/run/a,,b/agent.sock,server=off".into()
        )));
    }

    #[test]
    fn tap_netdev_and_nic_carry_fd_mac_and_mtu() {
        let mut c = sample();
        c.devices.push(Device::VirtioNet {
            netdev: "net0".into(),
            mac: "0a:58:0a:58:00:02".into(),
            mtu: Some(1400),
        });
        let p = pairs(&c.args());
        assert!(p.contains(&("-netdev".into(), "tap,id=net0,fd=7,vhost=off".into())));
        assert!(p.contains(&(
            "-device".into(),
            "virtio-net-device,netdev=net0,mac=0a:58:0a:58:00:02,host_mtu=1400".into()
        )));
    }

    #[test]
    fn stream_netdev_connects_to_a_unix_socket() {
        let mut c = sample();
        c.netdevs = vec![Netdev::Stream {
            id: "unet0".into(),
            path: "passt.sock".into(),
        }];
        let p = pairs(&c.args());
        assert!(p.contains(&(
            "-netdev".into(),
            "stream,id=unet0,server=off,addr.type=unix,addr.path=passt.sock".into()
        )));
    }

    #[test]
    fn template_clone_maps_its_memory_file_privately_and_waits_for_the_state() {
        let mut c = sample();
        c.memory = Memory::File {
            path: "/run/hull/templates/k/memory".into(),
            share: false,
        };
        c.incoming = true;
        c.fsdevs.push(Fsdev {
            id: "fs0".into(),
            path: "/run/x/share".into(),
        });
        c.devices.push(Device::Virtio9p {
            fsdev: "fs0".into(),
            tag: "hullshare".into(),
        });
        c.devices.push(Device::VirtioNet {
            netdev: "net0".into(),
            mac: "02:68:75:6c:6c:00".into(),
            mtu: None,
        });
        let p = pairs(&c.args());
        assert!(p.contains(&(
            "-object".into(),
            "memory-backend-file,id=mem,size=256M,mem-path=/run/hull/templates/k/memory,share=off"
                .into()
        )));
        assert!(p.contains(&("-incoming".into(), "defer".into())));
        assert!(p.contains(&(
            "-fsdev".into(),
            "local,id=fs0,path=/run/x/share,security_model=passthrough,multidevs=remap".into()
        )));
        assert!(p.contains(&(
            "-device".into(),
            "virtio-9p-device,fsdev=fs0,mount_tag=hullshare".into()
        )));
        assert!(p.contains(&(
            "-device".into(),
            "virtio-net-device,netdev=net0,mac=02:68:75:6c:6c:00".into()
        )));
    }

    #[test]
    fn guest_ram_is_left_out_of_core_dumps_on_both_machines() {
        for machine in [Machine::Microvm, Machine::ArmVirt] {
            let mut c = sample();
            c.machine = machine;
            let p = pairs(&c.args());
            let m = p.iter().find(|(k, _)| k == "-machine").expect("-machine");
            assert!(
                m.1.split(',').any(|o| o == "dump-guest-core=off"),
                "{machine:?}: {}",
                m.1
            );
        }
    }

    #[test]
    fn guest_reset_ends_qemu() {
        let a = sample().args();
        assert!(a.iter().any(|x| x == "-no-reboot"));
        assert!(a.iter().any(|x| x == "-nodefaults"));
    }
}
