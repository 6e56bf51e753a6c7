//! `hull version`: this hull, the hull-runtime it drives, and where it keeps things.

use std::process::Stdio;
use std::time::Duration;

use super::Ctx;
use crate::error::Result;
use crate::runtime::output_with_deadline;

const EXAMPLES: &str = "\
Examples:
  hull version";

/// Show versions.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct VersionArgs {}

pub fn version(ctx: &Ctx, _a: VersionArgs) -> Result<i32> {
    let rt = ctx.runtime();
    println!("hull:          {}", env!("CARGO_PKG_VERSION"));
    let mut cmd = std::process::Command::new(&rt.bin);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let runtime = match output_with_deadline(&mut cmd, Duration::from_secs(10)) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        _ => "not found (install it next to hull, or set HULL_RUNTIME)".to_string(),
    };
    println!("hull-runtime:  {runtime} ({})", rt.bin.display());
    println!("root:          {}", ctx.root.display());
    println!("platform:      {}", hull_image::Platform::host());
    Ok(0)
}
