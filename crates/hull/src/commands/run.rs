//! `hull run`: a new container from an image, in its own VM.
//!
//! Everything the user can get wrong is checked before anything exists (flags by their
//! parsers, then host paths, the image, the name, the user, the command). Then: the
//! container's directory and record, the overlay root file system, config.json, and
//! `hull-runtime run` — in the foreground with the user's stdio (our exit code is the
//! container's), or detached with its output in the container's log and a supervisor that
//! records its exit. Any failure before the container runs removes all of it again.

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_image::{ImageRecord, Platform, Progress, PullOptions, Store};
use nix::sys::signal::{SigSet, Signal};

use super::Ctx;
use crate::container::{new_id, Container, Record, LOCK_TIMEOUT};
use crate::error::{Context, Error, ExecError, Result};
use crate::runtime::Runtime;
use crate::spec::{self, Network, Publish, RunSpec, Volume};
use crate::tty::{self, ConsoleSocket};
use crate::{rootfs, users};

const EXAMPLES: &str = "\
Examples:
  hull run --rm busybox echo hello
  hull run -it --rm busybox sh
  hull run -d --name web -p 8080:80 busybox httpd -f -p 80 -h /www
  hull run --rm -v /srv/data:/data:ro -e MODE=test -w /data -u nobody busybox ls -l
  hull run --rm -m 512m --cpus 2 debian:12 nproc
  hull run -d --annotation org.hull.vm.max_vcpus=4 --annotation org.hull.vm.max_memory_mib=1024 busybox sleep 1d";

/// Create and run a new container from an image (each container runs in its own VM).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open (pass it to the container).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Name of the container (default: a generated one).
    #[arg(long, value_parser = spec::parse_name)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=value, or KEY to pass hull's own).
    #[arg(short, long = "env", value_name = "KEY=VALUE", value_parser = spec::parse_env)]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=value lines).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Replace the image's entrypoint (and drop its command).
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// Working directory in the container (absolute).
    #[arg(short, long, value_parser = spec::parse_workdir)]
    pub workdir: Option<String>,
    /// User to run as: user[:group], names or numbers.
    #[arg(short, long, value_parser = spec::parse_user)]
    pub user: Option<String>,
    /// Host name of the container (default: its short id).
    #[arg(long, value_parser = spec::parse_hostname)]
    pub hostname: Option<String>,
    /// Bind mount a host path: HOST_PATH:CONTAINER_PATH[:ro|rw].
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<Volume>,
    /// Publish a container port on the host: [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp].
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "[IP:]HOST:CONTAINER[/PROTO]"
    )]
    pub publish: Vec<Publish>,
    /// Memory limit (e.g. 512m, 2g); the VM gets this plus 64 MiB.
    #[arg(short = 'm', long, value_parser = spec::parse_memory)]
    pub memory: Option<i64>,
    /// Number of CPUs (e.g. 1.5); the VM gets as many vCPUs, rounded up.
    #[arg(long, value_parser = spec::parse_cpus)]
    pub cpus: Option<f64>,
    /// Network: user (outbound + published ports, QEMU user-mode) or none (only lo).
    #[arg(long, default_value = "user")]
    pub network: Network,
    /// Signal `hull stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long, value_parser = super::parse_signal)]
    pub stop_signal: Option<String>,
    /// Mount the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Pull the image: missing (if not present), always, never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pub pull: String,
    /// Platform to pull (os/arch[/variant]); default: the host's.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Reach this registry over plain HTTP (loopback registries always are).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Add an annotation to the container's OCI config (repeatable). The VM's own:
    /// org.hull.vm.memory_mib and org.hull.vm.vcpus (its size at start),
    /// org.hull.vm.max_memory_mib and org.hull.vm.max_vcpus (the most `hull vm resize` can
    /// give it), org.hull.vm.template (on|off: clone a VM template, or boot).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = spec::parse_annotation)]
    pub annotations: Vec<(String, String)>,
    /// How an image of another architecture runs: user (qemu-user inside a VM of the host's
    /// architecture) or system (a VM of the image's architecture); default: by accelerator.
    #[arg(long, value_parser = ["user", "system"])]
    pub emulation: Option<String>,
    /// Accelerator of the VM: kvm or tcg (default: probe).
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// The image, then the command and its arguments (default: the image's).
    #[arg(
        value_name = "IMAGE [COMMAND [ARG...]]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub image_and_command: Vec<String>,
}

