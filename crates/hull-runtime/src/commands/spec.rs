//! `spec [--bundle DIR]`: writes a default config.json, as runc does.

use anyhow::{anyhow, Result};

use crate::Ctx;

pub fn spec(_ctx: &Ctx, a: liboci_cli::Spec) -> Result<i32> {
    let dir = a.bundle.unwrap_or_else(|| ".".into());
    let path = dir.join("config.json");
    if path.exists() {
        return Err(anyhow!("File {} exists. Remove it first", path.display()));
    }
    let mut spec = hull_oci::default_spec();
    spec["process"]["terminal"] = serde_json::json!(true);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(0)
}
