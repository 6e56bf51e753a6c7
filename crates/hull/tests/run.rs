//! `hull run` in real VMs: output and exit codes, the image's config and the flags that
//! change it, volumes, private root file systems, terminals and stdin.

mod common;

use std::fs;

use common::{app_layout, Hull, QUICK, VM_TIMEOUT};
use hull_testkit::wait::wait_for;

#[test]
fn run_rm_prints_the_output_passes_the_exit_code_and_leaves_nothing() {
    let h = Hull::new().with_busybox();
    let out = h.ok(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(out.stdout, "hi\n", "{out}");
    h.assert_clean();

    let out = h.run(&["run", "--rm", "busybox", "sh", "-c", "echo err >&2; exit 7"]);
    assert_eq!(out.code, Some(7), "{out}");
    assert_eq!(out.stderr, "err\n", "{out}");
    h.assert_clean();
}

#[test]
fn the_image_config_is_applied_and_flags_override_it() {
    let h = Hull::new();
    h.load(&app_layout(), "app");

    // Entrypoint + Cmd, Env, WorkingDir, User (with its supplementary group) of the image.
    let out = h.ok(&["run", "--rm", "app"]);
    let s = &out.stdout;
    assert!(s.contains("args: default-arg\n"), "{out}");
    assert!(s.contains("greeting: from-image\n"), "{out}");
    assert!(s.contains("cwd: /app/work\n"), "{out}");
    assert!(s.contains("uid=1000(app) gid=1000(app)"), "{out}");
    assert!(s.contains("50(staff)"), "{out}");

    // Arguments after the image replace Cmd; -e, -w, -u replace the image's.
    let out = h.ok(&[
        "run",
        "--rm",
        "-e",
        "GREETING=from-flag",
        "-w",
        "/made/by/hull",
        "-u",
        "0:0",
        "app",
        "mine",
        "too",
    ]);
    let s = &out.stdout;
    assert!(s.contains("args: mine too\n"), "{out}");
    assert!(s.contains("greeting: from-flag\n"), "{out}");
    assert!(s.contains("cwd: /made/by/hull\n"), "{out}");
    assert!(s.contains("uid=0(root) gid=0(root)"), "{out}");
    let out = h.ok(&["run", "--rm", "-u", "nobody", "app"]);
    assert!(out.stdout.contains("uid=65534(nobody)"), "{out}");

    // --entrypoint drops the image's Cmd. The second layer replaced /etc/motd and deleted
    // /bin/vi (a whiteout) of the first.
    let out = h.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "app",
        "-c",
        "cat /etc/motd; test -e /bin/vi || echo vi-deleted; hostname; cat /etc/resolv.conf",
    ]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["motd of layer 2", "vi-deleted"], "{out}");
    assert_eq!(lines[2].len(), 12, "hostname is the short id: {out}");
    assert_eq!(lines[3], "nameserver 10.0.2.3", "{out}");

    // --env-file, --hostname, -e KEY from hull's environment.
    let envf = h.root().join("env.list");
    fs::write(&envf, "# comment\nFROM_FILE=yes\n").unwrap();
    let out = h.run_with(
        &[
            "run",
            "--rm",
            "--env-file",
            envf.to_str().unwrap(),
            "-e",
            "PASSED",
            "--hostname",
            "box",
            "--entrypoint",
            "",
            "app",
            "sh",
            "-c",
            "echo $FROM_FILE $PASSED; hostname",
        ],
        None,
        VM_TIMEOUT,
    );
    assert_eq!(out.code, Some(0), "{out}");
    // PASSED is not set for hull: dropped, as docker does.
    assert_eq!(out.stdout, "yes\nbox\n", "{out}");
    h.assert_clean();
}

