//! The management API (`<state>/api.sock`) of real VMs (TCG here): info, metrics, memory down
//! and up and vCPUs up and down, each seen from inside the container (`/proc/meminfo`,
//! `nproc`); pause/resume; bad requests answered 4xx without changing anything; the socket's
//! mode; a VM whose QEMU was killed answers 503 or has no socket, never hangs. Every response
//! is validated against the committed OpenAPI document.

mod common;

// The raw HTTP client and the OpenAPI checker of hull-api's own tests.
#[allow(unused_imports)]
#[path = "../../hull-api/tests/common/mod.rs"]
mod api_kit;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use api_kit::{Client, Response, Spec};
use common::{Bundle, Root, VM_TIMEOUT};
use serde_json::{json, Value};

/// A detached `sleep 1000` container and its API.
struct Vm {
    root: Root,
    _bundle: Bundle,
    id: String,
    api: Client,
    spec: Spec,
}

impl Vm {
    fn start(id: &str, annotations: Value) -> Self {
        let root = Root::new();
        let mut b = Bundle::busybox(&["sleep", "1000"]);
        b.edit(|c| c["annotations"] = annotations);
        let st = root
            .cmd(&["run", "--detach", "--bundle"])
            .arg(b.path())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(st.success(), "run --detach {id}");
        let api = Client {
            path: root.path().join(id).join("api.sock"),
        };
        Self {
            root,
            _bundle: b,
            id: id.to_owned(),
            api,
            spec: Spec::committed(),
        }
    }

    fn sock(&self) -> PathBuf {
        self.api.path.clone()
    }

    /// A request, checked against the OpenAPI document.
    fn get(&self, path: &str) -> Response {
        let r = self.api.get(path);
        self.spec.check("GET", path, &r);
        r
    }

    fn post(&self, path: &str) -> Response {
        let r = self.api.post(path);
        self.spec.check("POST", path, &r);
        r
    }

    fn put(&self, path: &str, body: &str) -> Response {
        let r = self.api.put_json(path, body);
        self.spec.check("PUT", path, &r);
        r
    }

    fn info(&self) -> Value {
        let r = self.get("/v1/vm");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// `hull-runtime exec ID args...`, its stdout.
    fn exec(&self, args: &[&str]) -> String {
        let mut c = self.root.cmd(&["exec", &self.id]);
        c.args(args);
        let out = common::finish(common::spawn(&mut c, false), None, VM_TIMEOUT);
        assert_eq!(out.code, Some(0), "exec {args:?}: {}", out.stderr_str());
        out.stdout_str()
    }

    /// MemTotal in the container, KiB.
    fn guest_mem_total_kib(&self) -> u64 {
        let meminfo = self.exec(&["cat", "/proc/meminfo"]);
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no MemTotal in {meminfo}"))
    }

    fn nproc(&self) -> u32 {
        self.exec(&["nproc"]).trim().parse().unwrap()
    }

    /// What a refused request must not change.
    fn sizing(&self) -> Value {
        let i = self.info();
        json!({"vcpus": i["vcpus"], "target": i["memory_mib"]["target"], "state": i["state"]})
    }

    fn delete(&self) {
        let st = self
            .root
            .cmd(&["delete", "--force", &self.id])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

#[test]
fn memory_and_vcpus_resize_in_the_guest_and_bad_requests_change_nothing() {
    // Cold boot (virtio-fs, a memfd for RAM); the next test resizes a template's clone.
    let vm = Vm::start(
        "apivm",
        json!({"org.hull.vm.template": "off", "org.hull.vm.max_vcpus": "2",
               "org.hull.vm.memory_mib": "256"}),
    );
    let mode = std::fs::metadata(vm.sock()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "api.sock mode {mode:o}");

    assert_eq!(vm.get("/v1/health").status, 200);
    let info = vm.info();
    assert_eq!(info["id"], "apivm");
    assert_eq!(info["machine"], "microvm");
    assert_eq!(info["state"], "running");
    assert_eq!(info["vm_start"], "cold");
    assert_eq!(info["vcpus"], json!({"online": 1, "max": 2}));
    assert_eq!(info["memory_mib"]["configured"], 256);
    assert_eq!(info["memory_mib"]["target"], 256);
    assert!(info["kernel"].as_str().unwrap().starts_with("6."), "{info}");
    let metrics = vm.get("/v1/vm/metrics");
    assert_eq!(metrics.status, 200);
    let m = &metrics.body;
    assert!(
        m["guest_memory"]["total_kib"].as_u64().unwrap() > 100 << 10,
        "{m}"
    );
    assert!(m["guest_cpu_time_ns"].as_u64().unwrap() > 0, "{m}");
    let procs = m["host"]["processes"].as_array().unwrap();
    assert!(procs
        .iter()
        .any(|p| p["name"] == "qemu-system-x86_64" && p["pss_kib"].as_u64().unwrap() > 0));
    assert!(procs.iter().any(|p| p["name"] == "virtiofsd"), "{m}");

    // Memory down: the balloon inflates, the guest's MemTotal shrinks by as much.
    let full = vm.guest_mem_total_kib();
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 192}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["memory_mib"]["target"], 192);
    let shrunk = vm.guest_mem_total_kib();
    assert!(
        full - shrunk >= 60 << 10 && full - shrunk <= 68 << 10,
        "MemTotal {full} KiB → {shrunk} KiB after 256 → 192 MiB"
    );
    assert_eq!(vm.info()["memory_mib"]["guest_total"], shrunk / 1024);
    // And up again.
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 256}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(vm.guest_mem_total_kib(), full);
    assert_eq!(vm.info()["memory_mib"]["guest_total"], full / 1024);

