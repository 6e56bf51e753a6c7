//! podman (via conmon) driving the runtime under test. Each test has its own private podman
//! store and config ([`Podman`]); dropping it removes every container it made.

use std::time::Duration;

use hull_conformance::assert_contains;
use hull_conformance::pty::Pty;
use hull_testkit::engines::{unique_name, Podman, Registry};
use hull_testkit::wait::wait_for;

const TERM_TIMEOUT: Duration = Duration::from_secs(120);

/// `run` flags common to every container: no network, the sandbox's rlimits.
fn run_flags() -> Vec<&'static str> {
    let mut f = vec!["--network", "none"];
    f.extend(Podman::ULIMITS);
    f
}

/// `podman run <flags> ARGS…` (ARGS include the image and command).
fn run_args<'a>(extra: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run"];
    a.extend(run_flags());
    a.extend(extra);
    a.extend(rest);
    a
}

/// A container that exits 0 promptly on SIGTERM (PID 1 gets no default signal actions), and
/// creates /tmp/ready once its trap is set.
const SERVICE: [&str; 3] = [
    "sh",
    "-c",
    "trap 'exit 0' TERM; touch /tmp/ready; sleep 1000 & wait",
];

fn start_service(p: &Podman, name: &str) {
    let mut args = run_args(&["-d", "--name", name, Podman::IMAGE], &[]);
    args.extend(SERVICE);
    let id = p.podman(&args).ok().stdout.trim().to_owned();
    assert_eq!(
        id.len(),
        64,
        "podman run -d should print the container ID, got {id:?}"
    );
    assert_eq!(p.status(name), "running");
    // Signals sent before the trap is set would be ignored by PID 1: wait for it.
    wait_for("the container's TERM trap", Duration::from_secs(60), || {
        p.podman(&["exec", name, "test", "-f", "/tmp/ready"])
            .success()
            .then_some(())
    });
}

#[test]
fn run_rm_prints_exact_stdout() {
    let p = Podman::new();
    let out = p
        .podman(&run_args(
            &["--rm", Podman::IMAGE],
            &["echo", "hello from podman"],
        ))
        .ok();
    assert_eq!(out.stdout, "hello from podman\n", "{out}");
    p.runtime().assert_called("create");
    p.runtime().assert_called("start");
    // podman passes JSON logging to runtimes declared in runtime_supports_json.
    p.runtime().assert_called("--log-format=json");
    // --rm removed it.
    let ps = p.podman(&["ps", "-aq"]).ok();
    assert_eq!(ps.stdout.trim(), "", "{ps}");
}

#[test]
fn run_interactive_round_trips_piped_stdin() {
    let p = Podman::new();
    let input = "line one\nline two\n\u{e9}t\u{e9} \t tabs\n";
    let out = p
        .podman_with_input(
            &run_args(&["--rm", "-i", Podman::IMAGE], &["cat"]),
            input.as_bytes(),
        )
        .ok();
    assert_eq!(out.stdout, input, "{out}");
}

#[test]
fn run_propagates_exit_code() {
    let p = Podman::new();
    p.podman(&run_args(&["--rm", Podman::IMAGE], &["sh", "-c", "exit 7"]))
        .expect_code(7);
    p.podman(&run_args(&["--rm", Podman::IMAGE], &["false"]))
        .expect_code(1);
}

#[test]
fn run_separates_stdout_and_stderr() {
    let p = Podman::new();
    let out = p
        .podman(&run_args(
            &["--rm", Podman::IMAGE],
            &["sh", "-c", "echo to-out; echo to-err >&2"],
        ))
        .ok();
    assert_eq!(out.stdout, "to-out\n", "{out}");
    assert_contains(&out.stderr, "to-err");
}

#[test]
fn detached_container_exec_tty_stop_and_rm() {
    let p = Podman::new();
    let name = unique_name("svc");
    start_service(&p, &name);

    let out = p.podman(&["exec", &name, "echo", "in exec"]).ok();
    assert_eq!(out.stdout, "in exec\n", "{out}");
    p.podman(&["exec", &name, "sh", "-c", "exit 5"])
        .expect_code(5);
    p.runtime().assert_called("exec");

    // exec -it under a real terminal: the process sees a pty inside the container.
    let mut cmd = p.command();
    cmd.args(["exec", "-it", &name, "tty"]);
    let mut term = Pty::spawn(cmd);
    let (code, transcript) = term.wait(TERM_TIMEOUT);
    assert_eq!(code, 0, "exec -it tty failed:\n{transcript:?}");
    assert_contains(&transcript, "/dev/pts/");

    // stop sends SIGTERM; the trap makes it exit 0 well before the 30 s kill timeout.
    let stop = p.podman(&["stop", "--time", "30", &name]).ok();
    assert!(
        stop.elapsed < Duration::from_secs(25),
        "stop did not deliver SIGTERM promptly: {stop}"
    );
    assert_eq!(p.status(&name), "exited");
    let code = p
        .podman(&["inspect", "--format", "{{.State.ExitCode}}", &name])
        .ok();
    assert_eq!(code.stdout.trim(), "0", "{code}");

    p.podman(&["rm", &name]).ok();
    p.podman(&["container", "exists", &name]).expect_code(1);
    p.runtime().assert_called("delete");
}

