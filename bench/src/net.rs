//! Networking, hull vs runc on the same busybox bundle: the container joins a network
//! namespace the harness made as an engine would (a veth whose peer lives in a second,
//! "engine", namespace that stands for the engine's bridge), then
//!
//! - TCP throughput both ways: 256 MiB through busybox `nc`. Host → container: GNU
//!   `dd if=/dev/zero bs=1M` piped into `ip netns exec ENGINE busybox nc IP PORT`, the container
//!   runs `nc -l -p PORT > /dev/null`; the figure is 256 MiB / (client start → client exit),
//!   and the client exits only after the server has read everything and closed. Container →
//!   host: the container runs `dd … | nc -l -p PORT`, the harness counts what the client prints
//!   (must be exactly 256 MiB); same timing.
//! - TCP connect latency host → container: 50 sequential `connect()`s to busybox `httpd` in the
//!   container, timed in the harness itself on a thread that has `setns()`ed into the engine
//!   namespace (no process start-up in the figure), median per run.
//! - Time to workload of `true` under hull with the engine's namespace joined (its veth wired
//!   into the VM) vs the default spec (a fresh namespace, no interface), interleaved.
//!
//! Every run gets its own pair of namespaces ([`NetPair`]), deleted afterwards (and on any
//! unwinding; pairs of a harness that was SIGKILLed are deleted by the next run). Traffic only
//! flows inside a pair: each namespace holds nothing but loopback and its end of the veth, so
//! no other address is reachable. Connections and transfers are bounded in count and time.
//!
//! What the throughput figures are made of: busybox `nc` moves 1 KiB per `read`/`write` (with
//! a `poll` each), and a sender whose peer ACKs at once puts each 1 KiB write in a segment of
//! its own (Nagle only holds data while some is unacknowledged): ~1 packet per KiB over runc's
//! veth, and out of a guest under TCG, where each packet costs ~0.25 ms of guest CPU. So these
//! are per-packet costs of small writes, not link capacity (the same guest sends 48 MiB through
//! `httpd`'s sendfile at ~170 MiB/s). Into the guest the host's TCP, seeing slower ACKs,
//! coalesces the writes into large segments, which is why hull can beat runc that way.
//!
//! busybox `nc` (1.35) ends a connection as soon as *its stdin* reaches EOF (it then shuts
//! down its sending half, and the peer, seeing EOF, exits). So the receiving side must have a
//! stdin that never ends: the container's stdin is a pipe the harness holds open (and the
//! script hands it to `nc` explicitly: a background job's stdin is /dev/null), the
//! container → host client's stdin likewise. Without that a transfer "succeeds" in 5 ms.

use std::fs::File;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hull_testkit::bundle::Bundle;
use serde_json::{json, Map, Value};

use crate::hull::{Container, StateRoot};
use crate::procs::{self, Proc};
use crate::report::Failures;
use crate::stats::Summary;
use crate::{ttw, Ctx};

/// Size of each transfer.
pub const MIB: u64 = 256;
/// Connects per run.
pub const CONNECTS: usize = 50;
/// A connect slower than this had its SYN resent (the first retransmission comes after 1 s).
pub const SLOW_CONNECT_MS: f64 = 500.0;
/// MTU of the veth (the default of veths and of docker's and podman's networks).
pub const MTU: u32 = 1500;

const PORT_SINK: u16 = 5001;
const PORT_SOURCE: u16 = 5002;
const PORT_CONNECT: u16 = 5003;
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// Namespaces are named `hull-bench-{e,c}<pid>-<n>` (engine, container).
const NETNS_PREFIX: &str = "hull-bench-";
/// hull's taps (see `hull_net::host::TAP_PREFIX`).
const TAP_PREFIX: &str = "hulltap";

