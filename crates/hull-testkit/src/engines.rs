//! Container engines driving the runtime under test, each fully private to one fixture.
//!
//! Every fixture has its own temp directory holding its root, state, sockets, config and logs,
//! so tests run in parallel and never use the host's default locations or daemons. Daemons
//! (`containerd`, `dockerd`, `docker-registry`) are started by hand (there is no systemd) and
//! stopped by PID on `Drop` — after the containers they run are removed — and the fixture's
//! mounts and directory are removed. A daemon that does not come up panics with its log tail.
//!
//! The runtime under test is `$HULL_TEST_RUNTIME` if set (e.g. `/usr/sbin/runc`), else
//! `target/debug/hull-runtime`. Engines get it through a [`TracedRuntime`], a tiny shell
//! wrapper that logs each call, keeps a copy of each created container's config.json and
//! `exec`s the real binary (same PID, same stdio), so a test can assert that the engine really
//! went through the runtime under test and what it asked of it.
//!
//! Networks: [`Podman::create_network`], [`Dockerd::start_with_bridge`] and
//! [`Containerd::start_cri`] each use a [`TestNet`] (a /24 and a bridge name of the test's
//! own; see [`crate::net`]), removed with the fixture.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::command::{run, run_with_input, try_run_with, Output};
use crate::cri::CriSetup;
use crate::image::{busybox_image, LOCAL_NAME};
use crate::net::TestNet;
use crate::wait::wait_for;
use crate::{require_program, which};

/// Environment variable naming the runtime binary under test.
pub const RUNTIME_ENV: &str = "HULL_TEST_RUNTIME";

/// How long a daemon may take to answer on its socket.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of each cleanup command run from `Drop`.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// `export` lines for the hull settings of this test process: engines (conmon) do not pass
/// their environment on to the runtime, so the wrapper carries them (e.g. the fresh guest in
/// `HULL_GUEST_DIR`, which `scripts/test.sh` sets).
fn passed_env() -> String {
    [
        "HULL_GUEST_DIR",
        "HULL_ACCEL",
        "HULL_BOOT_TIMEOUT_SECS",
        "HULL_MONITOR",
        "HULL_KERNEL_CMDLINE_APPEND",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| format!("export {k}='{v}'\n")))
    .collect()
}

/// The runtime binary under test: `$HULL_TEST_RUNTIME`, else the workspace's `hull-runtime`.
pub fn runtime_under_test() -> PathBuf {
    match std::env::var_os(RUNTIME_ENV) {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{RUNTIME_ENV}={} does not exist", p.display());
            p
        }
        _ => crate::hull_bin("hull-runtime"),
    }
}

/// A name unique within this test process and across parallel processes:
/// `<prefix>-<pid>-<n>` (valid as a podman/docker name and a containerd ID).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir")
}

/// Polls `cond` until true or `timeout`; never panics (for `Drop`).
fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    wait_for("condition", timeout + Duration::from_secs(5), || {
        if cond() {
            Some(true)
        } else if Instant::now() >= deadline {
            Some(false)
        } else {
            None
        }
    })
}

/// Sends `signal` (e.g. "TERM") to `pid` with kill(1).
fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Unmounts (lazily, deepest first) every mount at or below `dir`.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let dir = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == &dir || p.starts_with(&format!("{dir}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&p)
            .stderr(Stdio::null())
            .status();
    }
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(c) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// SIGKILLs every process (other than this one) with an argument naming the path `needle` (the
/// fixture's own private dir or socket) or a path below it, and waits for them to go. A last
/// resort after orderly cleanup (e.g. conmon or a containerd shim orphaned by a failed test).
pub fn kill_processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut killed = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return killed;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let below = format!("{needle}/");
        if cmdline
            .split('\0')
            .any(|arg| arg.ends_with(&needle) || arg.contains(&below))
        {
            send_signal(pid, "KILL");
            killed.push(pid);
        }
    }
    poll_until(Duration::from_secs(10), || {
        killed.iter().all(|&p| !crate::wait::pid_alive(p as i32))
    });
    killed
}

