//! `hull pull`: an image from a registry into the store.

use std::path::PathBuf;

use hull_image::{Platform, Progress, PullOptions};

use super::Ctx;
use crate::error::{Context, Result};

const EXAMPLES: &str = "\
Examples:
  hull pull busybox
  hull pull --platform linux/arm64 debian:12
  hull pull 127.0.0.1:5000/tools/app:1.2";

/// Pull an image from a registry.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct PullArgs {
    /// Platform to pull (os/arch[/variant]); default: the host's.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Reach this registry over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Credentials file (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// The image: NAME[:TAG] or NAME@sha256:DIGEST.
    pub image: String,
}

pub fn pull(ctx: &Ctx, a: PullArgs) -> Result<i32> {
    let store = ctx.store()?;
    let opts = PullOptions {
        platform: a.platform,
        insecure_registries: a.insecure_registries,
        auth_file: a.authfile,
        progress: if a.quiet {
            Progress::Quiet
        } else {
            Progress::auto()
        },
    };
    let image = store
        .pull(&a.image, &opts)
        .with_context(|| format!("pulling {}", a.image))?;
    if !a.quiet {
        eprintln!("Digest: {}", image.digest);
    }
    let name = hull_image::normalize(&a.image).unwrap_or(a.image);
    println!("{name}");
    Ok(0)
}