/// How long hull-runtime may take to hand over the terminal / to start a detached container
/// (it has its own, shorter deadlines for the guest; this only bounds a hang).
const START_TIMEOUT: Duration = Duration::from_secs(600);

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let image_ref = a.image_and_command[0].clone();
    let command = a.image_and_command[1..].to_vec();

    // Input the parsers cannot check alone.
    if !a.detach {
        tty::check_interactive_terminal(a.interactive, a.tty).map_err(Error::Invalid)?;
    }
    let user_env = user_env(&a)?;
    for v in &a.volumes {
        if std::fs::symlink_metadata(&v.host).is_err() {
            return Err(Error::Invalid(format!(
                "-v {}:{}: host path {} does not exist",
                v.host.display(),
                v.container,
                v.host.display()
            )));
        }
    }
    if a.network == Network::None && !a.publish.is_empty() {
        return Err(Error::Invalid(
            "-p needs a network: with --network none nothing can reach the container".into(),
        ));
    }

    let store = ctx.store()?;
    let image = image_for_run(&store, &image_ref, &a)?;
    let config = store
        .config(&image)
        .with_context(|| format!("reading the config of image {image_ref}"))?;
    let image_config = config.config().clone();
    let layers = store
        .layer_dirs(&image)
        .with_context(|| format!("reading the layers of image {image_ref}"))?;

    let args = spec::process_args(image_config.as_ref(), a.entrypoint.as_deref(), &command);
    if args.is_empty() {
        return Err(Error::Invalid(format!(
            "no command specified: image {image_ref} has no Entrypoint or Cmd; give one after the image"
        )));
    }
    let stop_signal = match (
        &a.stop_signal,
        image_config.as_ref().and_then(|c| c.stop_signal().clone()),
    ) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => super::parse_signal(&s).unwrap_or_else(|_| "SIGTERM".into()),
        (None, None) => "SIGTERM".into(),
    };
    let id = new_id()?;
    let hostname = a.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let record = Record {
        id: id.clone(),
        name: a.name.clone().unwrap_or_default(),
        image: image_ref.clone(),
        image_id: image.id.clone(),
        command: args.clone(),
        created: hull_state::now_rfc3339(),
        ports: a.publish.iter().map(|p| p.0.clone()).collect(),
        volumes: a
            .volumes
            .iter()
            .map(|v| {
                format!(
                    "{}:{}{}",
                    v.host.display(),
                    v.container,
                    if v.read_only { ":ro" } else { "" }
                )
            })
            .collect(),
        log_path: None,
        auto_remove: a.rm,
        detached: a.detach,
        tty: a.tty,
        interactive: a.interactive,
        stop_signal,
        network: a.network.as_str().into(),
        hostname: hostname.clone(),
        ..Default::default()
    };
    let c = ctx.containers().create(record)?;
    let mut guard = Cleanup {
        ctx,
        container: Some(c.clone()),
    };

    let cfg = image_config.as_ref();
    rootfs::mount_overlay(&layers, &c.upper(), &c.work(), &c.rootfs())?;
    let user_spec = a
        .user
        .clone()
        .or_else(|| cfg.and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let user = users::resolve_in_rootfs(&c.rootfs(), &user_spec)?;
    let cwd = a
        .workdir
        .clone()
        .or_else(|| {
            cfg.and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .unwrap_or_else(|| "/".into());
    let env = spec::process_env(cfg, &hostname, a.tty, &user_env);
    let volume_dests: Vec<String> = a.volumes.iter().map(|v| v.container.clone()).collect();
    // docker creates a missing working directory.
    if !volume_dests.iter().any(|d| Path::new(&cwd).starts_with(d)) {
        let host_cwd = rootfs::resolve_in_root(&c.rootfs(), Path::new(&cwd))
            .map_err(Error::io(format!("working directory {cwd}")))?;
        std::fs::create_dir_all(&host_cwd)
            .map_err(Error::io(format!("creating the working directory {cwd}")))?;
    }
    let path_env = env.iter().rev().find_map(|e| e.strip_prefix("PATH="));
    rootfs::check_executable(&c.rootfs(), &args[0], path_env, &cwd, &volume_dests)?;
    write_etc_files(&c, &hostname, a.network)?;

    let run_spec = RunSpec {
        args,
        env,
        cwd,
        user,
        hostname,
        volumes: a.volumes.clone(),
        memory: a.memory,
        cpus: a.cpus,
        tty: a.tty,
        // The process starts with our terminal's size (later changes are relayed).
        console_size: crate::tty::our_size(),
        network: Some(a.network),
        publish: a.publish.iter().map(|p| p.0.clone()).collect(),
        read_only: a.read_only,
        annotations: arch_annotations(&image, &a)?,
    };
    let config_path = c.bundle().join("config.json");
    let text = serde_json::to_vec_pretty(&spec::build(&run_spec))
        .map_err(|e| Error::Failed(format!("writing the container's config.json: {e}")))?;
    std::fs::write(&config_path, text)
        .map_err(Error::io(format!("writing {}", config_path.display())))?;

    if a.detach {
        run_detached(ctx, &mut guard, &a)
    } else {
        run_foreground(ctx, &mut guard, &a)
    }
}

/// `-e` and `--env-file`, in order, `KEY` alone taken from hull's environment.
fn user_env(a: &RunArgs) -> Result<Vec<String>> {
    let mut entries = Vec::new();
    for f in &a.env_file {
        let text =
            std::fs::read_to_string(f).map_err(Error::io(format!("--env-file {}", f.display())))?;
        let lines = spec::parse_env_file(&text)
            .map_err(|e| Error::Invalid(format!("--env-file {}: {e}", f.display())))?;
        entries.extend(lines);
    }
    entries.extend(a.env.iter().cloned());
    Ok(spec::expand_env(entries, |k| std::env::var(k).ok()))
}

/// The annotations of `--annotation`, plus the image's architecture when it is not the host's
/// (`org.hull.vm.arch`, so the runtime need not guess it from the program) and `--emulation`.
/// An image that is foreign although no `--platform` asked for it gets one notice line.
fn arch_annotations(image: &ImageRecord, a: &RunArgs) -> Result<Vec<(String, String)>> {
    let mut out = a.annotations.clone();
    let has = |k: &str| a.annotations.iter().any(|(key, _)| key == k);
    let arch = hull_oci::Arch::parse(&image.platform.architecture);
    let foreign = arch.filter(|x| *x != hull_oci::Arch::host());
    if let Some(arch) = foreign {
        if !has(hull_oci::arch::ANNOTATION_ARCH) {
            out.push((
                hull_oci::arch::ANNOTATION_ARCH.into(),
                arch.oci_name().into(),
            ));
        }
        if a.platform.is_none() {
            eprintln!(
                "hull: the image's platform ({}) is not the host's ({}): running it emulated in its VM",
                image.platform,
                hull_image::Platform::host()
            );
        }
    }
    if let Some(e) = &a.emulation {
        out.push((hull_oci::arch::ANNOTATION_EMULATION.into(), e.clone()));
    }
    if arch.is_none() {
        return Err(Error::Invalid(format!(
            "the image's architecture {:?} is not one hull can run (known: {})",
            image.platform.architecture,
            hull_oci::Arch::NAMES
        )));
    }
    Ok(out)
}

/// The image, pulled according to `--pull`.
fn image_for_run(store: &Store, reference: &str, a: &RunArgs) -> Result<ImageRecord> {
    hull_image::normalize(reference).or_else(|e| {
        // An id or id prefix is not a reference but names a local image.
        store
            .resolve(reference)
            .map(|_| String::new())
            .map_err(|_| e)
    })?;
    let local = store.resolve(reference);
    let platform_ok =
        |r: &ImageRecord| a.platform.as_ref().map_or(true, |p| p.matches(&r.platform));
    let pull = match (a.pull.as_str(), &local) {
        ("always", _) => true,
        ("never", _) => false,
        (_, Ok(r)) => !platform_ok(r),
        (_, Err(hull_image::ImageError::NotFound { .. })) => true,
        (_, Err(_)) => false,
    };
    if !pull {
        return local.map_err(|e| match e {
            hull_image::ImageError::NotFound { .. } => Error::Invalid(format!(
                "unable to find image {reference:?} locally (and --pull never)"
            )),
            e => e.into(),
        });
    }
    if local.is_err() {
        eprintln!("Unable to find image '{reference}' locally");
    }
    let opts = PullOptions {
        platform: a.platform.clone(),
        insecure_registries: a.insecure_registries.clone(),
        auth_file: None,
        progress: Progress::auto(),
    };
    store
        .pull(reference, &opts)
        .with_context(|| format!("pulling {reference}"))
}

/// resolv.conf for QEMU's user-mode DNS, hostname and hosts, written into the container's
/// own upper layer (as docker's generated files, private to the container).
fn write_etc_files(c: &Container, hostname: &str, network: Network) -> Result<()> {
    let root = c.rootfs();
    let (address, resolv) = match network {
        Network::User => ("10.0.2.15", Some("nameserver 10.0.2.3\n")),
        Network::None => ("127.0.1.1", None),
    };
    if let Some(r) = resolv {
        rootfs::write_file_in_root(&root, "/etc/resolv.conf", r)?;
    }
    rootfs::write_file_in_root(&root, "/etc/hostname", &format!("{hostname}\n"))?;
    rootfs::write_file_in_root(
        &root,
        "/etc/hosts",
        &format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{address}\t{hostname}\n"
        ),
    )?;
    Ok(())
}

/// Removes a container that failed to start (drop), unless disarmed.
struct Cleanup<'a> {
    ctx: &'a Ctx,
    container: Option<Container>,
}

