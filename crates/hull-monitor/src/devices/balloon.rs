//! The memory balloon: a `virtio-balloon-device` (virtio-mmio) in every VM, how the
//! management API resizes the guest's memory (microvm has no memory hotplug and QEMU 7.2's
//! virtio-mem is PCI-only). The host sets a target (QMP `balloon`), the guest inflates or
//! deflates to meet it, and its `MemTotal` follows (without deflate-on-oom, virtio_balloon
//! adjusts the managed pages).
//!
//! Free page reporting (pages the guest frees go back to the host) is on for a cold-booted VM,
//! whose RAM is a shared memfd. It is off in templates and their clones: a clone's RAM is a
//! private mapping of the template's memory file, and QEMU 7.2 discards guest pages of a
//! file-backed RAM block with `fallocate(PUNCH_HOLE)` on the file even when it is mapped
//! private, i.e. it would punch holes into the template that every clone maps. For the same
//! reason the monitor refuses to inflate a clone's balloon (see `monitor::manage`).

use hull_qemu::{Device, QemuCommand};

use super::VmDevice;

/// QEMU's id of the balloon device.
pub const BALLOON_ID: &str = "balloon0";

pub struct Balloon {
    free_page_reporting: bool,
}

impl Balloon {
    /// `template`: the VM is (or will be) a template's clone, see the module's text.
    pub fn new(template: bool) -> Self {
        Self {
            free_page_reporting: !template,
        }
    }
}

impl VmDevice for Balloon {
    fn add_to(&self, q: &mut QemuCommand) {
        q.devices.push(Device::VirtioBalloon {
            id: BALLOON_ID.into(),
            free_page_reporting: self.free_page_reporting,
            // The API refuses targets below what the guest uses; a guest that grows past its
            // target later is OOM-killed inside rather than silently exceeding it.
            deflate_on_oom: false,
        });
    }
}
