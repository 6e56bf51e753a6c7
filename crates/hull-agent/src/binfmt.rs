//! User-mode emulation of a foreign architecture: the guest kernel runs a foreign ELF under
//! the static qemu-user emulator that the host appended to the initramfs
//! (`/hull/qemu-user/qemu-<arch>-static`), through a binfmt_misc rule in `/hull/binfmt/`.
//!
//! The rules carry the `F` (fix binary) flag: the kernel opens the emulator when the rule is
//! registered, so it runs in any mount namespace and never has to be in the container's rootfs.
//! Only the initramfs of a user-mode VM has rules; any other VM does nothing here.

use std::path::Path;

const RULES: &str = "/hull/binfmt";
const MOUNT_POINT: &str = "/proc/sys/fs/binfmt_misc";

/// Registers every rule of the initramfs. Returns the names registered.
pub fn register_bundled() -> Result<Vec<String>, String> {
    let Ok(entries) = std::fs::read_dir(RULES) else {
        return Ok(Vec::new());
    };
    let mut rules: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    rules.sort();
    if rules.is_empty() {
        return Ok(Vec::new());
    }
    mount_binfmt_misc()?;
    rules.iter().map(|p| register(p)).collect()
}

fn mount_binfmt_misc() -> Result<(), String> {
    if Path::new(MOUNT_POINT).join("register").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("binfmt_misc"),
        MOUNT_POINT,
        Some("binfmt_misc"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| format!("mounting binfmt_misc on {MOUNT_POINT}: {}", e.desc()))
}

/// Writes one rule (`:name:M:offset:magic:mask:interpreter:flags`) to `register`.
fn register(rule_file: &Path) -> Result<String, String> {
    let rule = std::fs::read_to_string(rule_file)
        .map_err(|e| format!("reading {}: {e}", rule_file.display()))?;
    let rule = rule.trim();
    let name = rule
        .split(':')
        .nth(1)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}: not a binfmt_misc rule", rule_file.display()))?;
    if Path::new(MOUNT_POINT).join(name).exists() {
        return Ok(name.to_string());
    }
    std::fs::write(Path::new(MOUNT_POINT).join("register"), rule)
        .map_err(|e| format!("registering {name} ({}): {e}", rule_file.display()))?;
    Ok(name.to_string())
}