/// `GET path` over an already connected stream; true on an HTTP 200 answer.
fn http_get_ok(mut s: impl Read + Write, host: &str, path: &str) -> bool {
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 32];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&head[..n]);
    head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200")
}

fn unix_http_ok(socket: &Path, path: &str) -> bool {
    UnixStream::connect(socket)
        .ok()
        .and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            Some(http_get_ok(s, "localhost", path))
        })
        .unwrap_or(false)
}

fn tcp_http_ok(addr: &str, path: &str) -> bool {
    let Ok(sa) = addr.parse() else { return false };
    TcpStream::connect_timeout(&sa, Duration::from_secs(1))
        .ok()
        .and_then(|s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            Some(http_get_ok(s, addr, path))
        })
        .unwrap_or(false)
}

/// A free TCP port on 127.0.0.1 (free now; the caller binds it right away).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------

/// The runtime under test behind a logging wrapper: `path()` is a shell script that appends
/// its arguments to a log, copies the bundle's config.json on `create`/`run`
/// ([`TracedRuntime::bundle_config`]) and `exec`s the real runtime, so PIDs, stdio and exit
/// statuses are the real runtime's.
pub struct TracedRuntime {
    dir: tempfile::TempDir,
    real: PathBuf,
}

impl TracedRuntime {
    /// Wraps [`runtime_under_test`].
    pub fn new() -> Self {
        Self::wrapping(&runtime_under_test())
    }

