//! The host's TSC frequency, for TCG guests.
//!
//! Under TCG the guest's TSC is the host's TSC, but the guest has no kvmclock to learn its
//! frequency and calibrates it against the emulated PIT. On a loaded host that calibration fails
//! ("Unable to calibrate against PIT") and the kernel hangs before printing anything. Passing
//! `tsc_early_khz=<host kHz>` skips the calibration: boots are then reliable under load.

use std::time::{Duration, Instant};

fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; every x86_64 CPU has it.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Measures the host TSC frequency in kHz over `window` (10 ms gives ~0.01 % here).
pub fn host_tsc_khz(window: Duration) -> Option<u64> {
    let t0 = Instant::now();
    let c0 = rdtsc();
    std::thread::sleep(window);
    let c1 = rdtsc();
    let ns = t0.elapsed().as_nanos() as u64;
    (ns > 0 && c1 > c0).then(|| (c1 - c0) * 1_000_000 / ns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tsc_frequency_is_plausible() {
        let khz = super::host_tsc_khz(std::time::Duration::from_millis(10)).unwrap();
        assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
    }
}
