//! One create → start → exec → kill → delete cycle of a busybox container, with at most one
//! fault (a SIGKILL of QEMU, virtiofsd or the monitor) at a chosen point, and the checks after it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hull_testkit::bundle::Bundle;
use hull_testkit::command::{try_run_with, Output};
use serde_json::Value;

use crate::procs::{self, Exit};

/// Deadline of one VM command (create, start, exec, kill, delete): bounds a hang only (TCG on
/// few shared cores with many VMs is slow).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(180);
/// Deadline for `state` to say `stopped` after a fault or a `kill`.
const STOP_DEADLINE: Duration = Duration::from_secs(90);
/// Deadline for the monitor to exit once its container stopped, and for the VM's processes to go.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
/// Deadline for a short command (`state`).
const SHORT: Duration = Duration::from_secs(60);
/// Between two looks at a condition.
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Qemu,
    Virtiofsd,
    Monitor,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Qemu => "qemu",
            Target::Virtiofsd => "virtiofsd",
            Target::Monitor => "monitor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    DuringCreate,
    AfterCreate,
    AfterStart,
    DuringExec,
}

impl Point {
    pub const ALL: [Point; 4] = [
        Point::DuringCreate,
        Point::AfterCreate,
        Point::AfterStart,
        Point::DuringExec,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::DuringCreate => "during create",
            Point::AfterCreate => "after create",
            Point::AfterStart => "after start",
            Point::DuringExec => "during exec",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub target: Target,
    pub point: Point,
    /// During create: how long after the monitor appeared.
    pub delay: Duration,
}

/// What one cycle does, decided up front from the seed.
#[derive(Clone, Debug)]
pub struct Plan {
    pub index: usize,
    pub id: String,
    /// `HULL_VM_TEMPLATE=off`: a cold boot with virtiofsd.
    pub cold: bool,
    pub fault: Option<Fault>,
}

impl Plan {
    pub fn describe(&self) -> String {
        let mode = if self.cold { "cold" } else { "clone" };
        match self.fault {
            Some(f) => format!(
                "cycle {} ({}, {mode}, kill {} {})",
                self.index,
                self.id,
                f.target.name(),
                f.point.name()
            ),
            None => format!("cycle {} ({}, {mode}, no fault)", self.index, self.id),
        }
    }
}

/// What the cycle found.
#[derive(Default, Debug)]
pub struct Outcome {
    /// The process actually killed (a planned fault whose moment passed is not injected).
    pub injected: Option<Target>,
    pub leaks: Vec<String>,
    pub wrong: Vec<String>,
    pub errors: Vec<String>,
    /// How the container ended (for the log line).
    pub notes: Vec<String>,
}

/// Where the cycle runs.
pub struct Env {
    pub runtime: PathBuf,
    /// The worker's state root.
    pub root: PathBuf,
    /// `hulltap*` interfaces of the host's namespace before the run.
    pub taps_before: BTreeSet<String>,
}

pub fn run(env: &Env, plan: &Plan) -> Outcome {
    // The testkit's fixtures panic when they cannot be built.
    let Ok(bundle) = std::panic::catch_unwind(|| Bundle::busybox(&["sleep", "1000"])) else {
        let mut out = Outcome::default();
        out.errors.push("could not build the busybox bundle".into());
        return out;
    };
    let mut c = Cycle {
        env,
        plan,
        out: Outcome::default(),
        bundle,
        monitor: None,
        monitor_exit: None,
        vm_pids: Vec::new(),
    };
    let _ = c.lifecycle();
    c.delete_and_check();
    c.out
}

struct Cycle<'a> {
    env: &'a Env,
    plan: &'a Plan,
    out: Outcome,
    bundle: Bundle,
    /// The pid-file PID.
    monitor: Option<i32>,
    monitor_exit: Option<Exit>,
    /// Every QEMU and virtiofsd seen.
    vm_pids: Vec<i32>,
}

/// The cycle stops early (after a fault or an error) and goes on to delete.
struct Stop;

