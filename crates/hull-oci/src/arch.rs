//! The CPU architecture a bundle's program is built for, and how a foreign one is emulated.
//!
//! A bundle's architecture is the `org.hull.vm.arch` annotation if it has one, else the ELF
//! machine of `process.args[0]` as the container would resolve it (the process's `PATH`, the
//! rootfs's symlinks, a script's `#!` interpreter), read on the host without leaving the rootfs.
//! Anything else (no such file, not an ELF) is the host's architecture: the container then
//! fails in the guest exactly as it does today.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{Bundle, OciError};

/// Annotation that names the bundle's architecture (`arm64`, `linux/arm64`, `aarch64`…),
/// instead of reading it off the program's ELF header.
pub const ANNOTATION_ARCH: &str = "org.hull.vm.arch";
/// Annotation that picks how a foreign architecture is emulated: `user` (qemu-user in a VM of
/// the host's architecture) or `system` (a VM of that architecture).
pub const ANNOTATION_EMULATION: &str = "org.hull.vm.emulation";

/// A CPU architecture, by its OCI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Amd64,
    I386,
    Arm64,
    /// 32-bit ARM (hard-float; `arm/v7`).
    Arm,
    Riscv64,
    Ppc64le,
    S390x,
}

/// Every architecture, in the order of [`Arch::NAMES`].
pub const ALL: [Arch; 7] = [
    Arch::Amd64,
    Arch::I386,
    Arch::Arm64,
    Arch::Arm,
    Arch::Riscv64,
    Arch::Ppc64le,
    Arch::S390x,
];

impl Arch {
    pub const NAMES: &'static str = "amd64, 386, arm64, arm, riscv64, ppc64le, s390x";

    /// The architecture hull itself is built for.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else if cfg!(target_arch = "riscv64") {
            Arch::Riscv64
        } else {
            Arch::Amd64
        }
    }

    /// The OCI name (`GOARCH`): `amd64`, `arm64`, `arm`…
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::I386 => "386",
            Arch::Arm64 => "arm64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
        }
    }

    /// QEMU's name: `qemu-<name>` (user mode) and `qemu-system-<name>`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::I386 => "i386",
            Arch::Arm64 => "aarch64",
            Arch::Arm => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
        }
    }

    /// An OCI name, a platform (`linux/arm64/v8`) or a kernel's name (`aarch64`, `armv7l`).
    pub fn parse(s: &str) -> Option<Arch> {
        let s = s.trim().to_ascii_lowercase();
        let arch = match s.split('/').collect::<Vec<_>>().as_slice() {
            [a] | [_, a] | [_, a, _] => a.to_string(),
            _ => return None,
        };
        Some(match arch.as_str() {
            "amd64" | "x86_64" | "x86-64" => Arch::Amd64,
            "386" | "i386" | "i686" | "x86" => Arch::I386,
            "arm64" | "aarch64" => Arch::Arm64,
            "arm" | "armhf" | "armv7l" | "armv7" => Arch::Arm,
            "riscv64" => Arch::Riscv64,
            "ppc64le" | "ppc64el" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            _ => return None,
        })
    }

    /// The architecture of an ELF file from its first bytes (`None`: not an ELF of a known
    /// machine).
    pub fn from_elf(head: &[u8]) -> Option<Arch> {
        if head.len() < 20 || &head[..4] != b"\x7fELF" {
            return None;
        }
        let (class64, little) = (head[4] == 2, head[5] == 1);
        let machine = if little {
            u16::from_le_bytes([head[18], head[19]])
        } else {
            u16::from_be_bytes([head[18], head[19]])
        };
        Some(match (machine, class64, little) {
            (62, true, true) => Arch::Amd64,
            (3, false, true) => Arch::I386,
            (183, true, true) => Arch::Arm64,
            (40, false, true) => Arch::Arm,
            (243, true, true) => Arch::Riscv64,
            (21, true, true) => Arch::Ppc64le,
            (22, true, false) => Arch::S390x,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.oci_name())
    }
}

/// How a foreign architecture runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Emulation {
    /// A VM of the host's architecture whose kernel runs the container's programs under
    /// qemu-user (registered in the guest's binfmt_misc).
    User,
    /// A VM of the container's architecture (`qemu-system-<arch>`, its own kernel and agent).
    System,
}

