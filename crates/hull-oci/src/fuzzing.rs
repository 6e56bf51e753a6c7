//! What the `config_plan` fuzz target (`fuzz/fuzz_targets/`) runs, kept here so that the
//! normal test suite replays its corpus through exactly the same code
//! (`tests/fuzz_corpus.rs`). Not an API.

use std::path::Path;

use crate::{parse_spec, Bundle, OciError, VmPlan};

/// The host CPUs the plan is capped by.
pub const HOST_CPUS: u32 = 4;

/// `data` as the config.json of the bundle in `bundle` (a directory with an empty `rootfs`),
/// through what `create` does with it: parsing, [`Bundle`] validation, [`VmPlan`] building.
/// Checks the bounds a plan promises (vCPUs within the host's and [`crate::MAX_VCPUS`], memory
/// at least the minimum, max ≥ start values, the rootfs share first).
pub fn config_plan(bundle: &Path, data: &[u8]) -> Result<VmPlan, OciError> {
    let config_path = bundle.join("config.json");
    let spec = parse_spec(data, &config_path)?;
    let b = Bundle::from_spec(bundle.to_path_buf(), config_path, spec)?;
    let _ = (b.network_namespace(), b.terminal());
    let plan = VmPlan::from_bundle(&b, HOST_CPUS)?;
    assert!((1..=HOST_CPUS).contains(&plan.vcpus), "{plan:?}");
    assert!(
        plan.max_vcpus >= plan.vcpus && plan.max_vcpus <= crate::MAX_VCPUS.max(plan.vcpus),
        "{plan:?}"
    );
    assert!(
        u64::from(plan.memory_mib) >= crate::MIN_MEMORY_MIB,
        "{plan:?}"
    );
    assert!(plan.max_memory_mib >= plan.memory_mib, "{plan:?}");
    assert!(
        plan.shares.first().map(|s| s.mount_index) == Some(None),
        "{plan:?}"
    );
    Ok(plan)
}