#[test]
fn run_it_drives_a_shell_through_a_terminal() {
    let p = Podman::new();
    let mut cmd = p.command();
    cmd.args(run_args(&["--rm", "-it", Podman::IMAGE], &["sh"]));
    let mut term = Pty::spawn(cmd);
    let prompt = term.expect("# ", TERM_TIMEOUT);
    term.send("echo $((6*7))\r");
    let after = term.expect_from(prompt, "42", TERM_TIMEOUT);
    term.expect_from(after, "# ", TERM_TIMEOUT);
    term.send("exit 3\r");
    let (code, transcript) = term.wait(TERM_TIMEOUT);
    assert_eq!(
        code, 3,
        "podman run -it should exit with the shell's status:\n{transcript:?}"
    );
    // The typed command is echoed back by the terminal, the result printed on its own line.
    assert_contains(&transcript, "echo $((6*7))");
    assert!(
        transcript.lines().any(|l| l.trim() == "42"),
        "{transcript:?}"
    );
}

#[test]
fn pause_and_unpause_change_status() {
    let p = Podman::new();
    let name = unique_name("pause");
    start_service(&p, &name);

    p.podman(&["pause", &name]).ok();
    assert_eq!(p.status(&name), "paused");
    p.runtime().assert_called("pause");
    p.podman(&["unpause", &name]).ok();
    assert_eq!(p.status(&name), "running");
    p.runtime().assert_called("resume");
    let out = p.podman(&["exec", &name, "echo", "alive"]).ok();
    assert_eq!(out.stdout, "alive\n", "{out}");
}

#[test]
fn kill_ends_container_with_137() {
    let p = Podman::new();
    let name = unique_name("kill");
    start_service(&p, &name);

    p.podman(&["kill", &name]).ok(); // SIGKILL by default
    let wait = p.podman(&["wait", &name]).ok();
    assert_eq!(wait.stdout.trim(), "137", "{wait}");
    assert_eq!(p.status(&name), "exited");
    let code = p
        .podman(&["inspect", "--format", "{{.State.ExitCode}}", &name])
        .ok();
    assert_eq!(code.stdout.trim(), "137", "{code}");
    p.runtime().assert_called("kill");
}

#[test]
fn kill_with_signal_delivers_it() {
    let p = Podman::new();
    let name = unique_name("sig");
    start_service(&p, &name);
    p.podman(&["kill", "--signal", "TERM", &name]).ok();
    let wait = p.podman(&["wait", &name]).ok();
    assert_eq!(wait.stdout.trim(), "0", "trap on TERM exits 0: {wait}");
}

#[test]
fn top_and_ps_list_the_container_process() {
    let p = Podman::new();
    let name = unique_name("top");
    let mut args = run_args(&["-d", "--name", &name, Podman::IMAGE], &[]);
    args.extend(["sleep", "1000"]);
    p.podman(&args).ok();

    let top = p.podman(&["top", &name]).ok();
    assert_contains(&top.stdout, &hull_conformance::top_marker("sleep 1000"));

    let ps = p.podman(&["ps", "--format", "{{.Names}} {{.Status}}"]).ok();
    let line = ps
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} not in ps:\n{ps}"));
    assert!(line.contains("Up"), "{ps}");

    p.podman(&["rm", "--force", "--time", "0", &name]).ok();
    let ps = p.podman(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    assert!(!ps.stdout.contains(&name), "{ps}");
}

#[test]
fn pull_from_private_registry_and_run() {
    let reg = Registry::start();
    let reference = reg.push_busybox("conformance/busybox");
    let p = Podman::new();
    p.podman(&["pull", "--quiet", "--tls-verify=false", &reference])
        .ok();
    let out = p
        .podman(&run_args(&["--rm", &reference], &["echo", "pulled"]))
        .ok();
    assert_eq!(out.stdout, "pulled\n", "{out}");
}

/// MemTotal in the container, MiB (what the guest kernel has).
fn mem_total_mib(exec: impl Fn(&[&str]) -> String) -> u64 {
    hull_testkit::mem_total_mib(&exec(&["cat", "/proc/meminfo"]))
}

