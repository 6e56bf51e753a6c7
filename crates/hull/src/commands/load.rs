//! `hull load`: images from a docker-archive or oci-archive (stdin by default; gzip and zstd
//! too) or an OCI image layout directory.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::Ctx;
use crate::error::{Context, Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull load -i busybox.tar
  docker save busybox | hull load
  hull load -i ./oci-layout-dir --name busybox";

/// Load images from an archive or an OCI layout directory.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct LoadArgs {
    /// Archive file or OCI layout directory (default: stdin).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    /// Name for images the archive leaves untagged.
    #[arg(long)]
    pub name: Option<String>,
    /// Only print what was loaded.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn load(ctx: &Ctx, a: LoadArgs) -> Result<i32> {
    let store = ctx.store()?;
    let name = a.name.as_deref();
    let loaded = match &a.input {
        Some(p) if p.is_dir() => store
            .load_dir(p, name)
            .with_context(|| format!("loading {}", p.display()))?,
        Some(p) => {
            let mut f =
                std::fs::File::open(p).map_err(Error::io(format!("opening {}", p.display())))?;
            store
                .load(&mut f, name)
                .with_context(|| format!("loading {}", p.display()))?
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Error::Invalid(
                    "requested load from stdin, but stdin is a terminal: use -i FILE or a pipe"
                        .into(),
                ));
            }
            store
                .load(&mut stdin.lock(), name)
                .context("loading from stdin")?
        }
    };
    for img in loaded {
        if img.names.is_empty() {
            println!("Loaded image ID: {}", img.id);
        }
        for n in &img.names {
            println!("Loaded image: {n}");
        }
    }
    Ok(0)
}
