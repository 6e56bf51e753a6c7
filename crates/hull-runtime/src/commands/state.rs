//! `state`: the OCI state JSON.

use anyhow::Result;

use crate::Ctx;

pub fn state(ctx: &Ctx, a: liboci_cli::State) -> Result<i32> {
    let (_, st) = super::load(ctx, &a.container_id)?;
    println!("{}", serde_json::to_string_pretty(&st.oci())?);
    Ok(0)
}
