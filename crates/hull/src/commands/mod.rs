//! One file per subcommand; what they share (the store, the containers, the runtime, a
//! container's status) is here.

pub mod exec;
pub mod images;
pub mod inspect;
pub mod kill;
pub mod load;
pub mod login;
pub mod logout;
pub mod logs;
pub mod ps;
pub mod pull;
pub mod rm;
pub mod rmi;
pub mod run;
pub mod save;
pub mod stop;
pub mod supervise;
pub mod tag;
pub mod version;
pub mod vm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use hull_image::Store;

use crate::container::{Container, Containers, LOCK_TIMEOUT};
use crate::error::{Context, Error, Result};
use crate::format;
use crate::rootfs;
use crate::runtime::Runtime;

#[derive(Subcommand, Debug)]
pub enum Command {
    Run(Box<run::RunArgs>),
    Ps(ps::PsArgs),
    Exec(exec::ExecArgs),
    Logs(logs::LogsArgs),
    Stop(stop::StopArgs),
    Kill(kill::KillArgs),
    Rm(rm::RmArgs),
    Pull(pull::PullArgs),
    Images(images::ImagesArgs),
    Rmi(rmi::RmiArgs),
    Tag(tag::TagArgs),
    Inspect(inspect::InspectArgs),
    Load(load::LoadArgs),
    Save(save::SaveArgs),
    Login(login::LoginArgs),
    Logout(logout::LogoutArgs),
    Version(version::VersionArgs),
    Vm(vm::VmArgs),
    /// Watches a detached container (internal: started by `hull run -d`).
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),
}

impl Command {
    /// The exit code of hull's own failures: 125 where the exit code is otherwise the
    /// container process's (run, exec), 1 elsewhere (docker's codes).
    pub fn failure_code(&self) -> i32 {
        match self {
            Command::Run(_) | Command::Exec(_) => 125,
            _ => 1,
        }
    }

    pub fn run(self, ctx: &Ctx) -> Result<i32> {
        match self {
            Command::Run(a) => run::run(ctx, *a),
            Command::Ps(a) => ps::ps(ctx, a),
            Command::Exec(a) => exec::exec(ctx, a),
            Command::Logs(a) => logs::logs(ctx, a),
            Command::Stop(a) => stop::stop(ctx, a),
            Command::Kill(a) => kill::kill(ctx, a),
            Command::Rm(a) => rm::rm(ctx, a),
            Command::Pull(a) => pull::pull(ctx, a),
            Command::Images(a) => images::images(ctx, a),
            Command::Rmi(a) => rmi::rmi(ctx, a),
            Command::Tag(a) => tag::tag(ctx, a),
            Command::Inspect(a) => inspect::inspect(ctx, a),
            Command::Load(a) => load::load(ctx, a),
            Command::Save(a) => save::save(ctx, a),
            Command::Login(a) => login::login(ctx, a),
            Command::Logout(a) => logout::logout(ctx, a),
            Command::Version(a) => version::version(ctx, a),
            Command::Vm(a) => vm::vm(ctx, a),
            Command::Supervise(a) => supervise::supervise(ctx, a),
        }
    }
}

/// What every command gets: the root (`--root`, `HULL_ROOT`, default /var/lib/hull).
pub struct Ctx {
    pub root: PathBuf,
}

impl Ctx {
    pub fn new(root: PathBuf) -> Self {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir().unwrap_or_default().join(root)
        };
        Self { root }
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root).context(format!(
            "opening the image store in {}",
            self.root.display()
        ))
    }

    pub fn containers(&self) -> Containers {
        Containers::new(&self.root)
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(&self.root)
    }

    /// Ids of the images containers use (their images cannot be removed unless forced).
    pub fn images_in_use(&self) -> Result<Vec<String>> {
        Ok(self
            .containers()
            .list()?
            .into_iter()
            .map(|c| c.record.image_id)
            .collect())
    }
}

/// A container's status as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Created,
    Running { since: String },
    Paused { since: String },
    Exited { code: i32, at: Option<i64> },
}

impl Status {
    /// docker's state word.
    pub fn state(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running { .. } => "running",
            Status::Paused { .. } => "paused",
            Status::Exited { .. } => "exited",
        }
    }

    /// docker's status text: `Up 5 seconds`, `Exited (0) 3 minutes ago`, `Created`.
    pub fn text(&self) -> String {
        let up = |since: &str| {
            format::parse_rfc3339(since)
                .map(|t| format::human_duration(format::now_unix() - t))
                .unwrap_or_default()
        };
        match self {
            Status::Created => "Created".into(),
            Status::Running { since } => format!("Up {}", up(since)),
            Status::Paused { since } => format!("Up {} (Paused)", up(since)),
            Status::Exited { code, at } => match at {
                Some(t) => format!(
                    "Exited ({code}) {} ago",
                    format::human_duration(format::now_unix() - t)
                ),
                None => format!("Exited ({code})"),
            },
        }
    }

    /// Created, running or paused: a VM exists.
    pub fn alive(&self) -> bool {
        !matches!(self, Status::Exited { .. })
    }
}

