//! exec: another process in the running container, with the stdio fds its host process sent.

use std::fs::File;
use std::sync::mpsc::Sender;

use hull_protocol::{HostRequest, Reply, StartProcess, StreamId};

use super::serve::{request_error_text, spawn_stdin_pump};
use super::vmm::Vmm;
use super::{ExecEntry, Monitor, REQUEST_TIMEOUT};
use crate::control::CtlReply;

impl Monitor {
    /// Starts an exec'd process whose stdio are `fds` (stdin, stdout, stderr; or one pty slave).
    pub(super) fn exec(
        &mut self,
        vm: &mut Vmm,
        process: oci_spec::runtime::Process,
        fds: Vec<std::os::fd::OwnedFd>,
        host_pid: i32,
        reply: Sender<CtlReply>,
        container: Option<String>,
    ) {
        let terminal = process.terminal().unwrap_or(false);
        let mut files: Vec<File> = fds.into_iter().map(File::from).collect();
        let want = if terminal { 1 } else { 3 };
        if files.len() != want {
            let message = format!("exec needs {want} stdio fds, got {}", files.len());
            let _ = reply.send(CtlReply::Error { message });
            return;
        }
        let exec_id = self.next_exec;
        self.next_exec += 1;
        let input = files.remove(0);
        let out = if terminal {
            input.try_clone().ok()
        } else {
            Some(files.remove(0))
        };
        if let Some(out) = out {
            vm.agent.add_sink(StreamId::stdout(exec_id), Box::new(out));
        }
        if !terminal {
            vm.agent
                .add_sink(StreamId::stderr(exec_id), Box::new(files.remove(0)));
        }
        let req = StartProcess {
            exec_id,
            process: Some(process),
            stdin: true,
            container: container.clone(),
        };
        match vm
            .agent
            .request(HostRequest::StartProcess(Box::new(req)), REQUEST_TIMEOUT)
        {
            Ok(Reply::Started { pid, .. }) => {
                let _ = reply.send(CtlReply::Started { exec_id, pid });
                spawn_stdin_pump(vm.agent.clone(), StreamId::stdin(exec_id), input);
                self.execs.insert(
                    exec_id,
                    ExecEntry {
                        reply,
                        host_pid,
                        container,
                    },
                );
            }
            other => {
                // It never ran: release its stdio now (no Eof will ever come for it).
                vm.agent.remove_sink(StreamId::stdout(exec_id));
                vm.agent.remove_sink(StreamId::stderr(exec_id));
                let message = match other {
                    Ok(r) => format!("unexpected reply {r:?}"),
                    Err(e) => request_error_text(e),
                };
                let _ = reply.send(CtlReply::Error { message });
            }
        }
    }
}
