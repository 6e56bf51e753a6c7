//! `hull save`: images as a docker-archive (that is also an OCI layout), to stdout or a file
//! (written in full, then renamed into place).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use super::Ctx;
use crate::error::{Context, Error, Result};

const EXAMPLES: &str = "\
Examples:
  hull save -o busybox.tar busybox
  hull save busybox debian:12 | gzip > images.tar.gz";

/// Save images to a tar archive.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct SaveArgs {
    /// Write to this file (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The images (names, ids or id prefixes).
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn save(ctx: &Ctx, a: SaveArgs) -> Result<i32> {
    let store = ctx.store()?;
    let refs: Vec<&str> = a.images.iter().map(String::as_str).collect();
    for r in &refs {
        store.resolve(r)?;
    }
    match &a.output {
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(Error::Invalid(
                    "cowardly refusing to save to a terminal: use -o FILE or redirect".into(),
                ));
            }
            let mut out = std::io::BufWriter::new(stdout.lock());
            store.save(&refs, &mut out).context("saving")?;
            out.flush().map_err(Error::io("writing stdout"))?;
        }
        Some(path) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = path.with_file_name(format!(".{name}.hull-{}", std::process::id()));
            let write = || -> Result<()> {
                let f = std::fs::File::create(&tmp)
                    .map_err(Error::io(format!("creating {}", tmp.display())))?;
                let mut out = std::io::BufWriter::new(f);
                store.save(&refs, &mut out).context("saving")?;
                let f = out
                    .into_inner()
                    .map_err(|e| Error::io(format!("writing {}", tmp.display()))(e.into_error()))?;
                f.sync_all()
                    .map_err(Error::io(format!("writing {}", tmp.display())))?;
                std::fs::rename(&tmp, path)
                    .map_err(Error::io(format!("renaming to {}", path.display())))
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
    Ok(0)
}
