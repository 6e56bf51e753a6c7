//! Driving `hull-runtime`: a private state root per case (on tmpfs, as `/run/hull` is, since VM
//! templates keep their RAM there), containers run in the foreground (`run`), their state as
//! `state.json` and `hull-runtime state` report it, the VM start mode (template clone or cold
//! boot) and the templates a root holds.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::procs::{self, Proc};

/// How hull-runtime starts a VM (`HULL_VM_TEMPLATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStart {
    /// Cloned from a template (the default): copy-on-write RAM, shares over virtio-9p.
    Clone,
    /// Booted (`HULL_VM_TEMPLATE=off`): shares over virtio-fs.
    Cold,
}

impl VmStart {
    pub const BOTH: [VmStart; 2] = [VmStart::Clone, VmStart::Cold];

    /// The value of `HULL_VM_TEMPLATE`.
    pub fn env_value(self) -> &'static str {
        match self {
            VmStart::Clone => "on",
            VmStart::Cold => "off",
        }
    }

    /// The monitor's `vm_start` of a start in this mode once the template exists.
    pub fn name(self) -> &'static str {
        match self {
            VmStart::Clone => "clone",
            VmStart::Cold => "cold",
        }
    }

    /// The shared-fs transport in this mode.
    pub fn fs(self) -> &'static str {
        match self {
            VmStart::Clone => "virtio-9p",
            VmStart::Cold => "virtio-fs",
        }
    }

    /// Checks the monitor's timings of a start: `warm_up` allows the template to be built
    /// (`clone+build`); a timed run must be exactly this mode.
    pub fn check(self, timings: &Map<String, Value>, warm_up: bool) -> Result<()> {
        let got = timings.get("vm_start").and_then(Value::as_str);
        let ok = match (self, got) {
            (_, Some(g)) if g == self.name() => true,
            (VmStart::Clone, Some("clone+build")) => warm_up,
            _ => false,
        };
        if !ok {
            bail!(
                "the monitor's vm_start is {} where a timed run must be {:?}{}",
                got.map(|g| format!("{g:?}"))
                    .unwrap_or_else(|| "missing (no timings, or a hull without templates)".into()),
                self.name(),
                if got == Some("clone+build") {
                    ": the template was built inside a timed run (another key: did the guest, \
                     kernel or QEMU change during the run?)"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }
}

/// Where state roots go: the first tmpfs of /run, /tmp, /dev/shm (a template's RAM file is
/// meant to be on tmpfs, like the default root `/run/hull`), else /tmp.
pub fn state_parent() -> PathBuf {
    ["/run", "/tmp", "/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_tmpfs(p))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

pub fn is_tmpfs(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) with a NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type == libc::TMPFS_MAGIC
}

/// A template's files as they are on the state root's file system.
#[derive(Debug, Clone, Default)]
pub struct TemplateFile {
    pub key: String,
    /// Size of the RAM file (= guest RAM).
    pub size_bytes: u64,
    /// What the file occupies (`st_blocks` × 512, what `du` shows): the guest pages the
    /// template's boot wrote, paid once per shape on tmpfs.
    pub alloc_bytes: u64,
    /// The device state file.
    pub state_bytes: u64,
    /// `meta.json` build_ms.
    pub build_ms: Option<f64>,
}

impl TemplateFile {
    pub fn json(&self) -> Value {
        json!({
            "key": self.key,
            "memory_file_bytes": self.size_bytes,
            "memory_file_allocated_bytes": self.alloc_bytes,
            "state_file_bytes": self.state_bytes,
            "build_ms": self.build_ms,
        })
    }
}

/// A private `--root` for hull-runtime. On drop, every process that belongs to it
/// (monitors, QEMU, virtiofsd) is killed and the directory is removed.
pub struct StateRoot {
    path: PathBuf,
    /// `HULL_VM_TEMPLATE` for every command on this root (`None`: inherited).
    mode: Option<VmStart>,
}

impl StateRoot {
    /// A fresh directory with a short path (unix socket paths inside must stay < 108 bytes),
    /// in [`state_parent`]; the VM start mode is hull's default or the inherited
    /// `HULL_VM_TEMPLATE`.
    pub fn new() -> Result<Self> {
        let parent = state_parent();
        let dir = tempfile::Builder::new()
            .prefix("hb")
            .tempdir_in(&parent)
            .with_context(|| format!("create a state root in {}", parent.display()))?;
        Ok(Self {
            path: dir.keep(),
            mode: None,
        })
    }

    /// [`StateRoot::new`] whose containers all start in `mode`.
    pub fn with_mode(mode: VmStart) -> Result<Self> {
        let mut r = Self::new()?;
        r.mode = Some(mode);
        Ok(r)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `RUNTIME --root <root> ARGS…`
    pub fn cmd(&self, runtime: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(runtime);
        c.arg("--root").arg(&self.path).args(args);
        if let Some(m) = self.mode {
            c.env("HULL_VM_TEMPLATE", m.env_value());
        }
        c
    }

    /// Where hull keeps this root's templates: `HULL_TEMPLATE_DIR` if the harness was given
    /// one (passed through: then shared by every root, and [`StateRoot::templates`] lists all
    /// in it), else `<root>/.templates`, removed with the root.
    pub fn templates_dir(&self) -> PathBuf {
        match std::env::var_os("HULL_TEMPLATE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => self.path.join(".templates"),
        }
    }

    /// Lines of `.templates/builds.log` (one per template build).
    pub fn template_builds(&self) -> usize {
        std::fs::read_to_string(self.templates_dir().join("builds.log"))
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    }

    /// The complete templates in [`StateRoot::templates_dir`] (`<key>/memory`).
    pub fn templates(&self) -> Vec<TemplateFile> {
        let Ok(dir) = std::fs::read_dir(self.templates_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<TemplateFile> = dir
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let key = e.file_name().to_str()?.to_string();
                if key.contains('.') {
                    return None; // `<key>.build`: a build under way
                }
                let m = std::fs::metadata(e.path().join("memory")).ok()?;
                let state = std::fs::metadata(e.path().join("state"))
                    .map(|s| s.len())
                    .unwrap_or(0);
                let build_ms = std::fs::read_to_string(e.path().join("meta.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .and_then(|v| v["build_ms"].as_f64());
                Some(TemplateFile {
                    key,
                    size_bytes: m.len(),
                    alloc_bytes: m.blocks() * 512,
                    state_bytes: state,
                    build_ms,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// `<root>/<id>/state.json`, if it exists and parses.
    pub fn state_file(&self, id: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.path.join(id).join("state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The `status` that `hull-runtime state ID` reports.
    pub fn cli_status(&self, runtime: &Path, id: &str) -> Result<String> {
        let out = procs::output(
            "hull-runtime state",
            &mut self.cmd(runtime, &["state", id]),
            Duration::from_secs(20),
        )?;
        if !out.status.success() {
            bail!(
                "hull-runtime state {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("hull-runtime state {id}: not JSON"))?;
        Ok(v["status"].as_str().unwrap_or_default().to_string())
    }

    /// Waits until no live process belongs to the root (see [`procs::processes_of_root`]); the
    /// PIDs still there at the deadline.
    pub fn wait_no_processes(&self, timeout: Duration) -> Vec<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = procs::processes_of_root(&self.path);
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn has_mounts_below(&self) -> bool {
        let p = self.path.to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines().any(|l| {
                    l.split(' ')
                        .nth(4)
                        .is_some_and(|mp| mp == p || mp.starts_with(&format!("{p}/")))
                })
            })
            .unwrap_or(true)
    }
}

impl Drop for StateRoot {
    fn drop(&mut self) {
        for pid in procs::processes_of_root(&self.path) {
            // SAFETY: kill(2); these processes belong to this root (they name it).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let left = self.wait_no_processes(Duration::from_secs(10));
        // Monitors stage mounts only in their private mount namespaces; never recurse into a
        // mount that would be visible here (it could be a bundle's rootfs).
        if left.is_empty() && !self.has_mounts_below() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!(
                "hull-bench: left {} in place (processes {left:?} or mounts below it)",
                self.path.display()
            );
        }
    }
}

/// A container started with `hull-runtime run` (the process is the monitor: `run` execs it).
pub struct Container {
    pub id: String,
    pub proc: Proc,
    pub stderr: PathBuf,
}

/// The monitor's `HULL_TIMINGS_FILE` at `path` (empty when it wrote none or it is unreadable).
pub fn read_timings(path: &Path) -> Map<String, Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

impl Container {
    /// Starts `run --bundle BUNDLE ID` with stdin from /dev/null, stdout to `stdout`
    /// (`None`: discarded) and stderr to `<logs>/<id>.stderr`.
    pub fn run(
        root: &StateRoot,
        runtime: &Path,
        bundle: &Path,
        id: &str,
        logs: &Path,
        stdout: Option<&Path>,
        env: &[(&str, &Path)],
    ) -> Result<Self> {
        Self::run_with_stdin(root, runtime, bundle, id, logs, stdout, env, Stdio::null())
    }

    /// [`Container::run`] with the container's stdin from `stdin`.
    #[allow(clippy::too_many_arguments)]
    pub fn run_with_stdin(
        root: &StateRoot,
        runtime: &Path,
        bundle: &Path,
        id: &str,
        logs: &Path,
        stdout: Option<&Path>,
        env: &[(&str, &Path)],
        stdin: Stdio,
    ) -> Result<Self> {
        let stderr = logs.join(format!("{id}.stderr"));
        let mut c = root.cmd(runtime, &["run", "--bundle"]);
        c.arg(bundle).arg(id).stdin(stdin);
        c.stderr(File::create(&stderr).with_context(|| format!("create {}", stderr.display()))?);
        match stdout {
            Some(p) => {
                c.stdout(File::create(p).with_context(|| format!("create {}", p.display()))?)
            }
            None => c.stdout(Stdio::null()),
        };
        for (k, v) in env {
            c.env(k, v);
        }
        let proc = Proc::spawn(&format!("hull-runtime run {id}"), &mut c)?;
        Ok(Self {
            id: id.to_string(),
            proc,
            stderr,
        })
    }

    /// What the container's runtime printed on stderr (for error messages).
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr)
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// An error if the runtime already exited (with what it printed).
    pub fn check_alive(&mut self) -> Result<()> {
        if self.proc.exited()? {
            bail!("{} exited early: {}", self.proc.name(), self.stderr_text());
        }
        Ok(())
    }
}

/// Waits until every container reports `running` (first `state.json`, then confirmed by
/// `hull-runtime state`); the time each was confirmed, in the order given.
pub fn wait_running(
    root: &StateRoot,
    runtime: &Path,
    containers: &mut [Container],
    timeout: Duration,
) -> Result<Vec<Instant>> {
    let mut seen: Vec<Option<Instant>> = vec![None; containers.len()];
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        for (c, s) in containers.iter_mut().zip(seen.iter_mut()) {
            if s.is_some() {
                continue;
            }
            c.check_alive()?;
            let running = root
                .state_file(&c.id)
                .is_some_and(|v| v["status"] == "running");
            if running {
                let status = root.cli_status(runtime, &c.id)?;
                if status != "running" {
                    bail!(
                        "state.json of {} says running, hull-runtime state says {status:?}",
                        c.id
                    );
                }
                *s = Some(Instant::now());
            }
        }
        if seen.iter().all(Option::is_some) {
            return Ok(seen.into_iter().flatten().collect());
        }
        procs::check_interrupted()?;
        if Instant::now() >= deadline {
            let waiting: Vec<&str> = containers
                .iter()
                .zip(&seen)
                .filter(|(_, s)| s.is_none())
                .map(|(c, _)| c.id.as_str())
                .collect();
            bail!("timed out after {timeout:?} waiting for {waiting:?} to be running");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The monitor's PID as `state.json` records it.
pub fn monitor_pid(root: &StateRoot, id: &str) -> Result<i32> {
    root.state_file(id)
        .and_then(|v| v["monitor_pid"].as_i64())
        .map(|p| p as i32)
        .with_context(|| format!("no monitor_pid in state.json of {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(vm_start: &str) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("vm_start".into(), json!(vm_start));
        m
    }

    #[test]
    fn a_timed_clone_run_must_be_a_clone() {
        assert!(VmStart::Clone.check(&timings("clone"), false).is_ok());
        assert!(VmStart::Clone.check(&timings("clone+build"), true).is_ok());
        let e = VmStart::Clone
            .check(&timings("clone+build"), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("built inside a timed run"), "{e}");
        assert!(VmStart::Clone.check(&timings("cold"), false).is_err());
        assert!(VmStart::Clone.check(&Map::new(), true).is_err());
        assert!(VmStart::Cold.check(&timings("cold"), false).is_ok());
        assert!(VmStart::Cold.check(&timings("clone"), true).is_err());
    }
}
