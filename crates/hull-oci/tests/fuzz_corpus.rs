//! Replays the corpus of the `config_plan` fuzz target (`fuzz/corpus/config_plan/`, see README
//! "Fuzzing") through the same function the target runs.

use hull_oci::fuzzing::{config_plan, HOST_CPUS};

fn bundle() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("rootfs")).unwrap();
    d
}

#[test]
fn config_plan_corpus_replays() {
    let d = bundle();
    let dir = d.path().canonicalize().unwrap();
    let files = hull_testkit::fuzz_corpus("config_plan");
    let mut plans = 0;
    for (path, bytes) in &files {
        let r = std::panic::catch_unwind(|| config_plan(&dir, bytes));
        match r {
            Err(_) => panic!("fuzz corpus file {} panics", path.display()),
            Ok(Ok(plan)) => {
                plans += 1;
                assert!(plan.vcpus <= HOST_CPUS, "{}", path.display());
                assert!(plan.shares.len() <= 1 + bytes.len(), "{}", path.display());
            }
            Ok(Err(e)) => {
                // An error names the config file (or the rootfs/bind source it is about).
                let e = e.to_string();
                assert!(!e.is_empty(), "{}", path.display());
            }
        }
    }
    eprintln!("{} config_plan corpus files, {plans} planned", files.len());
}

#[test]
fn malformed_configs_are_errors_not_panics() {
    let d = bundle();
    let dir = d.path().canonicalize().unwrap();
    let deep = "[".repeat(100_000);
    for junk in [
        "",
        "{",
        "null",
        "[]",
        deep.as_str(),
        r#"{"ociVersion":"1.0.2"}"#,
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
            "annotations":{"org.hull.vm.vcpus":"18446744073709551615","org.hull.vm.memory_mib":"18446744073709551615",
            "org.hull.vm.max_vcpus":"18446744073709551615","org.hull.vm.max_memory_mib":"18446744073709551615"}}"#,
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
            "linux":{"resources":{"memory":{"limit":9223372036854775807},"cpu":{"quota":9223372036854775807,"period":1}}}}"#,
    ] {
        let _ = config_plan(&dir, junk.as_bytes());
    }
}

#[test]
fn a_fifo_as_the_program_does_not_block_planning() {
    let d = bundle();
    let dir = d.path().canonicalize().unwrap();
    let fifo = dir.join("rootfs/prog");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let config = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"args":["/prog"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
    let (tx, rx) = std::sync::mpsc::channel();
    let dir2 = dir.clone();
    std::thread::spawn(move || {
        let _ = tx.send(config_plan(&dir2, config.as_bytes()).map(|p| p.arch));
    });
    let r = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("planning blocked on a FIFO in the rootfs");
    assert_eq!(r.unwrap(), hull_oci::Arch::host());
}
