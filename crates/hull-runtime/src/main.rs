//! `hull-runtime`: a runc-compatible OCI runtime whose containers each run in their own VM.
//! Thin: every command is a file in `commands/`; the VM work happens in `hull-monitor`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod commands;
mod signal;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use liboci_cli::GlobalOpts;

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nspec: 1.2.0\nvmm: qemu (microvm), guest kernel linux 6.1"
);

#[derive(Parser, Debug)]
#[command(name = "hull-runtime", version = VERSION, about = "OCI runtime that runs each container in its own VM")]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    /// Force the accelerator (kvm or tcg); default: probe (also HULL_ACCEL).
    #[arg(long, global = true)]
    accel: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Create(liboci_cli::Create),
    Start(liboci_cli::Start),
    State(liboci_cli::State),
    Kill(commands::kill::KillArgs),
    Delete(liboci_cli::Delete),
    Run(liboci_cli::Run),
    List(liboci_cli::List),
    Exec(commands::exec::ExecArgs),
    Ps(liboci_cli::Ps),
    Pause(liboci_cli::Pause),
    Resume(liboci_cli::Resume),
    Events(liboci_cli::Events),
    /// Update the container's resources: memory and CPUs resize its VM.
    Update(commands::update::UpdateArgs),
    Spec(liboci_cli::Spec),
    Features(liboci_cli::Features),
}

/// What every command gets.
pub struct Ctx {
    pub root: PathBuf,
    pub global: GlobalOpts,
    pub accel: Option<String>,
}

fn main() {
    hull_monitor::log::install_panic_hook("hull-runtime");
    let cli = Cli::parse();
    let ctx = Ctx {
        root: cli
            .global
            .root
            .clone()
            .unwrap_or_else(|| PathBuf::from(hull_state::DEFAULT_ROOT)),
        accel: cli.accel.clone(),
        global: cli.global,
    };
    hull_monitor::log::init(
        ctx.global.log.as_deref(),
        ctx.global.log_format.as_deref() == Some("json"),
        ctx.global.debug,
    );
    let r = match cli.cmd {
        Cmd::Create(a) => commands::create::create(&ctx, a),
        Cmd::Start(a) => commands::start::start(&ctx, a),
        Cmd::State(a) => commands::state::state(&ctx, a),
        Cmd::Kill(a) => commands::kill::kill(&ctx, a),
        Cmd::Delete(a) => commands::delete::delete(&ctx, a),
        Cmd::Run(a) => commands::run::run(&ctx, a),
        Cmd::List(a) => commands::list::list(&ctx, a),
        Cmd::Exec(a) => commands::exec::exec(&ctx, a),
        Cmd::Ps(a) => commands::ps::ps(&ctx, a),
        Cmd::Pause(a) => commands::pause::pause(&ctx, a),
        Cmd::Resume(a) => commands::pause::resume(&ctx, a),
        Cmd::Events(a) => commands::events::events(&ctx, a),
        Cmd::Update(a) => commands::update::update(&ctx, a),
        Cmd::Spec(a) => commands::spec::spec(&ctx, a),
        Cmd::Features(a) => commands::features::features(&ctx, a),
    };
    match r {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}");
            hull_monitor::log::error(&msg);
            eprintln!("hull-runtime: {msg}");
            std::process::exit(commands::exit_code(&e));
        }
    }
}