#[test]
fn annotations_go_into_the_config_and_bad_ones_are_refused() {
    let h = Hull::new().with_busybox();
    // Refused by the flag's parser: one line naming the value, exit 125, nothing created.
    for (value, says) in [
        ("novalue", "invalid annotation \"novalue\": no '='"),
        ("", "invalid annotation \"\": no '='"),
        ("=v", "invalid annotation \"=v\": the key is empty"),
    ] {
        let out = h.run_with(
            &[
                "run",
                "--rm",
                "--annotation",
                "a=1",
                "--annotation",
                value,
                "busybox",
                "true",
            ],
            None,
            QUICK,
        );
        assert_eq!(out.code, Some(125), "{out}");
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected\n{out}");
        assert!(lines[0].starts_with("hull: "), "{out}");
        assert!(lines[0].contains(says), "expected {says:?}\n{out}");
        assert!(lines[0].contains("--annotation"), "{out}");
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(h.containers(), Vec::<String>::new(), "{out}");
        assert_eq!(common::mounts_below(h.root()), Vec::<String>::new());
    }

    // In config.json as given: split at the first '=', an empty value kept, the last of a key
    // winning.
    h.ok(&[
        "run",
        "--name",
        "annotated",
        "--annotation",
        "com.example.a=1",
        "--annotation",
        "com.example.empty=",
        "--annotation",
        "com.example.a=x=y",
        "busybox",
        "true",
    ]);
    let inspect = h.run_with(&["inspect", "annotated"], None, QUICK).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let bundle = v[0]["Bundle"].as_str().unwrap().to_string();
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{bundle}/config.json")).unwrap()).unwrap();
    assert_eq!(
        config["annotations"],
        serde_json::json!({"com.example.a": "x=y", "com.example.empty": ""}),
        "{config}"
    );
    h.ok(&["rm", "annotated"]);
    h.assert_clean();
}

#[test]
fn volumes_share_files_with_the_host_both_ways() {
    let h = Hull::new().with_busybox();
    let vol = h.root().join("vol");
    fs::create_dir(&vol).unwrap();
    fs::write(vol.join("f"), "one\n").unwrap();
    let spec = format!("{}:/data", vol.display());
    let out = h.ok(&[
        "run",
        "-d",
        "--name",
        "vol",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo from-the-container > /data/out; \
         while [ ! -e /data/go ]; do sleep 0.1; done; cat /data/f",
    ]);
    assert_eq!(out.stdout.trim().len(), 64, "{out}");
    // The container's write is on the host...
    wait_for("the container's write on the host", VM_TIMEOUT, || {
        (fs::read_to_string(vol.join("out")).ok()? == "from-the-container\n").then_some(())
    });
    // ...and the host's edit in the container.
    fs::write(vol.join("f"), "two\n").unwrap();
    fs::write(vol.join("go"), "").unwrap();
    h.wait_state("vol", "exited");
    let out = h.run_with(&["logs", "vol"], None, QUICK).ok();
    assert_eq!(out.stdout, "one\ntwo\n", "{out}");
    h.ok(&["rm", "vol"]);

    // Read-only.
    let ro = format!("{}:/data:ro", vol.display());
    let out = h.run(&[
        "run",
        "--rm",
        "-v",
        &ro,
        "busybox",
        "sh",
        "-c",
        "cat /data/f; echo x > /data/new",
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "two\n", "{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!vol.join("new").exists());
    h.assert_clean();
}

#[test]
fn containers_of_one_image_do_not_see_each_others_writes() {
    let h = Hull::new().with_busybox();
    let out = h.ok(&[
        "run",
        "--name",
        "w1",
        "busybox",
        "sh",
        "-c",
        "echo one > /etc/written; rm /bin/vi",
    ]);
    assert_eq!(out.stdout, "", "{out}");
    let out = h.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat /etc/written 2>/dev/null || echo absent; test -e /bin/vi && echo vi-here",
    ]);
    assert_eq!(out.stdout, "absent\nvi-here\n", "{out}");
    // The write is in w1's own upper layer (kept until rm), not in the image's layers.
    let inspect = h.run_with(&["inspect", "w1"], None, QUICK).ok();
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let upper = v[0]["GraphDriver"]["Data"]["UpperDir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        fs::read_to_string(format!("{upper}/etc/written")).unwrap(),
        "one\n"
    );
    assert_eq!(v[0]["State"]["Status"], "exited", "{inspect}");
    assert_eq!(v[0]["State"]["ExitCode"], 0, "{inspect}");
    let layers = h.root().join("layers");
    let found = common::sh(&format!("find '{}' -name written", layers.display()));
    assert_eq!(found, "", "the image's layers were written to");
    h.ok(&["rm", "w1"]);
    h.assert_clean();
}

