//! Serving the host: requests, stdin streams, and what happens when processes exit.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hull_protocol::{
    AgentError, AgentEvent, ContainerConfig, ExecId, Frame, FrameReader, HostMessage, HostRequest,
    Reply, StartProcess, StreamId, PROTOCOL_VERSION, SHARE_TAG, VOLUME_TAG,
};

use crate::channel::{Channel, HostWait};
use crate::container::{self, Container};
use crate::error::{Context, Error, Result};
use crate::process::{self, Spawned, Target};
use crate::stdio::{self, Relay, StdinMsg};
use crate::{procfs, reaper, sys};

/// A new container's id and init exec id are free, and a later container has a first one.
fn check_new_container(st: &State, cfg: &ContainerConfig) -> Result<()> {
    if st.containers.contains_key(&cfg.id) {
        return Err(Error::msg(format!("container {:?} already exists", cfg.id)));
    }
    match (cfg.init_exec_id, &st.first) {
        (0, Some(first)) => Err(Error::msg(format!(
            "the VM already has its first container {first:?}"
        ))),
        (0, None) => Ok(()),
        (_, None) => Err(Error::msg("a pod's later container needs the first one")),
        (n, Some(_)) if st.procs.contains_key(&n) => {
            Err(Error::msg(format!("exec id {n} already in use")))
        }
        _ => Ok(()),
    }
}

/// The least entropy a restored VM accepts: a full reseed of the kernel's CRNG (256 bits).
const MIN_ENTROPY: usize = 32;

/// The VM was restored from a template: every clone of it starts with the same kernel RNG
/// state and the template's clock. Mixes the host's `entropy` into the kernel's pool and
/// reseeds the CRNG at once (so that /dev/urandom, getrandom and random UUIDs of two clones
/// differ), then sets the realtime clock.
fn restored(entropy: &[u8], unix_time_ns: u64) -> Result<Reply> {
    if entropy.len() < MIN_ENTROPY {
        return Err(Error::msg(format!(
            "restored VM: {} bytes of entropy from the host, at least {MIN_ENTROPY} needed to \
             reseed the kernel's random number generator",
            entropy.len()
        )));
    }
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .ctx(|| "restored VM: opening /dev/urandom".into())?;
    sys::add_entropy(random.as_fd(), entropy).ctx(|| {
        format!(
            "restored VM: adding {} bytes of entropy (RNDADDENTROPY on /dev/urandom)",
            entropy.len()
        )
    })?;
    sys::reseed_crng(random.as_fd())
        .ctx(|| "restored VM: reseeding the CRNG (RNDRESEEDCRNG on /dev/urandom)".into())?;
    let was_ns = sys::realtime_ns();
    sys::set_realtime_ns(unix_time_ns)
        .ctx(|| format!("restored VM: setting the realtime clock to {unix_time_ns} ns"))?;
    debug!(
        "restored: {} bytes of entropy added, CRNG reseeded, clock moved by {:.3} s",
        entropy.len(),
        (unix_time_ns as f64 - was_ns as f64) / 1e9
    );
    Ok(Reply::Ok)
}

/// How long the output of an exited process may still flow before its streams are closed (an
/// orphan may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// One process the host started.
struct Proc {
    pid: i32,
    running: bool,
    stdin: Option<Sender<StdinMsg>>,
    pty: Option<Arc<File>>,
    relays: Vec<Relay>,
}

/// One container of the VM (a pod has several).
struct Ctr {
    container: Arc<Container>,
    /// The init, set up by CreateContainer and waiting for StartProcess.
    init: Option<process::PreparedInit>,
}

#[derive(Default)]
struct State {
    share_mounted: bool,
    volumes_mounted: bool,
    containers: HashMap<String, Ctr>,
    /// The VM's first container (its init is exec 0; its end is the VM's).
    first: Option<String>,
    procs: HashMap<ExecId, Proc>,
    by_pid: HashMap<i32, ExecId>,
    /// Processes being started: while > 0, exits of unknown PIDs are kept in `early_exits`
    /// (a process may exit before it is registered).
    spawning: usize,
    early_exits: HashMap<i32, (i32, u64)>,
}

impl State {
    fn running(&self, exec_id: ExecId) -> Option<i32> {
        self.procs
            .get(&exec_id)
            .filter(|p| p.running)
            .map(|p| p.pid)
    }

    /// The container `id`, or the VM's first one.
    fn container(&self, id: Option<&str>) -> Result<&Ctr> {
        let id = id.or(self.first.as_deref());
        id.and_then(|id| self.containers.get(id))
            .ok_or_else(|| match id {
                Some(id) => Error::msg(format!("container {id:?} does not exist")),
                None => Error::msg("no container (CreateContainer first)"),
            })
    }

