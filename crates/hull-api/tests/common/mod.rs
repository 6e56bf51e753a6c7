//! Test kit: a mock backend, a raw HTTP/1.1 client over the unix socket, and a checker of
//! responses against the OpenAPI document.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_api::{
    ApiError, ApiServer, Backend, Config, GuestMemory, HostProcess, HostUsage, MemoryMib,
    MemoryResize, Metrics, NetCounters, VcpuResize, Vcpus, VmInfo, VmStart, VmState,
};
use serde_json::Value;

/// How the mock VM behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Healthy,
    /// QEMU died: every call fails at once.
    Gone,
    /// The next call blocks this long, later ones are normal.
    HangOnce(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Vm {
    online: u32,
    max: u32,
    configured: u64,
    target: u64,
    /// MiB the guest uses: a smaller target is refused.
    used: u64,
    paused: bool,
}

/// A VM in memory that counts its calls and detects two calls at once.
pub struct Mock {
    vm: Mutex<Vm>,
    mode: Mutex<Mode>,
    /// How long each call takes (widens the window for overlaps).
    delay: Duration,
    busy: AtomicBool,
    pub calls: AtomicUsize,
    pub overlaps: AtomicUsize,
}

impl Mock {
    pub fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            vm: Mutex::new(Vm {
                online: 2,
                max: 4,
                configured: 1024,
                target: 1024,
                used: 100,
                paused: false,
            }),
            mode: Mutex::new(Mode::Healthy),
            delay,
            busy: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            overlaps: AtomicUsize::new(0),
        })
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// Counts the call and holds `busy` while `body` runs.
    fn call<T>(&self, body: impl FnOnce(&mut Vm) -> Result<T, ApiError>) -> Result<T, ApiError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.busy.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let result = self.run(body);
        self.busy.store(false, Ordering::SeqCst);
        result
    }

    fn run<T>(&self, body: impl FnOnce(&mut Vm) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Gone => return Err(ApiError::Unavailable("QEMU exited (signal 9)".into())),
            Mode::HangOnce(hang) => {
                self.set_mode(Mode::Healthy);
                std::thread::sleep(hang);
            }
            Mode::Healthy => {}
        }
        std::thread::sleep(self.delay);
        let mut vm = self.vm.lock().unwrap();
        body(&mut vm)
    }

    pub fn snapshot(&self) -> (u32, u64, bool) {
        let vm = self.vm.lock().unwrap();
        (vm.online, vm.target, vm.paused)
    }
}

fn info_of(vm: &Vm) -> VmInfo {
    VmInfo {
        id: "mock-1".into(),
        accelerator: "tcg".into(),
        machine: "microvm".into(),
        state: if vm.paused {
            VmState::Paused
        } else {
            VmState::Running
        },
        vcpus: Vcpus {
            online: vm.online,
            max: vm.max,
        },
        memory_mib: MemoryMib {
            configured: vm.configured,
            target: vm.target,
            guest_total: (!vm.paused).then_some(vm.target - 24),
            guest_available: (!vm.paused).then_some(vm.target - vm.used),
        },
        kernel: "6.1.0-hull".into(),
        started_at: "2026-12-02T07:47:50Z".into(),
        uptime_s: 42,
        vm_start: VmStart::Clone,
    }
}

fn metrics_of(vm: &Vm) -> Metrics {
    let qemu = HostProcess {
        name: "qemu-system-x86_64".into(),
        pid: 4242,
        pss_kib: 81_920,
    };
    Metrics {
        guest_memory: (!vm.paused).then_some(GuestMemory {
            total_kib: (vm.target - 24) * 1024,
            free_kib: (vm.target - vm.used) * 1024,
            available_kib: (vm.target - vm.used) * 1024,
            disk_caches_kib: Some(4096),
            swap_in_kib: None,
            swap_out_kib: None,
            major_faults: Some(12),
            minor_faults: None,
        }),
        guest_cpu_time_ns: Some(1_500_000_000),
        host: HostUsage {
            pss_kib: qemu.pss_kib,
            processes: vec![qemu],
        },
        block: Vec::new(),
        net: vec![NetCounters {
            interface: "eth0".into(),
            rx_bytes: 1500,
            tx_bytes: 900,
            rx_packets: 3,
            tx_packets: 2,
        }],
    }
}

impl Backend for Mock {
    fn health(&self) -> Result<(), ApiError> {
        match *self.mode.lock().unwrap() {
            Mode::Gone => Err(ApiError::Unavailable("QEMU exited (signal 9)".into())),
            _ => Ok(()),
        }
    }

    fn info(&self) -> Result<VmInfo, ApiError> {
        self.call(|vm| Ok(info_of(vm)))
    }

    fn metrics(&self) -> Result<Metrics, ApiError> {
        self.call(|vm| Ok(metrics_of(vm)))
    }

