//! OCI lifecycle hooks that run on the host: `createRuntime`, `prestart` (deprecated, same
//! point), `poststart` and `poststop`. Each gets the container's state JSON on stdin.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

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

fn hook_timeout(h: &Hook) -> Duration {
    h.timeout()
        .map(|t| Duration::from_secs(t.max(1) as u64))
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Runs `hooks` in order; the first failure stops and is returned.
pub fn run_hooks(kind: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    for h in hooks {
        run_hook(kind, h, state_json)?;
    }
    Ok(())
}

fn run_hook(kind: &'static str, h: &Hook, state_json: &str) -> Result<(), HookError> {
    use std::os::unix::process::CommandExt;
    let path = h.path().display().to_string();
    let mut cmd = Command::new(h.path());
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
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = hook_timeout(h);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            if st.success() {
                return Ok(());
            }
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            return Err(HookError::Failed {
                kind,
                path,
                status: st.to_string(),
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
    fn a_slow_hook_times_out() {
        let h =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}));
        let e = run_hooks("createRuntime", &[h], "{}").unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    }
}
