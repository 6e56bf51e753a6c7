//! Pods: later containers in this VM. A container whose spec joins the network namespace of
//! this monitor's container has its own host process (`crate::member`), which asks this monitor
//! to create it here (`CreateMember`) and forwards its control requests (`Member`).
//!
//! Its rootfs is bind-mounted into the rootfs share at `members/<id>` and its bind-mount
//! sources into the volumes share at `members/<id>/<mount index>` (both staging trees live in
//! this monitor's mount namespace, where virtiofsd serves them, so the guest sees new mounts at
//! once); its init gets a fresh exec id; its stdio are the fds its host process sent. When its
//! init exits, the exit status goes back on the `CreateMember` connection, the staging is
//! unmounted and the agent forgets it.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::time::Duration;

use hull_oci::{Bundle, ShareTree, VmPlan};
use hull_protocol::{ExitStatus, HostRequest, Reply, StartProcess, StreamId};
use hull_state::StateDir;
use oci_spec::runtime::Hooks;

use super::create::container_config;
use super::serve::{request_error_text, resize_reply, spawn_stdin_pump, stats_reply};
use super::vmm::Vmm;
use super::{error_chain, Monitor, REQUEST_TIMEOUT};
use crate::agent::RequestError;
use crate::control::{CtlReply, CtlRequest};
use crate::{log, sys, MonitorError};

const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A later container of the pod.
pub struct Member {
    exec_id: u32,
    /// The `CreateMember` connection: `started`, `exited`.
    reply: Sender<CtlReply>,
    host_pid: i32,
    /// Its stdin source until it starts.
    stdin: Option<File>,
    started: bool,
    /// Staging mount points (unmounted when it ends).
    staged: Vec<PathBuf>,
    start_timeout: Duration,
}

