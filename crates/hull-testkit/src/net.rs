//! Networks that tests create, HTTP over TCP with bounded retries, and looking at links, qdiscs
//! and network namespaces (to check that nothing is left behind).
//!
//! Traffic rules: tests only talk to 127.0.0.1 and to addresses inside networks they created
//! themselves ([`TestNet`]: a /24 of 10.0.0.0/8 reserved for this test process, with a bridge
//! name of its own). Every request loop is bounded in attempts and in time.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::command::run;
use crate::require_program;

/// Name prefix of the tap devices hull creates next to each veth of a container's netns.
pub const HULL_TAP_PREFIX: &str = "hulltap";

/// First octet pair is `10.<SECOND_OCTET_BASE + pid % 100>`: 10.100.x.0 – 10.199.x.0.
const SECOND_OCTET_BASE: u32 = 100;

/// A /24 and a bridge name reserved for one test network of this process, e.g.
/// `10.147.3.0/24` on bridge `hbp4711n3`.
///
/// The subnet is derived from the PID and a per-process counter, skipped if any address or
/// route of this host's network namespace is already in it, and reserved across processes
/// by a file in `$TMPDIR/hull-testnets/` (removed on drop; a reservation whose process is
/// gone is taken over). The bridge is deleted when the last clone of the `TestNet` drops
/// (keep one in the engine fixture, dropped after its containers). Bridges named like ours
/// whose process is gone are deleted on the first allocation of a process.
#[derive(Debug, Clone)]
pub struct TestNet {
    name: String,
    bridge: String,
    prefix: String,
    _reservation: Arc<Reservation>,
}

/// The reservation file of a [`TestNet`] and its bridge's name: when the last clone goes,
/// the bridge is deleted (if it still exists) and the file removed.
#[derive(Debug)]
struct Reservation {
    file: PathBuf,
    bridge: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if link_exists(None, &self.bridge) {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_file(&self.file);
    }
}

impl TestNet {
    /// Reserves a subnet and a bridge name. `kind` is one letter naming the engine
    /// (`p` podman, `d` docker, `c` CRI) so leftovers can be told apart.
    pub fn allocate(kind: char) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        static CLEAN: Once = Once::new();
        require_program("ip", "apt-get install iproute2");
        CLEAN.call_once(remove_stale_bridges);
        let pid = std::process::id();
        let second = SECOND_OCTET_BASE + pid % 100;
        let dir = std::env::temp_dir().join("hull-testnets");
        fs::create_dir_all(&dir).unwrap();
        let in_use = host_ipv4_text();
        for _ in 0..256 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let third = n % 256;
            let prefix = format!("10.{second}.{third}");
            if in_use.contains(&format!("{prefix}.")) {
                continue;
            }
            let reservation = dir.join(&prefix);
            if !reserve(&reservation, pid) {
                continue;
            }
            let bridge = format!("hb{kind}{pid}n{n}");
            return Self {
                name: format!("hull-{kind}{pid}-{n}"),
                bridge: bridge.clone(),
                prefix,
                _reservation: Arc::new(Reservation {
                    file: reservation,
                    bridge,
                }),
            };
        }
        panic!("no free 10.{second}.x.0/24 subnet for a test network (see `ip -4 route`)");
    }

    /// A name for the network (engine network name, CNI network name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge interface's name (at most 15 characters).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// `10.A.B.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.0/24", self.prefix)
    }

    /// `10.A.B.1`, the bridge's address.
    pub fn gateway(&self) -> String {
        self.addr(1)
    }

    /// `10.A.B.<host>`.
    pub fn addr(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// True if `ip` is an address of this subnet.
    pub fn contains(&self, ip: &str) -> bool {
        ip.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|h| h.parse::<u8>().ok())
            .is_some()
    }

    /// True if the bridge exists in this host's network namespace.
    pub fn bridge_exists(&self) -> bool {
        link_exists(None, &self.bridge)
    }

    /// Interfaces enslaved to the bridge (veth ends of containers still attached).
    pub fn bridge_ports(&self) -> Vec<String> {
        let mut c = Command::new("ip");
        c.args(["-o", "link", "show", "master", &self.bridge]);
        match c.stderr(Stdio::null()).output() {
            Ok(o) if o.status.success() => link_names(&String::from_utf8_lossy(&o.stdout)),
            _ => Vec::new(),
        }
    }

    /// Creates the bridge with the gateway address and brings it up (for engines that want
    /// an existing bridge, like dockerd's `bridge` option).
    pub fn create_bridge(&self) {
        run(Command::new("ip").args(["link", "add", &self.bridge, "type", "bridge"])).ok();
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{}/24", self.gateway()),
            "dev",
            &self.bridge,
        ]))
        .ok();
        run(Command::new("ip").args(["link", "set", &self.bridge, "up"])).ok();
    }

    /// Deletes the bridge if it exists (never panics).
    pub fn delete_bridge(&self) {
        if self.bridge_exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Creates `path` holding our PID unless a live process holds it.
fn reserve(path: &Path, pid: u32) -> bool {
    for _ in 0..2 {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => {
                let _ = write!(f, "{pid}");
                return true;
            }
            Err(_) => {
                let holder = fs::read_to_string(path)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok());
                match holder {
                    Some(h) if crate::wait::pid_alive(h) => return false,
                    // Stale (or being written right now: then the next try fails on
                    // create_new and we read a live PID).
                    _ => {
                        let _ = fs::remove_file(path);
                    }
                }
            }
        }
    }
    false
}

