//! `state`: the OCI state JSON.

use anyhow::Result;
use serde_json::json;

use crate::Ctx;

pub fn state(ctx: &Ctx, a: liboci_cli::State) -> Result<i32> {
    let (_, st) = super::load(ctx, &a.container_id)?;
    let mut v = json!({
        "ociVersion": "1.2.0",
        "id": st.id,
        "pid": st.pid,
        "status": st.status,
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": st.owner,
    });
    if !st.annotations.is_empty() {
        v["annotations"] = json!(st.annotations);
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}
