//! Foreign-architecture containers (real VMs): Debian's busybox-static of another architecture
//! run in user mode (qemu-user registered in the guest's binfmt_misc) and in system mode (a VM
//! of that architecture), detected from the program's ELF header or named by annotation.
//!
//! Foreign architectures are opt-in (`scripts/setup.sh --arch arm64,arm`), so these tests are
//! `#[ignore]`d in a plain `cargo test`; `scripts/test.sh` runs them (`--ignored`) for every
//! architecture the setup enabled, and then a missing part fails the test saying what to run.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{run, Bundle, Root, VM_TIMEOUT};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A busybox bundle of `arch` whose VM emulates it in `mode` (`user` or `system`).
fn bundle(arch: &str, mode: &str, args: &[&str]) -> Bundle {
    let mut b = Bundle::foreign_busybox(arch, args);
    b.edit(|c| {
        c["annotations"] = json!({"org.hull.vm.emulation": mode});
    });
    b
}

fn run_ok(arch: &str, mode: &str, args: &[&str]) -> String {
    let root = Root::new();
    let b = bundle(arch, mode, args);
    let out = run(&root, &b, "f", None);
    assert_eq!(
        out.code,
        Some(0),
        "{arch}/{mode} {args:?}: {}",
        out.stderr_str()
    );
    root.assert_clean("f");
    out.stdout_str()
}

/// `uname -m` is the foreign machine, exit statuses and stdin pass through.
fn machine_status_and_stdin(arch: &str, mode: &str, machine: &str) {
    assert_eq!(run_ok(arch, mode, &["uname", "-m"]).trim(), machine);
    let root = Root::new();
    let b = bundle(arch, mode, &["sh", "-c", "cat; exit 7"]);
    let out = run(&root, &b, "s", Some(b"through stdin\n"));
    assert_eq!(out.code, Some(7), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "through stdin\n");
    root.assert_clean("s");
}

/// `sha256sum` of an 8 MiB file bind-mounted from the host gives the host's digest.
fn digest_of_a_bind_mounted_file(arch: &str, mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::File::create(dir.path().join("blob"))
        .unwrap()
        .write_all(&data)
        .unwrap();
    let want = hex(&Sha256::digest(&data));
    let root = Root::new();
    let mut b = bundle(arch, mode, &["sha256sum", "/data/blob"]);
    let src = dir.path().display().to_string();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro"]
        }));
    });
    let out = run(&root, &b, "d", None);
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    assert_eq!(
        out.stdout_str().split_whitespace().next(),
        Some(want.as_str()),
        "{arch}/{mode}"
    );
    root.assert_clean("d");
}

