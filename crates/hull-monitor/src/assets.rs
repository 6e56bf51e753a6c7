//! Where the programs and guest files the monitor needs are, with what to install if missing.

use std::path::{Path, PathBuf};

use crate::MonitorError;

/// Default directory of the guest kernel and initramfs (`HULL_GUEST_DIR` overrides).
pub const DEFAULT_GUEST_DIR: &str = "/usr/local/share/hull";

/// Resolved paths of everything outside hull that a VM needs.
#[derive(Debug, Clone)]
pub struct Assets {
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

impl Assets {
    pub fn locate() -> Result<Self, MonitorError> {
        let qemu = match std::env::var_os("HULL_QEMU") {
            Some(p) => PathBuf::from(p),
            None => find_program("qemu-system-x86_64", &[]).ok_or_else(|| {
                MonitorError::MissingProgram {
                    program: "qemu-system-x86_64".into(),
                    install: "apt-get install qemu-system-x86".into(),
                }
            })?,
        };
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
        let guest_dir = std::env::var_os("HULL_GUEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_GUEST_DIR));
        let kernel = guest_dir.join("vmlinux");
        let initrd = guest_dir.join("initramfs.cpio");
        for p in [&kernel, &initrd] {
            if !p.is_file() {
                return Err(MonitorError::MissingAsset {
                    path: p.clone(),
                    env: "HULL_GUEST_DIR",
                });
            }
        }
        Ok(Self {
            qemu,
            virtiofsd,
            kernel,
            initrd,
        })
    }
}
