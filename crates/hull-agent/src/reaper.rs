//! Reaping children: the agent is PID 1, so every orphan of the VM ends up here too.

use std::sync::Arc;

use hull_protocol::ExitStatus;

use crate::agent::Agent;
use crate::error::{Context, Result};
use crate::sys::{self, Reaped};

/// How a process ended, from its raw wait status.
pub fn exit_status(raw: i32) -> ExitStatus {
    if libc::WIFSIGNALED(raw) {
        ExitStatus::Signal(libc::WTERMSIG(raw))
    } else {
        ExitStatus::Code(libc::WEXITSTATUS(raw))
    }
}

/// Starts the reaper thread. SIGCHLD must be blocked in every thread (see
/// [`sys::block_sigchld`]): the thread waits for it and then reaps until nothing is left, so no
/// child is missed even when signals coalesce.
pub fn start(agent: Arc<Agent>) -> Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .stack_size(crate::stdio::THREAD_STACK)
        .spawn(move || loop {
            while let Reaped::Child { pid, status } = sys::reap_one() {
                agent.on_child_exit(pid, status, sys::boottime_ns());
            }
            sys::wait_sigchld();
        })
        .map(drop)
        .ctx(|| "starting the reaper thread".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_from_wait_status() {
        assert_eq!(exit_status(0), ExitStatus::Code(0));
        assert_eq!(exit_status(7 << 8), ExitStatus::Code(7));
        assert_eq!(exit_status(255 << 8), ExitStatus::Code(255));
        assert_eq!(exit_status(9), ExitStatus::Signal(9));
        // Killed by SIGSEGV with a core dump.
        assert_eq!(exit_status(11 | 0x80), ExitStatus::Signal(11));
    }
}