/// `ip -4 -o addr` + `ip -4 route` of the host's netns, to skip subnets in use.
fn host_ipv4_text() -> String {
    let mut s = String::new();
    for args in [&["-4", "-o", "addr"][..], &["-4", "route"][..]] {
        if let Ok(o) = Command::new("ip").args(args).output() {
            s.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    s
}

/// Deletes bridges named `hb<kind><pid>n<n>` whose test process is gone.
fn remove_stale_bridges() {
    for name in links(None) {
        let Some(rest) = name.strip_prefix("hb") else {
            continue;
        };
        let mut chars = rest.chars();
        if !matches!(chars.next(), Some('p' | 'd' | 'c')) {
            continue;
        }
        let Some((pid, n)) = chars.as_str().split_once('n') else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<i32>(), n.parse::<u32>()) else {
            continue;
        };
        if !crate::wait::pid_alive(pid) {
            let _ = Command::new("ip")
                .args(["link", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The network config dir of every podman fixture (`$TMPDIR/hull-testnets/podman`): networks
/// are named after their test process ([`TestNet::name`]), so they never clash, and the
/// `netavark.lock` podman takes around each netavark run serializes them across tests, as on
/// a real host (netavark 1.4 races on shared iptables chains otherwise: "Chain already
/// exists"). Networks of test processes that are gone are removed on first use.
pub fn podman_network_dir() -> PathBuf {
    static CLEAN: Once = Once::new();
    let dir = std::env::temp_dir().join("hull-testnets/podman");
    fs::create_dir_all(&dir).unwrap();
    CLEAN.call_once(|| {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("hull-")
                .and_then(|r| r.get(1..))
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid {
                if name.ends_with(".json") && !crate::wait::pid_alive(pid) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    });
    dir
}

// ---------------------------------------------------------------------------------------------

/// `ip ARGS…` in the host's netns, or in the one bound at `netns` (via `nsenter --net=`).
fn ip_in(netns: Option<&Path>, args: &[&str]) -> Option<String> {
    program_in(netns, "ip", args)
}

fn program_in(netns: Option<&Path>, program: &str, args: &[&str]) -> Option<String> {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg(program);
            c
        }
        None => Command::new(program),
    };
    c.args(args).stdin(Stdio::null()).stderr(Stdio::null());
    let o = c.output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Interface names in `ip -o link` output (`2: eth0@if5: <…>` → `eth0`).
pub fn link_names(ip_o_link: &str) -> Vec<String> {
    ip_o_link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// Names of the links of the host's netns (`None`) or of the netns bound at a path.
pub fn links(netns: Option<&Path>) -> Vec<String> {
    ip_in(netns, &["-o", "link"])
        .map(|s| link_names(&s))
        .unwrap_or_default()
}

/// True if a link named `name` exists in that netns.
pub fn link_exists(netns: Option<&Path>, name: &str) -> bool {
    links(netns).iter().any(|l| l == name)
}

/// Links whose name starts with [`HULL_TAP_PREFIX`].
pub fn hull_taps(netns: Option<&Path>) -> Vec<String> {
    links(netns)
        .into_iter()
        .filter(|l| l.starts_with(HULL_TAP_PREFIX))
        .collect()
}

/// Lines of `tc qdisc show` naming an `ingress` (or `clsact`) qdisc, in that netns.
pub fn ingress_qdiscs(netns: Option<&Path>) -> Vec<String> {
    require_program("tc", "apt-get install iproute2");
    program_in(netns, "tc", &["qdisc", "show"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("qdisc ingress") || l.starts_with("qdisc clsact"))
        .map(str::to_owned)
        .collect()
}

/// The inode of a network namespace file (`/proc/PID/ns/net`, a netns bind mount).
pub fn netns_inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| m.ino())
}

/// PIDs of the processes whose network namespace has this inode.
pub fn pids_in_netns(inode: u64) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| netns_inode(Path::new(&format!("/proc/{pid}/ns/net"))) == Some(inode))
        .collect()
}

/// Processes (other than this one) with `needle` in their command line, as `PID cmdline`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            if pid == me {
                return None;
            }
            let raw = fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle)
                .then(|| format!("{pid} {}", cmd.trim()))
        })
        .collect()
}