    /// Wraps the given runtime binary.
    pub fn wrapping(real: &Path) -> Self {
        let dir = tempdir("hull-runtime-trace-");
        let real = real.canonicalize().unwrap_or_else(|_| real.to_path_buf());
        let log = dir.path().join("calls.log");
        let configs = dir.path().join("configs");
        fs::create_dir_all(&configs).unwrap();
        // For `create`/`run`: copy the bundle's config.json (as the engine wrote it) to
        // configs/<last argument = container ID>.json.
        let capture = format!(
            r#"b=.; id=; prev=; cmd=
for a in "$@"; do
  case "$prev" in --bundle|-b) b=$a;; esac
  case "$a" in --bundle=*) b=${{a#--bundle=}};; create|run) [ -z "$cmd" ] && cmd=$a;; esac
  prev=$a; id=$a
done
[ -n "$cmd" ] && cp "$b/config.json" '{}'/"$id.json" 2>/dev/null
"#,
            configs.display()
        );
        let script = format!(
            "#!/bin/sh\n{}printf '%s\\n' \"$*\" >> '{}'\n{capture}exec '{}' \"$@\"\n",
            passed_env(),
            log.display(),
            real.display()
        );
        let path = dir.path().join("runtime");
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir, real }
    }

    /// The wrapper: give this path to engines as their OCI runtime.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// The real runtime binary.
    pub fn real(&self) -> &Path {
        &self.real
    }

    /// The log: one line per call, its arguments separated by spaces.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The calls so far, one string of arguments each.
    pub fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The config.json of every container created through this runtime so far, by container
    /// ID (as the engine wrote it, copied when `create`/`run` was called).
    pub fn bundle_configs(&self) -> Vec<(String, serde_json::Value)> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(self.dir.path().join("configs")) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            let parsed = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(v) = parsed {
                out.push((id.to_owned(), v));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The config.json the engine gave the runtime for container `id` (or the only one whose
    /// ID starts with `id`); panics with the IDs seen if there is none.
    #[track_caller]
    pub fn bundle_config(&self, id: &str) -> serde_json::Value {
        let all = self.bundle_configs();
        let ids: Vec<&str> = all.iter().map(|(i, _)| i.as_str()).collect();
        let mut hits: Vec<&(String, serde_json::Value)> =
            all.iter().filter(|(i, _)| i.starts_with(id)).collect();
        assert!(
            hits.len() == 1,
            "expected one config.json captured for container {id}, found {}; captured: {ids:?}",
            hits.len()
        );
        hits.remove(0).1.clone()
    }

    /// Panics unless some call had `word` (e.g. `create`, `exec`, `pause`) as an argument.
    #[track_caller]
    pub fn assert_called(&self, word: &str) {
        let calls = self.calls();
        assert!(
            calls.iter().any(|c| c.split(' ').any(|a| a == word)),
            "the runtime under test ({}) was never called with `{word}`; calls:\n{}",
            self.real.display(),
            calls.join("\n")
        );
    }
}

impl Default for TracedRuntime {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------

/// A daemon started by a fixture; killed by PID on drop.
struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Daemon {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Self {
        let out = fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {name} (`{}`): {e}",
                crate::command::cmdline(&cmd)
            )
        });
        Self {
            name: name.to_owned(),
            child,
            log,
            stopped: false,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        !self.stopped && matches!(self.child.try_wait(), Ok(None))
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Waits until `ready()`; panics with the log tail if the daemon exits or times out.
    fn wait_ready(&mut self, ready: impl FnMut() -> bool) {
        if let Err(why) = self.try_wait_ready(ready) {
            panic!("{why}");
        }
    }

    /// Waits until `ready()`; `Err` (with the log tail) if the daemon exits or times out.
    fn try_wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + DAEMON_START_TIMEOUT;
        let child = &mut self.child;
        let what = format!("{} to answer", self.name);
        let r = wait_for(&what, DAEMON_START_TIMEOUT + Duration::from_secs(5), || {
            if ready() {
                return Some(Ok(()));
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Some(Err(format!("it exited ({st})")));
            }
            if Instant::now() >= deadline {
                return Some(Err(format!("not ready after {DAEMON_START_TIMEOUT:?}")));
            }
            None
        });
        r.map_err(|why| {
            format!(
                "{} failed to start: {why}\n--- last lines of {} ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            )
        })
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; reaps it.
    fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        send_signal(self.pid(), "TERM");
        let child = &mut self.child;
        if !poll_until(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
            eprintln!(
                "{} did not exit within {grace:?} of SIGTERM: killing it",
                self.name
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

// ---------------------------------------------------------------------------------------------

/// A private containerd: own root, state, gRPC socket and config; CRI disabled (its config
/// still declares the runtime under test as `io.containerd.runc.v2` `BinaryName`), or enabled
/// ([`Containerd::start_cri`]).
pub struct Containerd {
    daemon: Daemon,
    runtime: TracedRuntime,
    socket: PathBuf,
    cri: Option<CriSetup>,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd with a traced [`runtime_under_test`].
    pub fn start() -> Self {
        Self::start_with(TracedRuntime::new())
    }

    /// Starts containerd whose configured runc binary is `runtime`.
    pub fn start_with(runtime: TracedRuntime) -> Self {
        Self::launch(runtime, false)
    }

    /// Starts containerd with its CRI plugin enabled (see [`crate::cri`]): the traced runtime
    /// under test as runtime handler [`crate::cri::RUNTIME_HANDLER`] (and default), CNI
    /// `bridge` + `host-local` on a network of this test ([`Containerd::cri`]), and the
    /// sandbox image [`crate::cri::PAUSE_IMAGE`] and the busybox image ([`LOCAL_NAME`])
    /// imported into the `k8s.io` namespace. Drive it over [`Containerd::socket`] with a CRI
    /// client (`runtime.v1.RuntimeService`).
    pub fn start_cri() -> Self {
        let me = Self::launch(TracedRuntime::new(), true);
        let ns = crate::cri::NAMESPACE;
        let pause = crate::cri::pause_image_archive().display().to_string();
        me.ctr(&[
            "-n",
            ns,
            "image",
            "import",
            "--base-name",
            CriSetup::pause_base_name(),
            &pause,
        ])
        .ok();
        let busybox = busybox_image().oci_archive().display().to_string();
        me.ctr(&[
            "-n",
            ns,
            "image",
            "import",
            "--base-name",
            "localhost/busybox",
            &busybox,
        ])
        .ok();
        me
    }

    /// The CRI plugin's setup (network, CNI dirs) if started with [`Containerd::start_cri`].
    pub fn cri(&self) -> Option<&CriSetup> {
        self.cri.as_ref()
    }

    fn launch(runtime: TracedRuntime, with_cri: bool) -> Self {
        let bin = require_program("containerd", "apt-get install containerd");
        require_program("ctr", "apt-get install containerd");
        require_program("containerd-shim-runc-v2", "apt-get install containerd");
        let dir = tempdir("hull-containerd-");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        for sub in ["root", "state", "opt", "fifo", "runc"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let cri = with_cri.then(|| CriSetup::new(d));
        let cri_section = match &cri {
            Some(c) => c.config_toml(&runtime.path(), &d.join("runc")),
            None => format!(
                r#"
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "hull"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull.options]
  BinaryName = "{runtime}"
  Root = "{runc_root}"
"#,
                runtime = runtime.path().display(),
                runc_root = d.join("runc").display(),
            ),
        };
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]

[grpc]
  address = "{socket}"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
{cri_section}"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            disabled = if with_cri {
                ""
            } else {
                r#""io.containerd.grpc.v1.cri""#
            },
            socket = socket.display(),
            opt = d.join("opt").display(),
        );
        let config_path = d.join("config.toml");
        fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(&config_path);
        let daemon = Daemon::spawn("containerd", cmd, d.join("containerd.log"));
        let mut me = Self {
            daemon,
            runtime,
            socket,
            cri,
            dir,
        };
        let socket = me.socket.clone();
        me.daemon.wait_ready(|| {
            let mut c = Command::new("ctr");
            c.arg("-a").arg(&socket).arg("version");
            try_run_with(&mut c, None, Duration::from_secs(10)).is_ok_and(|o| o.success())
        });
        me
    }

    /// The containerd daemon's PID.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Its gRPC socket (`ctr -a`, dockerd's `containerd`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The traced runtime under test.
    pub fn runtime(&self) -> &TracedRuntime {
        &self.runtime
    }

    /// The runc root for containers of this daemon (`ctr run --runc-root`).
    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// Directory for ctr's IO FIFOs (`--fifo-dir`), instead of /run/containerd/fifo.
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.path().join("fifo")
    }

    /// The flags `ctr run` needs to use the runtime under test and private dirs:
    /// `--runc-binary WRAPPER --runc-root DIR --fifo-dir DIR`.
    pub fn ctr_run_flags(&self) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            self.runtime.path().display().to_string(),
            "--runc-root".into(),
            self.runc_root().display().to_string(),
            "--fifo-dir".into(),
            self.fifo_dir().display().to_string(),
        ]
    }

    /// `ctr -a SOCKET` (namespace `default`), to add arguments to.
    pub fn ctr_command(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.socket);
        c
    }

    /// Runs `ctr -a SOCKET ARGS…` with the default deadline.
    #[track_caller]
    pub fn ctr(&self, args: &[&str]) -> Output {
        run(self.ctr_command().args(args))
    }

    /// Imports the busybox oci-archive as [`LOCAL_NAME`]; returns that name.
    pub fn import_busybox(&self) -> &'static str {
        let archive = busybox_image().oci_archive().display().to_string();
        self.ctr(&[
            "image",
            "import",
            "--base-name",
            "localhost/busybox",
            &archive,
        ])
        .ok();
        LOCAL_NAME
    }

    /// Kills and deletes every task and container of every namespace (no panics).
    fn remove_all(&self) {
        let ctr = |args: &[&str]| {
            let mut c = self.ctr_command();
            c.args(args);
            try_run_with(&mut c, None, CLEANUP_TIMEOUT).ok()
        };
        let lines = |o: Option<Output>| -> Vec<String> {
            o.filter(|o| o.success())
                .map(|o| {
                    o.stdout
                        .lines()
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        for ns in lines(ctr(&["namespaces", "ls", "-q"])) {
            for task in lines(ctr(&["-n", &ns, "tasks", "ls", "-q"])) {
                ctr(&["-n", &ns, "tasks", "kill", "-a", "-s", "SIGKILL", &task]);
                ctr(&["-n", &ns, "tasks", "delete", "-f", &task]);
            }
            for c in lines(ctr(&["-n", &ns, "containers", "ls", "-q"])) {
                ctr(&["-n", &ns, "containers", "rm", &c]);
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon.running() {
            self.remove_all();
        }
        self.daemon.stop(Duration::from_secs(10));
        // Shims of tasks that could not be deleted outlive containerd: they name our socket.
        kill_processes_mentioning(&self.socket);
        kill_processes_mentioning(self.dir.path());
        unmount_under(self.dir.path());
    }
}

// ---------------------------------------------------------------------------------------------

/// A private dockerd on its own containerd ([`Containerd`]), with the runtime under test
/// registered as [`Dockerd::RUNTIME`]; no iptables, and no bridge ([`Dockerd::start`]) or a
/// bridge of the test's own ([`Dockerd::start_with_bridge`]).
pub struct Dockerd {
    daemon: Daemon,
    socket: PathBuf,
    cli: PathBuf,
    containerd: Containerd,
    bridge: Option<TestNet>,
    dir: tempfile::TempDir,
}

impl Dockerd {
    /// Name of the runtime under test in daemon.json's `runtimes` (`docker run --runtime`).
    pub const RUNTIME: &'static str = "hull";

    /// Starts a containerd and a dockerd using it, without any network but `none` and `host`
    /// (`"bridge": "none"`).
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Like [`Dockerd::start`], but docker's default `bridge` network is a bridge of this
    /// test ([`TestNet`]: its own name and /24, created here with the gateway address and
    /// deleted on drop), so `docker run` gets a veth in a netns and `-p 127.0.0.1:PORT:CPORT`
    /// publishes through docker-proxy (the userland proxy). iptables stays off: nothing is
    /// written to the host's firewall, so use `-p 127.0.0.1:…` and reach it from the host.
    pub fn start_with_bridge() -> Self {
        require_program("docker-proxy", "apt-get install docker.io");
        let net = TestNet::allocate('d');
        net.create_bridge();
        Self::launch(Some(net))
    }

    /// The test's bridge network of [`Dockerd::start_with_bridge`].
    pub fn bridge(&self) -> Option<&TestNet> {
        self.bridge.as_ref()
    }

    fn launch(bridge: Option<TestNet>) -> Self {
        let bin = require_program("dockerd", "apt-get install docker.io");
        // The CLI of the same package as dockerd if there is one, else any on PATH.
        let cli = Some(PathBuf::from("/usr/bin/docker"))
            .filter(|p| p.is_file())
            .or_else(|| which("docker"))
            .unwrap_or_else(|| panic!("`docker` is not installed: apt-get install docker.io"));
        let containerd = Containerd::start();
        let dir = tempdir("hull-dockerd-");
        let d = dir.path();
        let socket = d.join("docker.sock");
        fs::create_dir_all(d.join("cli")).unwrap();
        let mut config = serde_json::json!({
            "data-root": d.join("data"),
            "exec-root": d.join("exec"),
            "pidfile": d.join("docker.pid"),
            "hosts": [format!("unix://{}", socket.display())],
            "containerd": containerd.socket(),
            "containerd-namespace": "moby",
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "ip-masq": false,
            "bridge": "none",
            "default-ulimits": {
                "nofile": {"Name": "nofile", "Hard": 20000, "Soft": 20000},
                "nproc": {"Name": "nproc", "Hard": 32768, "Soft": 32768}
            },
            "runtimes": {Self::RUNTIME: {"path": containerd.runtime().path()}},
        });
        if let Some(net) = &bridge {
            config["bridge"] = net.bridge().into();
            config["userland-proxy"] = true.into();
        }
        let config_path = d.join("daemon.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("--config-file").arg(&config_path);
        let daemon = Daemon::spawn("dockerd", cmd, d.join("dockerd.log"));
        let mut me = Self {
            daemon,
            socket,
            cli,
            containerd,
            bridge,
            dir,
        };
        let socket = me.socket.clone();
        me.daemon.wait_ready(|| unix_http_ok(&socket, "/_ping"));
        me
    }

    /// Its API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The traced runtime under test (shared with its containerd).
    pub fn runtime(&self) -> &TracedRuntime {
        self.containerd.runtime()
    }

    /// The private containerd under this dockerd.
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// `docker -H unix://SOCKET` with a private `DOCKER_CONFIG`, to add arguments to.
    pub fn docker_command(&self) -> Command {
        let mut c = Command::new(&self.cli);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("cli"));
        c
    }

    /// Runs `docker -H … ARGS…` with the default deadline.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> Output {
        run(self.docker_command().args(args))
    }

    /// Runs `docker -H … ARGS…` with `input` on stdin.
    #[track_caller]
    pub fn docker_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(self.docker_command().args(args), input)
    }

    /// `docker load`s the busybox docker-archive; returns its name ([`crate::image::DOCKER_ARCHIVE_NAME`]).
    pub fn load_busybox(&self) -> &'static str {
        let archive = busybox_image().docker_archive().display().to_string();
        self.docker(&["load", "-i", &archive]).ok();
        crate::image::DOCKER_ARCHIVE_NAME
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.daemon.running() {
            let mut ps = self.docker_command();
            ps.args(["ps", "-aq"]);
            if let Ok(o) = try_run_with(&mut ps, None, CLEANUP_TIMEOUT) {
                let ids: Vec<&str> = o.stdout.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut rm = self.docker_command();
                    rm.args(["rm", "-f"]).args(&ids);
                    let _ = try_run_with(&mut rm, None, CLEANUP_TIMEOUT);
                }
            }
        }
        self.daemon.stop(Duration::from_secs(20));
        unmount_under(self.dir.path());
        if let Some(net) = &self.bridge {
            net.delete_bridge();
        }
        // `containerd` drops next (its Drop removes leftover tasks), then `dir`.
    }
}