/// One run of the server container: what it measured (`None` / empty: that part failed).
#[derive(Debug, Clone, Default)]
pub struct Serve {
    pub connect_ms: Vec<f64>,
    pub h2c_mib_s: Option<f64>,
    pub c2h_mib_s: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Net {
    pub hull: Vec<Serve>,
    pub runc: Vec<Serve>,
    /// Time to workload of `true` under hull, default spec (fresh netns).
    pub fresh_ms: Vec<f64>,
    pub fresh_timings: Vec<Map<String, Value>>,
    /// The same with the engine's namespace joined.
    pub joined_ms: Vec<f64>,
    pub joined_timings: Vec<Map<String, Value>>,
    /// joined − fresh, per round where both succeeded.
    pub diff_ms: Vec<f64>,
}

impl Net {
    pub fn h2c(side: &[Serve]) -> Option<Summary> {
        Summary::of(&side.iter().filter_map(|s| s.h2c_mib_s).collect::<Vec<_>>())
    }

    pub fn c2h(side: &[Serve]) -> Option<Summary> {
        Summary::of(&side.iter().filter_map(|s| s.c2h_mib_s).collect::<Vec<_>>())
    }

    /// Connects that took longer than [`SLOW_CONNECT_MS`] (a SYN or SYN-ACK was lost and
    /// resent), over all runs.
    pub fn slow_connects(side: &[Serve]) -> usize {
        side.iter()
            .flat_map(|s| &s.connect_ms)
            .filter(|&&x| x > SLOW_CONNECT_MS)
            .count()
    }

    /// The median connect time of each run.
    pub fn connect(side: &[Serve]) -> Option<Summary> {
        Summary::of(
            &side
                .iter()
                .filter_map(|s| Summary::of(&s.connect_ms).map(|x| x.median))
                .collect::<Vec<_>>(),
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rt {
    Hull,
    Runc,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Hull => "hull",
            Rt::Runc => "runc",
        }
    }
}

// --- namespaces ------------------------------------------------------------------------------

fn tool(prog: &str, args: &[&str]) -> Result<String> {
    let out = procs::output(prog, Command::new(prog).args(args), TOOL_TIMEOUT)?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Two network namespaces joined by a veth: `engine` (`veth0`, 10.250.N.1/24) and `container`
/// (`eth0`, 10.250.N.2/24, default route via .1), both with loopback up. Deleted on drop.
pub struct NetPair {
    engine: String,
    container: String,
    /// N in 10.250.N.0/24.
    subnet: u8,
    made: Vec<String>,
}

impl NetPair {
    pub fn new() -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut me = Self {
            engine: format!("{NETNS_PREFIX}e{pid}-{n}"),
            container: format!("{NETNS_PREFIX}c{pid}-{n}"),
            // n % 250 < 250: always a u8.
            subnet: (n % 250) as u8,
            made: Vec::new(),
        };
        for ns in [me.engine.clone(), me.container.clone()] {
            tool("ip", &["netns", "add", &ns])?;
            me.made.push(ns);
        }
        let p = format!("10.250.{}", me.subnet);
        let (e, c) = (&me.engine, &me.container);
        let mtu = MTU.to_string();
        let cmds: [&[&str]; 10] = [
            &[
                "-n", e, "link", "add", "veth0", "mtu", &mtu, "type", "veth", "peer", "name",
                "eth0", "mtu", &mtu,
            ],
            &["-n", e, "link", "set", "eth0", "netns", c],
            &["-n", e, "addr", "add", &format!("{p}.1/24"), "dev", "veth0"],
            &["-n", e, "link", "set", "veth0", "up"],
            &["-n", e, "link", "set", "lo", "up"],
            &["-n", c, "addr", "add", &format!("{p}.2/24"), "dev", "eth0"],
            &["-n", c, "link", "set", "eth0", "up"],
            &["-n", c, "link", "set", "lo", "up"],
            &["-n", c, "route", "add", "default", "via", &format!("{p}.1")],
            &["-n", c, "-o", "link", "show", "eth0"],
        ];
        for args in cmds {
            tool("ip", args)?;
        }
        Ok(me)
    }

    pub fn engine_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.engine)
    }

