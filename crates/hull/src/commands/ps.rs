//! `hull ps`: containers as a table, or JSON lines (`--format json`, docker's keys).

use serde_json::json;

use super::Ctx;
use crate::error::Result;
use crate::format::{self, Table};

const EXAMPLES: &str = "\
Examples:
  hull ps
  hull ps -a --format json";

/// List containers (running ones; -a: all).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct PsArgs {
    /// Show all containers, stopped ones too.
    #[arg(short, long)]
    pub all: bool,
    /// Only print container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format: table or json (one object per line).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<i32> {
    let rt = ctx.runtime();
    let mut table = Table::new(&[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]);
    let mut out = String::new();
    for c in ctx.containers().list()? {
        let status = super::status(&rt, &c);
        if !a.all && !status.alive() {
            continue;
        }
        let r = &c.record;
        let id = if a.no_trunc {
            r.id.as_str()
        } else {
            r.short_id()
        };
        let ports = if status.alive() {
            super::ports_text(&r.ports)
        } else {
            String::new()
        };
        if a.quiet {
            out.push_str(id);
            out.push('\n');
        } else if a.format == "json" {
            let v = json!({
                "ID": id,
                "Names": r.name,
                "Image": r.image,
                "ImageID": r.image_id,
                "Command": format::command_line(&r.command, a.no_trunc),
                "CreatedAt": r.created,
                "RunningFor": format::ago(&r.created),
                "State": status.state(),
                "Status": status.text(),
                "Ports": ports,
                "Networks": r.network,
            });
            out.push_str(&v.to_string());
            out.push('\n');
        } else {
            table.row(vec![
                id.to_string(),
                r.image.clone(),
                format::command_line(&r.command, a.no_trunc),
                format::ago(&r.created),
                status.text(),
                ports,
                r.name.clone(),
            ]);
        }
    }
    if a.quiet || a.format == "json" {
        print!("{out}");
    } else {
        print!("{}", table.render());
    }
    Ok(0)
}
