//! OCI bundles with a busybox root filesystem.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const BUSYBOX: &str = "/bin/busybox";

/// Creates a busybox root filesystem in `root`: `/bin/busybox` with a symlink per applet,
/// `/etc/passwd` and `/etc/group` with root and nobody, and empty `/proc /sys /dev /tmp`.
pub fn busybox_rootfs(root: &Path) {
    busybox_rootfs_with(root, Path::new(BUSYBOX));
}

/// The static busybox of a foreign architecture (`arm64`, `arm`…) that
/// `scripts/setup.sh --arch ARCH` fetched from Debian (`busybox-static:<arch>`); panics with
/// what to run if it is missing.
pub fn foreign_busybox(arch: &str) -> PathBuf {
    let cache = std::env::var_os("HULL_CACHE_DIR").unwrap_or_else(|| "/var/cache/hull".into());
    let p = PathBuf::from(cache)
        .join("foreign")
        .join(arch)
        .join("busybox");
    assert!(
        p.is_file(),
        "{} missing: run scripts/setup.sh --arch {arch} (fetches Debian's busybox-static:{arch})",
        p.display()
    );
    p
}

/// [`busybox_rootfs`] with another busybox binary (e.g. [`foreign_busybox`]); the applets are
/// the host busybox's (Debian builds every architecture's busybox-static alike).
pub fn busybox_rootfs_with(root: &Path, busybox: &Path) {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} missing: apt-get install busybox-static"
    );
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "home"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
}

/// A bundle directory: `config.json` (runc's default spec, as `runc spec` writes it) and a
/// busybox `rootfs/`. Dropping it removes the directory.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle whose process runs `args`.
    pub fn busybox(args: &[&str]) -> Self {
        Self::busybox_with(Path::new(BUSYBOX), args)
    }

    /// A bundle of a foreign architecture's busybox (see [`foreign_busybox`]).
    pub fn foreign_busybox(arch: &str, args: &[&str]) -> Self {
        Self::busybox_with(&foreign_busybox(arch), args)
    }

    fn busybox_with(busybox: &Path, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hull-bundle-")
            .tempdir()
            .unwrap();
        busybox_rootfs_with(&dir.path().join("rootfs"), busybox);
        let mut config = default_spec();
        config["process"]["args"] = json!(args);
        config["process"]["terminal"] = json!(false);
        let b = Self { dir, config };
        b.write_config();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Changes the config with `f` and writes it out again.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.write_config();
        self
    }

    pub fn write_config(&self) {
        fs::write(
            self.dir.path().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

/// runc's default spec (see `hull_oci::default_spec`).
pub fn default_spec() -> Value {
    hull_oci::default_spec()
}
