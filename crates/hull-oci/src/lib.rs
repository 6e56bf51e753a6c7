//! An OCI bundle, validated for running in a hull VM, and its translation into a [`VmPlan`].
//!
//! Everything a user can get wrong in a bundle is checked here, before any VM, process, mount or
//! state file exists, and reported with the file, the field and the value.

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arch;
mod bundle;
mod default_spec;
#[doc(hidden)]
pub mod fuzzing;
pub mod hooks;
mod plan;
pub mod publish;

pub use arch::{Arch, Emulation};
pub use bundle::{is_bind_mount, parse_spec, read_spec, Bundle};
pub use default_spec::default_spec;
pub use plan::{memory_mib_for_limit, vcpus_for_quota};
pub use plan::{
    FsCache, NetBackend, Share, ShareTree, VmPlan, ANNOTATION_MAX_MEMORY_MIB, ANNOTATION_MAX_VCPUS,
    ANNOTATION_MEMORY_MIB, ANNOTATION_NET_BACKEND, ANNOTATION_ROOTFS_CACHE, ANNOTATION_VCPUS,
    ANNOTATION_VM_TEMPLATE, DEFAULT_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB,
};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("bundle {path}: {source}")]
    BundleDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot read: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid OCI runtime config: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("rootfs {rootfs} (root.path in {config}) {problem}")]
    Rootfs {
        rootfs: PathBuf,
        config: PathBuf,
        problem: String,
    },
    #[error("{config}: {field}: bind mount source {source_path} {problem}")]
    BindSource {
        config: PathBuf,
        field: String,
        source_path: PathBuf,
        problem: String,
    },
    #[error("{config}: {field}: unsupported value {value:?}: {why}")]
    Unsupported {
        config: PathBuf,
        field: String,
        value: String,
        why: String,
    },
}
