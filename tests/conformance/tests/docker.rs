//! dockerd (on its own containerd) driving the runtime under test, registered in daemon.json
//! as `hull` and selected with `docker run --runtime hull`. Each test starts its own private
//! daemons ([`Dockerd`]); dropping it removes its containers and stops both daemons.

use std::time::Duration;

use hull_conformance::assert_contains;
use hull_conformance::pty::Pty;
use hull_testkit::engines::{unique_name, Dockerd, Registry};
use hull_testkit::wait::wait_for;

const TERM_TIMEOUT: Duration = Duration::from_secs(120);

/// `docker run --runtime hull --network none EXTRA… IMAGE CMD…`.
fn run_args<'a>(extra: &[&'a str], image: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--runtime", Dockerd::RUNTIME, "--network", "none"];
    a.extend(extra);
    a.push(image);
    a.extend(cmd);
    a
}

fn status(d: &Dockerd, name: &str) -> String {
    d.docker(&["inspect", "--format", "{{.State.Status}}", name])
        .ok()
        .stdout
        .trim()
        .to_owned()
}

/// Starts a detached container that exits 0 on SIGTERM; waits until its trap is set.
fn start_service(d: &Dockerd, image: &str, name: &str) {
    let script = "trap 'exit 0' TERM; touch /tmp/ready; sleep 1000 & wait";
    let out = d
        .docker(&run_args(
            &["-d", "--name", name],
            image,
            &["sh", "-c", script],
        ))
        .ok();
    assert_eq!(
        out.stdout.trim().len(),
        64,
        "docker run -d should print the container ID: {out}"
    );
    wait_for("the container's TERM trap", Duration::from_secs(60), || {
        d.docker(&["exec", name, "test", "-f", "/tmp/ready"])
            .success()
            .then_some(())
    });
    assert_eq!(status(d, name), "running");
}

#[test]
fn run_rm_with_hull_runtime_prints_stdout() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let out = d.docker(&run_args(&["--rm"], image, &["echo", "hi"])).ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
    d.runtime().assert_called("create");
    d.runtime().assert_called("start");
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "--rm should have removed it: {ps}");
}

#[test]
fn imported_rootfs_tarball_runs() {
    let d = Dockerd::start();
    let tar = hull_testkit::image::busybox_image()
        .rootfs_tar()
        .display()
        .to_string();
    d.docker(&["import", &tar, "busybox:imported"]).ok();
    let out = d
        .docker(&run_args(
            &["--rm"],
            "busybox:imported",
            &["/bin/sh", "-c", "echo imported $((1+1))"],
        ))
        .ok();
    assert_eq!(out.stdout, "imported 2\n", "{out}");
}

#[test]
fn run_propagates_exit_code() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    d.docker(&run_args(&["--rm"], image, &["sh", "-c", "exit 7"]))
        .expect_code(7);
    d.docker(&run_args(&["--rm"], image, &["false"]))
        .expect_code(1);
}

#[test]
fn run_interactive_round_trips_piped_stdin() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let input = "first\nsecond line\n";
    let out = d
        .docker_with_input(
            &run_args(&["--rm", "-i"], image, &["cat"]),
            input.as_bytes(),
        )
        .ok();
    assert_eq!(out.stdout, input, "{out}");
}

#[test]
fn exec_output_exit_code_and_tty() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let name = unique_name("exec");
    start_service(&d, image, &name);

    let out = d.docker(&["exec", &name, "echo", "in exec"]).ok();
    assert_eq!(out.stdout, "in exec\n", "{out}");
    d.docker(&["exec", &name, "sh", "-c", "exit 5"])
        .expect_code(5);
    let out = d.docker(&["exec", &name, "cat", "/proc/1/cmdline"]).ok();
    assert!(
        out.stdout.starts_with("sh\0-c\0"),
        "exec should see the container's PID 1: {out}"
    );
    d.runtime().assert_called("exec");

    let mut cmd = d.docker_command();
    cmd.args(["exec", "-it", &name, "tty"]);
    let mut term = Pty::spawn(cmd);
    let (code, transcript) = term.wait(TERM_TIMEOUT);
    assert_eq!(code, 0, "docker exec -it tty failed:\n{transcript:?}");
    assert_contains(&transcript, "/dev/pts/");
}

