//! Images: what `hull`'s image store and its `run` cost.
//!
//! 1. Pull of a multi-layer image (busybox plus layers of random, incompressible files, gzip)
//!    from a local registry (Debian's `docker-registry` on 127.0.0.1:<free port>, storage in a
//!    temp dir, pushed once with `skopeo copy`): `hull pull` into a fresh store (download,
//!    verify, unpack) vs `skopeo copy` into a fresh OCI layout (download, verify, no unpack)
//!    and, if installed, `podman pull` into a fresh private store (download, verify, unpack).
//! 2. Time to workload of `true` from the demo image (`guest/demo/build.sh`, loaded once):
//!    `hull-runtime run` of a bundle whose rootfs is the demo's layer unpacked, vs
//!    `hull run --rm hull-demo true` with `--network none` (the same VM: what the overlay
//!    mount, spec generation and the supervisor add) and with hull's default network.
//!
//! Each run gets fresh stores; one warm-up round is discarded; rounds are interleaved. Every
//! directory is a [`Scratch`]: on drop the processes that belong to it are killed, mounts
//! below it unmounted and it is removed. Traffic only goes to 127.0.0.1.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::hull::StateRoot;
use crate::procs::{self, Proc};
use crate::report::Failures;
use crate::{ttw, Ctx};

/// Layers of random files on top of busybox, and their size.
pub const RANDOM_LAYERS: usize = 4;
pub const FILES_PER_LAYER: usize = 5;
pub const FILE_MIB: usize = 2;

const REGISTRY_START_TIMEOUT: Duration = Duration::from_secs(30);
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const REPO: &str = "bench";

