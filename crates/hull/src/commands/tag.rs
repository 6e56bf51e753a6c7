//! `hull tag`: another name for a local image.

use super::Ctx;
use crate::error::Result;

const EXAMPLES: &str = "\
Examples:
  hull tag busybox 127.0.0.1:5000/busybox:stable";

/// Give a local image another name.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct TagArgs {
    /// The image (name, id or id prefix).
    pub source: String,
    /// The new name: NAME[:TAG].
    pub target: String,
}

pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<i32> {
    ctx.store()?.tag(&a.source, &a.target)?;
    Ok(0)
}
