//! `hull images`: local images as a table or JSON lines (`--format json`, docker's keys).

use serde_json::json;

use super::Ctx;
use crate::error::Result;
use crate::format::{self, Table};

const EXAMPLES: &str = "\
Examples:
  hull images
  hull images -q
  hull images --format json";

/// List local images.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ImagesArgs {
    /// Only print image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table or json (one object per line).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

/// `docker.io/library/busybox:latest` → (`busybox`, `latest`), as docker shows names.
pub fn repo_tag(name: &str) -> (String, String) {
    let (repo, tag) = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], &name[i + 1..]),
        _ => (name, "<none>"),
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    (repo.to_string(), tag.to_string())
}

pub fn images(ctx: &Ctx, a: ImagesArgs) -> Result<i32> {
    let store = ctx.store()?;
    let mut images = store.images()?;
    images.sort_by(|x, y| y.created.cmp(&x.created));
    let mut table = Table::new(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for img in &images {
        let hex = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
        let id = if a.no_trunc {
            img.id.clone()
        } else {
            hex[..hex.len().min(12)].to_string()
        };
        if a.quiet {
            if seen.insert(id.clone()) {
                out.push_str(&id);
                out.push('\n');
            }
            continue;
        }
        let names: Vec<(String, String)> = if img.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            img.names.iter().map(|n| repo_tag(n)).collect()
        };
        let created = img.created.as_deref().map(format::ago).unwrap_or_default();
        for (repo, tag) in names {
            if a.format == "json" {
                let v = json!({
                    "Repository": repo,
                    "Tag": tag,
                    "ID": id,
                    "Digest": img.repo_digests.first().and_then(|d| d.split_once('@')).map(|(_, d)| d).unwrap_or("<none>"),
                    "CreatedAt": img.created,
                    "CreatedSince": created,
                    "Size": format::human_size(img.size),
                    "Platform": img.platform.to_string(),
                });
                out.push_str(&v.to_string());
                out.push('\n');
            } else {
                table.row(vec![
                    repo,
                    tag,
                    id.clone(),
                    created.clone(),
                    format::human_size(img.size),
                ]);
            }
        }
    }
    if a.quiet || a.format == "json" {
        print!("{out}");
    } else {
        print!("{}", table.render());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_shown_like_docker() {
        let rt = |n: &str| super::repo_tag(n);
        assert_eq!(
            rt("docker.io/library/busybox:latest"),
            ("busybox".into(), "latest".into())
        );
        assert_eq!(rt("docker.io/me/app:1"), ("me/app".into(), "1".into()));
        assert_eq!(
            rt("127.0.0.1:5000/app:v2"),
            ("127.0.0.1:5000/app".into(), "v2".into())
        );
        assert_eq!(
            rt("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "<none>".into())
        );
    }
}