// ---------------------------------------------------------------------------------------------

/// A private image registry (Debian's `docker-registry`) on 127.0.0.1:<free port>, plain HTTP,
/// storage in a temp dir.
pub struct Registry {
    _daemon: Daemon,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        let bin = require_program("docker-registry", "apt-get install docker-registry");
        let dir = tempdir("hull-registry-");
        // The port is free when picked but could be taken before the registry binds it:
        // try a few.
        let mut last_err = String::new();
        for attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("serve").arg(&config_path);
            let log = dir.path().join(format!("registry-{attempt}.log"));
            let mut daemon = Daemon::spawn("docker-registry", cmd, log);
            let probe_addr = addr.clone();
            match daemon.try_wait_ready(|| tcp_http_ok(&probe_addr, "/v2/")) {
                Ok(()) => {
                    return Self {
                        _daemon: daemon,
                        addr,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    last_err = why;
                    let bind_race = daemon.log_tail().contains("address already in use");
                    drop(daemon);
                    if !bind_race {
                        break;
                    }
                }
            }
        }
        panic!("{last_err}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Pushes every image of the OCI layout's `latest` tag (an index: all its platforms) as
    /// `ADDR/REPO:latest`; returns that reference.
    pub fn push_layout_all(&self, layout: &Path, repo: &str) -> String {
        let reference = format!("{}/{repo}:latest", self.addr);
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--all",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", layout.display()),
            &format!("docker://{reference}"),
        ]))
        .ok();
        reference
    }

    /// Pushes the busybox image as `ADDR/REPO:latest`; returns that reference.
    pub fn push_busybox(&self, repo: &str) -> String {
        let reference = format!("{}/{repo}:latest", self.addr);
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &busybox_image().oci_ref(),
            &format!("docker://{reference}"),
        ]))
        .ok();
        reference
    }
}

