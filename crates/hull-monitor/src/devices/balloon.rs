//! The memory balloon: a `virtio-balloon-device` (virtio-mmio) in every VM, how the
//! management API resizes the guest's memory (microvm has no memory hotplug and QEMU 7.2's
//! virtio-mem is PCI-only). The host sets a target (QMP `balloon`), the guest inflates or
//! deflates to meet it, and its `MemTotal` follows (without deflate-on-oom, virtio_balloon
//! adjusts the managed pages).
//!
//! Free page reporting (pages the guest frees go back to the host) is on in every VM. In a
//! cold-booted VM the RAM is a shared memfd and QEMU punches the pages out of it. A template's
//! build VM punches them out of the template's memory file (the template gets sparse). A clone
//! maps that file private: QEMU 7.2 would punch holes into the template there too, so a clone's
//! QEMU runs under a seccomp filter that makes hole punching a no-op and only its private
//! copies are dropped (`crate::qemu_filter`).

use hull_qemu::{Device, QemuCommand};

use super::VmDevice;

/// QEMU's id of the balloon device.
pub const BALLOON_ID: &str = "balloon0";

pub struct Balloon;

impl VmDevice for Balloon {
    fn add_to(&self, q: &mut QemuCommand) {
        q.devices.push(Device::VirtioBalloon {
            id: BALLOON_ID.into(),
            free_page_reporting: true,
            // The API refuses targets below what the guest uses; a guest that grows past its
            // target later is OOM-killed inside rather than silently exceeding it.
            deflate_on_oom: false,
        });
    }
}
