//! `linux.seccomp` enforced in the guest (real VMs): errno rules, an allow-list with a later rule
//! winning, argument conditions, refusal of seccomp notify, and the process's seccomp state.

mod common;

use common::{run, Bundle, Root};
use serde_json::{json, Value};

/// What a busybox shell running small scripts needs (an allow-list profile's base).
const BUSYBOX_SYSCALLS: &[&str] = &[
    "access",
    "arch_prctl",
    "brk",
    "chdir",
    "clock_gettime",
    "clock_nanosleep",
    "clone",
    "clone3",
    "close",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fcntl",
    "fork",
    "fstat",
    "futex",
    "getcwd",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getrusage",
    "gettid",
    "gettimeofday",
    "getuid",
    "ioctl",
    "kill",
    "lseek",
    "lstat",
    "madvise",
    "mkdir",
    "mkdirat",
    "mmap",
    "mprotect",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "prlimit64",
    "pwrite64",
    "read",
    "readlink",
    "readlinkat",
    "readv",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sched_getaffinity",
    "set_robust_list",
    "set_tid_address",
    "setpgid",
    "sigaltstack",
    "stat",
    "statx",
    "sysinfo",
    "tgkill",
    "time",
    "times",
    "umask",
    "uname",
    "utimensat",
    "vfork",
    "wait4",
    "waitid",
    "write",
    "writev",
];

fn status_field<'a>(out: &'a str, field: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim()))
}

#[test]
fn errno_rule_refuses_mkdir_only_and_the_process_shows_the_filter() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; touch /tmp/f && ls /tmp && \
         mkdir /tmp/x; echo mkdir=$?",
    ]);
    b.edit(|c| {
        // Without no_new_privs the filters go on before the capabilities are dropped.
        c["process"]["noNewPrivileges"] = json!(false);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        });
    });
    let out = run(&root, &b, "sc-mkdir", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    assert_eq!(status_field(&so, "Seccomp:"), Some("2"), "{out}");
    assert_eq!(status_field(&so, "NoNewPrivs:"), Some("0"), "{out}");
    assert!(so.lines().any(|l| l == "f"), "touch and ls work: {out}");
    assert!(so.contains("mkdir=1"), "{out}");
    assert!(
        out.stderr_str().contains("Operation not permitted"),
        "{out}"
    );
    root.assert_clean("sc-mkdir");
}

#[test]
fn allow_list_with_a_later_errno_rule_winning() {
    let root = Root::new();
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; echo \"sys=[$(uname -s)]\"; \
         mkdir /tmp/x; echo > /tmp/f; chmod 600 /tmp/f; echo done",
    ]);
    b.edit(|c| {
        // runc's default spec: noNewPrivileges true, so the filters go on right before execve.
        assert_eq!(c["process"]["noNewPrivileges"], true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"names": BUSYBOX_SYSCALLS, "action": "SCMP_ACT_ALLOW"},
                {"names": ["uname", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
            ]
        });
    });
    let out = run(&root, &b, "sc-list", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    let se = out.stderr_str();
    assert_eq!(status_field(&so, "Seccomp:"), Some("2"), "{out}");
    assert_eq!(status_field(&so, "NoNewPrivs:"), Some("1"), "{out}");
    // busybox uname ignores a failing uname(2): empty fields.
    assert!(so.contains("sys=[]"), "uname(2) must fail: {out}");
    // The later rule (ENOSYS) wins over the allow-list; chmod is not listed: the default EPERM.
    assert!(
        se.contains("mkdir: can't create directory '/tmp/x': Function not implemented"),
        "{out}"
    );
    assert!(
        se.contains("chmod: /tmp/f: Operation not permitted"),
        "{out}"
    );
    assert!(so.contains("done"), "{out}");
    root.assert_clean("sc-list");
}

#[test]
fn argument_conditions_select_the_calls() {
    let root = Root::new();
    // kill(2) is refused unless its signal (argument 1) is 0: probing works, killing does not.
    let mut b = Bundle::busybox(&[
        "sh",
        "-c",
        "sleep 100 & p=$!; kill -0 $p; echo probe=$?; kill -9 $p; echo kill=$?",
    ]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_NE"}]}
            ]
        });
    });
    let out = run(&root, &b, "sc-args", None);
    assert_eq!(out.code, Some(0), "{out}");
    let so = out.stdout_str();
    assert!(so.contains("probe=0"), "{out}");
    assert!(so.contains("kill=1"), "{out}");
    assert!(
        out.stderr_str().contains("Operation not permitted"),
        "{out}"
    );
    root.assert_clean("sc-args");
}

#[test]
fn seccomp_notify_is_refused_and_nothing_is_left() {
    let root = Root::new();
    let mut b = Bundle::busybox(&["true"]);
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/seccomp-agent.sock",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        });
    });
    let out = run(&root, &b, "sc-notify", None);
    assert_eq!(out.code, Some(3), "refused as an invalid bundle: {out}");
    assert!(
        out.stderr_str().contains("linux.seccomp.listenerPath"),
        "{out}"
    );
    root.assert_clean("sc-notify");
}

#[test]
fn features_report_seccomp() {
    let root = Root::new();
    let out = root.cmd(&["features"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let f: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &f["linux"]["seccomp"];
    assert_eq!(s["enabled"], true, "{s}");
    let has = |k: &str, v: &str| s[k].as_array().unwrap().iter().any(|x| x == v);
    assert!(has("actions", "SCMP_ACT_ERRNO") && !has("actions", "SCMP_ACT_NOTIFY"));
    assert!(has("operators", "SCMP_CMP_MASKED_EQ"));
    assert!(has("archs", "SCMP_ARCH_X86_64"));
}