#[derive(Debug, Default)]
pub struct Image {
    /// Layers of the pulled image and the size of their blobs (compressed) and tars.
    pub layers: usize,
    pub blob_mib: f64,
    pub tar_mib: f64,
    /// `podman --version`, if podman is installed.
    pub podman: Option<String>,
    pub hull_pull_ms: Vec<f64>,
    pub skopeo_ms: Vec<f64>,
    pub podman_ms: Vec<f64>,
    /// `hull-runtime run` of the demo's rootfs as a bundle.
    pub runtime_ms: Vec<f64>,
    /// `hull run --rm --network none hull-demo true`.
    pub hull_run_none_ms: Vec<f64>,
    /// `hull run --rm hull-demo true` (default network: QEMU user-mode).
    pub hull_run_ms: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn tail(path: &Path) -> String {
    let t = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// Runs `cmd` to completion within `timeout`; its stdout, or an error with its stderr.
fn tool(name: &str, cmd: &mut Command, timeout: Duration) -> Result<Vec<u8>> {
    let out = procs::output(name, cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{name} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

// --- scratch directories ---------------------------------------------------------------------

/// A fresh directory in /tmp with a short path (hull's state root is below a hull root: unix
/// socket paths must stay < 108 bytes). On drop: processes that belong to it are SIGKILLed,
/// mounts below it (hull's overlays, podman's) are detached, then it is removed.
pub struct Scratch {
    path: PathBuf,
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let p = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == p || mp.starts_with(&format!("{p}/")))
        .map(str::to_string)
        .collect();
    // Deepest first.
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v.dedup();
    v
}

impl Scratch {
    pub fn new(prefix: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .context("create a scratch directory in /tmp")?;
        Ok(Self { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in procs::processes_of_root(&self.path) {
            // SAFETY: kill(2); these processes name this directory or work below it.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !procs::processes_of_root(&self.path).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for m in mounts_below(&self.path) {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2(2) of a mount below our own scratch directory.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
        let left = procs::processes_of_root(&self.path);
        let mounts = mounts_below(&self.path);
        if left.is_empty() && mounts.is_empty() {
            let _ = fs::remove_dir_all(&self.path);
        } else {
            eprintln!(
                "hull-bench: left {} in place (processes {left:?}, mounts {mounts:?})",
                self.path.display()
            );
        }
    }
}

// --- the registry and the image ----------------------------------------------------------------

/// One HTTP GET; the status code, if the server answered.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Debian's `docker-registry` on 127.0.0.1:<free port>, plain HTTP, storage in a scratch
/// directory. Killed (it is a [`Proc`]) and its storage removed on drop.
struct Registry {
    _proc: Proc,
    addr: String,
    _dir: Scratch,
}

impl Registry {
    fn start(ctx: &Ctx) -> Result<Self> {
        let bin = hull_testkit::which("docker-registry")
            .context("docker-registry not found: apt-get install docker-registry")?;
        let dir = Scratch::new("hbreg")?;
        let mut last = String::new();
        for attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config)?;
            let log = ctx.logs.join(format!("registry-{attempt}.log"));
            let mut c = Command::new(&bin);
            c.arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(File::create(&log)?)
                .stderr(File::create(&log)?);
            let mut proc = Proc::spawn("docker-registry", &mut c)?;
            let up = procs::poll_until("docker-registry", REGISTRY_START_TIMEOUT, || {
                if http_status(&addr, "/v2/").is_some() {
                    return Ok(Some(true));
                }
                Ok(proc.exited()?.then_some(false))
            })?;
            if up {
                return Ok(Self {
                    _proc: proc,
                    addr,
                    _dir: dir,
                });
            }
            last = tail(&log);
            if !last.contains("address already in use") {
                break;
            }
        }
        bail!("docker-registry failed to start: {last}")
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let out = tool(
        "sha256sum",
        Command::new("sha256sum").arg(path),
        TOOL_TIMEOUT,
    )?;
    let s = String::from_utf8_lossy(&out);
    let hex = s.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64 {
        bail!("sha256sum {}: {s:?}", path.display());
    }
    Ok(format!("sha256:{hex}"))
}

/// Stores `file` as a blob of `layout`; its (digest, size).
fn blob(layout: &Path, file: &Path) -> Result<(String, u64)> {
    let d = sha256_file(file)?;
    let size = fs::metadata(file)?.len();
    let hex = d.trim_start_matches("sha256:");
    fs::rename(file, layout.join("blobs/sha256").join(hex))?;
    Ok((d, size))
}

fn blob_bytes(layout: &Path, data: &[u8]) -> Result<(String, u64)> {
    let tmp = layout.join("blob.tmp");
    fs::write(&tmp, data)?;
    blob(layout, &tmp)
}

/// Writes an OCI image layout in `layout`: busybox, then [`RANDOM_LAYERS`] layers of
/// [`FILES_PER_LAYER`] random files of [`FILE_MIB`] MiB each, gzip. Returns (layers, blob
/// MiB, tar MiB).
fn build_image(work: &Path, layout: &Path) -> Result<(usize, f64, f64)> {
    fs::create_dir_all(layout.join("blobs/sha256"))?;
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let mut roots = Vec::new();
    let bb = work.join("l0");
    hull_testkit::bundle::busybox_rootfs(&bb);
    roots.push(bb);
    let mut rnd = File::open("/dev/urandom")?;
    let mut buf = vec![0u8; FILE_MIB << 20];
    for l in 1..=RANDOM_LAYERS {
        let d = work.join(format!("l{l}"));
        let data = d.join(format!("data/layer{l}"));
        fs::create_dir_all(&data)?;
        for f in 0..FILES_PER_LAYER {
            rnd.read_exact(&mut buf)?;
            fs::write(data.join(format!("file{f}.bin")), &buf)?;
        }
        roots.push(d);
    }
    let (mut diff_ids, mut descs) = (Vec::new(), Vec::new());
    let (mut blob_bytes_total, mut tar_bytes_total) = (0u64, 0u64);
    for (i, root) in roots.iter().enumerate() {
        let tar = work.join(format!("layer{i}.tar"));
        tool(
            "tar",
            Command::new("tar")
                .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
                .args(["--mtime=@0", "-C"])
                .arg(root)
                .arg("-cf")
                .arg(&tar)
                .arg("."),
            TOOL_TIMEOUT,
        )?;
        diff_ids.push(sha256_file(&tar)?);
        tar_bytes_total += fs::metadata(&tar)?.len();
        tool(
            "gzip",
            Command::new("gzip").args(["-1", "-n"]).arg(&tar),
            TOOL_TIMEOUT,
        )?;
        let (d, s) = blob(layout, &work.join(format!("layer{i}.tar.gz")))?;
        blob_bytes_total += s;
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d,
            "size": s,
        }));
        fs::remove_dir_all(root)?;
    }
    let config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": roots.iter().map(|_| json!({"created_by": "hull-bench"})).collect::<Vec<_>>(),
    });
    let (cd, cs) = blob_bytes(layout, &serde_json::to_vec(&config)?)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs,
    });
    let (md, ms) = blob_bytes(layout, &serde_json::to_vec(&manifest)?)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md,
            "size": ms,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    Ok((roots.len(), mib(blob_bytes_total), mib(tar_bytes_total)))
}