// The container is there from construction until `disarm`, which consumes the guard's
// purpose: an `expect` here is an invariant of this type, not of any input.
#[allow(clippy::expect_used)]
impl Cleanup<'_> {
    fn container(&self) -> &Container {
        self.container.as_ref().expect("armed")
    }
    fn disarm(&mut self) -> Container {
        self.container.take().expect("armed")
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.container.take() {
            if let Err(e) = super::destroy(self.ctx, &c) {
                eprintln!(
                    "hull: cleaning up container {}: {}",
                    c.record.short_id(),
                    crate::error::chain(&e)
                );
            }
        }
    }
}

/// `hull-runtime … run --detach` (create + start) for this container, with its log,
/// accelerator and console socket.
fn runtime_run(rt: &Runtime, c: &Container, a: &RunArgs, console: Option<&Path>) -> Command {
    let mut cmd = rt.command();
    cmd.arg("--log")
        .arg(c.runtime_log())
        .arg("--log-format")
        .arg("json");
    if let Some(accel) = &a.accel {
        cmd.arg("--accel").arg(accel);
    }
    cmd.arg("run")
        .arg("--detach")
        .arg("--bundle")
        .arg(c.bundle());
    if let Some(s) = console {
        cmd.arg("--console-socket").arg(s);
    }
    cmd.arg(c.id());
    cmd
}

