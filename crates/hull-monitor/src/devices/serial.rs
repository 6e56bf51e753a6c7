//! The virtio-serial bus with the agent's port and (optionally) the guest console.
//!
//! QEMU connects to the monitor's `agent.sock` (the monitor listens: see the vmm phase), and
//! writes the console (hvc0) to `console.log` in the state directory.

use hull_protocol::AGENT_PORT_NAME;
use hull_qemu::{Chardev, Device, QemuCommand};

use super::{HostCtx, VmDevice};
use crate::MonitorError;

pub struct Serial {
    console: bool,
}

impl Serial {
    pub fn new(console: bool) -> Self {
        Self { console }
    }
}

impl VmDevice for Serial {
    fn stage(&mut self, ctx: &HostCtx) -> Result<(), MonitorError> {
        if !self.console {
            std::fs::write(
                ctx.sd.console_log(),
                "(no guest console: HULL_GUEST_CONSOLE=off)\n",
            )
            .map_err(MonitorError::sys("write console.log"))?;
        } else {
            // QEMU, as the VMM user, appends to it.
            std::fs::File::create(ctx.sd.console_log())
                .map_err(MonitorError::sys("create console.log"))?;
            crate::jail::give(&ctx.sd.console_log())?;
        }
        Ok(())
    }

    fn add_to(&self, q: &mut QemuCommand) {
        q.devices.push(Device::VirtioSerial {
            id: "vser0".into(),
            max_ports: 4,
        });
        if self.console {
            q.chardevs.push(Chardev::File {
                id: "console".into(),
                path: "console.log".into(),
            });
            q.devices.push(Device::VirtConsole {
                chardev: "console".into(),
            });
        }
        // Relative to QEMU's working directory, the state directory (short socket paths).
        q.chardevs.push(Chardev::SocketClient {
            id: "agent".into(),
            path: "agent.sock".into(),
        });
        q.devices.push(Device::VirtSerialPort {
            chardev: "agent".into(),
            name: AGENT_PORT_NAME.into(),
        });
    }
}
