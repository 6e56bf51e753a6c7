//! `hull`: a docker-like command for people. Every container runs in its own VM, through
//! the same `hull-runtime` (and monitor) engines use; images come from `hull-image`'s store.
//! Thin: each subcommand is a file in `commands/`; errors are typed in the modules and
//! printed here as one line with their causes.

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod commands;
mod container;
mod error;
mod format;
mod rootfs;
mod runtime;
mod spec;
mod tty;
mod users;

use std::path::PathBuf;

use clap::{CommandFactory, Parser};

const EXAMPLES: &str = "\
Examples:
  hull pull busybox
  hull run --rm busybox echo hello
  hull run -d --name web -p 8080:80 busybox httpd -f -p 80
  hull ps -a
  hull logs -f web
  hull exec -it web sh
  hull stop web && hull rm web

Run 'hull COMMAND --help' for a command's flags.";

/// Run containers from images, each in its own VM (a docker-like command).
#[derive(Parser, Debug)]
#[command(name = "hull", version, after_help = EXAMPLES)]
struct Cli {
    /// Where hull keeps images and containers.
    #[arg(
        long,
        global = true,
        env = "HULL_ROOT",
        default_value = "/var/lib/hull"
    )]
    root: PathBuf,
    #[command(subcommand)]
    cmd: commands::Command,
}

fn main() {
    // A panic is one line and exit 125 (hull's own failure), never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!(
            "hull: internal error (a bug, please report it): {}",
            info.to_string().replace('\n', " ")
        );
        std::process::exit(125);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    let ctx = commands::Ctx::new(cli.root);
    let failure = cli.cmd.failure_code();
    match cli.cmd.run(&ctx) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let code = e.exit_code(failure);
            if !e.reported() {
                eprintln!("hull: {}", one_line(&anyhow::Error::new(e)));
            }
            std::process::exit(code)
        }
    }
}

/// The error and its causes in one line, a cause left out when the text before already
/// contains it (many errors print their source themselves).
fn one_line(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let m = cause.to_string();
        if m.is_empty() || s.contains(&m) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&m);
    }
    s
}

/// clap's errors as one line and exit 125 (docker's code for bad flags); help and version
/// as clap prints them.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {}
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let sub = std::env::args().skip(1).find(|a| {
        Cli::command()
            .get_subcommands()
            .any(|s| s.get_name() == a && !s.is_hide_set())
    });
    let help = match sub {
        Some(s) => format!("hull {s} --help"),
        None => "hull --help".into(),
    };
    eprintln!("hull: {first} (see '{help}')");
    std::process::exit(125)
}
