//! containerd (runc v2 shim) + ctr driving the runtime under test. Each test starts its own
//! private containerd ([`Containerd`]); dropping it kills and deletes every task and stops it.

use std::time::Duration;

use hull_conformance::assert_contains;
use hull_testkit::command::Output;
use hull_testkit::engines::{unique_name, Containerd, Registry};
use hull_testkit::wait::wait_for;

/// `ctr run <runtime flags> EXTRA… IMAGE ID CMD…`.
fn ctr_run(c: &Containerd, extra: &[&str], image: &str, id: &str, cmd: &[&str]) -> Output {
    let flags = c.ctr_run_flags();
    let mut args: Vec<&str> = vec!["run"];
    args.extend(flags.iter().map(String::as_str));
    args.extend(extra);
    args.push(image);
    args.push(id);
    args.extend(cmd);
    c.ctr(&args)
}

/// Status column of `ctr task ls` for `id` (RUNNING, PAUSED, STOPPED…), None if no task.
fn task_status(c: &Containerd, id: &str) -> Option<(u32, String)> {
    let ls = c.ctr(&["task", "ls"]).ok();
    ls.stdout.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| (f[1].parse().unwrap(), f[2].to_owned()))
    })
}

/// `ctr task exec --fifo-dir PRIVATE --exec-id EXEC_ID ID CMD…`.
fn task_exec(c: &Containerd, id: &str, exec_id: &str, cmd: &[&str]) -> Output {
    let fifo = c.fifo_dir().display().to_string();
    let mut args = vec![
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        exec_id,
        id,
    ];
    args.extend(cmd);
    c.ctr(&args)
}

/// Starts `sleep 1000` as a detached task named `id`; returns its PID.
fn start_sleeper(c: &Containerd, image: &str, id: &str) -> u32 {
    ctr_run(c, &["-d"], image, id, &["sleep", "1000"]).ok();
    let (pid, status) =
        task_status(c, id).unwrap_or_else(|| panic!("no task {id} after ctr run -d"));
    assert_eq!(status, "RUNNING");
    assert!(pid > 0);
    pid
}

#[test]
fn ctr_run_rm_prints_stdout() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("echo");
    let out = ctr_run(&c, &["--rm"], image, &id, &["echo", "hi"]).ok();
    assert_eq!(out.stdout, "hi\n", "{out}");
    c.runtime().assert_called("create");
    c.runtime().assert_called("start");
    c.runtime().assert_called("delete");
    // --rm removed the container.
    let ls = c.ctr(&["containers", "ls", "-q"]).ok();
    assert!(!ls.stdout.contains(&id), "{ls}");
}

#[test]
fn ctr_run_propagates_exit_code() {
    let c = Containerd::start();
    let image = c.import_busybox();
    ctr_run(
        &c,
        &["--rm"],
        image,
        &unique_name("exit"),
        &["sh", "-c", "exit 7"],
    )
    .expect_code(7);
}

#[test]
fn ctr_run_pipes_stdin() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let flags = c.ctr_run_flags();
    let id = unique_name("cat");
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(flags.iter().map(String::as_str));
    // `head -n 2`, not `cat`: ctr never closes the task's stdin on EOF (it does not call
    // CloseIO), so the program must end by itself.
    args.extend([image, &id, "head", "-n", "2"]);
    let input = "through the shim\nand back\n";
    let out =
        hull_testkit::command::run_with_input(c.ctr_command().args(&args), input.as_bytes()).ok();
    assert_eq!(out.stdout, input, "{out}");
}

#[test]
fn ctr_pulls_from_private_registry_over_plain_http_and_runs() {
    let reg = Registry::start();
    let reference = reg.push_busybox("conformance/busybox");
    let c = Containerd::start();
    c.ctr(&["image", "pull", "--plain-http", &reference]).ok();
    let out = ctr_run(
        &c,
        &["--rm"],
        &reference,
        &unique_name("pulled"),
        &["echo", "pulled"],
    )
    .ok();
    assert_eq!(out.stdout, "pulled\n", "{out}");
}

#[test]
fn task_exec_runs_with_exec_id() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("exec");
    start_sleeper(&c, image, &id);

    let out = task_exec(&c, &id, "e1", &["echo", "in exec"]).ok();
    assert_eq!(out.stdout, "in exec\n", "{out}");
    task_exec(&c, &id, "e2", &["sh", "-c", "exit 3"]).expect_code(3);
    // The exec'd process shares the container's PID namespace: it sees `sleep` as PID 1.
    let out = task_exec(&c, &id, "e3", &["cat", "/proc/1/cmdline"]).ok();
    assert_eq!(out.stdout, "sleep\u{0}1000\u{0}", "{out}");
    c.runtime().assert_called("exec");
}

#[test]
fn task_ps_lists_the_init_pid() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("ps");
    let pid = start_sleeper(&c, image, &id);

    let ps = c.ctr(&["task", "ps", &id]).ok();
    let pids: Vec<u32> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(
        pids.contains(&pid),
        "task ps should list the init PID {pid}:\n{ps}"
    );
    c.runtime().assert_called("ps");
}

#[test]
fn task_pause_and_resume() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("pause");
    start_sleeper(&c, image, &id);

    c.ctr(&["task", "pause", &id]).ok();
    assert_eq!(task_status(&c, &id).unwrap().1, "PAUSED");
    c.ctr(&["task", "resume", &id]).ok();
    assert_eq!(task_status(&c, &id).unwrap().1, "RUNNING");
    c.runtime().assert_called("pause");
    c.runtime().assert_called("resume");
}

#[test]
fn task_kill_and_delete_report_137() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("kill");
    start_sleeper(&c, image, &id);

    c.ctr(&["task", "kill", "--signal", "SIGKILL", &id]).ok();
    wait_for(
        &format!("task {id} to stop"),
        Duration::from_secs(60),
        || (task_status(&c, &id)?.1 == "STOPPED").then_some(()),
    );
    let del = c.ctr(&["task", "delete", &id]).ok();
    assert_contains(&del.stderr, "137");
    assert!(
        task_status(&c, &id).is_none(),
        "task still listed after delete"
    );
    c.ctr(&["containers", "rm", &id]).ok();
    c.runtime().assert_called("kill");
}

#[test]
fn task_kill_term_is_delivered() {
    let c = Containerd::start();
    let image = c.import_busybox();
    let id = unique_name("term");
    let script = "trap 'exit 4' TERM; touch /tmp/ready; sleep 1000 & wait";
    ctr_run(&c, &["-d"], image, &id, &["sh", "-c", script]).ok();
    // PID 1 ignores TERM until the trap is set: wait for it.
    let mut n = 0;
    wait_for("the task's TERM trap", Duration::from_secs(60), || {
        n += 1;
        let exec_id = format!("ready{n}");
        task_exec(&c, &id, &exec_id, &["test", "-f", "/tmp/ready"])
            .success()
            .then_some(())
    });
    c.ctr(&["task", "kill", &id]).ok(); // SIGTERM by default
    wait_for(
        &format!("task {id} to stop"),
        Duration::from_secs(60),
        || (task_status(&c, &id)?.1 == "STOPPED").then_some(()),
    );
    let del = c.ctr(&["task", "delete", &id]).ok();
    assert_contains(&del.stderr, "exit code 4");
}
