//! `create`: start the container's monitor (which boots the VM) and return once the container
//! is `created`. The monitor is the PID in the pid-file: it lives exactly as long as the
//! container's process and exits with its status.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use anyhow::{anyhow, Result};

use super::CodedError;
use crate::Ctx;

pub fn create(ctx: &Ctx, a: liboci_cli::Create) -> Result<i32> {
    super::refuse_preserved_fds(a.preserve_fds)?;
    create_container(
        ctx,
        &a.container_id,
        &a.bundle,
        a.pid_file.as_deref(),
        a.console_socket.as_deref(),
    )
}

/// `create` proper (also the first half of `run --detach`).
pub fn create_container(
    ctx: &Ctx,
    id: &str,
    bundle: &std::path::Path,
    pid_file: Option<&std::path::Path>,
    console_socket: Option<&std::path::Path>,
) -> Result<i32> {
    hull_state::validate_id(id)?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = super::monitor_command(ctx, id, bundle, pid_file, console_socket)?;
    let wr_fd = wr.as_raw_fd();
    cmd.arg("--ready-fd").arg(wr_fd.to_string());
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: only async-signal-safe calls between fork and exec: fcntl and setsid.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(wr_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(wr_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot execute {}: {e}", super::monitor_binary().display()))?;
    drop(wr);
    let rd = std::fs::File::from(rd);
    let mut line = String::new();
    let _ = BufReader::new(rd).read_line(&mut line);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or(serde_json::Value::Null);
    if v["ok"] == true {
        // The monitor carries on; the engine (a subreaper) will reap it.
        std::mem::forget(child);
        return Ok(0);
    }
    if let Some(msg) = v["error"].as_str() {
        let _ = child.wait();
        let code = v["code"].as_i64().unwrap_or(1) as i32;
        return Err(CodedError {
            code,
            message: msg.to_string(),
        }
        .into());
    }
    let status = child.wait()?;
    // Killed (or crashed) before it could clean up: its QEMU and virtiofsd died with it, its
    // mounts with its namespace; its state directory (and cgroup) would outlive the failed create.
    let _ = super::delete::force_delete(ctx, id);
    Err(anyhow!(
        "the container monitor exited before the container was created ({status})"
    ))
}