    pub fn container_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.container)
    }

    pub fn container_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 250, self.subnet, 2)
    }

    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.container_ip(), port))
    }

    /// What hull left in the container's namespace: tap links and ingress/clsact qdiscs.
    fn hull_leftovers(&self) -> Result<Vec<String>> {
        let c = self.container.as_str();
        let links = tool("ip", &["-n", c, "-o", "link", "show"])?;
        let qdiscs = tool("tc", &["-n", c, "qdisc", "show"])?;
        let mut left: Vec<String> = hull_testkit::net::link_names(&links)
            .into_iter()
            .filter(|l| l.starts_with(TAP_PREFIX))
            .map(|l| format!("link {l}"))
            .collect();
        left.extend(
            qdiscs
                .lines()
                .filter(|l| l.starts_with("qdisc ingress") || l.starts_with("qdisc clsact"))
                .map(|l| l.trim().to_string()),
        );
        Ok(left)
    }

    /// Waits (≤ 5 s) until hull left nothing in the container's namespace.
    fn check_clean(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.hull_leftovers()?;
            if left.is_empty() {
                return Ok(());
            }
            procs::check_interrupted()?;
            if Instant::now() >= deadline {
                bail!(
                    "hull left {left:?} in network namespace {} after the container ended",
                    self.container
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in &self.made {
            if let Err(e) = tool("ip", &["netns", "del", ns]) {
                eprintln!("hull-bench: could not delete network namespace {ns}: {e:#}");
            }
        }
    }
}

/// Deletes namespaces of earlier harness runs whose process is gone (a SIGKILLed harness).
fn remove_stale_namespaces() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|r| r.strip_prefix('e').or_else(|| r.strip_prefix('c')))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                eprintln!("hull-bench: deleting stale network namespace {name}");
                let _ = tool("ip", &["netns", "del", &name]);
            }
        }
    }
}

/// Runs `f` on a short-lived thread that has joined the network namespace at `ns` (setns
/// changes only the calling thread; sockets stay in the namespace they were made in).
/// Never spawn processes from `f` (see [`Proc`]).
fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) reads the descriptor `file` keeps open and moves only this
            // thread, which ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("setns {}", ns.display()));
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("the thread in {} panicked", ns.display()))?
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error()).context("pipe2");
    }
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// --- the container ---------------------------------------------------------------------------

/// The server container's script: a sink, a source and an HTTP server (for connects), started
/// in that order; `httpd` answers only once both `nc` listen. Prints `rx0 BYTES` (eth0's
/// receive counter) at start and `rx1 STATUS BYTES` when the sink's `nc` has exited.
pub fn server_script() -> String {
    format!(
        "trap 'exit 0' TERM\n\
         exec 3<&0\n\
         rx() {{ cat /sys/class/net/eth0/statistics/rx_bytes; }}\n\
         echo \"rx0 $(rx)\"\n\
         ( nc -l -p {PORT_SINK} >/dev/null <&3; echo \"rx1 $? $(rx)\" ) &\n\
         ( dd if=/dev/zero bs=1M count={MIB} 2>/dev/null | nc -l -p {PORT_SOURCE}; echo \"tx1 $?\" ) &\n\
         i=0\n\
         while [ \"$(netstat -ltn | grep -c -e ':{PORT_SINK} ' -e ':{PORT_SOURCE} ')\" -lt 2 ]; do\n\
           i=$((i+1)); if [ $i -gt 1000 ]; then echo 'nc is not listening after 10 s' >&2; exit 1; fi\n\
           usleep 10000\n\
         done\n\
         httpd -f -p {PORT_CONNECT} -h / &\n\
         wait\n"
    )
}

/// Bytes eth0 received between `rx0` and `rx1` in the server's output (the sink's `nc` must
/// have exited 0).
pub fn parse_rx(stdout: &str) -> Result<u64> {
    let field = |tag: &str| -> Option<Vec<u64>> {
        stdout.lines().find_map(|l| {
            let rest = l.strip_prefix(tag)?.strip_prefix(' ')?;
            rest.split_whitespace()
                .map(|w| w.parse().ok())
                .collect::<Option<Vec<u64>>>()
        })
    };
    let rx0 = field("rx0")
        .and_then(|v| v.first().copied())
        .with_context(|| format!("no `rx0 BYTES` line in the server's output:\n{stdout}"))?;
    let rx1 = field("rx1")
        .filter(|v| v.len() == 2)
        .with_context(|| format!("no `rx1 STATUS BYTES` line in the server's output:\n{stdout}"))?;
    if rx1[0] != 0 {
        bail!("the sink's nc exited with status {}", rx1[0]);
    }
    Ok(rx1[1].saturating_sub(rx0))
}