#[test]
fn stop_delivers_sigterm_then_rm() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let name = unique_name("stop");
    start_service(&d, image, &name);

    let stop = d.docker(&["stop", "--time", "30", &name]).ok();
    assert!(
        stop.elapsed < Duration::from_secs(25),
        "stop did not deliver SIGTERM promptly: {stop}"
    );
    assert_eq!(status(&d, &name), "exited");
    let code = d
        .docker(&["inspect", "--format", "{{.State.ExitCode}}", &name])
        .ok();
    assert_eq!(code.stdout.trim(), "0", "{code}");
    d.docker(&["rm", &name]).ok();
    d.docker(&["inspect", &name]).expect_code(1);
}

#[test]
fn kill_ends_container_with_137() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let name = unique_name("kill");
    start_service(&d, image, &name);

    d.docker(&["kill", &name]).ok();
    let wait = d.docker(&["wait", &name]).ok();
    assert_eq!(wait.stdout.trim(), "137", "{wait}");
    d.runtime().assert_called("kill");
}

#[test]
fn top_pause_and_unpause() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let name = unique_name("top");
    start_service(&d, image, &name);

    let top = d.docker(&["top", &name]).ok();
    assert_contains(&top.stdout, &hull_conformance::top_marker("sleep 1000"));
    d.runtime().assert_called("ps");

    d.docker(&["pause", &name]).ok();
    assert_eq!(status(&d, &name), "paused");
    d.docker(&["unpause", &name]).ok();
    assert_eq!(status(&d, &name), "running");
    let out = d.docker(&["exec", &name, "echo", "alive"]).ok();
    assert_eq!(out.stdout, "alive\n", "{out}");
}

#[test]
fn pull_from_private_registry_and_run() {
    let reg = Registry::start();
    let reference = reg.push_busybox("conformance/busybox");
    let d = Dockerd::start();
    // 127.0.0.0/8 registries are insecure (plain HTTP) for dockerd by default.
    d.docker(&["pull", "--quiet", &reference]).ok();
    let out = d
        .docker(&run_args(&["--rm"], &reference, &["echo", "pulled"]))
        .ok();
    assert_eq!(out.stdout, "pulled\n", "{out}");
}

#[test]
fn update_resizes_the_vm_the_container_sees_it() {
    let d = Dockerd::start();
    let image = d.load_busybox();
    let name = unique_name("update");
    let script = "trap 'exit 0' TERM; sleep 1000 & wait";
    d.docker(&run_args(
        &["-d", "--name", &name, "--memory", "256m", "--cpus", "2"],
        image,
        &["sh", "-c", script],
    ))
    .ok();
    let exec = |cmd: &[&str]| {
        let mut a = vec!["exec", name.as_str()];
        a.extend(cmd);
        d.docker(&a).ok().stdout
    };
    let mem_total_mib = || hull_testkit::mem_total_mib(&exec(&["cat", "/proc/meminfo"]));
    assert_eq!(exec(&["nproc"]).trim(), "2", "--cpus 2: two vCPUs");
    let full = mem_total_mib();

    // containerd's shim sends the resources as JSON on stdin (`update --resources -`).
    d.docker(&["update", "--memory", "192m", "--cpus", "1", &name])
        .ok();
    d.runtime().assert_called("update");
    assert_eq!(exec(&["nproc"]).trim(), "1");
    let shrunk = mem_total_mib();
    assert!(
        (62..=66).contains(&(full - shrunk)),
        "MemTotal {full} → {shrunk} MiB after --memory 256m → 192m"
    );
    d.docker(&["update", "--cpus", "2", &name]).ok();
    assert_eq!(exec(&["nproc"]).trim(), "2");
    assert_eq!(
        mem_total_mib(),
        shrunk,
        "a CPU-only update leaves memory alone"
    );
}