/// The error hull-runtime logged, as hull reports it (the command's 126/127, else 125).
fn runtime_failure(c: &Container, status: Option<ExitStatus>) -> Option<Error> {
    let errors = Runtime::logged_errors(&c.runtime_log());
    let msg = errors.last()?;
    Some(match ExecError::from_runtime_message(msg) {
        Some(e) => Error::Exec(e),
        None => Error::Failed(match status {
            Some(s) => format!("hull-runtime failed ({s}): {msg}"),
            None => msg.clone(),
        }),
    })
}

/// A started container: its monitor (alive as long as the container's process, exiting with
/// its status) and, with `-t`, its terminal.
struct Started {
    monitor_pid: i32,
    terminal: Option<OwnedFd>,
}

/// Creates and starts the container (`hull-runtime run --detach`, which returns once it
/// runs). `stdio` becomes the container's (its terminal instead, with `-t`). If the runtime
/// fails, its error is hull's; `printed`: the runtime already printed it on our stderr.
fn start(
    ctx: &Ctx,
    c: &Container,
    a: &RunArgs,
    stdio: [Stdio; 3],
    printed: bool,
) -> Result<Started> {
    let rt = ctx.runtime();
    let console = if a.tty {
        Some(ConsoleSocket::new()?)
    } else {
        None
    };
    let mut cmd = runtime_run(&rt, c, a, console.as_ref().map(|s| s.path()));
    let [stdin, stdout, stderr] = stdio;
    cmd.stdin(stdin).stdout(stdout).stderr(stderr);
    // Signals from the terminal are hull's to forward, not the runtime's to die of.
    cmd.process_group(0);
    let failed = |status: Option<ExitStatus>, fallback: Error| -> Error {
        match runtime_failure(c, status) {
            Some(e) if printed => Error::Reported(e.exit_code(125)),
            Some(e) => e,
            None => fallback,
        }
    };
    let mut child = cmd
        .spawn()
        .map_err(|source| crate::runtime::RuntimeError::Spawn {
            bin: rt.bin.clone(),
            source,
        })?;
    let terminal = match &console {
        Some(cs) => match cs.receive(&mut child, START_TIMEOUT) {
            Ok(m) => Some(m),
            Err(e) => {
                let status = stop_child(&mut child);
                return Err(failed(status, e.into()));
            }
        },
        None => None,
    };
    let status = match wait_child(&mut child, START_TIMEOUT) {
        Some(s) => s,
        None => {
            let status = stop_child(&mut child);
            return Err(failed(
                status,
                Error::Failed(format!(
                    "hull-runtime did not start the container within {START_TIMEOUT:?}"
                )),
            ));
        }
    };
    if !status.success() {
        return Err(failed(
            Some(status),
            Error::Failed(format!(
                "hull-runtime failed to start the container ({status})"
            )),
        ));
    }
    let monitor_pid = rt.state(c.id()).map(|s| s.monitor_pid).ok_or_else(|| {
        Error::Failed("hull-runtime started the container but has no state for it".into())
    })?;
    Ok(Started {
        monitor_pid,
        terminal,
    })
}

