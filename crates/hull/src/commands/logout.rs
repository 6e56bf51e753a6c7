//! `hull logout`: forgets the credentials of a registry.

use std::path::PathBuf;

use super::Ctx;
use crate::error::{Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull logout quay.io";

/// Remove stored credentials for a registry.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct LogoutArgs {
    /// Credentials file (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json).
    #[arg(long)]
    pub authfile: Option<PathBuf>,
    /// The registry (host[:port]); default docker.io.
    #[arg(default_value = "docker.io")]
    pub registry: String,
}

pub fn logout(_ctx: &Ctx, a: LogoutArgs) -> Result<i32> {
    let auth_file = hull_image::auth_file_path(a.authfile.as_deref()).ok_or_else(|| {
        Error::Invalid("no credentials file: set HOME, REGISTRY_AUTH_FILE or --authfile".into())
    })?;
    if hull_image::logout(&auth_file, &a.registry)? {
        println!("Removing login credentials for {}", a.registry);
        Ok(0)
    } else {
        Err(Error::Failed(format!("not logged in to {}", a.registry)))
    }
}
