//! Bad input: one line naming the problem, exit 125 (126/127 for the command), and nothing
//! left behind (no container directory, mount, runtime state or process).

mod common;

use common::{Hull, QUICK, VM_TIMEOUT};

#[track_caller]
fn refused(h: &Hull, args: &[&str], code: i32, says: &str) {
    let before = h.containers();
    let out = h.run_with(args, None, VM_TIMEOUT);
    assert_eq!(out.code, Some(code), "{out}");
    // A pull says what it tries first (docker's progress lines); the error is one line.
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Unable to find image") && !l.starts_with("Pulling "))
        .collect();
    assert_eq!(lines.len(), 1, "one line expected\n{out}");
    assert!(lines[0].contains(says), "expected {says:?}\n{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(h.containers(), before, "a container was left\n{out}");
    assert_eq!(common::mounts_below(h.root()), Vec::<String>::new());
}

#[test]
fn bad_input_is_one_line_exit_125_and_leaves_nothing() {
    let h = Hull::new().with_busybox();
    let t = &["true"][..];
    let run = |flags: &[&str], image: &str| -> Vec<String> {
        let mut v: Vec<String> = ["run", "--rm"].iter().map(|s| s.to_string()).collect();
        v.extend(flags.iter().map(|s| s.to_string()));
        v.push(image.into());
        v.extend(t.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            run(&["--pull", "never"], "no-such-image"),
            125,
            "unable to find image \"no-such-image\"",
        ),
        (run(&[], "127.0.0.1:1/nothing/here:1"), 125, "127.0.0.1:1"),
        (run(&[], "Bad:Reference!"), 125, "invalid image reference"),
        (
            run(&["-p", "80"], "busybox"),
            125,
            "\"80\" is not HOST_PORT:CONTAINER_PORT",
        ),
        (run(&["-p", "1:2/sctp"], "busybox"), 125, "unknown protocol"),
        (
            run(&["-p", "70000:80"], "busybox"),
            125,
            "not a port number",
        ),
        (
            run(&["-v", "relative:/x"], "busybox"),
            125,
            "must be absolute",
        ),
        (
            run(&["-v", "/no/such/hull/dir:/x"], "busybox"),
            125,
            "does not exist",
        ),
        (run(&["-v", "/tmp:/x:rx"], "busybox"), 125, "unknown option"),
        (
            run(&["--memory", "1k"], "busybox"),
            125,
            "minimum memory limit",
        ),
        (run(&["--memory", "lots"], "busybox"), 125, "is not a size"),
        (run(&["--cpus", "0"], "busybox"), 125, "range of CPUs"),
        (run(&["-w", "relative"], "busybox"), 125, "absolute path"),
        (
            run(&["-u", "nosuchuser"], "busybox"),
            125,
            "unable to find user nosuchuser",
        ),
        (
            run(&["--network", "host"], "busybox"),
            125,
            "unsupported network",
        ),
        (
            run(&["--network", "none", "-p", "1:2"], "busybox"),
            125,
            "-p needs a network",
        ),
        (
            run(&["--name", "x y"], "busybox"),
            125,
            "invalid container name",
        ),
        (run(&["--no-such-flag"], "busybox"), 125, "--no-such-flag"),
        (
            run(&["-it"], "busybox"),
            125,
            "the input device is not a TTY",
        ),
    ];
    for (args, code, says) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&h, &args, *code, says);
    }
    refused(
        &h,
        &["run", "--rm", "busybox", "no-such-command"],
        127,
        "executable file not found in $PATH",
    );
    refused(
        &h,
        &["run", "--rm", "busybox", "/etc"],
        126,
        "permission denied",
    );

    // A name in use (an exited container keeps it).
    h.ok(&["run", "--name", "taken", "busybox", "true"]);
    refused(
        &h,
        &["run", "--name", "taken", "busybox", "true"],
        125,
        "already in use",
    );
    h.ok(&["rm", "taken"]);

    // Other commands: 1.
    refused(&h, &["rm", "no-such-container"], 1, "no such container");
    refused(
        &h,
        &["exec", "no-such-container", "true"],
        125,
        "no such container",
    );
    refused(&h, &["logs", "no-such-container"], 1, "no such container");
    refused(&h, &["rmi", "no-such-image"], 1, "no such image");
    let out = h.run_with(&["ps", "-a"], None, QUICK).ok();
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
    h.assert_clean();
}