fn run_foreground(ctx: &Ctx, guard: &mut Cleanup, a: &RunArgs) -> Result<i32> {
    let c = guard.container().clone();
    // With a terminal, the container's stdio is the terminal hull relays.
    let stdin = if a.interactive && !a.tty {
        Stdio::inherit()
    } else {
        Stdio::null()
    };
    let forwarder = SignalForwarder::start();
    let started = start(
        ctx,
        &c,
        a,
        [stdin, Stdio::inherit(), Stdio::inherit()],
        true,
    )?;
    let mut c = guard.disarm();
    forwarder.target(started.monitor_pid);
    c.record.started_at = Some(hull_state::now_rfc3339());
    if let Ok(Some(_lock)) = c.lock(LOCK_TIMEOUT) {
        let _ = c.save();
    }
    let monitor = started.monitor_pid;
    let relayed = match started.terminal {
        Some(master) => tty::relay(master, a.interactive, || {
            !hull_state::process_alive(monitor)
        }),
        None => Ok(()),
    };
    // Also when the terminal could not be relayed (our stdout closed): the container still
    // ends as it would, and is then recorded (or removed, --rm).
    crate::runtime::wait_pid_exit(monitor);
    let code = ctx
        .runtime()
        .state(c.id())
        .and_then(|s| s.exit_status)
        .unwrap_or(128 + libc::SIGKILL);
    super::finish(ctx, &c, Some(code))?;
    relayed?;
    Ok(code)
}