    /// The guest PID whose namespaces a pod's later containers join: the first container's
    /// init, prepared or running.
    fn pod_init_pid(&self) -> Option<i32> {
        self.running(0).or_else(|| {
            let first = self.containers.get(self.first.as_deref()?)?;
            first.init.as_ref().map(|i| i.pid())
        })
    }

    /// Marks the process `pid` exited; returns its exec id and relays if it is one of ours.
    fn take_exited(&mut self, pid: i32) -> Option<(ExecId, Vec<Relay>)> {
        let exec_id = self.by_pid.remove(&pid)?;
        let p = self.procs.get_mut(&exec_id)?;
        p.running = false;
        p.stdin = None;
        p.pty = None;
        Some((exec_id, std::mem::take(&mut p.relays)))
    }
}

pub struct Agent {
    chan: Arc<Channel>,
    start_ns: u64,
    ready_ns: u64,
    state: Mutex<State>,
}

/// Runs `f` on a new thread, or right here if no thread can be started.
fn spawn_or_run(name: String, f: impl FnOnce() + Send + 'static) {
    fn take_run<F: FnOnce()>(slot: &Mutex<Option<F>>) {
        let f = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(f) = f {
            f()
        }
    }
    let slot = Arc::new(Mutex::new(Some(f)));
    let s2 = slot.clone();
    let b = std::thread::Builder::new()
        .name(name)
        .stack_size(stdio::THREAD_STACK);
    if b.spawn(move || take_run(&s2)).is_err() {
        take_run(&slot);
    }
}

