//! A VM's processes SIGKILLed under a created or running container (what `hull-soak` does at
//! random): the container ends `stopped`, and `delete` leaves nothing behind.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{wait_status, Bundle, Root, VM_TIMEOUT};

fn hr(root: &Root, args: &[&str]) -> common::Out {
    let mut c = root.cmd(args);
    common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT)
}

/// `create` + `start` of `sleep 1000`; returns the monitor's PID (the pid-file's).
fn start(root: &Root, b: &Bundle, id: &str) -> i32 {
    let mut c = root.cmd(&["create", "--bundle"]);
    c.arg(b.path())
        .arg("--pid-file")
        .arg(b.path().join("pid"))
        .arg(id);
    let st = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(b.path().join("stderr")).unwrap())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "create: {}",
        std::fs::read_to_string(b.path().join("stderr")).unwrap()
    );
    let out = hr(root, &["start", id]);
    assert_eq!(out.code, Some(0), "{out}");
    std::fs::read_to_string(b.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The monitor's child whose `comm` starts with `prefix`.
fn child_named(monitor: i32, prefix: &str) -> i32 {
    common::children(monitor as u32)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.starts_with(prefix))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("monitor {monitor} has no {prefix} child")) as i32
}

#[test]
fn a_killed_qemu_stops_the_container_and_delete_leaves_no_console_copy() {
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let id = format!("qkill{}", std::process::id());
    let monitor = start(&root, &b, &id);
    let qemu = child_named(monitor, "qemu-system");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_status(&root, &id, "stopped");
    hull_testkit::wait::wait_for("the monitor to exit", Duration::from_secs(60), || {
        (!hull_testkit::wait::pid_alive(monitor)).then_some(())
    });
    // The monitor kept a copy of the console log for its error message ...
    let kept = std::env::temp_dir().join(format!("hull-{id}-console.log"));
    let out = hr(&root, &["delete", &id]);
    assert_eq!(out.code, Some(0), "{out}");
    // ... which goes with the container.
    assert!(!kept.exists(), "{} left behind by delete", kept.display());
    root.assert_clean(&id);
}

#[test]
fn a_monitor_killed_during_create_leaves_no_state() {
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let id = format!("mkill{}", std::process::id());
    let mut c = root.cmd(&["create", "--bundle"]);
    c.arg(b.path()).arg(&id);
    let child = common::spawn(&mut c, false);
    // The monitor (by its command line), once it made the state directory.
    let needle = format!("\0--id\0{id}\0");
    let dir = root.path().join(&id);
    let monitor = hull_testkit::wait::wait_for("the monitor", VM_TIMEOUT, || {
        if !dir.exists() {
            return None;
        }
        common::processes_mentioning(root.path())
            .into_iter()
            .find(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = common::finish(child, None, VM_TIMEOUT);
    assert_ne!(out.code, Some(0), "{out}");
    // No delete: a failed create leaves no container behind, as with runc.
    root.assert_clean(&id);
}

/// virtiofsd SIGKILLed while the guest creates the container (cold boot; a createContainer hook
/// keeps the create busy): the create fails at once naming virtiofsd, instead of waiting for
/// the agent's timeout or succeeding with a dead file server, and nothing is left.
#[test]
fn a_virtiofsd_killed_during_create_fails_the_create_naming_it() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["annotations"] = serde_json::json!({"org.hull.vm.template": "off"});
        c["hooks"] = serde_json::json!({"createContainer": [{
            "path": "/bin/sh", "args": ["sh", "-c", "touch /hook-started; sleep 5"]
        }]});
    });
    let id = format!("fkill{}", std::process::id());
    let mut c = root.cmd(&["create", "--bundle"]);
    c.arg(b.path()).arg(&id);
    let stderr = b.path().join("stderr");
    let mut child = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(b.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let started = b.rootfs().join("hook-started");
    hull_testkit::wait::wait_for("the createContainer hook to start", VM_TIMEOUT, || {
        started.exists().then_some(())
    });
    let killed: Vec<u32> = common::processes_mentioning(root.path())
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "virtiofsd")
        })
        .collect();
    assert!(!killed.is_empty(), "no virtiofsd of {id}");
    for p in &killed {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = hull_testkit::wait::wait_for("create to end", VM_TIMEOUT, || {
        child.try_wait().ok().flatten()
    });
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(!status.success(), "create succeeded with a dead virtiofsd");
    assert!(
        err.contains("virtiofsd"),
        "the error names virtiofsd: {err}"
    );
    let _ = hr(&root, &["delete", "--force", &id]);
    root.assert_clean(&id);
}