/// Kills a runtime child we gave up on and reaps it (bounded).
fn stop_child(child: &mut Child) -> Option<ExitStatus> {
    let _ = child.kill();
    wait_child(child, Duration::from_secs(30))
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => return None,
        }
    }
}

fn run_detached(ctx: &Ctx, guard: &mut Cleanup, a: &RunArgs) -> Result<i32> {
    let mut c = guard.container().clone();
    let log = super::open_log(&c.log())?;
    let out = log.try_clone().map_err(Error::io("container log"))?;
    let started = start(ctx, &c, a, [Stdio::null(), out.into(), log.into()], false)?;

    // It runs: a supervisor records its exit (and copies its terminal to the log).
    let lock = c.lock(LOCK_TIMEOUT)?;
    let mut sup = Command::new(std::env::current_exe().map_err(Error::io("locating hull"))?);
    sup.arg("--root")
        .arg(&ctx.root)
        .arg("supervise")
        .arg(c.id());
    if started.terminal.is_some() {
        sup.arg("--tty");
    }
    let sup_log = super::open_log(&c.dir.join("supervise.log"))?;
    sup.stdin(match started.terminal {
        Some(m) => Stdio::from(m),
        None => Stdio::null(),
    })
    .stdout(Stdio::null())
    .stderr(sup_log);
    // SAFETY: setsid is async-signal-safe; the supervisor must outlive our session.
    unsafe {
        sup.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = sup.spawn().map_err(Error::io("starting the supervisor"))?;
    c.record.supervisor_pid = Some(child.id() as i32);
    c.record.log_path = Some(c.log());
    c.record.started_at = Some(hull_state::now_rfc3339());
    c.save()?;
    drop(lock);
    guard.disarm();
    println!("{}", c.id());
    Ok(0)
}

/// Forwards the signals hull gets (INT, TERM, HUP, QUIT, USR1/2) to the container's monitor,
/// which passes them to the container process; one that comes before the container runs is
/// delivered once it does.
struct SignalForwarder {
    target: Arc<AtomicI32>,
    pending: Arc<AtomicI32>,
}

impl SignalForwarder {
    fn start() -> Self {
        let target = Arc::new(AtomicI32::new(0));
        let pending = Arc::new(AtomicI32::new(0));
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
        ] {
            set.add(s);
        }
        // Blocked in every thread, taken by the one below (children get an empty mask).
        let _ = set.thread_block();
        let (t, p) = (target.clone(), pending.clone());
        std::thread::spawn(move || loop {
            // SAFETY: sigwaitinfo fills `info` for one of the blocked signals in `set`.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let sig = unsafe { libc::sigwaitinfo(set.as_ref(), &mut info) };
            if sig <= 0 {
                continue;
            }
            match t.load(Ordering::SeqCst) {
                // SAFETY: kill(2) on the container's monitor.
                pid if pid > 0 => unsafe {
                    libc::kill(pid, sig);
                },
                _ => p.store(sig, Ordering::SeqCst),
            }
        });
        Self { target, pending }
    }

    fn target(&self, pid: i32) {
        self.target.store(pid, Ordering::SeqCst);
        let sig = self.pending.swap(0, Ordering::SeqCst);
        if sig > 0 {
            // SAFETY: kill(2) on the container's monitor.
            unsafe { libc::kill(pid, sig) };
        }
    }
}