/// `config`'s network namespace becomes the one at `path` (as engines set it).
pub fn join_netns(config: &mut Value, path: &Path) {
    if let Some(ns) = config["linux"]["namespaces"].as_array_mut() {
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network", "path": path}));
    }
}

/// `runc delete --force` on drop (a foreground `runc run` that was SIGKILLed leaves its
/// container running).
struct RuncGuard {
    runc: PathBuf,
    root: PathBuf,
    id: String,
}

impl Drop for RuncGuard {
    fn drop(&mut self) {
        let mut c = Command::new(&self.runc);
        c.arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id]);
        let _ = procs::output("runc delete", &mut c, TOOL_TIMEOUT);
    }
}

/// A running server container (fields drop in order: the runtime's process is killed first).
struct Server {
    proc: Proc,
    stdout: PathBuf,
    stderr: PathBuf,
    /// The write end of the container's stdin, open until the end: the sink's `nc` must never
    /// see EOF on its stdin.
    stdin: Option<OwnedFd>,
    _runc: Option<RuncGuard>,
}

impl Server {
    fn start(ctx: &Ctx, rt: Rt, root: &StateRoot, bundle: &Path, id: &str) -> Result<Self> {
        let (r, w) = pipe()?;
        let stdout = ctx.logs.join(format!("{id}.stdout"));
        match rt {
            Rt::Hull => {
                let c = Container::run_with_stdin(
                    root,
                    &ctx.runtime,
                    bundle,
                    id,
                    &ctx.logs,
                    Some(&stdout),
                    &[],
                    Stdio::from(r),
                )?;
                Ok(Self {
                    proc: c.proc,
                    stdout,
                    stderr: c.stderr,
                    stdin: Some(w),
                    _runc: None,
                })
            }
            Rt::Runc => {
                let runc = ctx.runc.clone().context("runc not found")?;
                let stderr = ctx.logs.join(format!("{id}.runc.stderr"));
                let runc_root = ctx.work.join("runc");
                let guard = RuncGuard {
                    runc: runc.clone(),
                    root: runc_root.clone(),
                    id: id.to_string(),
                };
                let mut c = Command::new(&runc);
                c.arg("--root")
                    .arg(&runc_root)
                    .args(["run", "--bundle"])
                    .arg(bundle)
                    .arg(id)
                    .stdin(Stdio::from(r))
                    .stdout(File::create(&stdout)?)
                    .stderr(File::create(&stderr)?);
                let proc = Proc::spawn(&format!("runc run {id}"), &mut c)?;
                Ok(Self {
                    proc,
                    stdout,
                    stderr,
                    stdin: Some(w),
                    _runc: Some(guard),
                })
            }
        }
    }

    fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("stdout: {}\nstderr: {}", out.trim(), err.trim())
    }

    /// Waits until `httpd` in the container accepts a connection from the engine namespace
    /// (then both `nc` listen too).
    fn wait_ready(&mut self, net: &NetPair, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let addr = net.addr(PORT_CONNECT);
        loop {
            if self.proc.exited()? {
                bail!("{} exited early:\n{}", self.proc.name(), self.output());
            }
            let ok = in_netns(&net.engine_path(), || {
                Ok(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
            })?;
            if ok {
                return Ok(t0.elapsed());
            }
            procs::check_interrupted()?;
            if t0.elapsed() >= timeout {
                bail!(
                    "nothing answered on {addr} within {timeout:?}:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (the script exits 0), waits for the runtime to exit; the container's stdout.
    fn stop(&mut self) -> Result<String> {
        self.proc.kill(libc::SIGTERM);
        let (st, _) = self.proc.finish(STOP_TIMEOUT)?;
        self.stdin = None;
        if !st.success() {
            bail!("{} ended with {st}:\n{}", self.proc.name(), self.output());
        }
        Ok(std::fs::read_to_string(&self.stdout).unwrap_or_default())
    }
}

// --- measurements ----------------------------------------------------------------------------

/// `ip netns exec ENGINE /bin/busybox nc -w 10 IP PORT` (busybox's `-w`: connect timeout).
fn nc_client(net: &NetPair, port: u16) -> Command {
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &net.engine,
        "/bin/busybox",
        "nc",
        "-w",
        "10",
    ])
    .arg(net.container_ip().to_string())
    .arg(port.to_string());
    c
}

fn mib_s(elapsed: Duration) -> f64 {
    MIB as f64 / elapsed.as_secs_f64().max(1e-6)
}

fn tail(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Host → container: `dd if=/dev/zero bs=1M count=256 | nc IP PORT_SINK`.
fn host_to_container(ctx: &Ctx, net: &NetPair, tag: &str) -> Result<f64> {
    let dd_log = ctx.logs.join(format!("{tag}.h2c.dd.stderr"));
    let nc_log = ctx.logs.join(format!("{tag}.h2c.nc.stderr"));
    let mut dd = Command::new("dd");
    dd.args(["if=/dev/zero", "bs=1M", &format!("count={MIB}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&dd_log)?);
    let t0 = Instant::now();
    let mut ddp = Proc::spawn("dd (host → container)", &mut dd)?;
    let feed = ddp.take_stdout().context("dd's stdout")?;
    let mut nc = nc_client(net, PORT_SINK);
    nc.stdin(Stdio::from(feed))
        .stdout(Stdio::null())
        .stderr(File::create(&nc_log)?);
    let mut ncp = Proc::spawn("nc client (host → container)", &mut nc)?;
    drop(nc); // our copy of the pipe's read end: dd must see EPIPE if nc goes away
    let (st, t1) = ncp.finish(TRANSFER_TIMEOUT)?;
    let (dst, _) = ddp.finish(Duration::from_secs(10))?;
    if !st.success() {
        bail!("the nc client failed ({st}): {}", tail(&nc_log));
    }
    let want = format!("{} bytes", MIB << 20);
    let dd_err = tail(&dd_log);
    if !dst.success() || !dd_err.contains(&want) {
        bail!("dd did not hand nc all {MIB} MiB ({dst}): {dd_err}");
    }
    Ok(mib_s(t1 - t0))
}

/// Container → host: `nc IP PORT_SOURCE`, stdin held open, stdout counted here.
fn container_to_host(ctx: &Ctx, net: &NetPair, tag: &str) -> Result<f64> {
    let nc_log = ctx.logs.join(format!("{tag}.c2h.nc.stderr"));
    let (r, w) = pipe()?;
    let mut nc = nc_client(net, PORT_SOURCE);
    nc.stdin(Stdio::from(r))
        .stdout(Stdio::piped())
        .stderr(File::create(&nc_log)?);
    let t0 = Instant::now();
    let mut p = Proc::spawn("nc client (container → host)", &mut nc)?;
    drop(nc);
    let mut out = p.take_stdout().context("nc's stdout")?;
    // EOF at the latest when the client dies (killed at the deadline).
    let counter = std::thread::spawn(move || -> io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match out.read(&mut buf) {
                Ok(0) => return Ok(n),
                Ok(k) => n += k as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    });
    let done = p.finish(TRANSFER_TIMEOUT);
    drop(w);
    let (st, t1) = done?;
    let bytes = counter
        .join()
        .map_err(|_| anyhow!("the byte counter panicked"))?
        .context("read nc's stdout")?;
    if !st.success() {
        bail!("the nc client failed ({st}): {}", tail(&nc_log));
    }
    if bytes != MIB << 20 {
        bail!(
            "received {bytes} bytes instead of {} ({})",
            MIB << 20,
            tail(&nc_log)
        );
    }
    Ok(mib_s(t1 - t0))
}

/// `CONNECTS` sequential connects from the engine namespace; only `connect()` is timed.
///
/// After each, the harness sends FIN and reads until the server has closed, so the next
/// connect starts once `httpd` is done with the previous one: `httpd` accepts and forks one
/// connection at a time with a listen backlog of 9, and a guest under TCG forks slowly, so
/// back-to-back connects overflow the backlog, the guest drops the SYN and the client resends
/// it after 1 s (which this harness measured before it waited).
fn connect_latencies(net: &NetPair) -> Result<Vec<f64>> {
    let addr = net.addr(PORT_CONNECT);
    in_netns(&net.engine_path(), || {
        let mut v = Vec::with_capacity(CONNECTS);
        for i in 0..CONNECTS {
            procs::check_interrupted()?;
            let t0 = Instant::now();
            let s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
                .with_context(|| format!("connect {} to {addr}", i + 1))?;
            v.push(ms(t0.elapsed()));
            wait_closed(s).with_context(|| format!("connection {} to {addr}", i + 1))?;
        }
        Ok(v)
    })
}

/// Shuts down our sending half and reads (≤ 64 KiB, ≤ `CONNECT_TIMEOUT` per read) until the
/// peer closes.
fn wait_closed(mut s: TcpStream) -> Result<()> {
    s.shutdown(Shutdown::Write).context("shutdown")?;
    s.set_read_timeout(Some(CONNECT_TIMEOUT))
        .context("set_read_timeout")?;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e).context("wait for the server to close"),
        }
        if total > 64 << 10 {
            bail!("the server sent more than 64 KiB");
        }
    }
}

/// One server container of `rt`: throughput both ways and connect latency. Failed parts are
/// recorded and left out.
fn serve_run(
    ctx: &Ctx,
    rt: Rt,
    root: &StateRoot,
    bundle: &mut Bundle,
    run: &str,
    tag: &str,
    failures: &mut Failures,
) -> Result<Serve> {
    let what = |part: &str| format!("network, {} {part}, run {run}", rt.name());
    let mut r = Serve::default();
    let Some(net) = failures.record(&what("(make the namespaces)"), NetPair::new())? else {
        return Ok(r);
    };
    bundle.edit(|c| join_netns(c, &net.container_path()));
    let id = match rt {
        Rt::Hull => tag.to_string(),
        Rt::Runc => format!("hull-bench-{}-{tag}", std::process::id()),
    };
    let started = Server::start(ctx, rt, root, bundle.path(), &id).and_then(|mut s| {
        let t = s.wait_ready(&net, ctx.boot_timeout(1))?;
        Ok((s, t))
    });
    let Some((mut server, ready)) = failures.record(&what("server container start"), started)?
    else {
        return Ok(r);
    };
    r.h2c_mib_s = failures.record(
        &what("TCP host → container"),
        host_to_container(ctx, &net, tag),
    )?;
    r.c2h_mib_s = failures.record(
        &what("TCP container → host"),
        container_to_host(ctx, &net, tag),
    )?;
    r.connect_ms = failures
        .record(&what("TCP connects"), connect_latencies(&net))?
        .unwrap_or_default();
    let out = failures.record(&what("server container stop"), server.stop())?;
    drop(server);
    // The sink must have received the whole transfer (eth0 counts frames with headers).
    if r.h2c_mib_s.is_some() {
        let checked = out.as_deref().context("no output").and_then(|o| {
            let rx = parse_rx(o)?;
            if rx < MIB << 20 {
                bail!("eth0 in the container received {rx} bytes, less than {MIB} MiB");
            }
            Ok(())
        });
        if failures
            .record(&what("TCP host → container (receiver check)"), checked)?
            .is_none()
        {
            r.h2c_mib_s = None;
        }
    }
    if rt == Rt::Hull {
        failures.record(&what("cleanup (taps, tc qdiscs)"), net.check_clean())?;
    }
    let show = |x: Option<f64>, unit: &str| {
        x.map(|x| format!("{x:.1} {unit}"))
            .unwrap_or_else(|| "-".into())
    };
    eprintln!(
        "hull-bench: net {run} {}: ready after {:.0} ms, host→container {}, container→host {}, connect median {}",
        rt.name(),
        ms(ready),
        show(r.h2c_mib_s, "MiB/s"),
        show(r.c2h_mib_s, "MiB/s"),
        show(Summary::of(&r.connect_ms).map(|s| s.median), "ms"),
    );
    Ok(r)
}

/// Time to workload of `true` under hull in the container namespace of a new [`NetPair`].
fn ttw_joined(
    ctx: &Ctx,
    root: &StateRoot,
    bundle: &mut Bundle,
    round: &str,
    id: &str,
    failures: &mut Failures,
) -> Result<Option<(f64, Map<String, Value>)>> {
    let what =
        |part: &str| format!("network, time to workload (engine netns){part}, round {round}");
    let Some(net) = failures.record(&what(": make the namespaces"), NetPair::new())? else {
        return Ok(None);
    };
    bundle.edit(|c| join_netns(c, &net.container_path()));
    let r = failures.record(&what(""), ttw::hull(ctx, root, bundle.path(), id))?;
    failures.record(&what(": cleanup (taps, tc qdiscs)"), net.check_clean())?;
    Ok(r)
}

/// `runs` rounds of: hull server, runc server, then hull `true` with a fresh netns and with the
/// engine's netns joined (in alternating order; these two also in one discarded warm-up round).
pub fn run(ctx: &Ctx, runs: usize, failures: &mut Failures) -> Result<Net> {
    if hull_testkit::which("ip").is_none() || hull_testkit::which("tc").is_none() {
        bail!("the network case needs iproute2 (ip, tc): apt-get install iproute2");
    }
    if ctx.runc.is_none() {
        bail!("the network case compares with runc: apt-get install runc");
    }
    remove_stale_namespaces();
    let root = StateRoot::new()?;
    let mut server = Bundle::busybox(&["sh", "-c", &server_script()]);
    let fresh = Bundle::busybox(&["true"]);
    let mut joined = Bundle::busybox(&["true"]);
    let mut r = Net::default();
    for i in 0..=runs {
        let round = if i == 0 {
            "warm-up".to_string()
        } else {
            format!("{i}/{runs}")
        };
        if i > 0 {
            for (rt, tag) in [(Rt::Hull, "nh"), (Rt::Runc, "nr")] {
                let tag = format!("{tag}{i}");
                let s = serve_run(ctx, rt, &root, &mut server, &round, &tag, failures)?;
                match rt {
                    Rt::Hull => r.hull.push(s),
                    Rt::Runc => r.runc.push(s),
                }
            }
        }
        // Alternate which goes first: the first of a pair follows the teardown of the server
        // containers and their namespaces, which biased it by ~100 ms.
        let (mut a, mut b) = (None, None);
        for joined_now in [i % 2 == 0, i % 2 == 1] {
            if joined_now {
                b = ttw_joined(ctx, &root, &mut joined, &round, &format!("nj{i}"), failures)?;
            } else {
                a = failures.record(
                    &format!("network, time to workload (fresh netns), round {round}"),
                    ttw::hull(ctx, &root, fresh.path(), &format!("nf{i}")),
                )?;
            }
        }
        let show = |x: &Option<(f64, Map<String, Value>)>| {
            x.as_ref()
                .map(|x| format!("{:.0} ms", x.0))
                .unwrap_or_else(|| "-".into())
        };
        eprintln!(
            "hull-bench: net time to workload {round}: fresh netns {}, engine netns {}",
            show(&a),
            show(&b)
        );
        if i == 0 {
            continue;
        }
        if let (Some(a), Some(b)) = (&a, &b) {
            r.diff_ms.push(b.0 - a.0);
        }
        if let Some((ms, t)) = a {
            r.fresh_ms.push(ms);
            r.fresh_timings.push(t);
        }
        if let Some((ms, t)) = b {
            r.joined_ms.push(ms);
            r.joined_timings.push(t);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_counter_lines() {
        let out = "rx0 1000\nrx1 0 268501000\ntx1 0\n";
        assert_eq!(parse_rx(out).unwrap(), 268500000);
        assert!(parse_rx("rx0 1000\n").is_err());
        assert!(parse_rx("rx0 1000\nrx1 1 5000\n").is_err());
        assert!(parse_rx("rx1 0 5000\n").is_err());
    }

    #[test]
    fn the_script_starts_httpd_after_both_listeners() {
        let s = server_script();
        let sink = s.find(&format!("nc -l -p {PORT_SINK}")).unwrap();
        let source = s.find(&format!("nc -l -p {PORT_SOURCE}")).unwrap();
        let httpd = s.find("httpd").unwrap();
        assert!(sink < httpd && source < httpd);
        assert!(
            s.contains("<&3"),
            "the sink's stdin must be the container's"
        );
    }

    #[test]
    fn joining_a_netns_replaces_the_new_one() {
        let mut c = hull_testkit::bundle::default_spec();
        join_netns(&mut c, Path::new("/run/netns/x"));
        let ns = c["linux"]["namespaces"].as_array().unwrap();
        let net: Vec<&Value> = ns.iter().filter(|n| n["type"] == "network").collect();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0]["path"], "/run/netns/x");
    }
}