impl Emulation {
    pub fn as_str(self) -> &'static str {
        match self {
            Emulation::User => "user",
            Emulation::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Emulation> {
        match s {
            "user" => Some(Emulation::User),
            "system" => Some(Emulation::System),
            _ => None,
        }
    }
}

impl std::fmt::Display for Emulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The architecture of a bundle (see the module docs).
pub fn of_bundle(b: &Bundle) -> Result<Arch, OciError> {
    let annotations = b.spec.annotations().clone().unwrap_or_default();
    if let Some(v) = annotations.get(ANNOTATION_ARCH) {
        return Arch::parse(v).ok_or_else(|| OciError::Invalid {
            path: b.config_path.clone(),
            field: format!("annotations[{ANNOTATION_ARCH:?}]"),
            problem: format!("{v:?} is not one of {}", Arch::NAMES),
        });
    }
    let Some(process) = b.spec.process() else {
        return Ok(Arch::host());
    };
    let Some(program) = process.args().as_ref().and_then(|a| a.first()) else {
        return Ok(Arch::host());
    };
    let path_var = process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    Ok(program_arch(&b.rootfs, program, path_var, process.cwd()).unwrap_or_else(Arch::host))
}

/// The emulation the bundle asks for (`None`: the runtime's default).
pub fn emulation_of(b: &Bundle) -> Result<Option<Emulation>, OciError> {
    let annotations = b.spec.annotations().clone().unwrap_or_default();
    annotations
        .get(ANNOTATION_EMULATION)
        .map(|v| {
            Emulation::parse(v).ok_or_else(|| OciError::Invalid {
                path: b.config_path.clone(),
                field: format!("annotations[{ANNOTATION_EMULATION:?}]"),
                problem: format!("{v:?} is not one of \"user\", \"system\""),
            })
        })
        .transpose()
}

/// The architecture of `program` as the container runs it: looked up in `path_var` unless it
/// has a `/`, a script's interpreter followed once.
fn program_arch(root: &Path, program: &str, path_var: &str, cwd: &Path) -> Option<Arch> {
    let file = find_program(root, program, path_var, cwd)?;
    let head = read_head(&file)?;
    if let Some(arch) = Arch::from_elf(&head) {
        return Some(arch);
    }
    let interpreter = head.strip_prefix(b"#!")?;
    let line = interpreter.split(|c| *c == b'\n').next()?;
    let interp = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    let head = read_head(&resolve(root, Path::new(interp))?)?;
    Arch::from_elf(&head)
}

fn find_program(root: &Path, program: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        return resolve(root, &cwd.join(program));
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .filter_map(|d| resolve(root, &cwd.join(d).join(program)))
        .find(|p| p.is_file())
}

/// The first bytes of a regular file. Anything else is not a program: a FIFO would block the
/// open (and `create` with it), a device could block the read.
fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let mut head = vec![0u8; 256];
    // O_NONBLOCK too: the path may have been swapped for a FIFO since the check.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let n = f.read(&mut head).ok()?;
    head.truncate(n);
    Some(head)
}

/// The host path of `path` inside `root`, following symlinks as the container would see them:
/// absolute targets start at `root` and `..` never climbs above it. `None` if a component is
/// missing or there are too many links.
pub fn resolve(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut rel = PathBuf::new(); // resolved part, relative to root
    let mut todo: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut links = 0;
    while let Some(p) = todo.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        if p.is_absolute() {
            rel.clear();
        }
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    rel.pop();
                }
                Component::Normal(name) => {
                    let candidate = rel.join(name);
                    let host = root.join(&candidate);
                    let meta = std::fs::symlink_metadata(&host).ok()?;
                    if meta.file_type().is_symlink() {
                        links += 1;
                        if links > 40 {
                            return None;
                        }
                        let target = std::fs::read_link(&host).ok()?;
                        let rest: PathBuf = comps.iter().rev().collect();
                        todo.push(rest);
                        todo.push(target);
                        break;
                    }
                    rel = candidate;
                }
            }
        }
    }
    Some(root.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn elf(machine: u16, class64: bool) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if class64 { 2 } else { 1 };
        h[5] = 1;
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h
    }

    #[test]
    fn elf_machines_map_to_oci_names() {
        assert_eq!(Arch::from_elf(&elf(183, true)), Some(Arch::Arm64));
        assert_eq!(Arch::from_elf(&elf(62, true)), Some(Arch::Amd64));
        assert_eq!(Arch::from_elf(&elf(40, false)), Some(Arch::Arm));
        assert_eq!(Arch::from_elf(&elf(243, true)), Some(Arch::Riscv64));
        assert_eq!(Arch::from_elf(&elf(9999, true)), None);
        assert_eq!(Arch::from_elf(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(Arch::parse("linux/arm64/v8"), Some(Arch::Arm64));
        assert_eq!(Arch::parse("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::parse("linux/arm/v7"), Some(Arch::Arm));
        assert_eq!(Arch::parse("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::parse("mips"), None);
        for a in ALL {
            assert_eq!(Arch::parse(a.oci_name()), Some(a));
        }
    }

    #[test]
    fn programs_resolve_through_path_symlinks_and_scripts_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), elf(183, true)).unwrap();
        symlink("busybox", root.join("bin/sh")).unwrap();
        // An absolute link is the container's path, never the host's.
        symlink("/bin/busybox", root.join("usr/bin/env")).unwrap();
        std::fs::write(root.join("usr/bin/script"), "#!/bin/sh -e\necho\n").unwrap();
        // Climbing out of the root stays at the root.
        symlink("../../../../bin/busybox", root.join("usr/bin/up")).unwrap();
        let cwd = Path::new("/");
        let p = "/usr/bin:/bin";
        assert_eq!(program_arch(root, "sh", p, cwd), Some(Arch::Arm64));
        assert_eq!(program_arch(root, "env", p, cwd), Some(Arch::Arm64));
        assert_eq!(program_arch(root, "script", p, cwd), Some(Arch::Arm64));
        assert_eq!(program_arch(root, "up", p, cwd), Some(Arch::Arm64));
        assert_eq!(program_arch(root, "/bin/sh", "", cwd), Some(Arch::Arm64));
        assert_eq!(program_arch(root, "missing", p, cwd), None);
        // A link loop ends.
        symlink("loop", root.join("bin/loop")).unwrap();
        assert_eq!(program_arch(root, "/bin/loop", p, cwd), None);
    }
}
