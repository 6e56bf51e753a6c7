//! Loading and validating `config.json` of a bundle.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::OciError;

/// Mount types the agent knows how to set up in the guest.
const SUPPORTED_MOUNT_TYPES: &[&str] = &[
    "proc", "sysfs", "devpts", "tmpfs", "mqueue", "cgroup", "cgroup2", "bind", "none",
];

/// A loaded, validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// `<dir>/config.json`.
    pub config_path: PathBuf,
    pub spec: Spec,
    /// Absolute root filesystem directory (`root.path` resolved against the bundle).
    pub rootfs: PathBuf,
}

/// Whether an OCI mount is a bind mount (by type, or by a `bind`/`rbind` option).
pub fn is_bind_mount(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .as_ref()
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// Parses a config.json without the checks of [`Bundle::load`] (for a container that already
/// exists: its rootfs may be gone by the time poststop hooks run).
pub fn read_spec(config_path: &Path) -> Result<Spec, OciError> {
    let text = std::fs::read(config_path).map_err(|source| OciError::ReadConfig {
        path: config_path.to_path_buf(),
        source,
    })?;
    parse_spec(&text, config_path)
}

/// Parses the bytes of a config.json (`config_path` names it in errors).
pub fn parse_spec(bytes: &[u8], config_path: &Path) -> Result<Spec, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::ParseConfig {
        path: config_path.to_path_buf(),
        message: e.to_string(),
    })
}