    // vCPUs 1 → 2 → 1, as nproc counts them.
    assert_eq!(vm.nproc(), 1);
    let r = vm.put("/v1/vm/vcpus", r#"{"vcpus": 2}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["vcpus"], json!({"online": 2, "max": 2}));
    assert_eq!(vm.nproc(), 2);
    let r = vm.put("/v1/vm/vcpus", r#"{"vcpus": 1}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(vm.nproc(), 1);

    // Bad requests: 4xx with a reason, nothing changed.
    let before = vm.sizing();
    let bad: &[(&str, &str, u16)] = &[
        ("/v1/vm/vcpus", r#"{"vcpus": 3}"#, 422),
        ("/v1/vm/vcpus", r#"{"vcpus": 0}"#, 400),
        ("/v1/vm/vcpus", r#"{"vcpus": 2, "extra": 1}"#, 400),
        ("/v1/vm/memory", r#"{"memory_mib": 300}"#, 422),
        ("/v1/vm/memory", r#"{"memory_mib": 16}"#, 409),
        ("/v1/vm/memory", r#"{"memory_mib": 0}"#, 400),
        ("/v1/vm/memory", r#"{"memory_mib": "#, 400),
        ("/v1/vm/memory", r#"{"memory": 200}"#, 400),
    ];
    for (path, body, status) in bad {
        let r = vm.put(path, body);
        assert_eq!(r.status, *status, "PUT {path} {body}: {}", r.body);
        assert!(!r.body["message"].as_str().unwrap().is_empty());
        assert_eq!(vm.sizing(), before, "after PUT {path} {body}");
    }
    assert_eq!(vm.nproc(), 1);

    // Pause: info answers without the guest; resizes wait for resume.
    let r = vm.post("/v1/vm/pause");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "paused");
    let i = vm.info();
    assert_eq!(i["memory_mib"]["guest_total"], Value::Null);
    assert_eq!(i["vcpus"]["online"], 1);
    let m = vm.get("/v1/vm/metrics");
    assert_eq!(m.status, 200);
    assert_eq!(m.body["guest_memory"], Value::Null);
    assert_eq!(vm.put("/v1/vm/vcpus", r#"{"vcpus": 2}"#).status, 409);
    assert_eq!(vm.post("/v1/vm/pause").status, 200, "pausing twice");
    let r = vm.post("/v1/vm/resume");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "running");
    assert_eq!(vm.nproc(), 1);

    // QEMU killed: 503 or no socket at all, at once.
    let qemu = vm.get("/v1/vm/metrics").body["host"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "qemu-system-x86_64")
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-9", &qemu.to_string()])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    hull_testkit::wait::wait_for("the API to notice QEMU's death", VM_TIMEOUT, || {
        if std::os::unix::net::UnixStream::connect(vm.sock()).is_err() {
            return Some(());
        }
        // The server may be closing: a connection without an answer is tried again.
        let api = vm.api.clone();
        let r = std::panic::catch_unwind(move || api.get("/v1/vm")).ok()?;
        (r.status == 503).then(|| vm.spec.check("GET", "/v1/vm", &r))
    });
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    vm.delete();
    vm.root.assert_clean("apivm");
}

/// The template memory file a clone's QEMU maps (from its /proc/PID/maps), and its SHA-256.
fn mapped_template(qemu_pid: u64) -> (PathBuf, String) {
    let maps = std::fs::read_to_string(format!("/proc/{qemu_pid}/maps")).unwrap();
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/memory"))
        .unwrap_or_else(|| panic!("QEMU {qemu_pid} maps no template memory file"));
    (PathBuf::from(path), sha256(std::path::Path::new(path)))
}

/// `Seccomp:` of /proc/PID/status (2: filtered).
fn seccomp_mode(pid: u64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .unwrap()
        .trim()
        .to_owned()
}

impl Vm {
    fn qemu_pid(&self) -> u64 {
        self.get("/v1/vm/metrics").body["host"]["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "qemu-system-x86_64")
            .unwrap()["pid"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn a_template_clone_resizes_without_touching_its_template() {
    let annotations = json!({"org.hull.vm.max_vcpus": "2", "org.hull.vm.max_memory_mib": "320"});
    let vm = Vm::start("apiclone", annotations.clone());
    let info = vm.info();
    assert_eq!(info["vm_start"], "clone", "{info}");
    assert_eq!(info["vcpus"], json!({"online": 1, "max": 2}));
    // 320 MiB of RAM, 64 of them in the balloon from the start.
    assert_eq!(info["memory_mib"]["configured"], 320, "{info}");
    assert_eq!(info["memory_mib"]["target"], 256, "{info}");
    assert_eq!(vm.nproc(), 1, "the template's offlined vCPU stays offline");
    let (template, sum) = mapped_template(vm.qemu_pid());
    assert_eq!(
        seccomp_mode(vm.qemu_pid()),
        "2",
        "a clone's QEMU is sandboxed"
    );

    // The guest writes into its memory (page cache), then grows to all 320 MiB and shrinks to
    // 192: the balloon deflates and inflates in the clone, and its QEMU drops its own copies
    // only (see qemu_filter).
    vm.exec(&[
        "sh",
        "-c",
        "head -c 33554432 /dev/urandom > /tmp/fill && rm /tmp/fill",
    ]);
    let start = vm.guest_mem_total_kib();
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 320}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    let full = vm.guest_mem_total_kib();
    assert_eq!(
        full - start,
        64 << 10,
        "MemTotal {start} KiB → {full} KiB after 256 → 320 MiB"
    );
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 192}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["memory_mib"]["target"], 192);
    let shrunk = vm.guest_mem_total_kib();
    assert_eq!(
        full - shrunk,
        128 << 10,
        "MemTotal {full} KiB → {shrunk} KiB after 320 → 192 MiB"
    );
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 256}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(vm.guest_mem_total_kib(), start);
    let r = vm.put("/v1/vm/memory", r#"{"memory_mib": 321}"#);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("max_memory_mib"),
        "{}",
        r.body
    );
    let r = vm.put("/v1/vm/vcpus", r#"{"vcpus": 2}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(vm.nproc(), 2);

    // The template is what it was, and a new clone of it works.
    assert_eq!(
        mapped_template(vm.qemu_pid()),
        (template.clone(), sum.clone())
    );
    let second = Vm::start("apiclone2", annotations);
    assert_eq!(second.info()["vm_start"], "clone");
    assert_eq!(mapped_template(second.qemu_pid()).0, template);
    assert_eq!(second.exec(&["echo", "alive"]), "alive\n");
    second.delete();
    vm.delete();
    assert_eq!(sha256(&template), sum, "the template's memory file changed");
    vm.root.assert_clean("apiclone");
    second.root.assert_clean("apiclone2");
}

fn sha256(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn twenty_concurrent_resizes_are_serialized_and_end_consistent() {
    let vm = Vm::start(
        "apiconc",
        json!({"org.hull.vm.template": "off", "org.hull.vm.max_vcpus": "2",
               "org.hull.vm.memory_mib": "256"}),
    );
    assert_eq!(
        seccomp_mode(vm.qemu_pid()),
        "2",
        "a cold VM's QEMU is sandboxed"
    );
    let full = vm.guest_mem_total_kib();
    let memory: Vec<u64> = (0..10).map(|i| 200 + 5 * i).collect();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let api = vm.api.clone();
            let (path, body) = match i % 2 {
                0 => (
                    "/v1/vm/memory",
                    format!(r#"{{"memory_mib": {}}}"#, memory[i / 2]),
                ),
                _ => (
                    "/v1/vm/vcpus",
                    format!(r#"{{"vcpus": {}}}"#, 1 + (i / 2) % 2),
                ),
            };
            std::thread::spawn(move || (path, body.clone(), api.put_json(path, &body)))
        })
        .collect();
    for t in threads {
        let (path, body, r) = t.join().unwrap();
        vm.spec.check("PUT", path, &r);
        assert_eq!(r.status, 200, "PUT {path} {body}: {}", r.body);
    }
    // Whichever came last set the size; the guest, the API and the balloon agree on it.
    let info = vm.info();
    let target = info["memory_mib"]["target"].as_u64().unwrap();
    assert!(memory.contains(&target), "{info}");
    let total = vm.guest_mem_total_kib();
    let given_back = (full - total) / 1024;
    assert!(
        given_back.abs_diff(256 - target) <= 1,
        "target {target} MiB, the guest gave back {given_back} MiB"
    );
    assert_eq!(info["memory_mib"]["guest_total"], total / 1024);
    assert_eq!(
        info["vcpus"]["online"].as_u64().unwrap(),
        u64::from(vm.nproc())
    );
    vm.delete();
    vm.root.assert_clean("apiconc");
}
