//! The per-container monitor: the host process that owns one container's VM.
//!
//! It stages the container's files for virtiofsd in a private mount namespace, starts virtiofsd
//! and QEMU (in parallel: virtiofsd gets an already-listening socket), speaks QMP and the agent
//! protocol, relays the container's stdio, forwards signals, and exits with the container
//! process's status. Its PID is what engines see as the container's PID (pid-file contract).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod agent;
pub mod api;
pub mod assets;
pub mod cgroup;
pub mod control;
pub mod devices;
mod error;
pub mod fdpass;
pub mod host_probe;
pub mod jail;
pub mod log;
pub mod member;
mod monitor;
mod qemu_filter;
pub mod share;
pub mod sys;
pub mod template;
pub mod timings;
pub mod tty;

pub use error::MonitorError;
pub use monitor::{error_chain, kept_console, run, Mode, Options};
