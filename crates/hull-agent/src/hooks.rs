//! OCI hooks that run in the guest, from the container's init child (after fork):
//! `createContainer` (in the container's mount namespace once its mounts are in place, before it
//! changes root) and `startContainer` (in the container, before the user's process is exec'd).
//! They run like the host's hooks (`hull_oci::hooks`: state on stdin, timeouts, errors naming
//! the hook); this module adds the guest's state JSON and the SIGPIPE guard.
//!
//! The guest's own root holds nothing but the agent, so a `createContainer` hook's path is looked
//! up in the container's root file system: the hook runs chrooted there, with the container's
//! mounts (what runc's runtime namespace would offer is the host's, which is not in the VM).

use std::path::Path;

use nix::sys::signal::{self, SigHandler, Signal};
use oci_spec::runtime::Hook;

use crate::container::Container;
use crate::error::{Error, Result};

/// The state JSON that hooks read on stdin. `pid` is the container init's PID as the hooks see it
/// (they run in its PID namespace).
pub fn state_json(c: &Container, status: &str) -> String {
    serde_json::json!({
        "ociVersion": c.spec.version(),
        "id": c.id,
        "status": status,
        "pid": std::process::id(),
        "bundle": c.bundle,
        "annotations": c.spec.annotations().clone().unwrap_or_default(),
    })
    .to_string()
}

/// Runs `hooks` in order (chrooted in `root` when given); the first failure is returned.
pub fn run(kind: &'static str, hooks: &[Hook], state: &str, root: Option<&Path>) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    // The init child has SIGPIPE at its default: a hook that does not read its stdin must not
    // kill it.
    // SAFETY: SIG_IGN and SIG_DFL run no handler code.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let r = hull_oci::hooks::run_hooks_in(kind, hooks, state, root);
    // SAFETY: as above; the process about to be exec'd gets the default back.
    let _ = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    r.map_err(|e| Error::msg(e.to_string()))
}
