//! Runs a tiny real-mode guest under KVM: `out 0x10, al; hlt`. Meant to run in a child process
//! (the caller applies a deadline): under a broken or foreign KVM it can hang.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

const GUEST_ADDR: u64 = 0x1000;
const MEM_SIZE: usize = 0x1000;

/// Guest memory for the probe: an anonymous mapping, unmapped on drop.
struct GuestMem {
    ptr: *mut u8,
    len: usize,
}

impl GuestMem {
    fn new(len: usize) -> Result<Self, String> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.len);
        // SAFETY: ptr is a live mapping of len bytes, and bytes fits in it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr, bytes.len()) };
    }
}

impl Drop for GuestMem {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping created in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Runs the probe guest. `Ok` when it reached `hlt` after writing 0x42 to port 0x10.
pub fn run_probe_guest() -> Result<(), String> {
    let code: [u8; 5] = [0xb0, 0x42, 0xe6, 0x10, 0xf4]; // mov al,0x42; out 0x10,al; hlt
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let mut mem = GuestMem::new(MEM_SIZE)?;
    mem.write(&code);
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: MEM_SIZE as u64,
        userspace_addr: mem.ptr as u64,
        flags: 0,
    };
    // SAFETY: the region maps `mem`, which outlives the VM (dropped after `vm` below).
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| format!("set memory: {e}"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| format!("get sregs: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("set sregs: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("get regs: {e}"))?;
    regs.rip = GUEST_ADDR;
    regs.rflags = 2;
    vcpu.set_regs(&regs).map_err(|e| format!("set regs: {e}"))?;
    let mut saw_out = false;
    for _ in 0..16 {
        match vcpu.run().map_err(|e| format!("KVM_RUN: {e}"))? {
            VcpuExit::IoOut(0x10, data) if data.first() == Some(&0x42) => saw_out = true,
            VcpuExit::Hlt if saw_out => return Ok(()),
            other => return Err(format!("unexpected exit {other:?}")),
        }
    }
    Err("the probe guest never halted".into())
}
