//! `hull-monitor`: the host process that owns one container's VM. Started by `hull-runtime`
//! (exec'd for `run`, spawned for `create`); not meant to be run by hand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hull_monitor::{log, Mode, Options};

#[derive(Parser)]
#[command(
    name = "hull-monitor",
    version,
    about = "hull's per-container VM monitor"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot the VM for a bundle and run (or create) the container.
    Container {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        bundle: PathBuf,
        /// Create mode: report readiness on this fd and wait for `start`.
        #[arg(long)]
        ready_fd: Option<i32>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        accel: Option<hull_qemu::Accel>,
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(long, default_value = "text")]
        log_format: String,
        #[arg(long)]
        debug: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
    },
    /// Exit 0 if a tiny guest runs under KVM (the accelerator probe).
    ProbeKvm,
}

fn main() {
    hull_monitor::log::install_panic_hook("hull-monitor");
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::ProbeKvm => match hull_qemu::kvm_probe::run_probe_guest() {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        },
        Cmd::Container {
            root,
            id,
            bundle,
            ready_fd,
            pid_file,
            accel,
            log: log_path,
            log_format,
            debug,
            console_socket,
        } => {
            log::init(log_path.as_deref(), log_format == "json", debug);
            let mode = match ready_fd {
                Some(fd) => Mode::Create { ready_fd: fd },
                None => Mode::Run,
            };
            let self_exe =
                std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hull-monitor"));
            let opts = Options {
                root,
                id,
                bundle,
                mode,
                pid_file,
                accel,
                debug,
                self_exe,
                console_socket,
            };
            let create = matches!(mode, Mode::Create { .. });
            match hull_monitor::run(opts) {
                Ok(code) => std::process::exit(code),
                Err(e) => {
                    let msg = hull_monitor::error_chain(&e);
                    log::error(&msg);
                    if !create {
                        eprintln!("hull-runtime: {msg}");
                    }
                    std::process::exit(e.exit_code())
                }
            }
        }
    }
}
