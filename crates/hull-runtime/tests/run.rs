//! `hull-runtime run` booting real VMs (TCG here): stdio, exit codes, the OCI process and mount
//! settings, and the error paths, each leaving nothing behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{finish, run, spawn, wait_status, Bundle, Root, VM_TIMEOUT};
use serde_json::json;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: deterministic, incompressible enough, no extra crate.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn stdout_and_stderr_arrive_separately_and_byte_exact() {
    let root = Root::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /big.out; cat /big.err >&2; echo tail-out; echo tail-err >&2",
    ]);
    let big_out = random_bytes(1 << 20, 7);
    let big_err = random_bytes(100_000, 11);
    std::fs::write(b.rootfs().join("big.out"), &big_out).unwrap();
    std::fs::write(b.rootfs().join("big.err"), &big_err).unwrap();
    let out = run(&root, &b, "stdio", None);
    assert_eq!(out.code, Some(0), "{out}");
    let mut want_out = big_out.clone();
    want_out.extend_from_slice(b"tail-out\n");
    let mut want_err = big_err.clone();
    want_err.extend_from_slice(b"tail-err\n");
    assert!(
        out.stdout == want_out,
        "stdout differs: {} bytes vs {} wanted",
        out.stdout.len(),
        want_out.len()
    );
    assert!(
        out.stderr == want_err,
        "stderr differs: {} bytes vs {} wanted; stderr: {}",
        out.stderr.len(),
        want_err.len(),
        out.stderr_str()
    );
    root.assert_clean("stdio");
}

#[test]
fn stdin_round_trips_through_cat() {
    let root = Root::new();
    let b = Bundle::busybox(&["cat"]);
    let input = b"data\nmore data\n".repeat(1000);
    let out = run(&root, &b, "stdin", Some(&input));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout == input,
        "got {} bytes back, sent {}",
        out.stdout.len(),
        input.len()
    );
    root.assert_clean("stdin");
}

#[test]
fn exit_code_and_death_by_signal_are_reported_like_a_shell() {
    let root = Root::new();
    let b = Bundle::busybox(&["sh", "-c", "exit 7"]);
    let out = run(&root, &b, "exit7", None);
    assert_eq!(out.code, Some(7), "{out}");

    // Without a PID namespace, `kill -9 $$` kills the shell (PID 1 of a namespace would be immune).
    let mut b = Bundle::busybox(&["sh", "-c", "kill -9 $$"]);
    b.edit(|c| {
        c["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}])
    });
    let out = run(&root, &b, "kill9", None);
    assert_eq!(out.code, Some(137), "{out}");
    root.assert_clean("kill9");
}

#[test]
fn process_env_cwd_user_and_hostname_are_applied() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g; id -G; hostname; umask",
    ]);
    b.edit(|c| {
        c["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001], "umask": 0o27});
        c["hostname"] = json!("hulltest");
    });
    let out = run(&root, &b, "proc", None);
    assert_eq!(out.code, Some(0), "{out}");
    let lines: Vec<String> = out.stdout_str().lines().map(String::from).collect();
    assert_eq!(lines[0], "bar baz");
    assert_eq!(lines[1], "/tmp");
    assert_eq!(lines[2], "1000");
    assert_eq!(lines[3], "1001");
    let groups: Vec<&str> = lines[4].split_whitespace().collect();
    assert!(
        groups.contains(&"1001") && groups.contains(&"2000") && groups.contains(&"2001"),
        "{groups:?}"
    );
    assert_eq!(lines[5], "hulltest");
    assert_eq!(lines[6], "0027");
    root.assert_clean("proc");
}

#[test]
fn readonly_root_refuses_writes() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["sh", "-c", "touch /newfile"]);
    b.edit(|c| c["root"]["readonly"] = json!(true));
    let out = run(&root, &b, "ro", None);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr_str().contains("Read-only file system"), "{out}");
    assert!(!b.rootfs().join("newfile").exists());
    root.assert_clean("ro");
}

