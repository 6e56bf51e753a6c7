//! Detached containers: `run -d`, `ps`, `logs`, `exec`, `stop`, `kill`, `rm`; published ports.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{free_port, Hull, QUICK, VM_TIMEOUT};
use hull_testkit::wait::wait_for;

#[test]
fn detached_container_logs_exec_stop_rm() {
    let h = Hull::new().with_busybox();
    let out = h.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo started; trap 'echo stopping; exit 0' TERM; while true; do sleep 0.2; done",
    ]);
    let id = out.stdout.trim().to_string();
    assert!(
        id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{out}"
    );
    wait_for("the container's first output", VM_TIMEOUT, || {
        let out = h.run_with(&["logs", "web"], None, QUICK).ok();
        (out.stdout == "started\n").then_some(())
    });

    let v = h.ps_entry("web").expect("web in ps");
    assert_eq!(v["ID"], id[..12], "{v}");
    assert_eq!(v["State"], "running", "{v}");
    assert_eq!(v["Image"], "busybox", "{v}");
    assert!(v["Status"].as_str().unwrap().starts_with("Up "), "{v}");
    let table = h.run_with(&["ps"], None, QUICK).ok();
    assert!(table.stdout.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(table.stdout.contains(&id[..12]), "{table}");

    // exec: by name or id prefix; exit code, env, working directory, user.
    let out = h.run(&["exec", "web", "sh", "-c", "echo in-exec; exit 3"]);
    assert_eq!(out.code, Some(3), "{out}");
    assert_eq!(out.stdout, "in-exec\n", "{out}");
    let out = h.ok(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "nobody",
        &id[..8],
        "sh",
        "-c",
        "echo $X; pwd; id -u",
    ]);
    assert_eq!(out.stdout, "1\n/tmp\n65534\n", "{out}");
    let out = h.run(&["exec", "web", "no-such-command"]);
    assert_eq!(out.code, Some(127), "{out}");
    assert!(out.stderr.contains("executable file not found"), "{out}");
    let out = h.run_with(&["exec", "-i", "web", "cat"], Some(b"piped\n"), VM_TIMEOUT);
    assert_eq!(out.stdout, "piped\n", "{out}");
    let out = h.ok(&["exec", "-t", "web", "tty"]);
    assert!(out.stdout.starts_with("/dev/pts/"), "{out}");

    // rm refuses a running container.
    let out = h.run_with(&["rm", "web"], None, QUICK);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("running"), "{out}");

    let out = h.ok(&["stop", "web"]);
    assert_eq!(out.stdout, "web\n", "{out}");
    let v = h.ps_entry("web").expect("web in ps -a");
    assert_eq!(v["State"], "exited", "{v}");
    assert!(
        v["Status"].as_str().unwrap().starts_with("Exited (0)"),
        "{v}"
    );
    assert!(h.run_with(&["ps"], None, QUICK).ok().stdout.lines().count() == 1);
    let out = h.run_with(&["logs", "-f", "web"], None, QUICK).ok();
    assert_eq!(out.stdout, "started\nstopping\n", "{out}");
    let out = h.run_with(&["exec", "web", "true"], None, QUICK);
    assert_eq!(out.code, Some(125), "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
    h.ok(&["rm", "web"]);
    h.assert_clean();
}

#[test]
fn stop_kills_after_the_timeout_kill_signals_and_rm_force() {
    let h = Hull::new().with_busybox();
    // PID 1 without a handler ignores SIGTERM: stop must fall back to SIGKILL.
    h.ok(&[
        "run", "-d", "--name", "stubborn", "busybox", "sleep", "1000",
    ]);
    h.wait_state("stubborn", "running");
    let out = h.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(out.elapsed < Duration::from_secs(60), "{out}");
    let v = h.ps_entry("stubborn").unwrap();
    assert!(
        v["Status"].as_str().unwrap().starts_with("Exited (137)"),
        "{v}"
    );

    h.ok(&[
        "run",
        "-d",
        "--name",
        "hup",
        "busybox",
        "sh",
        "-c",
        "trap 'echo hup; exit 4' HUP; while true; do sleep 0.1; done",
    ]);
    h.wait_state("hup", "running");
    h.ok(&["kill", "-s", "HUP", "hup"]);
    h.wait_state("hup", "exited");
    let v = h.ps_entry("hup").unwrap();
    assert!(
        v["Status"].as_str().unwrap().starts_with("Exited (4)"),
        "{v}"
    );

    h.ok(&["run", "-d", "--name", "forced", "busybox", "sleep", "1000"]);
    h.ok(&["rm", "-f", "forced", "stubborn", "hup"]);
    h.assert_clean();

    // -d --rm: gone by itself once it exits.
    h.ok(&["run", "-d", "--rm", "busybox", "true"]);
    wait_for("the --rm container to be removed", VM_TIMEOUT, || {
        h.containers().is_empty().then_some(())
    });
    h.assert_clean();
}

#[test]
fn published_ports_reach_a_server_in_the_vm() {
    let h = Hull::new().with_busybox();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:8080");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "httpd",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "mkdir /www && echo hello-from-the-vm > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    let body = wait_for("the published port to answer", VM_TIMEOUT, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.contains("hello-from-the-vm").then_some(text)
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let v = h.ps_entry("httpd").unwrap();
    assert_eq!(v["Ports"], format!("127.0.0.1:{port}->8080/tcp"), "{v}");
    h.ok(&["rm", "-f", "httpd"]);
    h.assert_clean();
}
