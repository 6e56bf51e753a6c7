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
    /// A virtio-net NIC (virtio-mmio on microvm) on a netdev, with the MAC and MTU the guest
    /// must see.
    VirtioNet {
        netdev: String,
        mac: String,
        mtu: u32,
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
            Device::VirtioNet { netdev, mac, mtu } => {
                format!("virtio-net-device,netdev={netdev},mac={mac},host_mtu={mtu}")
            }
        }
    }
}

/// Everything QEMU is started with.
#[derive(Debug, Clone)]
pub struct QemuCommand {
    pub binary: PathBuf,
    pub name: String,
    pub accel: Accel,
    /// TCG translation-cache size in MiB (bounds QEMU's RSS under TCG).
    pub tcg_tb_size_mib: u32,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub kernel_cmdline: String,
    pub chardevs: Vec<Chardev>,
    pub netdevs: Vec<Netdev>,
    pub devices: Vec<Device>,
    /// Chardev id of the QMP monitor.
    pub qmp_chardev: String,
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
        // microvm: no PCI, no firmware, no option ROMs, no 8259 PIC, no ISA serial; memory from
        // a shareable memfd because vhost-user (virtiofsd) maps guest memory. The PIT and RTC
        // stay: without kvmclock (TCG) the kernel calibrates the TSC against them (pit=off hangs
        // calibration, rtc=off costs ~2 s of boot).
        push(
            "-machine",
            "microvm,memory-backend=mem,x-option-roms=off,pic=off,isa-serial=off".to_string(),
        );
        push(
            "-object",
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                self.memory_mib
            ),
        );
        push("-m", format!("{}M", self.memory_mib));
        match self.accel {
            Accel::Kvm => {
                push("-accel", "kvm".into());
                push("-cpu", "host".into());
            }
            Accel::Tcg => {
                push("-accel", format!("tcg,tb-size={}", self.tcg_tb_size_mib));
                push("-cpu", "max".into());
            }
        }
        push("-smp", self.vcpus.to_string());
        push("-kernel", self.kernel.display().to_string());
        push("-initrd", self.initrd.display().to_string());
        push("-append", self.kernel_cmdline.clone());
        for c in &self.chardevs {
            push("-chardev", c.arg());
        }
        for n in &self.netdevs {
            push("-netdev", n.arg());
        }
        for d in &self.devices {
            push("-device", d.arg());
        }
        push("-mon", format!("chardev={},mode=control", self.qmp_chardev));
        for flag in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
            a.push(flag.to_string());
        }
        a.into_iter().map(OsString::from).collect()
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
            accel: Accel::Tcg,
            tcg_tb_size_mib: 32,
            vcpus: 2,
            memory_mib: 256,
            kernel: "/k/vmlinux".into(),
            initrd: "/k/initramfs.cpio".into(),
            kernel_cmdline: "console=hvc0 quiet".into(),
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
            qmp_chardev: "qmp".into(),
        }
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
            mtu: 1400,
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
    fn guest_reset_ends_qemu() {
        let a = sample().args();
        assert!(a.iter().any(|x| x == "-no-reboot"));
        assert!(a.iter().any(|x| x == "-nodefaults"));
    }
}