#[test]
fn bind_mount_and_rootfs_writes_are_visible_on_the_host() {
    let root = Root::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in"), "from host\n").unwrap();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /data/in; echo from guest > /data/out; echo persisted > /root/file",
    ]);
    let src = host.path().to_str().unwrap().to_string();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "rw"]
        }))
    });
    let out = run(&root, &b, "bind", None);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(out.stdout_str(), "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "from guest\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("root/file")).unwrap(),
        "persisted\n"
    );
    root.assert_clean("bind");
}

#[test]
fn host_edits_reach_a_running_container_through_volumes_and_an_uncached_rootfs() {
    let root = Root::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("f"), "vol one\n").unwrap();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "cat /data/f /conf; touch /data/ready; \
         while [ ! -e /data/go ]; do sleep 0.1; done; cat /data/f /conf",
    ]);
    std::fs::write(b.rootfs().join("conf"), "root one\n").unwrap();
    let src = host.path().to_str().unwrap().to_string();
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": src, "options": ["rbind", "rw"]
        }));
        c["annotations"] = json!({"org.hull.rootfs.cache": "auto"});
    });
    let mut c = common::run_cmd(&root, &b, "coherent");
    let mut child = spawn(&mut c, false);
    let ready = host.path().join("ready");
    let early_exit =
        hull_testkit::wait::wait_for("the container's first reads", VM_TIMEOUT, || {
            if ready.exists() {
                Some(false)
            } else {
                child.try_wait().unwrap().map(|_| true)
            }
        });
    if early_exit {
        panic!(
            "hull-runtime exited early: {}",
            finish(child, None, VM_TIMEOUT)
        );
    }
    // Rewritten in place (same inode), as editors and config management do.
    std::fs::write(host.path().join("f"), "vol two\n").unwrap();
    std::fs::write(b.rootfs().join("conf"), "root two\n").unwrap();
    std::fs::write(host.path().join("go"), "").unwrap();
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout_str(),
        "vol one\nroot one\nvol two\nroot two\n",
        "{out}"
    );
    root.assert_clean("coherent");
}

/// Without a console device the kernel starts PID 1 with fds 0-2 closed: the state a loaded host
/// produced at random (the console port appears asynchronously), in which the agent used to die
/// before `main`. Here it is produced every time.
#[test]
fn a_guest_without_a_console_runs_the_container() {
    let root = Root::new();
    let b = Bundle::busybox(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let mut c = common::run_cmd(&root, &b, "noconsole");
    c.env("HULL_GUEST_CONSOLE", "off");
    let out = finish(spawn(&mut c, false), None, VM_TIMEOUT);
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    root.assert_clean("noconsole");

    let b = Bundle::busybox(&["true"]);
    expect_error(
        &root,
        &b,
        "badconsole",
        &[("HULL_GUEST_CONSOLE", "maybe")],
        3,
        &["HULL_GUEST_CONSOLE", "\"maybe\""],
    );
}

#[test]
fn sigterm_to_the_runtime_reaches_the_container_process() {
    let root = Root::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.1; done",
    ]);
    let mut c = common::run_cmd(&root, &b, "term");
    let child = spawn(&mut c, false);
    // The shell is PID 1 of its namespace: it ignores SIGTERM until its trap is set, which it
    // announces by creating /ready (seen on the host through the shared rootfs).
    let ready = b.rootfs().join("ready");
    hull_testkit::wait::wait_for("the trap to be set", VM_TIMEOUT, || {
        ready.exists().then_some(())
    });
    common::terminate(&child);
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(42), "{out}");
    root.assert_clean("term");
}

#[test]
fn killing_the_monitor_takes_qemu_and_virtiofsd_with_it() {
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let mut c = common::run_cmd(&root, &b, "orphans");
    let child = spawn(&mut c, false);
    wait_status(&root, "orphans", "running");
    let kids = common::processes_mentioning(root.path());
    // A cold boot has a virtiofsd; a clone's shares are QEMU's own (9p).
    let cold = std::env::var("HULL_VM_TEMPLATE").as_deref() == Ok("off");
    let want = if cold { 3 } else { 2 };
    assert!(
        kids.len() >= want,
        "monitor, qemu (and virtiofsd when cold) expected: {kids:?}"
    );
    Command::new("kill")
        .arg("-KILL")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let _ = finish(child, None, Duration::from_secs(30));
    hull_testkit::wait::wait_for(
        "qemu and virtiofsd to die with their monitor",
        Duration::from_secs(10),
        || {
            common::processes_mentioning(root.path())
                .is_empty()
                .then_some(())
        },
    );
}