impl Cycle<'_> {
    fn bundle(&self) -> &Path {
        self.bundle.path()
    }

    fn id(&self) -> &str {
        &self.plan.id
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.env.runtime);
        c.arg("--root").arg(&self.env.root).args(args);
        c
    }

    fn hr(&self, args: &[&str], timeout: Duration) -> Result<Output, String> {
        try_run_with(&mut self.cmd(args), None, timeout)
    }

    fn fault_at(&self, p: Point) -> Option<Target> {
        self.plan
            .fault
            .filter(|f| f.point == p && self.out.injected.is_none())
            .map(|f| f.target)
    }

    fn error(&mut self, what: impl Into<String>) -> Stop {
        self.out.errors.push(what.into());
        Stop
    }

    /// Notes every QEMU and virtiofsd of the monitor (checked for leaks at the end).
    fn remember_vm(&mut self, monitor: i32) {
        for p in procs::children_named(monitor, "qemu-system")
            .into_iter()
            .chain(procs::children_named(monitor, "virtiofsd"))
        {
            if !self.vm_pids.contains(&p) {
                self.vm_pids.push(p);
            }
        }
    }

    /// SIGKILLs the fault's target of `monitor`; false if it has none (yet).
    fn inject(&mut self, target: Target, monitor: i32) -> bool {
        self.remember_vm(monitor);
        let pid = match target {
            Target::Monitor => Some(monitor).filter(|&p| procs::alive(p)),
            Target::Qemu => procs::children_named(monitor, "qemu-system")
                .first()
                .copied(),
            Target::Virtiofsd => procs::children_named(monitor, "virtiofsd").first().copied(),
        };
        let Some(pid) = pid else { return false };
        if !procs::sigkill(pid) {
            return false;
        }
        self.out.injected = Some(target);
        true
    }

    /// Injects the fault planned for `p` now, if any; `Err(Stop)` once the container was
    /// checked as stopped after it.
    fn fault_point(&mut self, p: Point) -> Result<(), Stop> {
        let Some(target) = self.fault_at(p) else {
            return Ok(());
        };
        let Some(monitor) = self.monitor else {
            return Err(self.error(format!(
                "no monitor PID to kill {} {}",
                target.name(),
                p.name()
            )));
        };
        if !self.inject(target, monitor) {
            self.out.notes.push(format!(
                "no {} to kill {}: fault not injected",
                target.name(),
                p.name()
            ));
            return Ok(());
        }
        self.after_fault(target);
        Err(Stop)
    }

    /// The checks after a fault: `stopped`, and the monitor's exit status a documented one.
    fn after_fault(&mut self, target: Target) {
        self.wait_stopped(&format!("{} was killed", target.name()));
        let expected: &[Exit] = match target {
            // README, Exit codes: 5 = the guest went away; 137 = killed (a dead backend).
            Target::Qemu => &[Exit::Code(5), Exit::Code(137)],
            Target::Virtiofsd => &[Exit::Code(137), Exit::Code(5)],
            Target::Monitor => &[Exit::Signal(libc::SIGKILL), Exit::Unknown],
        };
        self.check_monitor_exit(expected, &format!("after {} was killed", target.name()));
    }

    /// Waits for the monitor to end and checks how; a monitor that outlives its container is
    /// a hang.
    fn check_monitor_exit(&mut self, expected: &[Exit], when: &str) {
        let Some(m) = self.monitor else { return };
        let deadline = Instant::now() + EXIT_DEADLINE;
        let exit = loop {
            if let Some(e) = procs::peek_exit(m) {
                break e;
            }
            if Instant::now() >= deadline {
                let msg = format!(
                    "monitor {m} still running {}s after its container stopped ({when})",
                    EXIT_DEADLINE.as_secs()
                );
                self.out.errors.push(msg);
                return;
            }
            std::thread::sleep(POLL);
        };
        self.monitor_exit = Some(exit);
        self.out.notes.push(format!("monitor {exit}"));
        if !expected.contains(&exit) {
            self.out.wrong.push(format!(
                "monitor ended with {exit} {when}; expected one of {}",
                expected
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }

    /// `hull-runtime state`: `Ok(None)` if the container does not exist.
    fn state(&self) -> Result<Option<Value>, String> {
        let out = self.hr(&["state", self.id()], SHORT)?;
        if !out.success() {
            return if out.stderr.contains("not exist") || out.stderr.contains("not found") {
                Ok(None)
            } else {
                Err(format!("state failed: {}", out.stderr.trim()))
            };
        }
        serde_json::from_str(&out.stdout)
            .map(Some)
            .map_err(|e| format!("state printed no JSON ({e}): {}", out.stdout))
    }

    fn status(&self) -> Result<Option<String>, String> {
        Ok(self
            .state()?
            .map(|v| v["status"].as_str().unwrap_or("?").to_string()))
    }

    /// Polls `state` until it says `stopped` with pid 0; anything else past the deadline is a
    /// wrong state.
    fn wait_stopped(&mut self, after: &str) {
        let deadline = Instant::now() + STOP_DEADLINE;
        let mut last;
        loop {
            match self.state() {
                Ok(Some(v)) if v["status"] == "stopped" => {
                    if v["pid"] != 0 {
                        self.out
                            .wrong
                            .push(format!("stopped with pid {} after {after}", v["pid"]));
                    }
                    return;
                }
                Ok(Some(v)) => last = v["status"].as_str().unwrap_or("?").to_string(),
                Ok(None) => {
                    self.out.wrong.push(format!(
                        "the container vanished (state: does not exist) after {after}"
                    ));
                    return;
                }
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                self.out.wrong.push(format!(
                    "state still {last} {}s after {after}",
                    STOP_DEADLINE.as_secs()
                ));
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    fn lifecycle(&mut self) -> Result<(), Stop> {
        self.create()?;
        self.fault_point(Point::AfterCreate)?;
        let out = self
            .hr(&["start", self.id()], CMD_TIMEOUT)
            .map_err(|e| self.error(format!("start: {e}")))?;
        if !out.success() {
            return Err(self.error(format!("start failed: {out}")));
        }
        match self.status() {
            Ok(Some(s)) if s == "running" => {}
            other => return Err(self.error(format!("after start, state says {other:?}"))),
        }
        self.fault_point(Point::AfterStart)?;
        self.exec()?;
        let out = self
            .hr(&["kill", self.id(), "KILL"], CMD_TIMEOUT)
            .map_err(|e| self.error(format!("kill: {e}")))?;
        if !out.success() {
            return Err(self.error(format!("kill failed: {out}")));
        }
        self.wait_stopped("kill KILL");
        self.check_monitor_exit(&[Exit::Code(137)], "after kill KILL");
        Ok(())
    }

    fn create(&mut self) -> Result<(), Stop> {
        let b = self.bundle().to_path_buf();
        let files = (|| {
            Ok::<_, std::io::Error>((
                std::fs::File::create(b.join("stdout"))?,
                std::fs::File::create(b.join("stderr"))?,
            ))
        })();
        let (so, se) = files.map_err(|e| self.error(format!("stdio files: {e}")))?;
        let mut c = self.cmd(&["create", "--bundle"]);
        c.arg(&b)
            .arg("--pid-file")
            .arg(b.join("pid"))
            .arg(self.id());
        if self.plan.cold {
            c.env("HULL_VM_TEMPLATE", "off");
        }
        // The monitor keeps these as the container's stdio: files, not pipes.
        c.stdin(Stdio::null()).stdout(so).stderr(se);
        let mut child = c
            .spawn()
            .map_err(|e| self.error(format!("cannot run create: {e}")))?;
        let deadline = Instant::now() + CMD_TIMEOUT;
        let mut seen: Option<Instant> = None;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => return Err(self.error(format!("waiting for create: {e}"))),
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(self.error(format!("create hung for {}s", CMD_TIMEOUT.as_secs())));
            }
            if let Some(t) = self.fault_at(Point::DuringCreate) {
                if let Some(m) = procs::find_monitor(&self.env.root, self.id()) {
                    self.remember_vm(m);
                    // The target is killed a planned while after the monitor appeared.
                    let since = *seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.plan.fault.map(|f| f.delay).unwrap_or_default()
                        && self.inject(t, m)
                        && t == Target::Monitor
                    {
                        self.monitor = Some(m);
                    }
                }
            }
            std::thread::sleep(POLL);
        };
        let stderr = std::fs::read_to_string(b.join("stderr")).unwrap_or_default();
        if !status.success() {
            let Some(t) = self.out.injected else {
                return Err(self.error(format!(
                    "create failed without a fault ({status}): {}",
                    stderr.trim()
                )));
            };
            self.out.notes.push(format!(
                "create failed ({status}): {}",
                stderr.lines().last().unwrap_or("").trim()
            ));
            // Failed cleanly: the container does not exist (or is stopped).
            if self.env.root.join(self.id()).exists() {
                self.out.leaks.push(format!(
                    "state dir left after create failed ({} killed)",
                    t.name()
                ));
            }
            match self.status() {
                Ok(None) => {}
                Ok(Some(s)) if s == "stopped" => self
                    .out
                    .notes
                    .push("state stopped after failed create".into()),
                Ok(Some(s)) => self.out.wrong.push(format!(
                    "create failed after {} was killed, but state says {s}",
                    t.name()
                )),
                Err(e) => self.out.wrong.push(format!("after a failed create, {e}")),
            }
            return Err(Stop);
        }
        let pid = std::fs::read_to_string(b.join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let Some(pid) = pid else {
            return Err(self.error("create succeeded but left no pid file"));
        };
        self.monitor = Some(pid);
        self.remember_vm(pid);
        if let Some(t) = self.out.injected {
            // Killed just as create was returning: the container must end.
            self.out
                .notes
                .push("create succeeded despite the fault".into());
            self.after_fault(t);
            return Err(Stop);
        }
        match self.status() {
            Ok(Some(s)) if s == "created" => {}
            other => return Err(self.error(format!("after create, state says {other:?}"))),
        }
        if self.fault_at(Point::DuringCreate).is_some() {
            // create returned before the planned moment: the fault comes right after it.
            self.out.notes.push("create returned first".into());
            return self.fault_point(Point::DuringCreate);
        }
        Ok(())
    }

    fn exec(&mut self) -> Result<(), Stop> {
        let Some(target) = self.fault_at(Point::DuringExec) else {
            let out = self
                .hr(&["exec", self.id(), "sh", "-c", "echo ok"], CMD_TIMEOUT)
                .map_err(|e| self.error(format!("exec: {e}")))?;
            if !out.success() || out.stdout != "ok\n" {
                return Err(self.error(format!("exec: {out}")));
            }
            return Ok(());
        };
        let mut c = self.cmd(&["exec", self.id(), "sh", "-c", "echo ready; exec sleep 1000"]);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c
            .spawn()
            .map_err(|e| self.error(format!("cannot run exec: {e}")))?;
        let (tx, rx) = mpsc::channel();
        let Some(stdout) = child.stdout.take() else {
            kill_child(&mut child);
            return Err(self.error("exec spawned without a piped stdout"));
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let ready = matches!(rx.recv_timeout(CMD_TIMEOUT), Ok(l) if l == "ready");
        if !ready {
            kill_child(&mut child);
            return Err(self.error("the exec'd process never said ready"));
        }
        let Some(monitor) = self.monitor else {
            kill_child(&mut child);
            return Err(self.error(format!(
                "no monitor PID to kill {} during exec",
                target.name()
            )));
        };
        if !self.inject(target, monitor) {
            kill_child(&mut child);
            return Err(self.error(format!("no {} to kill during exec", target.name())));
        }
        // The exec's host process must end too.
        let deadline = Instant::now() + EXIT_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    self.out.notes.push(format!("exec ended ({st})"));
                    if st.success() {
                        self.out
                            .wrong
                            .push("exec exited 0 though its VM was killed".into());
                    }
                    break;
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    kill_child(&mut child);
                    self.out.errors.push(format!(
                        "hull-runtime exec still running {}s after {} was killed",
                        EXIT_DEADLINE.as_secs(),
                        target.name()
                    ));
                    break;
                }
            }
        }
        self.after_fault(target);
        Err(Stop)
    }

    /// `delete` (`--force` only where a stopped container is not what we have), then every
    /// leak check.
    fn delete_and_check(&mut self) {
        let id = self.id().to_string();
        match self.status() {
            Ok(Some(s)) if s == "stopped" => match self.hr(&["delete", &id], CMD_TIMEOUT) {
                Ok(o) if o.success() => {}
                other => {
                    self.out.errors.push(format!(
                        "delete of a stopped container failed: {}",
                        show(&other)
                    ));
                    self.force_delete();
                }
            },
            Ok(Some(_)) | Err(_) => self.force_delete(),
            // A create that failed: engines still run delete --force, which must succeed.
            Ok(None) => self.force_delete(),
        }
        // The monitor ends (if it had not) and is reaped; only then may its PID be reused.
        if let Some(m) = self.monitor {
            let deadline = Instant::now() + EXIT_DEADLINE;
            while procs::alive(m) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if procs::alive(m) {
                self.out
                    .leaks
                    .push(format!("monitor {m} still running after delete"));
                procs::sigkill(m);
            }
        }
        self.check_leaks();
        if let Some(m) = self.monitor {
            procs::reap(m);
        }
        for &p in &self.vm_pids {
            procs::reap(p);
        }
    }

    fn force_delete(&mut self) {
        let id = self.id().to_string();
        match self.hr(&["delete", "--force", &id], CMD_TIMEOUT) {
            Ok(o) if o.success() => {}
            other => self
                .out
                .errors
                .push(format!("delete --force failed: {}", show(&other))),
        }
    }

    fn check_leaks(&mut self) {
        let root = self.env.root.clone();
        let id = self.id().to_string();
        // Processes: the VM's, and anything naming the state root.
        let deadline = Instant::now() + EXIT_DEADLINE;
        let left = loop {
            let mut left: Vec<i32> = procs::mentioning(&root);
            left.extend(self.vm_pids.iter().copied().filter(|&p| procs::alive(p)));
            left.sort_unstable();
            left.dedup();
            if left.is_empty() || Instant::now() >= deadline {
                break left;
            }
            std::thread::sleep(POLL);
        };
        if !left.is_empty() {
            let names: Vec<String> = left.iter().map(|&p| procs::describe(p)).collect();
            self.out
                .leaks
                .push(format!("processes left: {}", names.join(", ")));
            for p in left {
                procs::sigkill(p);
            }
        }
        // State.
        let dir = root.join(&id);
        if dir.exists() {
            let entries: Vec<String> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            self.out.leaks.push(format!(
                "state dir {} left: [{}]",
                dir.display(),
                entries.join(", ")
            ));
            let _ = std::fs::remove_dir_all(&dir);
        }
        match self.state() {
            Ok(None) => {}
            Ok(Some(v)) => self
                .out
                .leaks
                .push(format!("state still answers after delete: {}", v["status"])),
            Err(e) => self.out.leaks.push(format!("after delete: {e}")),
        }
        // Mounts (ours: the monitor's own are in its private namespace).
        let root_s = root.to_string_lossy().into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&root_s))
            .map(|l| l.to_string())
            .collect();
        if !mounts.is_empty() {
            self.out.leaks.push(format!(
                "mounts under the state root: {}",
                mounts.join(" | ")
            ));
        }
        // Files the monitor keeps in the temp dir for a container (hull-<id>-…).
        let prefix = format!("hull-{id}-");
        let tmp = std::env::temp_dir();
        let files: Vec<String> = std::fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if !files.is_empty() {
            self.out.leaks.push(format!(
                "temp files left in {}: {}",
                tmp.display(),
                files.join(", ")
            ));
            for f in files {
                let _ = std::fs::remove_file(tmp.join(f));
            }
        }
        // Taps in the host's namespace.
        let taps: Vec<String> = host_taps()
            .into_iter()
            .filter(|t| !self.env.taps_before.contains(t))
            .collect();
        if !taps.is_empty() {
            self.out
                .leaks
                .push(format!("taps in the host namespace: {}", taps.join(", ")));
        }
    }
}

/// `hulltap*` interfaces of our network namespace.
pub fn host_taps() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hulltap"))
        .collect()
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn show(r: &Result<Output, String>) -> String {
    match r {
        Ok(o) => format!("exit {:?}: {}", o.code, o.stderr.trim()),
        Err(e) => e.clone(),
    }
}