fn skopeo() -> Result<PathBuf> {
    hull_testkit::which("skopeo").context("skopeo not found: apt-get install skopeo")
}

// --- pulls -------------------------------------------------------------------------------------

fn hull_cmd(ctx: &Ctx, hull: &Path, root: &Path) -> Command {
    let mut c = Command::new(hull);
    c.env("HULL_RUNTIME", &ctx.runtime).arg("--root").arg(root);
    c
}

/// Times `cmd` from its start to its exit; an error with its stderr if it fails.
fn timed(name: &str, cmd: &mut Command, log: &Path, timeout: Duration) -> Result<f64> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(log)?);
    let t0 = Instant::now();
    let mut p = Proc::spawn(name, cmd)?;
    let (st, t1) = p.finish(timeout)?;
    if !st.success() {
        bail!("{name} failed ({st}): {}", tail(log));
    }
    Ok(ms(t1 - t0))
}

fn hull_pull(ctx: &Ctx, hull: &Path, reference: &str, tag: &str) -> Result<f64> {
    let root = Scratch::new("hbhp")?;
    let t = timed(
        "hull pull",
        hull_cmd(ctx, hull, root.path()).args(["pull", "-q", reference]),
        &ctx.logs.join(format!("hull-pull-{tag}.stderr")),
        PULL_TIMEOUT,
    )?;
    // The image must be in the store.
    let out = tool(
        "hull images",
        hull_cmd(ctx, hull, root.path()).args(["images"]),
        TOOL_TIMEOUT,
    )?;
    if !String::from_utf8_lossy(&out).contains(REPO) {
        bail!(
            "hull images after the pull does not list it: {}",
            String::from_utf8_lossy(&out)
        );
    }
    Ok(t)
}

fn skopeo_pull(ctx: &Ctx, skopeo: &Path, reference: &str, tag: &str) -> Result<f64> {
    let dir = Scratch::new("hbsp")?;
    let dest = dir.path().join("layout");
    let t = timed(
        "skopeo copy",
        Command::new(skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:latest", dest.display())),
        &ctx.logs.join(format!("skopeo-{tag}.stderr")),
        PULL_TIMEOUT,
    )?;
    if !dest.join("index.json").is_file() {
        bail!("skopeo copy wrote no index.json");
    }
    Ok(t)
}

fn podman_base(podman: &Path, dir: &Path) -> Command {
    let mut c = Command::new(podman);
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("runroot"))
        .arg("--tmpdir")
        .arg(dir.join("tmp"))
        .args([
            "--storage-driver",
            "overlay",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
        ]);
    c
}

fn podman_pull(ctx: &Ctx, podman: &Path, reference: &str, tag: &str) -> Result<f64> {
    let dir = Scratch::new("hbpp")?;
    let t = timed(
        "podman pull",
        podman_base(podman, dir.path()).args(["pull", "--quiet", "--tls-verify=false", reference]),
        &ctx.logs.join(format!("podman-{tag}.stderr")),
        PULL_TIMEOUT,
    )?;
    let out = tool(
        "podman images",
        podman_base(podman, dir.path()).args(["images", "--format", "{{.Repository}}"]),
        TOOL_TIMEOUT,
    )?;
    if !String::from_utf8_lossy(&out).contains(REPO) {
        bail!(
            "podman images after the pull does not list it: {}",
            String::from_utf8_lossy(&out)
        );
    }
    Ok(t)
}

