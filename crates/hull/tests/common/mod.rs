//! Helpers for the `hull` command's tests: a private root per test (checked and cleaned on
//! drop), busybox images built at test time as OCI layouts and loaded with `hull load`, and
//! running `hull` with deadlines.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hull_testkit::command::{run_with, Output};
use hull_testkit::wait::wait_for;
use serde_json::{json, Value};

/// Deadline of one hull command that boots a VM (TCG on 2 shared cores; only bounds a hang).
pub const VM_TIMEOUT: Duration = Duration::from_secs(180);
/// Deadline of a command that boots nothing.
pub const QUICK: Duration = Duration::from_secs(60);

/// The `hull` binary under test: `$HULL_BIN_DIR/hull` if set, else the one cargo built.
pub fn hull_bin() -> PathBuf {
    match std::env::var_os("HULL_BIN_DIR") {
        Some(d) => PathBuf::from(d).join("hull"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_hull")),
    }
}

/// hull-runtime for hull to drive: `$HULL_BIN_DIR`'s, else the one next to the hull binary
/// (same target directory), else the workspace's `target/debug`.
fn runtime_bin() -> PathBuf {
    if std::env::var_os("HULL_BIN_DIR").is_none() {
        let next = hull_bin().with_file_name("hull-runtime");
        if next.is_file() && next.with_file_name("hull-monitor").is_file() {
            return next;
        }
    }
    hull_testkit::hull_bin("hull-runtime")
}

/// A private hull root (images, containers, runtime state) for one test.
pub struct Hull {
    pub dir: tempfile::TempDir,
}

impl Hull {
    pub fn new() -> Self {
        // Short path: the runtime's socket paths live below it.
        let dir = tempfile::Builder::new()
            .prefix("hc")
            .tempdir_in("/tmp")
            .unwrap();
        Self { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `hull --root <root> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(hull_bin());
        c.arg("--root").arg(self.root()).args(args);
        c.env("HULL_RUNTIME", runtime_bin());
        if std::env::var_os("HULL_GUEST_DIR").is_none() {
            let guest = hull_testkit::workspace_root().join("target/hull-guest");
            if guest.join("initramfs.cpio").is_file() {
                c.env("HULL_GUEST_DIR", guest);
            }
        }
        c
    }

    /// Runs hull to completion (stdin /dev/null), bounded by `timeout`.
    #[track_caller]
    pub fn run_with(&self, args: &[&str], input: Option<&[u8]>, timeout: Duration) -> Output {
        run_with(&mut self.cmd(args), input, timeout)
    }

    /// Runs hull to completion; VM-sized deadline.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, None, VM_TIMEOUT)
    }

    /// Runs hull and asserts exit 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        self.run(args).ok()
    }

    /// Starts hull without waiting (stdout/stderr to files in `dir`).
    pub fn spawn(&self, args: &[&str], out: &Path) -> Child {
        let f = fs::File::create(out).unwrap();
        self.cmd(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap()
    }

    /// Loads `image` (an OCI layout) as `name`.
    pub fn load(&self, image: &Path, name: &str) {
        let out = self
            .run_with(
                &["load", "-i", image.to_str().unwrap(), "--name", name],
                None,
                QUICK,
            )
            .ok();
        assert!(out.stdout.contains("Loaded image"), "{out}");
    }

    /// Loads the plain busybox image as `busybox`.
    pub fn with_busybox(self) -> Self {
        self.load(&busybox_layout(), "busybox");
        self
    }

    /// Container ids hull still knows.
    pub fn containers(&self) -> Vec<String> {
        dir_names(&self.root().join("containers"))
    }

    /// Asserts that nothing of any container is left: no container directory, no runtime
    /// state, no mount below the root, no process naming the root.
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_eq!(self.containers(), Vec::<String>::new(), "containers left");
        assert_eq!(
            dir_names(&self.root().join("run")),
            Vec::<String>::new(),
            "runtime state left"
        );
        assert_eq!(
            mounts_below(self.root()),
            Vec::<String>::new(),
            "mounts left"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let procs = loop {
            let p = processes_mentioning(self.root());
            if p.is_empty() || Instant::now() >= deadline {
                break p;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }

    /// The container's JSON line in `hull ps -a --format json`.
    pub fn ps_entry(&self, name: &str) -> Option<Value> {
        let out = self
            .run_with(&["ps", "-a", "--format", "json"], None, QUICK)
            .ok();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("ps --format json line parses"))
            .find(|v| v["Names"] == name)
    }

    /// Waits until `hull ps` says the container's state is `state`.
    pub fn wait_state(&self, name: &str, state: &str) {
        wait_for(&format!("{name} to be {state}"), VM_TIMEOUT, || {
            let v = self.ps_entry(name)?;
            (v["State"] == state).then_some(())
        });
    }
}

impl Drop for Hull {
    fn drop(&mut self) {
        // Whatever a failed test left: containers, mounts, processes.
        let left = self.containers();
        if !left.is_empty() {
            let _ = hull_testkit::command::try_run_with(
                self.cmd(&["rm", "-f"]).args(left),
                None,
                QUICK,
            );
        }
        for m in mounts_below(self.root()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for pid in processes_mentioning(self.root()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn dir_names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Mount points at or below `root`.
pub fn mounts_below(root: &Path) -> Vec<String> {
    let root = root.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&root))
        .collect()
}

/// PIDs (and their children) whose command line mentions `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(&needle)
                })
                .unwrap_or(false)
        })
        .filter(|pid| hull_testkit::wait::pid_alive(*pid as i32))
        .collect()
}