#[test]
fn update_resizes_the_vm_the_container_sees_it() {
    let p = Podman::new();
    let name = unique_name("update");
    let mut args = run_args(
        &[
            "-d",
            "--name",
            &name,
            "--memory",
            "256m",
            "--cpus",
            "2",
            // Room to grow: the VM gets 640 MiB of RAM, its balloon holds what is above 256m.
            "--annotation",
            "org.hull.vm.max_memory_mib=640",
        ],
        &[Podman::IMAGE],
    );
    args.extend(SERVICE);
    p.podman(&args).ok();
    let exec = |cmd: &[&str]| {
        let mut a = vec!["exec", name.as_str()];
        a.extend(cmd);
        p.podman(&a).ok().stdout
    };
    assert_eq!(exec(&["nproc"]).trim(), "2", "--cpus 2: two vCPUs");
    let full = mem_total_mib(exec);

    // 256m → 192m and 2 → 1 CPUs: the guest has 64 MiB less and one CPU online.
    p.podman(&["update", "--memory", "192m", "--cpus", "1", &name])
        .ok();
    p.runtime().assert_called("update");
    assert_eq!(exec(&["nproc"]).trim(), "1");
    let shrunk = mem_total_mib(exec);
    assert!(
        (62..=66).contains(&(full - shrunk)),
        "MemTotal {full} → {shrunk} MiB after --memory 256m → 192m"
    );
    // And back.
    p.podman(&["update", "--memory", "256m", "--cpus", "2", &name])
        .ok();
    assert_eq!(exec(&["nproc"]).trim(), "2");
    assert_eq!(mem_total_mib(exec), full);

    // Up to the VM's maximum: 256m → 512m, 256 MiB more.
    p.podman(&["update", "--memory", "512m", &name]).ok();
    assert_eq!(mem_total_mib(exec) - full, 256);
    // More than its maximum: refused, nothing changed.
    let out = p.podman(&["update", "--memory", "2g", &name]);
    assert!(
        !out.success(),
        "--memory 2g on a VM of at most 640 MiB: {out}"
    );
    assert_contains(&out.stderr, "max_memory_mib");
    assert_eq!(mem_total_mib(exec) - full, 256);
    assert_eq!(p.status(&name), "running");
}

#[test]
fn stats_reads_the_vms_cgroup_and_rm_removes_it() {
    let p = Podman::new();
    let name = unique_name("stats");
    start_service(&p, &name);
    let id = p.podman(&["inspect", "--format", "{{.Id}}", &name]).ok();
    let id = id.stdout.trim();
    let cgroups_path = p.runtime().bundle_config(id)["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or_else(|| panic!("podman gave no linux.cgroupsPath"))
        .to_owned();
    // The pid-file PID (the monitor) and the VM's processes (QEMU...) are in the engine's
    // cgroup, as runc puts a container's processes there.
    let dirs = hull_testkit::cgroup_dirs(&cgroups_path);
    assert!(
        !dirs.is_empty(),
        "no cgroup {cgroups_path} in any hierarchy"
    );
    let pid = p.pid(&name);
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap();
        let procs: Vec<&str> = procs.split_whitespace().collect();
        assert!(
            procs.contains(&pid.to_string().as_str()),
            "{}: {procs:?}",
            d.display()
        );
        assert!(
            procs.len() >= 2,
            "the VM's processes in {}: {procs:?}",
            d.display()
        );
    }

    // podman stats reads it: the VM's memory and CPU time on the host.
    let out = p
        .podman(&["stats", "--no-stream", "--format", "json", &name])
        .ok();
    let stats: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let s = &stats[0];
    let usage = s["mem_usage"].as_str().unwrap();
    let mb: f64 = usage
        .split_whitespace()
        .next()
        .and_then(|u| u.trim_end_matches("MB").parse().ok())
        .unwrap_or_else(|| panic!("mem_usage {usage:?} is not in MB"));
    assert!(mb > 20.0, "a VM uses more than {mb} MB of the host: {s}");
    let cpu = s["cpu_time"].as_str().unwrap();
    assert!(cpu.ends_with('s') && cpu != "0s", "{s}");

    // The runtime's own view: the guest's memory use and limit.
    // (podman as root passes no --root: the runtime's default state root.)
    let events = std::process::Command::new(p.runtime().real())
        .args(["events", "--stats", id])
        .output()
        .unwrap();
    assert!(events.status.success(), "{events:?}");
    let ev: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    assert!(
        ev["data"]["memory"]["usage"]["limit"].as_u64().unwrap() > 100 << 20,
        "{ev}"
    );

    p.podman(&["rm", "-f", &name]).ok();
    let left: Vec<_> = dirs.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroups left after rm: {left:?}");
}

#[test]
fn default_seccomp_profile_is_enforced() {
    // podman sends its default seccomp profile (linux.seccomp) unless told otherwise.
    let p = Podman::new();
    let out = p
        .podman(&run_args(
            &["--rm", Podman::IMAGE],
            &["sh", "-c", "grep Seccomp: /proc/self/status; echo works"],
        ))
        .ok();
    let seccomp = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    assert_eq!(seccomp, Some("2"), "{out}");
    assert!(out.stdout.lines().any(|l| l == "works"), "{out}");
}