// ---- errors: one clear line, non-zero exit, nothing left behind ----

fn expect_error(
    root: &Root,
    b: &Bundle,
    id: &str,
    env: &[(&str, &str)],
    code: i32,
    needles: &[&str],
) {
    let mut c = common::run_cmd(root, b, id);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = finish(spawn(&mut c, false), None, VM_TIMEOUT);
    assert_eq!(out.code, Some(code), "{out}");
    let err = out.stderr_str();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
    root.assert_clean(id);
}

#[test]
fn missing_or_invalid_config_is_named() {
    let root = Root::new();
    let b = Bundle::busybox(&["true"]);
    std::fs::remove_file(b.path().join("config.json")).unwrap();
    expect_error(&root, &b, "noconf", &[], 3, &["config.json", "cannot read"]);

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["process"]["args"] = json!([]));
    expect_error(&root, &b, "noargs", &[], 3, &["process.args"]);

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["root"]["path"] = json!("missing-rootfs"));
    expect_error(
        &root,
        &b,
        "norootfs",
        &[],
        3,
        &["missing-rootfs", "root.path"],
    );

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/n", "type": "nfs", "source": "x:/y"}))
    });
    expect_error(&root, &b, "nfs", &[], 3, &["mounts[7].type", "\"nfs\""]);

    // A terminal needs a console socket (or a terminal on stdin).
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["process"]["terminal"] = json!(true));
    expect_error(
        &root,
        &b,
        "noconsole",
        &[],
        3,
        &["process.terminal", "--console-socket"],
    );
}

#[test]
fn missing_qemu_or_virtiofsd_says_what_to_install() {
    let root = Root::new();
    let b = Bundle::busybox(&["true"]);
    expect_error(
        &root,
        &b,
        "noqemu",
        &[("HULL_QEMU", "/nonexistent/qemu")],
        4,
        &["/nonexistent/qemu"],
    );
    expect_error(
        &root,
        &b,
        "novfs",
        &[("HULL_VIRTIOFSD", "/nonexistent/virtiofsd")],
        4,
        &["virtiofsd"],
    );
    expect_error(
        &root,
        &b,
        "nokernel",
        &[("HULL_GUEST_DIR", "/nonexistent")],
        4,
        &["/nonexistent/vmlinux", "setup"],
    );
}

#[test]
fn command_not_found_in_the_container_is_an_error() {
    let root = Root::new();
    let b = Bundle::busybox(&["/no/such/binary"]);
    let out = run(&root, &b, "noexec", None);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr_str().contains("/no/such/binary"), "{out}");
    root.assert_clean("noexec");
}

#[test]
fn a_guest_that_never_answers_times_out_with_accelerator_and_console_log() {
    let root = Root::new();
    // A guest whose /init is busybox sleeping: the kernel boots, no agent ever answers.
    let guest = tempfile::tempdir().unwrap();
    let ir = guest.path().join("ir");
    std::fs::create_dir_all(ir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ir.join("bin/busybox")).unwrap();
    std::fs::write(
        ir.join("init"),
        "#!/bin/busybox sh\n/bin/busybox sleep 1000\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(ir.join("init"))
        .status()
        .unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | cpio -o -H newc --quiet > ../initramfs.cpio",
            ir.display()
        ))
        .status()
        .unwrap();
    assert!(st.success(), "cpio (apt-get install cpio)");
    let kernel = std::path::PathBuf::from(
        std::env::var("HULL_GUEST_DIR").unwrap_or("/usr/local/share/hull".into()),
    )
    .join("vmlinux");
    std::os::unix::fs::symlink(kernel, guest.path().join("vmlinux")).unwrap();
    let b = Bundle::busybox(&["true"]);
    let gdir = guest.path().to_str().unwrap().to_string();
    expect_error(
        &root,
        &b,
        "hang",
        &[
            ("HULL_GUEST_DIR", &gdir),
            ("HULL_BOOT_TIMEOUT_SECS", "4"),
            ("HULL_ACCEL", "tcg"),
        ],
        5,
        &[
            "timed out after 4s",
            "guest agent",
            "accelerator: tcg",
            "console log",
        ],
    );
}

