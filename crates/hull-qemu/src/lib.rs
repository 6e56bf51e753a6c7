//! QEMU control for hull: the accelerator choice, the QEMU command line built from typed
//! structs, and a typed QMP client.

pub mod accel;
pub mod cmdline;
pub mod kvm_probe;
pub mod qmp;
pub mod tsc;

pub use accel::{Accel, AccelChoice, AccelError};
pub use cmdline::{Chardev, Device, Fsdev, Machine, Memory, Netdev, QemuCommand, Sandbox};
pub use qmp::{QmpClient, QmpError};