// ---------------------------------------------------------------------------------------------

/// containers.conf, storage.conf and registries.conf for podman/buildah in `dir`, declaring
/// the traced runtime as `hull` (with JSON log support). Returns the env to set.
///
/// `network`: `None` leaves podman's choice of backend and a private network config dir
/// (buildah: CNI, as the store already holds an image). `Some(dir)`: netavark, with `dir` as
/// network config dir — shared by all podman fixtures (see [`crate::net::podman_network_dir`])
/// so that its `netavark.lock` serializes netavark runs across tests as on a real host.
fn containers_env(
    dir: &Path,
    runtime: &TracedRuntime,
    network: Option<&Path>,
) -> Vec<(&'static str, PathBuf)> {
    for sub in ["root", "runroot", "tmp", "net", "vartmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let network_section = match network {
        Some(shared) => format!(
            "network_backend = \"netavark\"\nnetwork_config_dir = \"{}\"",
            shared.display()
        ),
        None => format!("network_config_dir = \"{}\"", dir.join("net").display()),
    };
    let conf = format!(
        r#"[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[network]
{network_section}

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{dir}/events.log"
tmp_dir = "{tmp}"
lock_type = "file"
runtime = "hull"
runtime_supports_json = ["hull"]

[engine.runtimes]
hull = ["{runtime}"]
"#,
        dir = dir.display(),
        tmp = dir.join("tmp").display(),
        runtime = runtime.path().display(),
    );
    let storage = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
        dir.join("root").display(),
        dir.join("runroot").display()
    );
    let registries = "unqualified-search-registries = []\nshort-name-mode = \"permissive\"\n";
    fs::write(dir.join("containers.conf"), conf).unwrap();
    fs::write(dir.join("storage.conf"), storage).unwrap();
    fs::write(dir.join("registries.conf"), registries).unwrap();
    vec![
        ("CONTAINERS_CONF", dir.join("containers.conf")),
        ("CONTAINERS_STORAGE_CONF", dir.join("storage.conf")),
        ("CONTAINERS_REGISTRIES_CONF", dir.join("registries.conf")),
        ("TMPDIR", dir.join("vartmp")),
    ]
}