impl Agent {
    pub fn new(chan: Arc<Channel>, start_ns: u64, ready_ns: u64) -> Self {
        Self {
            chan,
            start_ns,
            ready_ns,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads frames from the host and handles them, until the channel breaks. `host` watches
    /// the port read by `reader`.
    pub fn serve(
        self: &Arc<Self>,
        mut reader: FrameReader<File>,
        host: &HostWait,
    ) -> Result<Infallible> {
        loop {
            match reader.read_frame()? {
                Some(Frame::Control(json)) => self.control(&json),
                Some(Frame::Data { stream, bytes }) => self.stdin(StreamId(stream), Some(bytes)),
                Some(Frame::Eof { stream }) => self.stdin(StreamId(stream), None),
                // The host is not connected (virtio-serial reads return 0): wait for it. A VM
                // restored from a template gets its host only now: this is on its start's path.
                None => host.wait(),
            }
        }
    }

    fn control(self: &Arc<Self>, json: &[u8]) {
        let msg: HostMessage = match serde_json::from_slice(json) {
            Ok(m) => m,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(json)
                    .ok()
                    .and_then(|v| v.get("id")?.as_u64());
                match id {
                    Some(id) => self
                        .chan
                        .reply(id, Err(AgentError::new(format!("malformed request: {e}")))),
                    None => info!("malformed control message: {e}"),
                }
                return;
            }
        };
        let id = msg.id;
        match msg.request {
            HostRequest::StartProcess(sp) => self.start_process(id, *sp),
            HostRequest::Shutdown => {
                self.chan.reply(id, Ok(Reply::Ok));
                debug!("shutdown requested");
                sys::power_off();
            }
            req => {
                let r = self.handle(req).map_err(|e| {
                    debug!("request {id} failed: {e}");
                    AgentError::from(e)
                });
                self.chan.reply(id, r);
            }
        }
    }

    fn handle(&self, req: HostRequest) -> Result<Reply> {
        match req {
            HostRequest::Hello { version } => {
                hull_protocol::check_version(version).map_err(Error::msg)?;
                Ok(Reply::Hello {
                    version: PROTOCOL_VERSION,
                    agent_start_ns: self.start_ns,
                    agent_ready_ns: self.ready_ns,
                })
            }
            HostRequest::ConfigureNetwork(cfg) => {
                hull_net::guest::configure(&cfg)
                    .map_err(|e| Error::msg(hull_protocol::error_chain(&e)))?;
                Ok(Reply::Ok)
            }
            HostRequest::Restored {
                entropy,
                unix_time_ns,
            } => restored(&entropy, unix_time_ns),
            HostRequest::CreateContainer(cfg) => self.create(*cfg),
            HostRequest::RemoveContainer { id } => self.remove(&id),
            HostRequest::Signal {
                exec_id,
                signal,
                all,
                container,
            } => self.signal(exec_id, signal, all, container.as_deref()),
            HostRequest::ResizeTty {
                exec_id,
                rows,
                cols,
            } => self.resize(exec_id, rows, cols),
            HostRequest::Stats => Ok(Reply::Stats(procfs::stats())),
            HostRequest::GuestStatus => Ok(Reply::GuestStatus(procfs::guest_status())),
            HostRequest::SetOnlineCpus { online } => {
                crate::cpus::set_online(online)?;
                Ok(Reply::GuestStatus(procfs::guest_status()))
            }
            HostRequest::ListProcesses => Ok(Reply::Processes {
                pids: procfs::container_pids(),
            }),
            HostRequest::UpdateResources {
                container,
                resources,
            } => {
                let c = self
                    .state()
                    .container(container.as_deref())?
                    .container
                    .clone();
                c.cgroup.update(&resources)?;
                Ok(Reply::Ok)
            }
            // Answered by `control` itself.
            HostRequest::StartProcess(_) | HostRequest::Shutdown => {
                Err(Error::msg("internal error: request not dispatched"))
            }
        }
    }

    fn create(&self, cfg: ContainerConfig) -> Result<Reply> {
        let (share, volumes, pod_init_pid) = {
            let st = self.state();
            check_new_container(&st, &cfg)?;
            (st.share_mounted, st.volumes_mounted, st.pod_init_pid())
        };
        debug!(
            "creating container {} (init exec {})",
            cfg.id, cfg.init_exec_id
        );
        if !share {
            container::mount_share(SHARE_TAG, container::SHARE_DIR)?;
            self.state().share_mounted = true;
        }
        if !volumes && !cfg.binds.is_empty() {
            container::mount_share(VOLUME_TAG, container::VOLUME_DIR)?;
            self.state().volumes_mounted = true;
        }
        let mut c = Container::plan(cfg)?;
        if c.init_exec_id != 0 {
            c.pod_init_pid = pod_init_pid;
        }
        let process = c
            .spec
            .process()
            .clone()
            .ok_or_else(|| Error::msg("config has no process"))?;
        // Exits of the init before its start are kept (spawning > 0) until StartProcess.
        self.state().spawning += 1;
        // The init's stdin is always relayed: the host sends data or its end.
        let init = match process::prepare_init(&c, &process, true) {
            Ok(i) => i,
            Err(e) => {
                self.done_spawning(&mut self.state());
                return Err(e);
            }
        };
        debug!(
            "container {} created (root {}, init pid {})",
            c.id,
            c.root.display(),
            init.pid()
        );
        let mut st = self.state();
        if c.init_exec_id == 0 {
            st.first = Some(c.id.clone());
        }
        let ctr = Ctr {
            container: Arc::new(c),
            init: Some(init),
        };
        st.containers.insert(ctr.container.id.clone(), ctr);
        Ok(Reply::Ok)
    }

    /// Forgets a later container of a pod once its init has ended.
    fn remove(&self, id: &str) -> Result<Reply> {
        let mut st = self.state();
        let ctr = st.container(Some(id))?;
        let exec_id = ctr.container.init_exec_id;
        if exec_id == 0 {
            return Err(Error::msg(format!(
                "container {id:?} is the VM's first container: it ends with the VM"
            )));
        }
        if st.running(exec_id).is_some() {
            return Err(Error::msg(format!("container {id:?} is still running")));
        }
        // A never-started init exits when its go pipe closes.
        if let Some(ctr) = st.containers.remove(id) {
            if ctr.init.is_some() {
                drop(ctr);
                self.done_spawning(&mut st);
            }
        }
        st.procs.remove(&exec_id);
        Ok(Reply::Ok)
    }

    fn start_process(self: &Arc<Self>, id: u64, sp: StartProcess) {
        let exec_id = sp.exec_id;
        let init_of = {
            let st = self.state();
            st.containers
                .values()
                .find(|c| c.container.init_exec_id == exec_id)
                .map(|c| c.container.id.clone())
        };
        if let Some(ctr) = init_of {
            return self.start_init(id, &ctr, sp);
        }
        let prepared = (|| {
            let mut st = self.state();
            let ctr = st.container(sp.container.as_deref())?;
            let c = ctr.container.clone();
            if st.procs.contains_key(&exec_id) {
                return Err(Error::msg(format!("exec id {exec_id} already in use")));
            }
            let process = sp
                .process
                .clone()
                .ok_or_else(|| Error::msg(format!("exec {exec_id}: no process given")))?;
            let init_pid = st
                .running(c.init_exec_id)
                .ok_or_else(|| Error::msg("container not running"))?;
            st.spawning += 1;
            Ok((c, Target::Exec { init_pid }, process))
        })();
        let (c, target, process) = match prepared {
            Ok(x) => x,
            Err(e) => return self.chan.reply(id, Err(e.into())),
        };
        let spawned = process::spawn(&c, target, &process, sp.stdin);
        self.started(id, exec_id, spawned, sp.stdin);
    }

    /// Releases the init that CreateContainer prepared for container `ctr`.
    fn start_init(self: &Arc<Self>, id: u64, ctr: &str, sp: StartProcess) {
        let init = self
            .state()
            .containers
            .get_mut(ctr)
            .and_then(|c| c.init.take());
        let Some(init) = init else {
            return self
                .chan
                .reply(id, Err(AgentError::new("container already started")));
        };
        if sp.process.is_some() {
            debug!("the init's process is the spec's; the one given with its start is ignored");
        }
        let spawned = process::start_init(init);
        self.started(id, sp.exec_id, spawned, true);
    }

    /// Replies to a StartProcess and tracks the process, or reports its failure.
    fn started(self: &Arc<Self>, id: u64, exec_id: ExecId, r: Result<Spawned>, stdin: bool) {
        match r {
            Ok(spawned) => {
                debug!("exec {exec_id} started: pid {}", spawned.pid);
                let reply = Reply::Started {
                    pid: spawned.pid,
                    started_ns: spawned.started_ns,
                };
                self.chan.reply(id, Ok(reply));
                self.activate(exec_id, spawned, stdin);
            }
            Err(e) => {
                debug!("exec {exec_id} failed: {e}");
                self.done_spawning(&mut self.state());
                self.chan.reply(id, Err(e.into()));
            }
        }
    }

    fn done_spawning(&self, st: &mut State) {
        st.spawning -= 1;
        if st.spawning == 0 {
            st.early_exits.clear();
        }
    }

    /// Starts the relays and stdin writer of a started process and tracks it (after the
    /// Started reply, so that its output and exit come after it).
    fn activate(self: &Arc<Self>, exec_id: ExecId, s: Spawned, want_stdin: bool) {
        let Spawned { pid, stdio: io, .. } = s;
        let mut relays = Vec::new();
        let mut start =
            |stream: StreamId, f: File| match stdio::start_relay(self.chan.clone(), stream, f) {
                Ok(r) => relays.push(r),
                Err(e) => {
                    info!("{e}");
                    relays.push(stdio::empty_stream(&self.chan, stream));
                }
            };
        start(StreamId::stdout(exec_id), io.stdout);
        match io.stderr {
            Some(f) => start(StreamId::stderr(exec_id), f),
            None => relays.push(stdio::empty_stream(&self.chan, StreamId::stderr(exec_id))),
        }
        let stdin_dst = match (io.stdin, &io.pty) {
            (Some(pipe), _) => Some(Arc::new(pipe)),
            (None, Some(master)) if want_stdin => Some(master.clone()),
            _ => None,
        };
        let stdin = stdin_dst.and_then(|dst| match stdio::start_stdin_writer(dst, exec_id) {
            Ok(tx) => Some(tx),
            Err(e) => {
                info!("{e}");
                None
            }
        });
        let mut st = self.state();
        st.procs.insert(
            exec_id,
            Proc {
                pid,
                running: true,
                stdin,
                pty: io.pty,
                relays,
            },
        );
        st.by_pid.insert(pid, exec_id);
        let early = st.early_exits.remove(&pid);
        self.done_spawning(&mut st);
        if let Some((status, ns)) = early {
            if let Some((exec_id, relays)) = st.take_exited(pid) {
                drop(st);
                self.finish(exec_id, relays, status, ns);
            }
        }
    }

    /// Called by the reaper for every child it reaps.
    pub fn on_child_exit(self: &Arc<Self>, pid: i32, status: i32, exited_ns: u64) {
        let mut st = self.state();
        if let Some((exec_id, relays)) = st.take_exited(pid) {
            drop(st);
            self.finish(exec_id, relays, status, exited_ns);
        } else if st.spawning > 0 {
            st.early_exits.insert(pid, (status, exited_ns));
        } else {
            debug!("reaped pid {pid}");
        }
    }

    /// Sends a process's Exited event once its output is flushed (at most OUTPUT_GRACE later);
    /// when it is the container's init, ends the VM.
    fn finish(self: &Arc<Self>, exec_id: ExecId, relays: Vec<Relay>, raw: i32, exited_ns: u64) {
        let chan = self.chan.clone();
        spawn_or_run(format!("exit-{exec_id}"), move || {
            let status = reaper::exit_status(raw);
            if exec_id == 0 {
                kill_all(libc::SIGKILL);
            }
            let deadline = Instant::now() + OUTPUT_GRACE;
            for r in &relays {
                if let Some(done) = &r.done {
                    let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                }
            }
            for r in &relays {
                chan.eof(r.stream, &r.closed);
            }
            if exec_id == 0 {
                nix::unistd::sync();
            }
            chan.event(AgentEvent::Exited {
                exec_id,
                status,
                exited_ns,
            });
            if exec_id == 0 {
                debug!("container init exited ({status:?}); powering off");
                sys::power_off();
            }
        });
    }

    fn signal(
        &self,
        exec_id: ExecId,
        signal: i32,
        all: bool,
        container: Option<&str>,
    ) -> Result<Reply> {
        let st = self.state();
        if all {
            let c = st.container(container)?.container.clone();
            let init = st.running(c.init_exec_id);
            let init = init.ok_or_else(|| Error::msg("container not running"))?;
            drop(st);
            for pid in pids_of(&c, init) {
                match sys::kill(pid, signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => {
                        return Err(e).ctx(|| format!("sending signal {signal} to pid {pid}"))
                    }
                }
            }
            return Ok(Reply::Ok);
        }
        match st.procs.get(&exec_id) {
            Some(p) if p.running => {
                sys::kill(p.pid, signal)
                    .ctx(|| format!("sending signal {signal} to exec {exec_id} (pid {})", p.pid))?;
                Ok(Reply::Ok)
            }
            _ if st
                .containers
                .values()
                .any(|c| c.container.init_exec_id == exec_id) =>
            {
                Err(Error::msg("container not running"))
            }
            _ if exec_id == 0 => Err(Error::msg("container not running")),
            _ => Err(Error::msg(format!("no such process (exec {exec_id})"))),
        }
    }

    fn resize(&self, exec_id: ExecId, rows: u16, cols: u16) -> Result<Reply> {
        let st = self.state();
        let p = st.procs.get(&exec_id).filter(|p| p.running);
        let p = p.ok_or_else(|| Error::msg(format!("no such process (exec {exec_id})")))?;
        let pty = p
            .pty
            .as_ref()
            .ok_or_else(|| Error::msg(format!("exec {exec_id} has no terminal")))?;
        sys::set_winsize(pty.as_fd(), rows, cols)
            .ctx(|| format!("resizing the terminal of exec {exec_id}"))?;
        Ok(Reply::Ok)
    }

    fn stdin(&self, stream: StreamId, data: Option<Vec<u8>>) {
        if stream.fd() != 0 {
            debug!("ignoring host data on output stream {}", stream.0);
            return;
        }
        let mut st = self.state();
        let Some(p) = st.procs.get_mut(&stream.exec_id()) else {
            debug!("stdin for unknown exec {}", stream.exec_id());
            return;
        };
        match data {
            Some(bytes) => {
                if let Some(tx) = &p.stdin {
                    let _ = tx.send(StdinMsg::Data(bytes));
                }
            }
            None => {
                if let Some(tx) = p.stdin.take() {
                    let _ = tx.send(StdinMsg::Close);
                }
            }
        }
    }
}

/// The processes of container `c` whose init is `init`: those in its PID namespace when it has
/// its own; else every process of the VM for the VM's first container, the init alone for a
/// later container of a pod.
fn pids_of(c: &Container, init: i32) -> Vec<i32> {
    let ns_of = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let all = procfs::container_pids();
    if c.ns.unshare.contains(nix::sched::CloneFlags::CLONE_NEWPID) {
        let Some(ns) = ns_of(init) else {
            return vec![init];
        };
        return all
            .into_iter()
            .filter(|p| ns_of(*p).as_ref() == Some(&ns))
            .collect();
    }
    if c.init_exec_id == 0 {
        all
    } else {
        vec![init]
    }
}

/// Sends `signal` to every process of the VM.
fn kill_all(signal: i32) {
    for pid in procfs::container_pids() {
        let _ = sys::kill(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_with_too_little_entropy_is_refused() {
        // Refused before any ioctl or clock change.
        let e = restored(&[7; MIN_ENTROPY - 1], 1).unwrap_err().to_string();
        assert!(e.contains("31 bytes of entropy"), "{e}");
        assert!(e.contains("at least 32"), "{e}");
        assert!(restored(&[], 1).is_err());
    }
}