/// The status of a container: the runtime's state while it has one, else hull's record.
pub fn status(rt: &Runtime, c: &Container) -> Status {
    use hull_state::Status as S;
    match rt.state(c.id()) {
        Some(st) => match st.status {
            S::Running if st.paused => Status::Paused { since: st.created },
            S::Running => Status::Running { since: st.created },
            S::Created | S::Creating => Status::Created,
            S::Stopped => Status::Exited {
                code: st.exit_status.unwrap_or(128 + libc::SIGKILL),
                at: st.changed,
            },
        },
        None => match c.record.exit_code {
            Some(code) => Status::Exited {
                code,
                at: c
                    .record
                    .finished_at
                    .as_deref()
                    .and_then(format::parse_rfc3339),
            },
            None => Status::Created,
        },
    }
}

/// `-p` values as docker shows them: `0.0.0.0:8080->80/tcp`.
pub fn ports_text(ports: &[String]) -> String {
    ports
        .iter()
        .filter_map(|p| {
            let f: hull_oci::publish::PortForward = p.parse().ok()?;
            let ip = match f.host_addr {
                Some(std::net::IpAddr::V6(a)) => format!("[{a}]"),
                Some(a) => a.to_string(),
                None => "0.0.0.0".into(),
            };
            Some(format!(
                "{ip}:{}->{}/{}",
                f.host_port,
                f.container_port,
                f.proto.as_str()
            ))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long `rm`, `stop` and the cleanup wait for a container's VM to go away after SIGKILL.
pub const KILL_WAIT: Duration = Duration::from_secs(30);

/// After the container's process has exited: records the exit, removes the runtime's state
/// and unmounts the root file system (the upper layer stays, for `rm`); with
/// `record.auto_remove`, removes the container altogether. Under the container's lock;
/// nothing to do if it was removed meanwhile.
pub fn finish(ctx: &Ctx, c: &Container, exit_code: Option<i32>) -> Result<()> {
    let Some(_lock) = c.lock(LOCK_TIMEOUT)? else {
        return Ok(());
    };
    let Some(mut c) = c.reload()? else {
        return Ok(());
    };
    let rt = ctx.runtime();
    let code = exit_code
        .or_else(|| rt.state(c.id()).and_then(|s| s.exit_status))
        .unwrap_or(128 + libc::SIGKILL);
    if c.record.auto_remove {
        return destroy(ctx, &c);
    }
    // Recorded before the runtime's state goes, so the status never looks "Created".
    c.record.exit_code = Some(code);
    c.record.finished_at = Some(hull_state::now_rfc3339());
    c.save()?;
    rt.delete(c.id(), true)?;
    rootfs::unmount(&c.rootfs())?;
    Ok(())
}

/// Removes every trace of a container (the caller holds its lock): its VM (killed), the
/// runtime's state, the root file system mount and the directory.
pub fn destroy(ctx: &Ctx, c: &Container) -> Result<()> {
    let rt = ctx.runtime();
    let monitor = rt.state(c.id()).map(|s| s.monitor_pid);
    // `delete --force` kills the container (SIGKILL in the guest, then its monitor).
    rt.delete(c.id(), true)
        .with_context(|| format!("removing the VM of {}", c.record.short_id()))?;
    if let Some(pid) = monitor {
        if !wait_pid_gone(pid, KILL_WAIT) {
            return Err(Error::Failed(format!(
                "the monitor (pid {pid}) of container {} is still running",
                c.record.short_id()
            )));
        }
    }
    rootfs::unmount(&c.rootfs())?;
    rootfs::remove_tree(&c.dir)?;
    Ok(())
}

/// Waits (bounded) until process `pid` is gone.
pub fn wait_pid_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while hull_state::process_alive(pid) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Opens a file for the container log (append, created 0640).
pub fn open_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(Error::io(format!("opening {}", path.display())))
}

/// A signal name or number as hull-runtime takes it (`TERM`, `SIGTERM`, `15` → `SIGTERM`).
pub fn parse_signal(s: &str) -> std::result::Result<String, String> {
    use std::str::FromStr;
    let up = s.trim().to_ascii_uppercase();
    if let Ok(n) = up.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|sig| sig.as_str().to_string())
            .map_err(|_| format!("invalid signal {s:?}"));
    }
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|sig| sig.as_str().to_string())
        .map_err(|_| format!("invalid signal {s:?}"))
}

/// Runs `op` on each name; with several, a failure is reported and the others still done
/// (docker's way), the exit code then 1.
pub fn for_each(names: &[String], mut op: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failed = false;
    for n in names {
        if let Err(e) = op(n) {
            if names.len() == 1 {
                return Err(e);
            }
            eprintln!("hull: {}", crate::error::chain(&e));
            failed = true;
        }
    }
    if failed {
        Err(Error::Reported(1))
    } else {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_ports() {
        assert_eq!(parse_signal("term").unwrap(), "SIGTERM");
        assert_eq!(parse_signal("SIGKILL").unwrap(), "SIGKILL");
        assert_eq!(parse_signal("9").unwrap(), "SIGKILL");
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
        assert_eq!(
            ports_text(&["127.0.0.1:8080:80".into(), "53:53/udp".into()]),
            "127.0.0.1:8080->80/tcp, 0.0.0.0:53->53/udp"
        );
        assert_eq!(Status::Created.text(), "Created");
        assert_eq!(Status::Exited { code: 3, at: None }.text(), "Exited (3)");
    }
}
