//! QEMU control for hull: the accelerator choice, the QEMU command line built from typed
//! structs, and a typed QMP client.

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accel;
pub mod cmdline;
pub mod kvm_probe;
pub mod qmp;
pub mod tsc;

pub use accel::{Accel, AccelChoice, AccelError};
pub use cmdline::{Chardev, Device, Fsdev, Machine, Memory, Netdev, QemuCommand, Sandbox};
pub use qmp::{QmpClient, QmpError};
