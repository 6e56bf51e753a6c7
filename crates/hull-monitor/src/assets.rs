//! Where the programs and guest files the monitor needs are, with what to install if missing.
//!
//! The guest directory (`HULL_GUEST_DIR`, default [`DEFAULT_GUEST_DIR`]) holds the host
//! architecture's guest, `vmlinux` and `initramfs.cpio`, and what `scripts/setup.sh --arch A`
//! adds for a foreign architecture A: `initramfs-user-A.cpio` (the same initramfs with the
//! static qemu-user emulator of A and its binfmt_misc rule appended: user mode) and `A/Image`
//! + `A/initramfs.cpio` (a kernel and agent built for A: system mode).

use std::path::{Path, PathBuf};

use hull_oci::{Arch, Emulation};
use hull_qemu::Machine;

use crate::MonitorError;

/// Default directory of the guest kernel and initramfs (`HULL_GUEST_DIR` overrides).
pub const DEFAULT_GUEST_DIR: &str = "/usr/local/share/hull";

/// Which guest a container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// The host's architecture.
    Native,
    /// A host-architecture VM running a foreign architecture's programs under qemu-user.
    User(Arch),
    /// A VM of a foreign architecture.
    System(Arch),
}

impl GuestKind {
    /// The machine QEMU emulates.
    pub fn machine(self) -> Machine {
        match self {
            GuestKind::System(Arch::Arm64) => Machine::ArmVirt,
            _ => Machine::Microvm,
        }
    }

    /// For the log: `arm64 (user-mode emulation)`.
    pub fn describe(self) -> String {
        match self {
            GuestKind::Native => Arch::host().to_string(),
            GuestKind::User(a) => format!(
                "{a} (user-mode emulation: qemu-{} in the VM)",
                a.qemu_name()
            ),
            GuestKind::System(a) => {
                format!("{a} (system emulation: qemu-system-{})", a.qemu_name())
            }
        }
    }
}

/// Resolved paths of everything outside hull that a VM needs.
#[derive(Debug, Clone)]
pub struct Assets {
    pub kind: GuestKind,
    pub qemu: PathBuf,
    pub virtiofsd: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(extra.iter().map(PathBuf::from))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The guest directory.
pub fn guest_dir() -> PathBuf {
    std::env::var_os("HULL_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GUEST_DIR))
}

/// The guest files of a kind: (kernel, initramfs).
fn guest_files(dir: &Path, kind: GuestKind) -> (PathBuf, PathBuf) {
    match kind {
        GuestKind::Native => (dir.join("vmlinux"), dir.join("initramfs.cpio")),
        GuestKind::User(a) => (
            dir.join("vmlinux"),
            dir.join(format!("initramfs-user-{}.cpio", a.oci_name())),
        ),
        GuestKind::System(a) => {
            let d = dir.join(a.oci_name());
            (d.join("Image"), d.join("initramfs.cpio"))
        }
    }
}

/// Whether the guest files of a kind are installed.
pub fn installed(kind: GuestKind) -> bool {
    let (kernel, initrd) = guest_files(&guest_dir(), kind);
    kernel.is_file() && initrd.is_file()
}

/// The guest for a container of architecture `arch`: the host's, or the emulation the bundle
/// asks for, else the default for the accelerator (`tcg`: a system VM of that architecture,
/// which translates the container's code once; `kvm`: user mode, whose guest kernel runs
/// natively) when it is installed, else the other one.
pub fn choose_guest(arch: Arch, asked: Option<Emulation>, kvm: bool) -> GuestKind {
    if arch == Arch::host() {
        return GuestKind::Native;
    }
    let of = |e: Emulation| match e {
        Emulation::User => GuestKind::User(arch),
        Emulation::System => GuestKind::System(arch),
    };
    if let Some(e) = asked {
        return of(e);
    }
    let (first, second) = match kvm {
        true => (Emulation::User, Emulation::System),
        false => (Emulation::System, Emulation::User),
    };
    if !installed(of(first)) && installed(of(second)) {
        return of(second);
    }
    of(first)
}

impl Assets {
    pub fn locate(kind: GuestKind) -> Result<Self, MonitorError> {
        let qemu = locate_qemu(kind)?;
        let virtiofsd = match std::env::var_os("HULL_VIRTIOFSD") {
            Some(p) => PathBuf::from(p),
            None => find_program(
                "virtiofsd",
                &["/usr/local/bin/virtiofsd", "/usr/libexec/virtiofsd", "/root/.cargo/bin/virtiofsd"],
            )
            .ok_or_else(|| MonitorError::MissingProgram {
                program: "virtiofsd".into(),
                install: "cargo install virtiofsd --locked --root /usr/local (needs libseccomp-dev libcap-ng-dev); see README setup".into(),
            })?,
        };
        for p in [&qemu, &virtiofsd] {
            if !is_executable(p) {
                return Err(MonitorError::MissingProgram {
                    program: p.display().to_string(),
                    install: "the path is not an executable file".into(),
                });
            }
        }
        let (kernel, initrd) = guest_files(&guest_dir(), kind);
        for p in [&kernel, &initrd] {
            if p.is_file() {
                continue;
            }
            return Err(match kind {
                GuestKind::Native => MonitorError::MissingAsset {
                    path: p.clone(),
                    env: "HULL_GUEST_DIR",
                },
                GuestKind::User(a) | GuestKind::System(a) => MonitorError::MissingArch {
                    guest: kind.describe(),
                    path: p.clone(),
                    arch: a.oci_name(),
                },
            });
        }
        Ok(Self {
            kind,
            qemu,
            virtiofsd,
            kernel,
            initrd,
        })
    }
}

/// QEMU for the guest's machine: `HULL_QEMU` for the host's architecture,
/// `qemu-system-<arch>` from PATH for a foreign one.
fn locate_qemu(kind: GuestKind) -> Result<PathBuf, MonitorError> {
    let (name, package, env) = match kind {
        GuestKind::System(a) => (
            format!("qemu-system-{}", a.qemu_name()),
            match a {
                Arch::Arm64 | Arch::Arm => "qemu-system-arm",
                Arch::Ppc64le => "qemu-system-ppc",
                _ => "qemu-system-misc",
            },
            None,
        ),
        _ => (
            "qemu-system-x86_64".to_string(),
            "qemu-system-x86",
            Some("HULL_QEMU"),
        ),
    };
    if let Some(p) = env.and_then(std::env::var_os) {
        return Ok(PathBuf::from(p));
    }
    find_program(&name, &[]).ok_or_else(|| MonitorError::MissingProgram {
        program: name.clone(),
        install: format!("apt-get install {package} (or scripts/setup.sh --arch ...)"),
    })
}
