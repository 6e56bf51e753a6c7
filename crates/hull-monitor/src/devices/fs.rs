//! The shares: a staging tree on the host (see `share`), served to the guest either by its own
//! virtiofsd over virtio-fs (a cold-booted VM) or by QEMU's own 9p server over virtio-9p (a VM
//! cloned from a template: vhost-user-fs cannot be migrated in QEMU 7.2, an unmounted 9p device
//! can). The guest agent mounts whichever kind carries the tag.

use hull_oci::{FsCache, ShareTree};
use hull_protocol::{SHARE_TAG, VOLUME_TAG};
use hull_qemu::{Chardev, Device, Fsdev, QemuCommand};

use super::{DeadBackend, HostCtx, VmDevice};
use crate::share::{self, Virtiofsd};
use crate::MonitorError;

/// How a share reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    VirtioFs,
    NineP,
}

pub struct FsShare {
    tree: ShareTree,
    transport: Transport,
    cache: FsCache,
    /// Staging directory name in the state directory.
    dir: &'static str,
    /// Socket QEMU connects to (relative to the state directory) and chardev id.
    sock: &'static str,
    chardev: &'static str,
    tag: &'static str,
    log: &'static str,
    daemon: Option<Virtiofsd>,
    sock_path: Option<std::path::PathBuf>,
}

impl FsShare {
    /// The container's rootfs (and, for pods, later members' rootfs).
    pub fn rootfs(transport: Transport, cache: FsCache) -> Self {
        Self {
            tree: ShareTree::Rootfs,
            transport,
            cache,
            dir: "share",
            sock: "vfs.sock",
            chardev: "vfs",
            tag: SHARE_TAG,
            log: "virtiofsd.log",
            daemon: None,
            sock_path: None,
        }
    }

    /// Sources of bind mounts, coherent with the host.
    pub fn volumes(transport: Transport, cache: FsCache) -> Self {
        Self {
            tree: ShareTree::Volumes,
            transport,
            cache,
            dir: "volumes",
            sock: "vol.sock",
            chardev: "vol",
            tag: VOLUME_TAG,
            log: "virtiofsd-volumes.log",
            daemon: None,
            sock_path: None,
        }
    }
}

impl VmDevice for FsShare {
    fn stage(&mut self, ctx: &HostCtx) -> Result<(), MonitorError> {
        share::stage(ctx.plan, self.tree, &ctx.sd.path(self.dir))
    }

    fn start_backend(&mut self, ctx: &HostCtx) -> Result<(), MonitorError> {
        if self.transport == Transport::NineP {
            return Ok(()); // QEMU serves it
        }
        let listener = crate::monitor::bind(ctx.sd, self.sock)?;
        self.sock_path = Some(ctx.sd.path(self.sock));
        // QEMU, as the VMM user, connects to it.
        crate::jail::give(&ctx.sd.path(self.sock))?;
        self.daemon = Some(share::spawn_virtiofsd(
            &ctx.assets.virtiofsd,
            &ctx.sd.path(self.dir),
            self.cache,
            &listener,
            &ctx.sd.path(self.log),
        )?);
        Ok(())
    }

    fn add_to(&self, q: &mut QemuCommand) {
        if self.transport == Transport::NineP {
            // Relative to QEMU's working directory (the state directory, or a template's build
            // directory, which has the same layout).
            q.fsdevs.push(Fsdev {
                id: self.chardev.into(),
                path: self.dir.into(),
            });
            q.devices.push(Device::Virtio9p {
                fsdev: self.chardev.into(),
                tag: self.tag.into(),
            });
            return;
        }
        q.chardevs.push(Chardev::SocketClient {
            id: self.chardev.into(),
            path: self.sock.into(),
        });
        q.devices.push(Device::VhostUserFs {
            chardev: self.chardev.into(),
            tag: self.tag.into(),
            queue_size: 1024,
        });
    }

    fn dead_backend(&mut self) -> Option<DeadBackend> {
        let d = self.daemon.as_mut()?;
        let status = d.child.try_wait()?;
        Some(DeadBackend {
            program: "virtiofsd",
            status: status.to_string(),
            log: d.log.clone(),
        })
    }

    fn host_pids(&self) -> Vec<(String, u32)> {
        match &self.daemon {
            Some(d) => crate::api::with_children("virtiofsd", d.child.id()),
            None => Vec::new(),
        }
    }

    fn stop(&mut self) {
        if let Some(d) = &mut self.daemon {
            d.child.wait_or_kill(std::time::Duration::from_secs(1));
        }
        if let Some(p) = self.sock_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}
