//! `hull rmi`: removes image names, and the images once no name is left. An image a
//! container uses is refused unless `-f` (then it only loses its names).

use super::Ctx;
use crate::error::Result;

const EXAMPLES: &str = "\
Examples:
  hull rmi busybox
  hull rmi -f 0123456789ab";

/// Remove images.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct RmiArgs {
    /// Remove images containers use too (they keep the content).
    #[arg(short, long)]
    pub force: bool,
    /// The images (names, ids or id prefixes).
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<i32> {
    let store = ctx.store()?;
    let in_use = ctx.images_in_use()?;
    super::for_each(&a.images, |name| {
        for line in store.remove(name, &in_use, a.force)? {
            println!("{line}");
        }
        Ok(())
    })
}