/// A private containers/storage store and config for podman and buildah: `--root`, `--runroot`,
/// a containers.conf declaring the runtime under test, with the busybox image in the store as
/// [`LOCAL_NAME`]. Dropping it kills and unmounts whatever still lives under its directory.
struct ContainersStore {
    runtime: TracedRuntime,
    env: Vec<(&'static str, PathBuf)>,
    dir: tempfile::TempDir,
}

impl ContainersStore {
    fn new(prefix: &str, network: Option<&Path>) -> Self {
        let runtime = TracedRuntime::new();
        let dir = tempdir(prefix);
        let env = containers_env(dir.path(), &runtime, network);
        let me = Self { runtime, env, dir };
        busybox_image().copy_to_containers_storage(
            "overlay",
            &me.dir.path().join("root"),
            &me.dir.path().join("runroot"),
            LOCAL_NAME,
        );
        me
    }

    /// `PROGRAM --root … --runroot … --storage-driver overlay` with the private config.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("runroot"))
            .args(["--storage-driver", "overlay"]);
        c
    }

    /// Runs the engine's own cleanup (`rm`), then removes what it left.
    fn cleanup(&self, mut rm: Command, what: &str) {
        if let Err(e) = try_run_with(&mut rm, None, CLEANUP_TIMEOUT) {
            eprintln!("{what} cleanup: {e}");
        }
        kill_processes_mentioning(self.dir.path());
        unmount_under(self.dir.path());
    }
}

