//! The runc lifecycle through `hull-runtime` (create/start/state/kill/delete/exec/ps/...) with
//! real VMs, including the edge cases engines rely on.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{wait_status, Bundle, Root, VM_TIMEOUT};
use hull_testkit::cgroup_dirs;
use serde_json::Value;

/// `create` with the container's stdout/stderr going to files in `dir` (a pipe would be held open
/// by the container, like with runc).
fn create(root: &Root, b: &Bundle, id: &str) -> std::process::Output {
    let out = std::fs::File::create(b.path().join("stdout")).unwrap();
    let err = std::fs::File::create(b.path().join("stderr")).unwrap();
    let mut c = root.cmd(&["create", "--bundle"]);
    c.arg(b.path())
        .arg("--pid-file")
        .arg(b.path().join("pid"))
        .arg(id);
    let st = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .unwrap();
    std::process::Output {
        status: st,
        stdout: vec![],
        stderr: std::fs::read(b.path().join("stderr")).unwrap(),
    }
}

fn hr(root: &Root, args: &[&str]) -> std::process::Output {
    let mut c = root.cmd(args);
    common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT).into()
}

impl From<common::Out> for std::process::Output {
    fn from(o: common::Out) -> Self {
        use std::os::unix::process::ExitStatusExt;
        std::process::Output {
            status: std::process::ExitStatus::from_raw(o.code.unwrap_or(255) << 8),
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

fn state(root: &Root, id: &str) -> Value {
    let out = hr(root, &["state", id]);
    assert!(
        out.status.success(),
        "state {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_start_state_and_delete_follow_the_oci_lifecycle() {
    let root = Root::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "while [ ! -e /go ]; do sleep 0.05; done; echo got",
    ]);
    let out = create(&root, &b, "life");
    assert!(out.status.success(), "{}", stderr(&out));
    let st = state(&root, "life");
    assert_eq!(st["status"], "created");
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(
        st["bundle"],
        b.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    let pid: i32 = std::fs::read_to_string(b.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"], pid, "state pid is the pid-file pid");
    assert!(hull_testkit::wait::pid_alive(pid));

    assert!(hr(&root, &["start", "life"]).status.success());
    assert_eq!(state(&root, "life")["status"], "running");
    // Double start fails.
    let again = hr(&root, &["start", "life"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("cannot start"),
        "{}",
        stderr(&again)
    );

    // ps lists the host process that stands for the container.
    let ps = hr(&root, &["ps", "--format", "json", "life"]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(pids, vec![pid]);

    // Running: delete without --force fails like runc.
    let del = hr(&root, &["delete", "life"]);
    assert!(!del.status.success());
    assert!(
        stderr(&del).contains("cannot delete container life that is not stopped: running"),
        "{}",
        stderr(&del)
    );

    // Let the process finish.
    std::fs::write(b.rootfs().join("go"), "").unwrap();
    wait_status(&root, "life", "stopped");
    assert_eq!(state(&root, "life")["pid"], 0);
    assert_eq!(
        std::fs::read_to_string(b.path().join("stdout")).unwrap(),
        "got\n"
    );
    hull_testkit::wait::wait_for("the monitor to exit", Duration::from_secs(20), || {
        (!hull_testkit::wait::pid_alive(pid)).then_some(())
    });
    assert!(hr(&root, &["delete", "life"]).status.success());
    root.assert_clean("life");
}

#[test]
fn kill_before_start_stops_the_container() {
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    assert!(create(&root, &b, "early").status.success());
    assert!(hr(&root, &["kill", "early", "KILL"]).status.success());
    wait_status(&root, "early", "stopped");
    assert!(hr(&root, &["delete", "early"]).status.success());
    root.assert_clean("early");
}

#[test]
fn kill_accepts_signal_names_numbers_and_sig_prefix_and_delete_force_cleans() {
    let root = Root::new();
    let b = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'echo term; exit 3' TERM; touch /ready; while true; do sleep 0.1; done",
    ]);
    assert!(create(&root, &b, "sigs").status.success());
    assert!(hr(&root, &["start", "sigs"]).status.success());
    let ready = b.rootfs().join("ready");
    hull_testkit::wait::wait_for("the trap", VM_TIMEOUT, || ready.exists().then_some(()));
    let bad = hr(&root, &["kill", "sigs", "NOSUCHSIG"]);
    assert!(!bad.status.success() && stderr(&bad).contains("NOSUCHSIG"));
    assert!(hr(&root, &["kill", "sigs", "SIGTERM"]).status.success());
    wait_status(&root, "sigs", "stopped");
    assert_eq!(
        std::fs::read_to_string(b.path().join("stdout")).unwrap(),
        "term\n"
    );
    let after = hr(&root, &["kill", "sigs", "9"]);
    assert!(
        !after.status.success() && stderr(&after).contains("container not running"),
        "{}",
        stderr(&after)
    );
    assert!(hr(&root, &["delete", "--force", "sigs"]).status.success());
    root.assert_clean("sigs");
}

#[test]
fn exec_runs_in_the_container_with_its_own_exit_status_and_pid_file() {
    let root = Root::new();
    let b = Bundle::busybox(&["sleep", "1000"]);
    let out = create(&root, &b, "ex");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(hr(&root, &["start", "ex"]).status.success());
    let pidf = b.path().join("exec.pid");
    let mut c = root.cmd(&["exec", "--pid-file"]);
    c.arg(&pidf)
        .args(["ex", "sh", "-c", "hostname; cat; exit 5"]);
    let child = common::spawn(&mut c, true);
    let exec_pid = child.id();
    let out = common::finish(child, Some(b"piped\n"), VM_TIMEOUT);
    assert_eq!(out.code, Some(5), "{out}");
    assert_eq!(out.stdout_str(), "runc\npiped\n");
    assert_eq!(
        std::fs::read_to_string(&pidf).unwrap().trim(),
        exec_pid.to_string()
    );

    // --detach: the pid-file names a host process that ends with the exec'd process.
    let out = hr(
        &root,
        &[
            "exec",
            "--detach",
            "--pid-file",
            pidf.to_str().unwrap(),
            "ex",
            "sh",
            "-c",
            "sleep 0.5; exit 4",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    hull_testkit::wait::wait_for("the detached exec to end", VM_TIMEOUT, || {
        (!hull_testkit::wait::pid_alive(pid)).then_some(())
    });
    // A command that does not exist is an error, like runc's.
    let out = hr(&root, &["exec", "ex", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent"), "{}", stderr(&out));

    let stats = hr(&root, &["events", "--stats", "ex"]);
    let v: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["type"], "stats");
    assert!(
        v["data"]["memory"]["usage"]["limit"].as_u64().unwrap() > 100 << 20,
        "{v}"
    );

    assert!(hr(&root, &["pause", "ex"]).status.success());
    assert_eq!(
        state(&root, "ex")["status"],
        "paused",
        "runc's word for a frozen container"
    );
    assert!(hr(&root, &["resume", "ex"]).status.success());
    assert_eq!(state(&root, "ex")["status"], "running");
    let out = hr(&root, &["exec", "ex", "true"]);
    assert!(out.status.success(), "exec after resume: {}", stderr(&out));

    // A paused container takes a signal (its VM runs again for the delivery): SIGTERM is
    // delivered and it stays paused; SIGKILL ends it (no agent timeout on a frozen guest).
    assert!(hr(&root, &["pause", "ex"]).status.success());
    let out = hr(&root, &["exec", "ex", "true"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exec while paused: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("cannot exec in a paused container"),
        "{}",
        stderr(&out)
    );
    let out = hr(&root, &["kill", "ex", "CONT"]);
    assert!(
        out.status.success(),
        "kill CONT while paused: {}",
        stderr(&out)
    );
    assert_eq!(state(&root, "ex")["status"], "paused");
    let out = hr(&root, &["kill", "ex", "KILL"]);
    assert!(
        out.status.success(),
        "kill KILL while paused: {}",
        stderr(&out)
    );
    wait_status(&root, "ex", "stopped");
    assert!(hr(&root, &["delete", "ex"]).status.success());
    root.assert_clean("ex");
}

#[test]
fn unknown_containers_fail_cleanly_and_force_delete_of_unknown_succeeds() {
    let root = Root::new();
    let out = hr(&root, &["state", "ghost"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"ghost\" does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!hr(&root, &["kill", "ghost"]).status.success());
    assert!(!hr(&root, &["start", "ghost"]).status.success());
    assert!(!hr(&root, &["delete", "ghost"]).status.success());
    assert!(hr(&root, &["delete", "--force", "ghost"]).status.success());
    assert!(root.leftovers().is_empty());
}

#[test]
fn log_json_records_errors_for_engines() {
    let root = Root::new();
    let log = root.path().join(".log.json");
    let out = hr(
        &root,
        &[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "ghost",
        ],
    );
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("ghost"));
    assert!(last["time"].as_str().is_some());
}

#[test]
fn spec_and_features_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new();
    assert!(
        hr(&root, &["spec", "--bundle", dir.path().to_str().unwrap()])
            .status
            .success()
    );
    let spec: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["terminal"], true);
    assert!(
        !hr(&root, &["spec", "--bundle", dir.path().to_str().unwrap()])
            .status
            .success(),
        "refuses to overwrite"
    );
    let f: Value = serde_json::from_slice(&hr(&root, &["features"]).stdout).unwrap();
    assert_eq!(
        f["linux"]["seccomp"]["enabled"], true,
        "the agent enforces linux.seccomp"
    );
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(
            hooks.contains(&h),
            "features must list {h} (all run): {hooks:?}"
        );
    }
}

#[test]
fn ten_containers_in_parallel_leave_nothing_behind() {
    let root = Root::new();
    let bundles: Vec<Bundle> = (0..10)
        .map(|_| Bundle::busybox(&["sh", "-c", "echo ok"]))
        .collect();
    let ids: Vec<String> = (0..10).map(|i| format!("par{i}")).collect();
    std::thread::scope(|s| {
        for (b, id) in bundles.iter().zip(&ids) {
            let root = &root;
            s.spawn(move || {
                let out = create(root, b, id);
                assert!(out.status.success(), "{id}: {}", stderr(&out));
                assert!(hr(root, &["start", id]).status.success());
                wait_status(root, id, "stopped");
                assert_eq!(
                    std::fs::read_to_string(b.path().join("stdout")).unwrap(),
                    "ok\n"
                );
                assert!(hr(root, &["delete", id]).status.success());
            });
        }
    });
    root.assert_clean("par*");
}

#[test]
fn host_hooks_run_in_order_with_the_state_and_a_failing_prestart_fails_create_cleanly() {
    let root = Root::new();
    let log = tempfile::tempdir().unwrap();
    let hook = |name: &str| {
        let f = log.path().join("hooks.log");
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo {name} \"$s\" >> {}", f.display())]})
    };
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [hook("createRuntime")],
            "prestart": [hook("prestart")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        })
    });
    assert!(create(&root, &b, "hooks").status.success());
    assert!(hr(&root, &["start", "hooks"]).status.success());
    wait_status(&root, "hooks", "stopped");
    // Engines may unmount the rootfs before delete: poststop must still run.
    std::fs::rename(b.rootfs(), b.path().join("rootfs.unmounted")).unwrap();
    assert!(hr(&root, &["delete", "hooks"]).status.success());
    let text = std::fs::read_to_string(log.path().join("hooks.log")).unwrap();
    let names: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        ["createRuntime", "prestart", "poststart", "poststop"],
        "{text}"
    );
    let first: Value =
        serde_json::from_str(text.lines().next().unwrap().split_once(' ').unwrap().1).unwrap();
    assert_eq!(first["id"], "hooks");
    assert!(first["pid"].as_i64().unwrap() > 0);
    root.assert_clean("hooks");

    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/false"}]}));
    let out = create(&root, &b, "badhook");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("prestart hook /bin/false"),
        "{}",
        stderr(&out)
    );
    root.assert_clean("badhook");
}

