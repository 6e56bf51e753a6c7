//! Running OCI lifecycle hooks: on the host `createRuntime`, `prestart` (deprecated, same
//! point), `poststart` and `poststop`; in the guest (hull-agent) `createContainer` and
//! `startContainer`. Each gets the container's state JSON on stdin and has a deadline.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

/// Deadline for a hook without a `timeout` of its own.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot run: {source}")]
    Spawn {
        kind: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed ({status}): {stderr}")]
    Failed {
        kind: &'static str,
        path: String,
        status: String,
        stderr: String,
    },
    #[error("{kind} hook {path} timed out after {timeout:?}")]
    Timeout {
        kind: &'static str,
        path: String,
        timeout: Duration,
    },
}

/// How long `hooks` may take at most, in order (each its `timeout`, else the default): the
/// host's deadline for a guest operation that runs them grows by this much.
pub fn total_timeout(hooks: &[Hook]) -> Duration {
    hooks.iter().map(hook_timeout).sum()
}

/// [`total_timeout`] of one kind of `spec`'s hooks, e.g. `Hooks::start_container`.
pub fn timeout_of(spec: &Spec, kind: impl Fn(&Hooks) -> &Option<Vec<Hook>>) -> Duration {
    let hooks = spec.hooks().as_ref().and_then(|h| kind(h).as_deref());
    total_timeout(hooks.unwrap_or_default())
}

fn hook_timeout(h: &Hook) -> Duration {
    h.timeout()
        .map(|t| Duration::from_secs(t.max(1) as u64))
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs `hooks` in order; the first failure stops and is returned.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    run_hooks_in(kind, hooks, state_json, None)
}

/// [`run_hooks`], each hook chrooted in `root` when given (its path is looked up there). The
/// caller must not die of SIGPIPE (Rust programs ignore it) if a hook leaves its stdin unread.
pub fn run_hooks_in(
    kind: &'static str,
    hooks: &[Hook],
    state_json: &str,
    root: Option<&Path>,
) -> Result<(), HookError> {
    for h in hooks {
        run_hook(kind, h, state_json, root)?;
    }
    Ok(())
}

/// "exit status N" or "killed by signal N".
fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => st.to_string(),
    }
}

fn run_hook(
    kind: &'static str,
    h: &Hook,
    state_json: &str,
    root: Option<&Path>,
) -> Result<(), HookError> {
    use std::os::unix::process::CommandExt;
    let path = h.path().display().to_string();
    let mut cmd = Command::new(h.path());
    if let Some(root) = root {
        let root = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()).map_err(|_| {
            HookError::Spawn {
                kind,
                path: path.clone(),
                source: std::io::Error::other("root path contains a NUL byte"),
            }
        })?;
        // SAFETY: between fork and exec only chroot(2) and chdir(2), async-signal-safe calls
        // on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    if let Some(args) = h.args() {
        if let Some((arg0, rest)) = args.split_first() {
            cmd.arg0(arg0).args(rest);
        }
    }
    cmd.env_clear();
    for kv in h.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HookError::Spawn {
            kind,
            path: path.clone(),
            source,
        })?;
    // stdin and stderr on threads of their own: a hook that neither reads its state nor stops
    // writing to stderr must still meet its deadline.
    if let Some(mut w) = child.stdin.take() {
        let state = state_json.to_string();
        std::thread::spawn(move || drop(w.write_all(state.as_bytes())));
    }
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    if let Some(mut r) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
    }
    let timeout = hook_timeout(h);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            if st.success() {
                return Ok(());
            }
            // A process the hook left behind may hold its stderr open: wait only briefly.
            let stderr = err_rx
                .recv_timeout(Duration::from_millis(500))
                .unwrap_or_default();
            return Err(HookError::Failed {
                kind,
                path,
                status: describe(st),
                stderr: stderr.trim().to_string(),
            });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Timeout {
                kind,
                path,
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(v: serde_json::Value) -> Hook {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hooks_get_the_state_on_stdin_and_their_env() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}; echo $X >> {}", out.display(), out.display())],
            "env": ["X=from-env"],
        }));
        run_hooks("poststart", &[h], "{\"id\":\"c\"}").unwrap();
        assert_eq!(
            std::fs::read_to_string(out).unwrap(),
            "{\"id\":\"c\"}from-env\n"
        );
    }

    #[test]
    fn a_failing_hook_names_itself_and_its_stderr() {
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}),
        );
        let e = run_hooks("prestart", &[h], "{}").unwrap_err().to_string();
        assert!(
            e.contains("prestart hook /bin/sh") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn total_timeout_adds_each_hooks_own_or_the_default() {
        let hooks = [
            hook(serde_json::json!({"path": "/bin/true", "timeout": 5})),
            hook(serde_json::json!({"path": "/bin/true"})),
        ];
        assert_eq!(
            total_timeout(&hooks),
            Duration::from_secs(5) + DEFAULT_TIMEOUT
        );
        assert_eq!(total_timeout(&[]), Duration::ZERO);
    }

    #[test]
    fn a_failing_hook_whose_child_keeps_stderr_open_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let h = hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("sleep 1000 & echo $! > {}; exit 5", pid_file.display())]}));
        let e = run_hooks("prestart", &[h], "{}").unwrap_err();
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = Command::new("kill").arg(pid.trim()).status();
        assert!(e.to_string().contains("exit status 5"), "{e}");
    }

    #[test]
    fn a_slow_hook_times_out() {
        let h =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}));
        let e = run_hooks("createRuntime", &[h], "{}").unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    }
}