impl Monitor {
    /// `CreateMember`: stage the member's files, create it in the guest, answer `created`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_member(
        &mut self,
        vm: &mut Vmm,
        sd: &StateDir,
        id: String,
        bundle: PathBuf,
        fds: Vec<OwnedFd>,
        host_pid: i32,
        reply: Sender<CtlReply>,
    ) {
        let exec_id = self.next_exec;
        self.next_exec += 1;
        match self.try_create_member(vm, sd, &id, &bundle, fds, exec_id) {
            Ok((stdin, staged, start_timeout)) => {
                let _ = reply.send(CtlReply::Created { exec_id });
                log::debug(&format!("pod member {id} created (exec {exec_id})"));
                let m = Member {
                    exec_id,
                    reply,
                    host_pid,
                    stdin: Some(stdin),
                    started: false,
                    staged,
                    start_timeout,
                };
                self.members.insert(id, m);
            }
            Err(e) => {
                let message = error_chain(&e);
                let _ = reply.send(CtlReply::Error { message });
            }
        }
    }

    fn try_create_member(
        &mut self,
        vm: &mut Vmm,
        sd: &StateDir,
        id: &str,
        bundle: &Path,
        fds: Vec<OwnedFd>,
        exec_id: u32,
    ) -> Result<(File, Vec<PathBuf>, Duration), MonitorError> {
        if self.members.contains_key(id) || id == self.opts.id {
            return Err(MonitorError::Agent(format!(
                "container {id:?} already exists in this pod"
            )));
        }
        let b = Bundle::load(bundle)?;
        let plan = VmPlan::from_bundle(&b, 1)?;
        let terminal = b.terminal();
        let mut files: Vec<File> = fds.into_iter().map(File::from).collect();
        let want = if terminal { 1 } else { 3 };
        if files.len() != want + plan.shares.len() {
            return Err(MonitorError::Agent(format!(
                "a pod member needs {want} stdio fds and {} mount trees, got {} fds",
                plan.shares.len(),
                files.len()
            )));
        }
        let trees = files.split_off(want);
        let mut staged = Vec::new();
        let r = self
            .stage_member(sd, id, &plan, &trees, &mut staged)
            .and_then(|()| {
                let stdin = files.remove(0);
                let out = if terminal {
                    stdin.try_clone().map_err(MonitorError::sys("dup pty"))?
                } else {
                    files.remove(0)
                };
                vm.agent.add_sink(StreamId::stdout(exec_id), Box::new(out));
                if !terminal {
                    vm.agent
                        .add_sink(StreamId::stderr(exec_id), Box::new(files.remove(0)));
                }
                let mut cfg = container_config(id, &b, &plan, &format!("members/{id}"), exec_id);
                for bind in &mut cfg.binds {
                    bind.share_path = format!("members/{id}/{}", bind.share_path);
                }
                let timeout =
                    CREATE_TIMEOUT + hull_oci::hooks::timeout_of(&b.spec, Hooks::create_container);
                match vm
                    .agent
                    .request(HostRequest::CreateContainer(Box::new(cfg)), timeout)
                {
                    Ok(_) => Ok(stdin),
                    Err(e) => Err(MonitorError::Agent(format!(
                        "creating the container in the pod's VM: {}",
                        request_error_text(e)
                    ))),
                }
            });
        match r {
            Ok(stdin) => {
                let start =
                    REQUEST_TIMEOUT + hull_oci::hooks::timeout_of(&b.spec, Hooks::start_container);
                Ok((stdin, staged, start))
            }
            Err(e) => {
                vm.agent.remove_sink(StreamId::stdout(exec_id));
                vm.agent.remove_sink(StreamId::stderr(exec_id));
                unstage(&staged);
                Err(e)
            }
        }
    }

    /// Attaches the member's rootfs and volume sources (mount trees its host process cloned,
    /// in `plan.shares` order) in the staging trees.
    fn stage_member(
        &self,
        sd: &StateDir,
        id: &str,
        plan: &VmPlan,
        trees: &[File],
        staged: &mut Vec<PathBuf>,
    ) -> Result<(), MonitorError> {
        for (s, mount) in plan.shares.iter().zip(trees) {
            let (tree, rel) = match s.tree {
                ShareTree::Rootfs => (sd.share_dir(), format!("members/{id}")),
                ShareTree::Volumes => {
                    (sd.path("volumes"), format!("members/{id}/{}", s.share_path))
                }
            };
            if s.tree == ShareTree::Volumes && !tree.exists() {
                return Err(MonitorError::Agent(
                    "the pod's VM has no volumes share for this container's bind mounts".into(),
                ));
            }
            let target = tree.join(rel);
            crate::share::mount_point(&target, s.is_dir)?;
            sys::attach_tree(mount, &target)?;
            staged.push(target);
        }
        Ok(())
    }

    /// A request for member `id`, forwarded by its host process.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn member_request(
        &mut self,
        vm: &mut Vmm,
        id: &str,
        request: CtlRequest,
        fds: Vec<OwnedFd>,
        peer_pid: i32,
        reply: Sender<CtlReply>,
    ) {
        let err = |m: String| CtlReply::Error { message: m };
        if !self.members.contains_key(id) {
            let _ = reply.send(err(format!("container {id:?} does not exist in this pod")));
            return;
        }
        let r = match request {
            CtlRequest::Start => self.start_member(vm, id),
            CtlRequest::Kill { signal, all } => self.kill_member(vm, id, signal, all),
            CtlRequest::Exec { process } => {
                return self.exec(vm, *process, fds, peer_pid, reply, Some(id.to_owned()))
            }
            CtlRequest::Ps => {
                let mut pids: Vec<i32> = self
                    .members
                    .get(id)
                    .map(|m| m.host_pid)
                    .into_iter()
                    .collect();
                let theirs = self
                    .execs
                    .values()
                    .filter(|e| e.container.as_deref() == Some(id));
                pids.extend(theirs.map(|e| e.host_pid).filter(|p| *p > 0));
                CtlReply::Ps { pids }
            }
            CtlRequest::Stats => stats_reply(vm),
            CtlRequest::Resize {
                exec_id,
                rows,
                cols,
            } => resize_reply(vm, exec_id, rows, cols),
            CtlRequest::Update { .. } => err(
                "a pod member's resources are the pod's VM's: update the pod's first container"
                    .into(),
            ),
            CtlRequest::Pause | CtlRequest::Resume => err(
                "one container of a pod cannot be paused: its VM is the pod's; pause the pod's \
                 first container"
                    .into(),
            ),
            CtlRequest::CreateMember { .. } | CtlRequest::Member { .. } => {
                err("not a request for a pod member".into())
            }
        };
        let _ = reply.send(r);
    }

    fn start_member(&mut self, vm: &mut Vmm, id: &str) -> CtlReply {
        let Some(m) = self.members.get_mut(id) else {
            return CtlReply::Error {
                message: "container does not exist".into(),
            };
        };
        if m.started {
            return CtlReply::Error {
                message: "cannot start a container that has already started".into(),
            };
        }
        let req = StartProcess {
            exec_id: m.exec_id,
            process: None,
            stdin: true,
            container: Some(id.to_owned()),
        };
        match vm
            .agent
            .request(HostRequest::StartProcess(Box::new(req)), m.start_timeout)
        {
            Ok(Reply::Started { pid, .. }) => {
                m.started = true;
                if let Some(stdin) = m.stdin.take() {
                    spawn_stdin_pump(vm.agent.clone(), StreamId::stdin(m.exec_id), stdin);
                }
                let _ = m.reply.send(CtlReply::Started {
                    exec_id: m.exec_id,
                    pid,
                });
                CtlReply::Ok
            }
            Ok(other) => CtlReply::Error {
                message: format!("unexpected reply to start: {other:?}"),
            },
            Err(e) => CtlReply::Error {
                message: request_error_text(e),
            },
        }
    }

    fn kill_member(&mut self, vm: &mut Vmm, id: &str, signal: i32, all: bool) -> CtlReply {
        let Some(m) = self.members.get(id) else {
            return CtlReply::Error {
                message: "container does not exist".into(),
            };
        };
        if !m.started {
            // Nothing runs yet: it ends as if killed by the signal.
            let exec_id = m.exec_id;
            self.member_exited(vm, exec_id, ExitStatus::Signal(signal));
            return CtlReply::Ok;
        }
        let req = HostRequest::Signal {
            exec_id: m.exec_id,
            signal,
            all,
            container: Some(id.to_owned()),
        };
        match vm.agent.request(req, REQUEST_TIMEOUT) {
            Ok(_) => CtlReply::Ok,
            Err(RequestError::Gone) => CtlReply::Error {
                message: "container not running".into(),
            },
            Err(e) => CtlReply::Error {
                message: request_error_text(e),
            },
        }
    }

    /// If `exec_id` is a member's init: report its status, unstage it, have the agent forget
    /// it. Returns whether it was one.
    pub(super) fn member_exited(&mut self, vm: &mut Vmm, exec_id: u32, status: ExitStatus) -> bool {
        let Some(id) = self
            .members
            .iter()
            .find(|(_, m)| m.exec_id == exec_id)
            .map(|(id, _)| id.clone())
        else {
            return false;
        };
        let Some(m) = self.members.remove(&id) else {
            return false;
        };
        let _ = m.reply.send(CtlReply::Exited {
            status: status.shell_code(),
        });
        let req = HostRequest::RemoveContainer { id: id.clone() };
        if let Err(e) = vm.agent.request(req, REQUEST_TIMEOUT) {
            log::debug(&format!(
                "forgetting pod member {id}: {}",
                request_error_text(e)
            ));
        }
        vm.agent.remove_sink(StreamId::stdout(exec_id));
        vm.agent.remove_sink(StreamId::stderr(exec_id));
        unstage(&m.staged);
        true
    }
}

/// Unmounts staging mount points (newest first) and removes them.
fn unstage(staged: &[PathBuf]) {
    for p in staged.iter().rev() {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(p).or_else(|_| std::fs::remove_file(p));
    }
}