impl Bundle {
    /// Loads `<dir>/config.json` and checks everything hull needs from it.
    pub fn load(dir: &Path) -> Result<Self, OciError> {
        let dir = std::fs::canonicalize(dir).map_err(|source| OciError::BundleDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let config_path = dir.join("config.json");
        let spec = read_spec(&config_path)?;
        Self::from_spec(dir, config_path, spec)
    }

    /// Validates an already parsed spec of the bundle in `dir`.
    pub fn from_spec(dir: PathBuf, config_path: PathBuf, spec: Spec) -> Result<Self, OciError> {
        let invalid = |field: &str, problem: String| OciError::Invalid {
            path: config_path.clone(),
            field: field.to_string(),
            problem,
        };
        let unsupported = |field: String, value: String, why: &str| OciError::Unsupported {
            config: config_path.clone(),
            field,
            value,
            why: why.to_string(),
        };

        if !spec.version().starts_with("1.") {
            return Err(invalid(
                "ociVersion",
                format!("{:?} is not a 1.x runtime-spec version", spec.version()),
            ));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid("root", "missing".into()))?;
        let rootfs = dir.join(root.path());
        match std::fs::metadata(&rootfs) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(OciError::Rootfs {
                    rootfs,
                    config: config_path,
                    problem: "is not a directory".into(),
                })
            }
            Err(e) => {
                return Err(OciError::Rootfs {
                    rootfs,
                    config: config_path,
                    problem: format!("cannot be used: {e}"),
                })
            }
        }

        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid("process", "missing".into()))?;
        let args = process.args().as_deref().unwrap_or_default();
        if args.is_empty() {
            return Err(invalid(
                "process.args",
                "must contain at least one element".into(),
            ));
        }
        if !process.cwd().is_absolute() {
            return Err(invalid(
                "process.cwd",
                format!("{:?} is not an absolute path", process.cwd()),
            ));
        }
        if let Some(name) = process.user().username() {
            return Err(unsupported(
                "process.user.username".into(),
                name.clone(),
                "only Windows uses it; give uid/gid",
            ));
        }
        for (i, e) in process
            .env()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !e.contains('=') {
                return Err(invalid(
                    &format!("process.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }

        for (i, m) in spec
            .mounts()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let field = format!("mounts[{i}]");
            if !m.destination().is_absolute() {
                return Err(invalid(
                    &format!("{field}.destination"),
                    format!("{:?} is not an absolute path", m.destination()),
                ));
            }
            if is_bind_mount(m) {
                let src = m.source().as_ref().ok_or_else(|| {
                    invalid(
                        &format!("{field}.source"),
                        "a bind mount needs a source".into(),
                    )
                })?;
                let src = if src.is_absolute() {
                    src.clone()
                } else {
                    dir.join(src)
                };
                if let Err(e) = std::fs::metadata(&src) {
                    return Err(OciError::BindSource {
                        config: config_path.clone(),
                        field: format!("{field}.source"),
                        source_path: src,
                        problem: format!("cannot be used: {e}"),
                    });
                }
            } else {
                let typ = m.typ().as_deref().unwrap_or("");
                if !SUPPORTED_MOUNT_TYPES.contains(&typ) {
                    return Err(unsupported(
                        format!("{field}.type"),
                        typ.to_string(),
                        "hull supports proc, sysfs, devpts, tmpfs, mqueue, cgroup, cgroup2 and bind mounts",
                    ));
                }
            }
        }

        let joins_network = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| {
                ns.iter()
                    .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_some())
            });
        let b = Self {
            dir,
            config_path,
            spec,
            rootfs,
        };
        // Joining another namespace is possible only as a later container of a pod (the VM of
        // the container whose network namespace it joins): the monitor decides that.
        if !joins_network {
            b.refuse_joined_namespaces()?;
        }
        Ok(b)
    }

    /// The spec's network namespace: `None` if it asks for none (the host's network),
    /// `Some(None)` for a new one, `Some(Some(path))` to join one (an engine's).
    pub fn network_namespace(&self) -> Option<Option<PathBuf>> {
        let ns = self.spec.linux().as_ref()?.namespaces().as_ref()?;
        ns.iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .map(|n| n.path().clone())
    }

    /// The namespaces of `kinds` the spec asks to be new (listed without a path).
    pub fn new_namespaces(&self, kinds: &[LinuxNamespaceType]) -> Vec<LinuxNamespaceType> {
        let Some(ns) = self
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
        else {
            return Vec::new();
        };
        ns.iter()
            .filter(|n| n.path().is_none() && kinds.contains(&n.typ()))
            .map(|n| n.typ())
            .collect()
    }

    /// Refuses namespace paths other than the network's: outside a pod, a host namespace cannot
    /// be joined from inside a VM.
    pub fn refuse_joined_namespaces(&self) -> Result<(), OciError> {
        let unsupported = |field: String, value: String, why: &str| OciError::Unsupported {
            config: self.config_path.clone(),
            field,
            value,
            why: why.into(),
        };
        if let Some(linux) = self.spec.linux() {
            for (i, ns) in linux
                .namespaces()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some(p) = ns.path() {
                    if ns.typ() != LinuxNamespaceType::Network {
                        return Err(unsupported(
                            format!("linux.namespaces[{i}].path"),
                            p.display().to_string(),
                            "joining a host namespace is impossible from inside a VM (only a \
                             container sharing the network namespace of a running hull \
                             container, a pod, can share its other namespaces)",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// `process.terminal` of the spec.
    pub fn terminal(&self) -> bool {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn bundle_with(config: Value) -> (tempfile::TempDir, Result<Bundle, OciError>) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("rootfs")).unwrap();
        std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
        let r = Bundle::load(d.path());
        (d, r)
    }

    fn minimal() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        })
    }

    #[test]
    fn minimal_bundle_loads() {
        let (d, b) = bundle_with(minimal());
        let b = b.unwrap();
        assert_eq!(b.rootfs, d.path().canonicalize().unwrap().join("rootfs"));
    }

    #[test]
    fn missing_config_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let e = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn broken_json_names_the_problem() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), "{\"ociVersion\": ").unwrap();
        let e = Bundle::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("not a valid OCI runtime config"), "{e}");
    }

    #[test]
    fn missing_rootfs_is_named() {
        let mut c = minimal();
        c["root"]["path"] = json!("nope");
        let (_d, b) = bundle_with(c);
        let e = b.unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("root.path"), "{e}");
    }

    #[test]
    fn empty_args_are_rejected_with_the_field() {
        let mut c = minimal();
        c["process"]["args"] = json!([]);
        let (_d, b) = bundle_with(c);
        assert!(b.unwrap_err().to_string().contains("process.args"));
    }

    #[test]
    fn relative_cwd_is_rejected() {
        let mut c = minimal();
        c["process"]["cwd"] = json!("tmp");
        let (_d, b) = bundle_with(c);
        assert!(b.unwrap_err().to_string().contains("process.cwd"));
    }

    #[test]
    fn unsupported_mount_type_names_index_and_value() {
        let mut c = minimal();
        c["mounts"] = json!([{"destination": "/x", "type": "nfs", "source": "srv:/x"}]);
        let (_d, b) = bundle_with(c);
        let e = b.unwrap_err().to_string();
        assert!(e.contains("mounts[0].type") && e.contains("\"nfs\""), "{e}");
    }

    #[test]
    fn missing_bind_source_is_named() {
        let mut c = minimal();
        c["mounts"] = json!([{"destination": "/x", "type": "bind", "source": "/does/not/exist", "options": ["rbind"]}]);
        let (_d, b) = bundle_with(c);
        let e = b.unwrap_err().to_string();
        assert!(
            e.contains("mounts[0].source") && e.contains("/does/not/exist"),
            "{e}"
        );
    }

    #[test]
    fn joining_host_pid_namespace_is_unsupported() {
        let mut c = minimal();
        c["linux"] = json!({"namespaces": [{"type": "pid", "path": "/proc/1/ns/pid"}]});
        let (_d, b) = bundle_with(c);
        let e = b.unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[0].path"), "{e}");
    }

    #[test]
    fn network_namespace_path_is_accepted() {
        let mut c = minimal();
        c["linux"] = json!({"namespaces": [{"type": "network", "path": "/run/netns/x"}]});
        let (_d, b) = bundle_with(c);
        b.unwrap();
    }

    #[test]
    fn wrong_oci_version_is_named() {
        let mut c = minimal();
        c["ociVersion"] = json!("0.5.0");
        let (_d, b) = bundle_with(c);
        assert!(b.unwrap_err().to_string().contains("ociVersion"));
    }
}