/// Mount points at or below `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == dir || p.starts_with(&format!("{dir}/")))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// One `GET path` (HTTP/1.0) to `addr` (`127.0.0.1:PORT`), connect and read bounded by
/// `timeout` each.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete HTTP answer: {text:?}"))?;
    let status = head
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {head:?}"))?;
    Ok(HttpResponse {
        status,
        body: body.to_owned(),
    })
}

/// GETs `http://addr/path` until it answers 200, at most `attempts` times and until
/// `deadline` has passed (each attempt ≤ 2 s, ~250 ms between attempts). Returns the body,
/// or every distinct error seen.
pub fn fetch_until_ok(
    addr: &str,
    path: &str,
    deadline: Duration,
    attempts: u32,
) -> Result<String, String> {
    let end = Instant::now() + deadline;
    let mut errors: Vec<String> = Vec::new();
    for i in 0..attempts {
        let err = match http_get(addr, path, Duration::from_secs(2)) {
            Ok(r) if r.status == 200 => return Ok(r.body),
            Ok(r) => format!("HTTP {}: {:?}", r.status, r.body),
            Err(e) => e,
        };
        if !errors.contains(&err) {
            errors.push(err);
        }
        if Instant::now() >= end || i + 1 == attempts {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!(
        "http://{addr}{path} gave no 200 answer within {deadline:?} / {attempts} attempts; errors seen:\n  {}",
        errors.join("\n  ")
    ))
}

/// Attempts of [`wget_loop`].
pub const WGET_LOOP_ATTEMPTS: u32 = 100;

/// A busybox shell command that fetches `url` with `timeout 5 wget -q -O -` until it answers
/// (at most [`WGET_LOOP_ATTEMPTS`] tries, 200 ms apart), printing `body:<page>` (see
/// [`fetched_body`]); otherwise it exits 1 saying so. (busybox 1.35's static `wget -T`
/// crashes, hence `timeout`.)
pub fn wget_loop(url: &str) -> String {
    format!(
        "i=0; while [ $i -lt {WGET_LOOP_ATTEMPTS} ]; do \
           if out=$(timeout 5 wget -q -O - {url}); then printf 'body:%s\\n' \"$out\"; exit 0; fi; \
           i=$((i+1)); usleep 200000; \
         done; echo \"{url} did not answer after {WGET_LOOP_ATTEMPTS} attempts\" >&2; exit 1"
    )
}

/// The page printed by [`wget_loop`] (its `body:` line, trailing newline stripped by the shell).
#[track_caller]
pub fn fetched_body(stdout: &str) -> &str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("body:"))
        .unwrap_or_else(|| panic!("no `body:` line in the container's output:\n{stdout}"))
}

/// A busybox shell command that writes `body` to /www/index.html and execs `httpd` in the
/// foreground listening on `listen` (`PORT` or `IP:PORT`).
pub fn httpd_script(listen: &str, body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p {listen} -h /www")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_strip_index_and_peer() {
        let out = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\\    link/loopback 00:00:00:00:00:00\n\
                   2: eth0@if14: <BROADCAST,MULTICAST,UP,LOWER_UP,M-DOWN> mtu 1500 qdisc noqueue\\    link/ether 6e:68:87:17:6d:e0\n";
        assert_eq!(link_names(out), ["lo", "eth0"]);
    }

    #[test]
    fn test_nets_are_distinct_and_reserved() {
        let a = TestNet::allocate('p');
        let b = TestNet::allocate('p');
        assert_ne!(a.subnet(), b.subnet());
        assert_ne!(a.bridge(), b.bridge());
        assert!(a.bridge().len() <= 15, "{}", a.bridge());
        assert!(a.subnet().starts_with("10.") && a.subnet().ends_with(".0/24"));
        assert!(a.contains(&a.addr(7)));
        assert!(!a.contains(&b.addr(7)));
        let prefix = a.gateway().strip_suffix(".1").unwrap().to_owned();
        assert!(a.contains(&format!("{prefix}.254")));
        assert!(
            !a.contains(&format!("{prefix}5.1")),
            "10.a.b5.1 is not in 10.a.b.0/24"
        );
        assert!(!a.contains(&format!("{prefix}.256")));
        let file = std::env::temp_dir().join("hull-testnets").join(&prefix);
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            std::process::id().to_string()
        );
        let clone = a.clone();
        drop(a);
        assert!(file.exists(), "a live clone keeps the reservation");
        drop(clone);
        assert!(!file.exists(), "the last clone releases it");
    }
}