#[test]
fn guest_hooks_run_in_the_container_at_create_and_at_start_and_failures_are_named() {
    let root = Root::new();
    // Both hooks and the process append to /hooks.log in the rootfs (seen from the host).
    let hook = |name: &str| {
        serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > /hook-{name}.json; echo {name} >> /hooks.log")]})
    };
    let mut b = Bundle::busybox(&["sh", "-c", "echo process >> /hooks.log"]);
    b.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createContainer": [hook("createContainer")],
            "startContainer": [hook("startContainer")],
        })
    });
    let out = create(&root, &b, "ghooks");
    assert!(out.status.success(), "{}", stderr(&out));
    let log = b.rootfs().join("hooks.log");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "createContainer\n",
        "createContainer runs during create, startContainer not yet"
    );
    assert!(hr(&root, &["start", "ghooks"]).status.success());
    wait_status(&root, "ghooks", "stopped");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "createContainer\nstartContainer\nprocess\n"
    );
    for (name, status) in [
        ("createContainer", "creating"),
        ("startContainer", "created"),
    ] {
        let text = std::fs::read_to_string(b.rootfs().join(format!("hook-{name}.json"))).unwrap();
        let s: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(s["id"], "ghooks", "{text}");
        assert_eq!(s["status"], status, "{text}");
        assert_eq!(s["pid"], 1, "the init as the hook sees it: {text}");
        assert_eq!(s["bundle"], b.path().display().to_string(), "{text}");
    }
    assert!(hr(&root, &["delete", "ghooks"]).status.success());
    root.assert_clean("ghooks");

    // A failing createContainer hook fails create, naming it; nothing is left.
    let fail =
        serde_json::json!([{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 4"]}]);
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| c["hooks"] = serde_json::json!({"createContainer": fail}));
    let out = create(&root, &b, "badcreate");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("createContainer hook /bin/sh failed (exit status 4): nope"),
        "{err}"
    );
    root.assert_clean("badcreate");

    // A failing startContainer hook fails start; the process never runs.
    let mut b = Bundle::busybox(&["sh", "-c", "touch /ran"]);
    b.edit(|c| c["hooks"] = serde_json::json!({"startContainer": fail}));
    assert!(create(&root, &b, "badstart").status.success());
    let out = hr(&root, &["start", "badstart"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("startContainer hook /bin/sh failed (exit status 4): nope"),
        "{err}"
    );
    assert!(!b.rootfs().join("ran").exists());
    let _ = hr(&root, &["delete", "--force", "badstart"]);
    root.assert_clean("badstart");
}

#[test]
fn run_detach_returns_once_the_container_runs_and_a_failed_start_leaves_nothing() {
    let root = Root::new();
    let b = Bundle::busybox(&["sh", "-c", "echo detached; sleep 1000"]);
    let out = std::fs::File::create(b.path().join("stdout")).unwrap();
    let mut c = root.cmd(&["run", "--detach", "--bundle"]);
    c.arg(b.path())
        .arg("--pid-file")
        .arg(b.path().join("pid"))
        .arg("det");
    let st = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(state(&root, "det")["status"], "running");
    let pid: i32 = std::fs::read_to_string(b.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(state(&root, "det")["pid"], pid);
    hull_testkit::wait::wait_for("the container's output", VM_TIMEOUT, || {
        (std::fs::read_to_string(b.path().join("stdout")).ok()? == "detached\n").then_some(())
    });
    assert!(hr(&root, &["kill", "det", "KILL"]).status.success());
    wait_status(&root, "det", "stopped");
    assert!(hr(&root, &["delete", "det"]).status.success());
    root.assert_clean("det");

    let b = Bundle::busybox(&["no-such-command"]);
    let mut c = root.cmd(&["run", "-d", "--bundle"]);
    c.arg(b.path()).arg("detfail");
    let out: std::process::Output =
        common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT).into();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no-such-command"), "{}", stderr(&out));
    root.assert_clean("detfail");
}

#[test]
fn preserve_fds_is_refused_as_a_config_error_before_anything_exists() {
    let root = Root::new();
    let b = Bundle::busybox(&["true"]);
    for args in [
        vec!["create", "--preserve-fds", "2", "--bundle"],
        vec!["run", "--preserve-fds", "1", "--bundle"],
    ] {
        let mut c = root.cmd(&args);
        c.arg(b.path()).arg("pfds");
        let out: std::process::Output =
            common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT).into();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--preserve-fds") && stderr(&out).contains("VM"),
            "{}",
            stderr(&out)
        );
        root.assert_clean("pfds");
    }
    let out = hr(&root, &["exec", "--preserve-fds", "1", "nosuch", "true"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// `linux.cgroupsPath`: the monitor and its VM run in that cgroup while the container lives;
/// the cgroup is gone after it ends (foreground run), after delete, and after a create that
/// failed; a path with `..` is refused with a message that names the field.
#[test]
fn cgroups_path_holds_the_vm_and_is_removed_on_every_path() {
    let parent = format!("hull-test-{}", std::process::id());
    let root = Root::new();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    let with_path = |b: &mut Bundle, p: &str| {
        let p = p.to_owned();
        b.edit(move |c| c["linux"]["cgroupsPath"] = p.clone().into());
    };

    // Detached: the pid-file PID and QEMU are in it; delete removes it.
    with_path(&mut b, &format!("/{parent}/cg1"));
    let out = create(&root, &b, "cg1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dirs = cgroup_dirs(&format!("{parent}/cg1"));
    assert!(!dirs.is_empty(), "no cgroup {parent}/cg1");
    let pid = std::fs::read_to_string(b.path().join("pid")).unwrap();
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.trim()),
            "{}: {procs}",
            d.display()
        );
        assert!(procs.lines().count() >= 2, "the VM's processes: {procs}");
    }
    assert!(hr(&root, &["delete", "--force", "cg1"]).status.success());
    assert!(
        cgroup_dirs(&format!("{parent}/cg1")).is_empty(),
        "left after delete"
    );

    // Foreground run: the monitor removes it when the container ends.
    let mut t = Bundle::busybox(&["true"]);
    with_path(&mut t, &format!("/{parent}/cg2"));
    let out = common::run(&root, &t, "cg2", None);
    assert_eq!(out.code, Some(0), "{}", out.stderr_str());
    assert!(
        cgroup_dirs(&format!("{parent}/cg2")).is_empty(),
        "left after run"
    );

    // A create that fails after the monitor joined (no guest kernel): nothing left.
    with_path(&mut t, &format!("/{parent}/cg3"));
    let out = root
        .cmd(&["create", "--bundle"])
        .arg(t.path())
        .arg("cg3")
        .env("HULL_GUEST_DIR", "/nonexistent/hull-guest")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        cgroup_dirs(&format!("{parent}/cg3")).is_empty(),
        "left after a failed create"
    );
    root.assert_clean("cg3");

    // `..` is refused before anything starts.
    with_path(&mut t, &format!("/{parent}/../escape"));
    let out = root
        .cmd(&["create", "--bundle"])
        .arg(t.path())
        .arg("cg4")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("linux.cgroupsPath"), "{err}");
    root.assert_clean("cg4");

    for d in cgroup_dirs(&parent) {
        std::fs::remove_dir(&d).unwrap();
    }
}

