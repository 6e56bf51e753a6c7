//! Driving `hull-runtime`: a private state root per case, containers run in the foreground
//! (`run`), their state as `state.json` and `hull-runtime state` report it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::procs::{self, Proc};

/// A private `--root` for hull-runtime. On drop, every process that belongs to it
/// (monitors, QEMU, virtiofsd) is killed and the directory is removed.
pub struct StateRoot {
    path: PathBuf,
}

impl StateRoot {
    /// A fresh directory with a short path (unix socket paths inside must stay < 108 bytes).
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hb")
            .tempdir_in("/tmp")
            .context("create a state root in /tmp")?;
        Ok(Self { path: dir.keep() })
    }

    /// `RUNTIME --root <root> ARGS…`
    pub fn cmd(&self, runtime: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(runtime);
        c.arg("--root").arg(&self.path).args(args);
        c
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