// --- time to workload --------------------------------------------------------------------------

/// Extracts the demo image's (single) layer from the oci-archive into `rootfs`.
fn unpack_demo(work: &Path, archive: &Path, rootfs: &Path) -> Result<()> {
    let layout = work.join("demo-layout");
    fs::create_dir_all(&layout)?;
    fs::create_dir_all(rootfs)?;
    tool(
        "tar -x demo archive",
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-xf")
            .arg(archive),
        TOOL_TIMEOUT,
    )?;
    let read = |d: &str| -> Result<Value> {
        let p = layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        Ok(serde_json::from_slice(
            &fs::read(&p).with_context(|| format!("read {}", p.display()))?,
        )?)
    };
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json"))?)?;
    let md = index["manifests"][0]["digest"]
        .as_str()
        .context("demo index.json: no manifest")?;
    let manifest = read(md)?;
    let layers = manifest["layers"]
        .as_array()
        .context("demo manifest: no layers")?;
    for l in layers {
        let d = l["digest"].as_str().context("layer without digest")?;
        let p = layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        tool(
            "tar -x demo layer",
            Command::new("tar")
                .args(["--numeric-owner", "-xzf"])
                .arg(&p)
                .arg("-C")
                .arg(rootfs),
            TOOL_TIMEOUT,
        )?;
    }
    Ok(())
}

/// A bundle of the demo's rootfs with `hull-runtime spec`'s config running `true`.
fn demo_bundle(ctx: &Ctx, archive: &Path, bundle: &Path) -> Result<()> {
    unpack_demo(&ctx.work, archive, &bundle.join("rootfs"))?;
    tool(
        "hull-runtime spec",
        Command::new(&ctx.runtime)
            .arg("spec")
            .arg("--bundle")
            .arg(bundle),
        TOOL_TIMEOUT,
    )?;
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&path)?)?;
    config["process"]["args"] = json!(["true"]);
    config["process"]["terminal"] = json!(false);
    config["root"]["path"] = json!("rootfs");
    fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// `hull run --rm [--network N] hull-demo true`, its VM templates in `templates` if given
/// (`HULL_TEMPLATE_DIR`).
fn hull_run(
    ctx: &Ctx,
    hull: &Path,
    root: &Path,
    templates: Option<&Path>,
    network: Option<&str>,
    tag: &str,
) -> Result<f64> {
    let mut c = hull_cmd(ctx, hull, root);
    if let Some(t) = templates {
        c.env("HULL_TEMPLATE_DIR", t);
    }
    c.args(["run", "--rm"]);
    if let Some(n) = network {
        c.args(["--network", n]);
    }
    c.args(["hull-demo", "true"]);
    timed(
        "hull run",
        &mut c,
        &ctx.logs.join(format!("hull-run-{tag}.stderr")),
        RUN_TIMEOUT,
    )
}

// --- the case ------------------------------------------------------------------------------------

fn round_name(i: usize, runs: usize) -> String {
    if i == 0 {
        "warm-up".into()
    } else {
        format!("{i}/{runs}")
    }
}