/// `exec` into a running foreign container runs foreign programs too.
fn exec_in_a_running_container(arch: &str, mode: &str, machine: &str) {
    let root = Root::new();
    let b = bundle(arch, mode, &["sleep", "1000"]);
    // The container's stdio is the monitor's, which outlives `create`: files, not pipes.
    let err = b.path().join("stderr");
    let st = root
        .cmd(&["create", "--bundle"])
        .arg(b.path())
        .arg("x")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let err = || std::fs::read_to_string(&err).unwrap_or_default();
    assert!(st.success(), "create: {}", err());
    assert!(root.cmd(&["start", "x"]).status().unwrap().success());
    let mut c = root.cmd(&["exec", "x", "sh", "-c", "uname -m; exit 3"]);
    let out = common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT);
    assert_eq!(out.code, Some(3), "exec: {}", out.stderr_str());
    assert_eq!(out.stdout_str().trim(), machine);
    let out = root.cmd(&["delete", "-f", "x"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.assert_clean("x");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The host's binfmt_misc registrations (none if it is not mounted).
fn host_binfmt() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/sys/fs/binfmt_misc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_user_mode_runs_the_foreign_machine_with_status_and_stdin() {
    machine_status_and_stdin("arm64", "user", "aarch64");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_user_mode_digest_of_a_bind_mounted_file_is_the_hosts() {
    digest_of_a_bind_mounted_file("arm64", "user");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_user_mode_exec() {
    exec_in_a_running_container("arm64", "user", "aarch64");
}

/// The emulator is registered in the guest's binfmt_misc (with the fix-binary flag, from a
/// path the container's rootfs does not have) and the host's binfmt_misc is untouched.
#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_user_mode_registers_in_the_guests_binfmt_misc_only() {
    let before = host_binfmt();
    let root = Root::new();
    let script = "mount -t binfmt_misc none /tmp && cat /tmp/qemu-aarch64; \
                  test -e /hull && echo EMULATOR-IN-ROOTFS; true";
    let mut b = bundle("arm64", "user", &["sh", "-c", script]);
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    });
    let out = run(&root, &b, "b", None);
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    let s = out.stdout_str();
    assert!(s.contains("enabled"), "{s}");
    assert!(
        s.contains("interpreter /hull/qemu-user/qemu-aarch64-static"),
        "{s}"
    );
    assert!(s.contains("flags: POF"), "{s}");
    assert!(!s.contains("EMULATOR-IN-ROOTFS"), "{s}");
    root.assert_clean("b");
    assert_eq!(host_binfmt(), before, "the host's binfmt_misc changed");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm_v7_user_mode_runs_the_foreign_machine_with_status_and_stdin() {
    machine_status_and_stdin("arm", "user", "armv7l");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm_v7_user_mode_digest_and_exec() {
    digest_of_a_bind_mounted_file("arm", "user");
    exec_in_a_running_container("arm", "user", "armv7l");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_system_mode_runs_the_foreign_machine_with_status_and_stdin() {
    machine_status_and_stdin("arm64", "system", "aarch64");
}

#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_system_mode_digest_and_exec() {
    digest_of_a_bind_mounted_file("arm64", "system");
    exec_in_a_running_container("arm64", "system", "aarch64");
}

/// Without an annotation the ELF header decides; the kernel of a system-mode VM is foreign.
#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_is_detected_from_the_elf_header() {
    let root = Root::new();
    let b = Bundle::foreign_busybox("arm64", &["uname", "-m"]);
    let out = run(&root, &b, "e", None);
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    assert_eq!(out.stdout_str().trim(), "aarch64");
    root.assert_clean("e");
}

/// An architecture that is not set up: exit 4, one line naming what to run, nothing left.
#[test]
fn an_architecture_not_set_up_fails_with_exit_4_naming_the_setup() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["annotations"] = json!({"org.hull.vm.arch": "s390x", "org.hull.vm.emulation": "user"});
    });
    let out = run(&root, &b, "n", None);
    assert_eq!(out.code, Some(4), "{}", out.stderr_str());
    let e = out.stderr_str();
    assert!(e.contains("scripts/setup.sh --arch s390x"), "{e}");
    assert!(e.contains("initramfs-user-s390x.cpio"), "{e}");
    root.assert_clean("n");
}

/// A bad annotation names the field and the value.
#[test]
fn a_bad_arch_annotation_is_refused_naming_it() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["annotations"] = json!({"org.hull.vm.arch": "vax"});
    });
    let out = run(&root, &b, "v", None);
    assert_eq!(out.code, Some(3), "{}", out.stderr_str());
    let e = out.stderr_str();
    assert!(
        e.contains("org.hull.vm.arch") && e.contains("\"vax\""),
        "{e}"
    );
    root.assert_clean("v");
}

/// `features` lists what the guest directory can run.
#[test]
#[ignore = "foreign architectures are opt-in: scripts/setup.sh --arch arm64,arm"]
fn arm64_features_list_the_installed_modes() {
    let root = Root::new();
    let out = root.cmd(&["features"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["annotations"]["io.github.hull.foreign-architectures"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(s.starts_with("arm64 (user, system)"), "{s}");
}