#[test]
fn terminal_and_stdin() {
    let h = Hull::new().with_busybox();
    // -t without a terminal of our own: hull relays the container's.
    let out = h.ok(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "tty; echo $TERM",
    ]);
    assert_eq!(out.stdout, "/dev/pts/0\r\nxterm\r\n", "{out}");
    // -i passes stdin; without -i the container's stdin is empty.
    let out = h.run_with(
        &["run", "--rm", "-i", "busybox", "sh"],
        Some(b"echo from-stdin; exit 5\n"),
        VM_TIMEOUT,
    );
    assert_eq!(out.code, Some(5), "{out}");
    assert_eq!(out.stdout, "from-stdin\n", "{out}");
    let out = h.run_with(
        &["run", "--rm", "busybox", "sh", "-c", "cat; echo done"],
        Some(b"not for the container\n"),
        VM_TIMEOUT,
    );
    assert_eq!(out.stdout, "done\n", "{out}");
    h.assert_clean();
}

#[test]
fn signals_to_hull_run_reach_the_container() {
    let h = Hull::new().with_busybox();
    let log = h.root().join("out");
    let mut child = h.spawn(
        &[
            "run",
            "--rm",
            "--name",
            "sig",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ],
        &log,
    );
    wait_for("the container to run", VM_TIMEOUT, || {
        fs::read_to_string(&log)
            .ok()?
            .contains("ready")
            .then_some(())
    });
    // A foreground container is a container like any other: exec works on it.
    let out = h.ok(&["exec", "sig", "echo", "exec-works"]);
    assert_eq!(out.stdout, "exec-works\n", "{out}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_for("hull run to exit", VM_TIMEOUT, || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(3));
    assert_eq!(fs::read_to_string(&log).unwrap(), "ready\ngot-term\n");
    h.assert_clean();
}

/// `hull run -it` on a terminal of its own (a pty the test holds): what is typed reaches the
/// container's shell, and a window-size change reaches the container's terminal.
#[test]
fn run_it_on_a_terminal_passes_input_and_window_size_changes() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};

    let h = Hull::new().with_busybox();
    let size = |rows: u16, cols: u16| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(24, 80)), None).unwrap();
    let slave = fs::File::from(pty.slave);
    let mut child = h
        .cmd(&["run", "--rm", "-it", "busybox", "sh"])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = fs::File::from(pty.master);
    let seen = Arc::new(Mutex::new(String::new()));
    let reader = {
        let mut m = master.try_clone().unwrap();
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let wait_output = |what: &str| {
        let end = std::time::Instant::now() + VM_TIMEOUT;
        while !seen.lock().unwrap().contains(what) {
            let text = seen.lock().unwrap().clone();
            assert!(
                std::time::Instant::now() < end,
                "timed out waiting for {what:?} from the container; the terminal showed {text:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    master.write_all(b"stty size\n").unwrap();
    wait_output("24 80");
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size(40, 120)) };
    assert_eq!(r, 0);
    // The relay polls the size: ask until the container's terminal has it (the answer to
    // one try is seen by the next).
    wait_for("the new window size in the container", VM_TIMEOUT, || {
        if seen.lock().unwrap().contains("40 120") {
            return Some(());
        }
        master.write_all(b"stty size\n").ok();
        None
    });
    master.write_all(b"exit 3\n").unwrap();
    let status = wait_for("hull run to exit", VM_TIMEOUT, || {
        child.try_wait().ok().flatten()
    });
    assert_eq!(status.code(), Some(3), "{}", seen.lock().unwrap());
    drop(master);
    let _ = reader.join();
    h.assert_clean();
}
