//! Bytes as a bundle's config.json → validation and the VM plan.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One bundle directory (with an empty `rootfs`) per fuzzing process.
fn bundle() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hullfuzz-bundle-{}", std::process::id()));
        std::fs::create_dir_all(d.join("rootfs")).expect("create the fuzzing bundle");
        std::fs::canonicalize(&d).expect("canonical bundle path")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hull_oci::fuzzing::config_plan(bundle(), data);
});
