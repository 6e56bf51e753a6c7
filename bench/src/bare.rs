//! The floor of case (a): an initramfs whose `/init` powers the machine off at once.
//!
//! `/init` is a 144-byte static x86-64 ELF written here byte by byte (no toolchain, no libc):
//! `reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF)`, the same
//! power-off the agent does, so QEMU exits as it does after a container.

use std::path::Path;

use anyhow::{Context, Result};

const LOAD_ADDR: u64 = 0x40_0000;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// x86-64 machine code: reboot(2) to power off, then spin (never reached).
const POWER_OFF: [u8; 22] = [
    0xb8, 0xa9, 0x00, 0x00, 0x00, // mov eax, 169 (SYS_reboot)
    0xbf, 0xad, 0xde, 0xe1, 0xfe, // mov edi, 0xfee1dead (LINUX_REBOOT_MAGIC1)
    0xbe, 0x69, 0x19, 0x12, 0x28, // mov esi, 0x28121969 (LINUX_REBOOT_MAGIC2)
    0xba, 0xdc, 0xfe, 0x21, 0x43, // mov edx, 0x4321fedc (LINUX_REBOOT_CMD_POWER_OFF)
    0x0f, 0x05, // syscall
];
const SPIN: [u8; 2] = [0xeb, 0xfe]; // jmp $

/// A static ELF executable (one PT_LOAD segment) that powers the machine off.
pub fn poweroff_elf() -> Vec<u8> {
    let code: Vec<u8> = POWER_OFF.iter().chain(SPIN.iter()).copied().collect();
    let total = (EHDR_SIZE + PHDR_SIZE + code.len()) as u64;
    let entry = LOAD_ADDR + (EHDR_SIZE + PHDR_SIZE) as u64;
    let mut e = Vec::with_capacity(total as usize);
    // ELF header.
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]); // 64-bit, LE, v1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    e.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    e.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    e.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    e.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                  // Program header: the whole file, read + execute, at LOAD_ADDR.
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // PF_R | PF_X
    e.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // p_vaddr
    e.extend_from_slice(&LOAD_ADDR.to_le_bytes()); // p_paddr
    e.extend_from_slice(&total.to_le_bytes()); // p_filesz
    e.extend_from_slice(&total.to_le_bytes()); // p_memsz
    e.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    e.extend_from_slice(&code);
    e
}

fn pad4(v: &mut Vec<u8>) {
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

fn cpio_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        0, // rdevmajor
        0, // rdevminor
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// A newc archive holding `/init` (mode 0755) = `init`.
pub fn initramfs(init: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    cpio_entry(&mut out, 1, "init", 0o100755, init);
    cpio_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

pub fn write_initramfs(path: &Path) -> Result<()> {
    std::fs::write(path, initramfs(&poweroff_elf()))
        .with_context(|| format!("write {}", path.display()))
}

/// The QEMU arguments of a hull VM turned into a bare boot: same binary, machine, accelerator,
/// CPU, memory, kernel and kernel command line, but `initrd` instead of the agent's, and no
/// chardevs, devices, 9p exports or QMP monitor. A template clone's command line boots too: no
/// `-incoming`, and its RAM from a memfd as a cold boot's instead of the template's file.
pub fn bare_args(hull_args: &[String], initrd: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = hull_args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-chardev" | "-device" | "-mon" | "-fsdev" | "-incoming" => {
                it.next();
            }
            "-object" => {
                out.push(a.clone());
                if let Some(v) = it.next() {
                    out.push(memfd_backend(v));
                }
            }
            "-initrd" => {
                it.next();
                out.push(a.clone());
                out.push(initrd.display().to_string());
            }
            "-name" => {
                it.next();
                out.push(a.clone());
                out.push("hull-bench-bare,debug-threads=on".into());
            }
            _ => out.push(a.clone()),
        }
    }
    out
}

/// `memory-backend-file,id=I,size=S,mem-path=P,share=X` as `memory-backend-memfd,id=I,size=S,
/// share=on`; any other object as it is.
fn memfd_backend(obj: &str) -> String {
    let Some(rest) = obj.strip_prefix("memory-backend-file,") else {
        return obj.to_string();
    };
    let keep: Vec<&str> = rest
        .split(',')
        .filter(|kv| !kv.starts_with("mem-path=") && !kv.starts_with("share="))
        .collect();
    format!("memory-backend-memfd,{},share=on", keep.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_is_well_formed() {
        let e = poweroff_elf();
        assert_eq!(&e[..4], b"\x7fELF");
        assert_eq!(e.len(), EHDR_SIZE + PHDR_SIZE + 24);
        let entry = u64::from_le_bytes(e[24..32].try_into().unwrap());
        assert_eq!(entry, LOAD_ADDR + 120);
        let filesz = u64::from_le_bytes(e[96..104].try_into().unwrap());
        assert_eq!(filesz as usize, e.len());
        assert_eq!(&e[120..125], &[0xb8, 0xa9, 0, 0, 0]);
    }

    #[test]
    fn cpio_layout() {
        let c = initramfs(b"abc");
        assert_eq!(&c[..6], b"070701");
        // Header (110) + "init\0" (5) padded to 116, then 3 data bytes padded to 120.
        assert_eq!(&c[110..115], b"init\0");
        assert_eq!(&c[116..119], b"abc");
        assert_eq!(&c[120..126], b"070701");
        assert_eq!(c.len() % 4, 0);
        let mode = u32::from_str_radix(std::str::from_utf8(&c[14..22]).unwrap(), 16).unwrap();
        assert_eq!(mode, 0o100755);
    }

    #[test]
    fn bare_args_drop_devices_and_swap_the_initrd() {
        let hull: Vec<String> = [
            "-name",
            "hull-x,debug-threads=on",
            "-machine",
            "microvm,pic=off",
            "-initrd",
            "/a/initramfs.cpio",
            "-append",
            "console=hvc0 quiet",
            "-chardev",
            "socket,id=qmp,path=/r/x/qmp.sock",
            "-device",
            "virtconsole,chardev=console",
            "-mon",
            "chardev=qmp,mode=control",
            "-nodefaults",
            "-no-reboot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let b = bare_args(&hull, Path::new("/t/bare.cpio"));
        assert_eq!(
            b,
            [
                "-name",
                "hull-bench-bare,debug-threads=on",
                "-machine",
                "microvm,pic=off",
                "-initrd",
                "/t/bare.cpio",
                "-append",
                "console=hvc0 quiet",
                "-nodefaults",
                "-no-reboot"
            ]
        );
    }

    #[test]
    fn a_clone_command_line_becomes_a_boot() {
        let clone: Vec<String> = [
            "-machine",
            "microvm,memory-backend=mem",
            "-object",
            "memory-backend-file,id=mem,size=256M,mem-path=/r/.templates/k/memory,share=off",
            "-fsdev",
            "local,id=fs0,path=share,security_model=passthrough,multidevs=remap",
            "-device",
            "virtio-9p-device,fsdev=fs0,mount_tag=hullshare",
            "-incoming",
            "defer",
            "-nodefaults",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            bare_args(&clone, Path::new("/t/bare.cpio")),
            [
                "-machine",
                "microvm,memory-backend=mem",
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-nodefaults"
            ]
        );
        let memfd = "memory-backend-memfd,id=mem,size=256M,share=on";
        assert_eq!(memfd_backend(memfd), memfd);
    }
}