#[test]
fn interrupting_a_booting_container_cleans_up_and_keeps_the_rootfs() {
    let root = Root::new();
    let b = Bundle::busybox(&["true"]);
    let mut c = common::run_cmd(&root, &b, "intr");
    let child = spawn(&mut c, false);
    // The moment the VM exists (its console log appears), interrupt.
    let console = root.path().join("intr/console.log");
    hull_testkit::wait::wait_for("the VM to start", VM_TIMEOUT, || {
        console.exists().then_some(())
    });
    common::terminate(&child);
    let out = finish(child, None, VM_TIMEOUT);
    assert!(
        out.code == Some(143) || out.code == Some(42) || out.code == Some(0),
        "{out}"
    );
    root.assert_clean("intr");
    assert!(
        b.rootfs().join("bin/busybox").is_file(),
        "the bundle's rootfs must survive cleanup"
    );
}

#[test]
fn exec_and_kill_reach_a_container_started_with_run() {
    // As with runc: a foreground `run` container serves exec, ps and kill too.
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let mut c = common::run_cmd(&root, &b, "fg");
    let child = spawn(&mut c, false);
    wait_status(&root, "fg", "running");
    let exec = root
        .cmd(&["exec", "fg", "echo", "from-exec"])
        .output()
        .unwrap();
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "from-exec\n");
    let kill = root.cmd(&["kill", "fg", "KILL"]).output().unwrap();
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let out = finish(child, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(137), "{out}");
    root.assert_clean("fg");
}

/// A VM QEMU cannot allocate: one line with QEMU's own reason, exit 1, no panic, nothing left.
#[test]
fn memory_qemu_cannot_allocate_fails_with_its_reason_and_leaves_nothing() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["annotations"] = json!({"org.hull.vm.memory_mib": "99999999"}));
    let out = run(&root, &b, "absurd", None);
    let err = out.stderr_str();
    assert_eq!(out.code, Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("qemu exited during startup"), "{err}");
    assert!(
        err.contains("Cannot allocate memory"),
        "QEMU's reason: {err}"
    );
    root.assert_clean("absurd");
}

/// An image whose /proc or /sys is a symlink: refused like runc does (procfs and sysfs only on
/// plain directories), with a message naming the mount, nothing left behind.
#[test]
fn proc_or_sys_as_a_symlink_in_the_rootfs_is_refused() {
    for (dir, fstype) in [("proc", "proc"), ("sys", "sysfs")] {
        let root = Root::new();
        let b = Bundle::busybox(&["true"]);
        let path = b.rootfs().join(dir);
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink("/tmp", &path).unwrap();
        let id = format!("link{dir}");
        let out = run(&root, &b, &id, None);
        let err = out.stderr_str();
        assert_ne!(out.code, Some(0), "{err}");
        assert!(
            err.contains(&format!(
                "refusing to mount {fstype} on /{dir}: it is a symlink (to /tmp)"
            )),
            "{err}"
        );
        root.assert_clean(&id);
    }
}

/// An rlimit the guest kernel cannot set (NOFILE above fs.nr_open): refused like runc, naming
/// the limit, nothing left behind.
#[test]
fn an_rlimit_the_kernel_refuses_fails_the_start() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "hard": u64::MAX, "soft": 1024u64}])
    });
    let out = run(&root, &b, "rlimit", None);
    let err = out.stderr_str();
    assert_ne!(out.code, Some(0), "{err}");
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
    root.assert_clean("rlimit");
}
