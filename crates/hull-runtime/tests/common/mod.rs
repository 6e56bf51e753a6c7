//! Helpers for tests that boot real VMs through `hull-runtime`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use hull_testkit::bundle::Bundle;
use hull_testkit::wait::wait_for;

/// Deadline for one VM-booting command (TCG on 2 shared cores can be slow; this only bounds a hang).
pub const VM_TIMEOUT: Duration = Duration::from_secs(180);

/// A private state root; on drop it checks (and cleans) what a test left behind.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        // Short path: unix socket paths inside it must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("hr")
            .tempdir_in("/tmp")
            .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `hull-runtime --root <root> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(hull_testkit::hull_bin("hull-runtime"));
        c.arg("--root").arg(self.path());
        // HULL_TEST_LOG_DIR=DIR keeps a debug log per test run there.
        if let Some(d) = std::env::var_os("HULL_TEST_LOG_DIR") {
            let name = self
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            c.arg("--debug")
                .arg("--log")
                .arg(Path::new(&d).join(format!("{name}.log")));
        }
        c.args(args);
        c
    }

    /// Container ids that still have state here.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Asserts that nothing of container `id` is left: no state, no process.
    pub fn assert_clean(&self, id: &str) {
        assert_eq!(
            self.leftovers(),
            Vec::<String>::new(),
            "state left behind in {}",
            self.path().display()
        );
        let procs = wait_for_no_processes(self.path(), Duration::from_secs(10));
        assert!(procs.is_empty(), "processes of {id} left behind: {procs:?}");
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Whatever a failed test left: kill processes that mention this root.
        for pid in processes_mentioning(self.path()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// PIDs whose command line mentions `needle` (QEMU, virtiofsd and monitors name the state dir).
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
        .filter(|pid| hull_testkit::wait::pid_alive(*pid as i32))
        .flat_map(|pid| std::iter::once(pid).chain(children(pid)))
        // A child may mention the root itself (a clone's QEMU names its template's memory file).
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .collect()
}

/// Child PIDs of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn wait_for_no_processes(needle: &Path, timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let p = processes_mentioning(needle);
        if p.is_empty() || Instant::now() >= deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a finished command did, with raw bytes.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout_str(),
            self.stderr_str()
        )
    }
}

/// Spawns `cmd` with piped stdio.
pub fn spawn(cmd: &mut Command, stdin: bool) -> Child {
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hull-runtime")
}

/// Feeds `input`, collects output, waits with a deadline (kills and panics on timeout).
pub fn finish(mut child: Child, input: Option<&[u8]>, timeout: Duration) -> Out {
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hull-runtime still running after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Out {
        code: status.code(),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// The `hull-runtime run` command for `bundle` as container `id` (not started).
pub fn run_cmd(root: &Root, bundle: &Bundle, id: &str) -> Command {
    let mut c = root.cmd(&["run", "--bundle"]);
    c.arg(bundle.path()).arg(id);
    c
}

/// Runs `hull-runtime run` on `bundle` as container `id`.
pub fn run(root: &Root, bundle: &Bundle, id: &str, input: Option<&[u8]>) -> Out {
    let mut c = run_cmd(root, bundle, id);
    finish(spawn(&mut c, input.is_some()), input, VM_TIMEOUT)
}

/// Waits until the container's process announces itself by creating `/ready` in its rootfs
/// (seen on the host through the shared rootfs).
pub fn wait_ready(bundle: &Bundle, what: &str) {
    let ready = bundle.rootfs().join("ready");
    wait_for(what, VM_TIMEOUT, || ready.exists().then_some(()));
}

/// Spawns `hull-runtime run` on `bundle` as container `id` and waits until it is running and
/// its process has created `/ready`.
pub fn run_until_ready(root: &Root, bundle: &Bundle, id: &str) -> Child {
    let child = spawn(&mut run_cmd(root, bundle, id), false);
    wait_status(root, id, "running");
    wait_ready(bundle, "the container to be ready");
    child
}

/// `hull-runtime exec ID sh -c SCRIPT`, which must exit 0.
pub fn exec_sh(root: &Root, id: &str, script: &str) -> Out {
    let mut exec = root.cmd(&["exec", id, "sh", "-c", script]);
    let ex = finish(spawn(&mut exec, false), None, VM_TIMEOUT);
    assert_eq!(ex.code, Some(0), "exec: {ex}");
    ex
}

/// `hull-runtime create --pid-file` of `bundle` as container `id`, detached (its output goes to
/// `create.out`/`create.err` in the bundle, so no pipe is held open by the monitor); asserts
/// success and returns the pid-file PID (hull's monitor).
pub fn create_detached(root: &Root, bundle: &Bundle, id: &str) -> u32 {
    let pid_file = bundle.path().join("pid");
    let file = |name: &str| std::fs::File::create(bundle.path().join(name)).expect(name);
    let st = root
        .cmd(&["create", "--pid-file"])
        .arg(&pid_file)
        .arg("--bundle")
        .arg(bundle.path())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(file("create.out"))
        .stderr(file("create.err"))
        .status()
        .expect("run hull-runtime create");
    let err = std::fs::read_to_string(bundle.path().join("create.err")).unwrap_or_default();
    assert!(st.success(), "create {id}: {err}");
    let pid = std::fs::read_to_string(&pid_file).expect("the pid file");
    pid.trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid file {pid:?}: {e}"))
}

/// Sends SIGTERM to a spawned runtime.
pub fn terminate(child: &Child) {
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -TERM {}", child.id());
}

/// Waits until the container's state says `status`.
pub fn wait_status(root: &Root, id: &str, status: &str) {
    wait_for(
        &format!("container {id} to be {status}"),
        VM_TIMEOUT,
        || {
            let out = root.cmd(&["state", id]).output().ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["status"] == status).then_some(())
        },
    );
}

pub fn tmp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}