    fn pause(&self) -> Result<VmInfo, ApiError> {
        self.call(|vm| {
            vm.paused = true;
            Ok(info_of(vm))
        })
    }

    fn resume(&self) -> Result<VmInfo, ApiError> {
        self.call(|vm| {
            vm.paused = false;
            Ok(info_of(vm))
        })
    }

    fn resize_memory(&self, request: MemoryResize) -> Result<VmInfo, ApiError> {
        self.call(|vm| {
            let mib = request.memory_mib;
            if mib > vm.configured {
                return Err(ApiError::OutOfRange(format!(
                    "memory_mib {mib} is above the VM's {} MiB",
                    vm.configured
                )));
            }
            if mib < vm.used {
                return Err(ApiError::Conflict(format!(
                    "memory_mib {mib} is below the {} MiB the guest uses",
                    vm.used
                )));
            }
            vm.target = mib;
            Ok(info_of(vm))
        })
    }

    fn set_vcpus(&self, request: VcpuResize) -> Result<VmInfo, ApiError> {
        self.call(|vm| {
            if request.vcpus > vm.max {
                return Err(ApiError::OutOfRange(format!(
                    "vcpus {} is above the VM's {}",
                    request.vcpus, vm.max
                )));
            }
            vm.online = request.vcpus;
            Ok(info_of(vm))
        })
    }
}

/// A server on a socket in a fresh directory, with its client.
pub struct Served {
    pub dir: tempfile::TempDir,
    pub server: Option<ApiServer>,
    pub client: Client,
    pub mock: Arc<Mock>,
}

pub fn start(mock: Arc<Mock>, config: Config) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let backend: Arc<dyn Backend> = mock.clone();
    let server = hull_api::serve_with(&path, backend, config).unwrap();
    Served {
        dir,
        server: Some(server),
        client: Client { path },
        mock,
    }
}

pub fn start_default() -> Served {
    start(Mock::new(Duration::ZERO), Config::default())
}

/// One answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// HTTP/1.1 written by hand, one connection per request (`Connection: close`).
#[derive(Debug, Clone)]
pub struct Client {
    pub path: PathBuf,
}

impl Client {
    pub fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], None)
    }

    pub fn post(&self, path: &str) -> Response {
        self.send("POST", path, &[], None)
    }

    pub fn put_json(&self, path: &str, body: &str) -> Response {
        self.send(
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        let raw = self.exchange(&request_bytes(method, path, headers, body));
        parse_response(&raw)
    }

    /// Writes `request` and reads the whole answer.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut stream = UnixStream::connect(&self.path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        raw
    }
}

fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: hull\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "PUT" || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (key, value) = line.split_once(':').unwrap();
            (key.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Value::Null,
    };
    let body = &raw[split + 4..];
    let body = if response.header("transfer-encoding") == Some("chunked") {
        dechunk(body)
    } else {
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, body.len(), "Content-Length");
        body.to_vec()
    };
    response.body = serde_json::from_slice(&body).unwrap_or_else(|err| {
        panic!(
            "body is not JSON ({err}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    response
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
}

/// The OpenAPI document, and response checks against it.
pub struct Spec {
    doc: Value,
}

impl Spec {
    pub fn new(doc: Value) -> Self {
        Self { doc }
    }

    /// The committed document.
    pub fn committed() -> Self {
        let text = std::fs::read_to_string(committed_path()).unwrap();
        Self::new(serde_json::from_str(&text).unwrap())
    }

    /// Panics unless `response` is documented for `method path` and its body validates.
    pub fn check(&self, method: &str, path: &str, response: &Response) {
        let schema = self.response_schema(method, path, response.status);
        self.validate(
            &schema,
            &response.body,
            &format!("{method} {path} {}", response.status),
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
    }

    /// Panics unless `body` validates against the component schema `name`.
    pub fn check_component(&self, name: &str, body: &Value) {
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        self.validate(&schema, body, name);
    }

    fn response_schema(&self, method: &str, path: &str, status: u16) -> Value {
        let operation = &self.doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {path} is not in the document"
        );
        let responses = &operation["responses"];
        let response = match &responses[status.to_string()] {
            Value::Null => &responses["default"],
            found => found,
        };
        assert!(
            response.is_object(),
            "{method} {path}: status {status} is not documented"
        );
        response["content"]["application/json"]["schema"].clone()
    }

    fn validate(&self, schema: &Value, body: &Value, what: &str) {
        let mut root = schema.clone();
        let mut components = self.doc["components"].clone();
        close_objects(&mut components);
        root["components"] = components;
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{what}: {body} does not validate: {errors:?}"
        );
    }
}

/// Makes every object schema with properties refuse others, so an undocumented field in a
/// response fails the check (the served document leaves responses open for evolution).
fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

pub fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(hull_api::OPENAPI_FILE)
}