fn show(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

pub fn run(ctx: &Ctx, runs: usize, failures: &mut Failures) -> Result<Image> {
    let hull = ctx
        .hull
        .clone()
        .context("no `hull` binary next to hull-runtime (build it: cargo build -p hull)")?;
    let skopeo = skopeo()?;
    let podman = hull_testkit::which("podman");
    let mut r = Image::default();
    if let Some(p) = &podman {
        let v = tool(
            "podman --version",
            Command::new(p).arg("--version"),
            TOOL_TIMEOUT,
        )?;
        r.podman = Some(String::from_utf8_lossy(&v).trim().to_string());
    }

    // 1. Pulls.
    eprintln!("hull-bench: image: building the test image, starting a registry, pushing");
    let build = Scratch::new("hbimg")?;
    let layout = build.path().join("layout");
    let (layers, blob_mib, tar_mib) = build_image(build.path(), &layout)?;
    (r.layers, r.blob_mib, r.tar_mib) = (layers, blob_mib, tar_mib);
    let registry = Registry::start(ctx)?;
    let reference = format!("{}/{REPO}:latest", registry.addr);
    tool(
        "skopeo copy (push)",
        Command::new(&skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .arg("--preserve-digests")
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{reference}")),
        PULL_TIMEOUT,
    )?;
    drop(build);
    eprintln!(
        "hull-bench: image: {reference}: {layers} layers, {blob_mib:.1} MiB gzip ({tar_mib:.1} MiB tar)"
    );
    for i in 0..=runs {
        let round = round_name(i, runs);
        let tag = format!("r{i}");
        let h = failures.record(
            &format!("image pull (hull pull), round {round}"),
            hull_pull(ctx, &hull, &reference, &tag),
        )?;
        let s = failures.record(
            &format!("image pull (skopeo copy), round {round}"),
            skopeo_pull(ctx, &skopeo, &reference, &tag),
        )?;
        let p = match &podman {
            Some(bin) => failures.record(
                &format!("image pull (podman pull), round {round}"),
                podman_pull(ctx, bin, &reference, &tag),
            )?,
            None => None,
        };
        eprintln!(
            "hull-bench: image pull {round}: hull {}, skopeo {}, podman {}",
            show(h),
            show(s),
            show(p)
        );
        if i > 0 {
            r.hull_pull_ms.extend(h);
            r.skopeo_ms.extend(s);
            r.podman_ms.extend(p);
        }
    }
    drop(registry);

    // 2. Time to workload from the demo image.
    eprintln!("hull-bench: image: building and loading the demo image");
    let archive = ctx.work.join("hull-demo.tar");
    tool(
        "guest/demo/build.sh",
        Command::new(crate::workspace_root().join("guest/demo/build.sh")).arg(&archive),
        TOOL_TIMEOUT,
    )?;
    let hull_root = Scratch::new("hbhr")?;
    tool(
        "hull load",
        hull_cmd(ctx, &hull, hull_root.path())
            .args(["load", "-q", "-i"])
            .arg(&archive),
        TOOL_TIMEOUT,
    )?;
    let bundle = Scratch::new("hbdb")?;
    demo_bundle(ctx, &archive, bundle.path())?;
    let state = StateRoot::new()?;
    // `hull run`'s state root is below the hull root (in /tmp, with the image store): its VM
    // templates go on tmpfs like those of (a)'s state root, unless HULL_TEMPLATE_DIR is given.
    // The warm-up round builds them.
    let templates = std::env::var_os("HULL_TEMPLATE_DIR")
        .is_none()
        .then(|| state.path().join("hull-run-templates"));
    for i in 0..=runs {
        let round = round_name(i, runs);
        let a = failures.record(
            &format!("image ttw (a) hull-runtime run, round {round}"),
            ttw::hull(ctx, &state, bundle.path(), &format!("img{i}")).map(|(ms, t)| {
                let start = t.get("vm_start").and_then(|v| v.as_str()).unwrap_or("?");
                eprintln!("hull-bench: image ttw (a) round {round}: vm_start {start}");
                ms
            }),
        )?;
        let b = failures.record(
            &format!("image ttw (b) hull run --network none, round {round}"),
            hull_run(
                ctx,
                &hull,
                hull_root.path(),
                templates.as_deref(),
                Some("none"),
                &format!("n{i}"),
            ),
        )?;
        let c = failures.record(
            &format!("image ttw (c) hull run, round {round}"),
            hull_run(
                ctx,
                &hull,
                hull_root.path(),
                templates.as_deref(),
                None,
                &format!("u{i}"),
            ),
        )?;
        eprintln!(
            "hull-bench: image time-to-workload {round}: hull-runtime {}, hull run --network none {}, hull run {}",
            show(a),
            show(b),
            show(c)
        );
        if i > 0 {
            r.runtime_ms.extend(a);
            r.hull_run_none_ms.extend(b);
            r.hull_run_ms.extend(c);
        }
    }
    Ok(r)
}