/// SIGKILL of the rootfs virtiofsd of a running container: the monitor notices (SIGCHLD),
/// stops the VM and the container ends `stopped` as killed (137); nothing is left.
#[test]
fn a_dead_virtiofsd_stops_the_vm() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["sleep", "1000"]);
    // A cold boot: its shares are served by virtiofsd (a clone's by QEMU itself).
    b.edit(|c| c["annotations"] = serde_json::json!({"org.hull.vm.template": "off"}));
    let log = root.path().join(".monitor.log");
    let st = root
        .cmd(&["--log"])
        .arg(&log)
        .args(["run", "--detach", "--bundle"])
        .arg(b.path())
        .arg("fsdead")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let monitor = state(&root, "fsdead")["pid"].as_u64().unwrap() as u32;
    let virtiofsd = common::children(monitor)
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "virtiofsd")
        })
        .expect("the monitor has a virtiofsd child");
    assert!(std::process::Command::new("kill")
        .args(["-9", &virtiofsd.to_string()])
        .status()
        .unwrap()
        .success());
    wait_status(&root, "fsdead", "stopped");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("virtiofsd died"), "{text}");
    let recorded = std::fs::read_to_string(root.path().join("fsdead/state.json")).unwrap();
    let recorded: Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(recorded["exit_status"], 137, "{recorded}");
    assert!(hr(&root, &["delete", "fsdead"]).status.success());
    root.assert_clean("fsdead");
}