/// podman on a private [`ContainersStore`] (runtime under test declared as `hull`), with file
/// locks and events and cgroupfs. Drop removes all its containers.
pub struct Podman {
    store: ContainersStore,
    networks: Mutex<Vec<TestNet>>,
}

impl Podman {
    /// Name of the runtime under test in the private containers.conf (`--runtime hull`).
    pub const RUNTIME: &'static str = "hull";
    /// The rlimits the sandbox allows (see engines.md: no CAP_SYS_RESOURCE, nofile ≤ 20000).
    pub const ULIMITS: [&'static str; 4] = [
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
    ];
    /// The busybox image in the store.
    pub const IMAGE: &'static str = LOCAL_NAME;

    /// A private podman with the busybox image.
    pub fn new() -> Self {
        require_program("podman", "apt-get install podman");
        require_program("conmon", "apt-get install conmon");
        Self {
            store: ContainersStore::new("hull-podman-", Some(&crate::net::podman_network_dir())),
            networks: Mutex::new(Vec::new()),
        }
    }

    /// Its private directory.
    pub fn dir(&self) -> &Path {
        self.store.dir.path()
    }

    /// `podman network create --subnet <a /24 of this test> OPTS… <unique name>` (bridge driver,
    /// netavark), with the bridge renamed to the [`TestNet`]'s own name (podman 4.3 has no
    /// `--interface-name` and would pick the next free `podmanN`, racing with parallel tests).
    /// The network is removed, and its bridge deleted, when the fixture drops.
    #[track_caller]
    pub fn create_network(&self, opts: &[&str]) -> TestNet {
        let net = TestNet::allocate('p');
        let subnet = net.subnet();
        let mut args = vec!["network", "create", "--subnet", &subnet];
        args.extend(opts);
        args.push(net.name());
        self.networks.lock().unwrap().push(net.clone());
        self.podman(&args).ok();
        let file = crate::net::podman_network_dir().join(format!("{}.json", net.name()));
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("podman wrote no {}: {e}", file.display()));
        let mut conf: serde_json::Value = serde_json::from_str(&text).unwrap();
        conf["network_interface"] = net.bridge().into();
        fs::write(&file, serde_json::to_vec_pretty(&conf).unwrap()).unwrap();
        net
    }

    /// `podman inspect -f {{.State.Pid}} NAME`: the runtime's pid-file PID (0 if not running).
    #[track_caller]
    pub fn pid(&self, name: &str) -> u32 {
        let out = self
            .podman(&["inspect", "--format", "{{.State.Pid}}", name])
            .ok();
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no PID in {out}"))
    }

    /// The traced runtime under test.
    pub fn runtime(&self) -> &TracedRuntime {
        &self.store.runtime
    }

    /// `podman --root … --runroot … --runtime hull …` with the private config in its env.
    pub fn command(&self) -> Command {
        let mut c = self.store.command("podman");
        c.args(["--runtime", Self::RUNTIME])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--tmpdir")
            .arg(self.dir().join("tmp"));
        c
    }

    /// Runs `podman … ARGS…` with the default deadline.
    #[track_caller]
    pub fn podman(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }

    /// Runs `podman … ARGS…` with `input` on stdin.
    #[track_caller]
    pub fn podman_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_input(self.command().args(args), input)
    }

    /// `podman inspect -f {{.State.Status}} NAME` (created, running, paused, exited…).
    #[track_caller]
    pub fn status(&self, name: &str) -> String {
        self.podman(&["inspect", "--format", "{{.State.Status}}", name])
            .ok()
            .stdout
            .trim()
            .to_owned()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Pods first: their infra containers cannot be removed on their own.
        let mut pods = self.command();
        pods.args(["pod", "rm", "--all", "--force", "--time", "0"]);
        if let Err(e) = try_run_with(&mut pods, None, CLEANUP_TIMEOUT) {
            eprintln!("podman pod cleanup: {e}");
        }
        let mut rm = self.command();
        rm.args(["rm", "--all", "--force", "--time", "0"]);
        self.store.cleanup(rm, "podman");
        let networks = std::mem::take(self.networks.get_mut().unwrap());
        for net in networks {
            let mut rm = self.command();
            rm.args(["network", "rm", "--force", net.name()]);
            let _ = try_run_with(&mut rm, None, CLEANUP_TIMEOUT);
            // netavark deletes the bridge with the last container; not if none ever ran.
            net.delete_bridge();
        }
    }
}

/// buildah on a private [`ContainersStore`]. Pass `--runtime` + [`TracedRuntime::path`] to
/// `run`/`bud` (buildah takes a path). Drop removes its working containers.
pub struct Buildah {
    store: ContainersStore,
}

impl Buildah {
    pub const IMAGE: &'static str = LOCAL_NAME;

    pub fn new() -> Self {
        require_program("buildah", "apt-get install buildah");
        Self {
            store: ContainersStore::new("hull-buildah-", None),
        }
    }

    /// Its private directory (build contexts can go here).
    pub fn dir(&self) -> &Path {
        self.store.dir.path()
    }

    /// The traced runtime under test.
    pub fn runtime(&self) -> &TracedRuntime {
        &self.store.runtime
    }

    /// `buildah --root … --runroot … --storage-driver overlay` with the private config.
    pub fn command(&self) -> Command {
        self.store.command("buildah")
    }

    /// Runs `buildah … ARGS…` with the default deadline.
    #[track_caller]
    pub fn buildah(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let mut rm = self.command();
        rm.args(["rm", "--all"]);
        self.store.cleanup(rm, "buildah");
    }
}