/// Runs a shell command on the host, asserting success.
#[track_caller]
pub fn sh(script: &str) -> String {
    run_with(Command::new("sh").arg("-c").arg(script), None, QUICK)
        .ok()
        .stdout
}

fn sha256(p: &Path) -> String {
    sh(&format!("sha256sum '{}'", p.display()))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `data` as a blob; returns its descriptor fields (digest, size).
fn blob(layout: &Path, data: &[u8]) -> (String, u64) {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, data).unwrap();
    let hex = sha256(&tmp);
    fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len() as u64)
}

/// An OCI image layout in `layout` (tag `latest`): the directories of `layers` (lowest first)
/// as uncompressed tar layers, and `config` as the image config's `config` object.
pub fn oci_layout(layout: &Path, layers: &[&Path], config: Value) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, dir) in layers.iter().enumerate() {
        let tar = layout.join(format!("layer{i}.tar"));
        sh(&format!(
            "tar --numeric-owner --sort=name -C '{}' -cf '{}' .",
            dir.display(),
            tar.display()
        ));
        let (digest, size) = blob(layout, &fs::read(&tar).unwrap());
        fs::remove_file(&tar).unwrap();
        diff_ids.push(digest.clone());
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let cfg = json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (cd, cs) = blob(layout, &serde_json::to_vec(&cfg).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (md, ms) = blob(layout, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A scratch directory under the test process's image directory (those of test processes
/// that are gone are removed).
fn image_dir(name: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    for e in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = n
            .strip_prefix("hull-cli-images-")
            .and_then(|p| p.parse().ok())
        {
            if !hull_testkit::wait::pid_alive(pid) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let d = tmp.join(format!("hull-cli-images-{}", std::process::id()));
    let p = d.join(name);
    let _ = fs::remove_dir_all(&p);
    fs::create_dir_all(&p).unwrap();
    p
}

/// busybox with `PATH` and `sh` as its command (built once per test process).
pub fn busybox_layout() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let d = image_dir("busybox");
        hull_testkit::bundle::busybox_rootfs(&d.join("rootfs"));
        oci_layout(
            &d.join("oci"),
            &[&d.join("rootfs")],
            json!({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}),
        );
        d.join("oci")
    })
    .clone()
}

/// An image with two layers and a full config: the busybox layer, then a layer that adds
/// user `app` (uid 1000, gid 1000, also in group `staff` 50), `/app/greet` (the entrypoint:
/// prints its arguments, `$GREETING`, the working directory and `id`), replaces `/etc/motd`
/// and deletes `/bin/vi` (a whiteout). Config: Entrypoint `/app/greet`, Cmd `default-arg`,
/// Env `GREETING=from-image`, WorkingDir `/app/work`, User `app`.
pub fn app_layout() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let d = image_dir("app");
        let base = d.join("base");
        hull_testkit::bundle::busybox_rootfs(&base);
        fs::write(base.join("etc/motd"), "motd of layer 1\n").unwrap();
        let top = d.join("top");
        fs::create_dir_all(top.join("etc")).unwrap();
        fs::create_dir_all(top.join("app/work")).unwrap();
        fs::create_dir_all(top.join("bin")).unwrap();
        fs::write(
            top.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n\
             app:x:1000:1000:app:/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            top.join("etc/group"),
            "root:x:0:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n",
        )
        .unwrap();
        fs::write(top.join("etc/motd"), "motd of layer 2\n").unwrap();
        fs::write(top.join("bin/.wh.vi"), "").unwrap();
        fs::write(
            top.join("app/greet"),
            "#!/bin/sh\necho \"args: $*\"\necho \"greeting: $GREETING\"\necho \"cwd: $(pwd)\"\nid\n",
        )
        .unwrap();
        sh(&format!(
            "chmod 755 '{0}/app/greet' && chown -R 1000:1000 '{0}/app/work'",
            top.display()
        ));
        oci_layout(
            &d.join("oci"),
            &[&base, &top],
            json!({
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=from-image"],
                "Entrypoint": ["/app/greet"],
                "Cmd": ["default-arg"],
                "WorkingDir": "/app/work",
                "User": "app",
            }),
        );
        d.join("oci")
    })
    .clone()
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
