//! The API over its unix socket, against a mock backend; every answer is checked against the
//! committed OpenAPI document.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start, start_default, Mock, Mode, Spec};
use hull_api::{Backend, Config};
use serde_json::json;

#[test]
fn socket_is_0600_and_removed_on_shutdown() {
    let served = start_default();
    let path = served.client.path.clone();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Nothing but the socket is left beside it (the staging directory is gone).
    let entries: Vec<_> = std::fs::read_dir(served.dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mut served = served;
    served.server.take().unwrap().shutdown().unwrap();
    assert!(!path.exists(), "socket left behind");
}

#[test]
fn drop_stops_the_server() {
    let mut served = start_default();
    assert_eq!(served.client.get("/v1/health").status, 200);
    drop(served.server.take());
    assert!(!served.client.path.exists());
    assert!(std::os::unix::net::UnixStream::connect(&served.client.path).is_err());
}

#[test]
fn a_stale_socket_is_replaced_and_a_long_path_works() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(100)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let path = deep.join("api.sock");
    assert!(path.as_os_str().len() > 108);
    std::fs::write(&path, b"stale").unwrap();
    let backend: Arc<dyn Backend> = Mock::new(Duration::ZERO);
    let server = hull_api::serve(&path, backend).unwrap();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    server.shutdown().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_missing_directory_is_an_error() {
    let backend: Arc<dyn Backend> = Mock::new(Duration::ZERO);
    let err = hull_api::serve("/nonexistent/hull/api.sock", backend).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/hull/api.sock"),
        "{err}"
    );
}

#[test]
fn every_endpoint_answers_as_documented() {
    let served = start_default();
    let spec = Spec::committed();
    let client = &served.client;

    let health = client.get("/v1/health");
    spec.check("GET", "/v1/health", &health);
    assert_eq!(health.body, json!({"status": "ok"}));

    let info = client.get("/v1/vm");
    spec.check("GET", "/v1/vm", &info);
    assert_eq!(info.status, 200);
    assert_eq!(info.body["vcpus"], json!({"online": 2, "max": 4}));

    let metrics = client.get("/v1/vm/metrics");
    spec.check("GET", "/v1/vm/metrics", &metrics);
    assert_eq!(metrics.status, 200);

    let memory = client.put_json("/v1/vm/memory", r#"{"memory_mib": 512}"#);
    spec.check("PUT", "/v1/vm/memory", &memory);
    assert_eq!(memory.status, 200);
    assert_eq!(memory.body["memory_mib"]["target"], 512);

    let vcpus = client.put_json("/v1/vm/vcpus", r#"{"vcpus": 3}"#);
    spec.check("PUT", "/v1/vm/vcpus", &vcpus);
    assert_eq!(vcpus.body["vcpus"]["online"], 3);

    let paused = client.post("/v1/vm/pause");
    spec.check("POST", "/v1/vm/pause", &paused);
    assert_eq!(paused.body["state"], "paused");
    assert_eq!(
        paused.body["memory_mib"]["guest_total"],
        serde_json::Value::Null
    );
    let metrics = client.get("/v1/vm/metrics");
    spec.check("GET", "/v1/vm/metrics", &metrics);
    assert_eq!(metrics.body["guest_memory"], serde_json::Value::Null);

    let resumed = client.post("/v1/vm/resume");
    spec.check("POST", "/v1/vm/resume", &resumed);
    assert_eq!(resumed.body["state"], "running");
}

#[test]
fn the_served_document_is_the_committed_one() {
    let served = start_default();
    let response = served.client.get("/v1/openapi.json");
    Spec::committed().check("GET", "/v1/openapi.json", &response);
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::committed_path()).unwrap()).unwrap();
    assert_eq!(response.body, committed);
    assert_eq!(served.mock.calls(), 0);
}

#[test]
fn bad_requests_are_400_and_never_reach_the_backend() {
    let served = start_default();
    let spec = Spec::committed();
    let cases = [
        ("/v1/vm/memory", r#"{"memory_mib": "#, "EOF"),
        (
            "/v1/vm/memory",
            r#"{"memory_mib": 512, "balloon": true}"#,
            "unknown field `balloon`",
        ),
        (
            "/v1/vm/memory",
            r#"{"memory_mib": 0}"#,
            "memory_mib must be at least 1",
        ),
        ("/v1/vm/memory", r#"{"memory_mib": -5}"#, "invalid value"),
        ("/v1/vm/memory", r#"{"memory_mib": "1G"}"#, "invalid type"),
        ("/v1/vm/memory", r#"{}"#, "missing field `memory_mib`"),
        ("/v1/vm/memory", "", "EOF"),
        (
            "/v1/vm/vcpus",
            r#"{"vcpus": 0}"#,
            "vcpus must be at least 1",
        ),
        ("/v1/vm/vcpus", r#"{"vcpu": 2}"#, "unknown field `vcpu`"),
        ("/v1/vm/vcpus", r#"[2]"#, "must be a JSON object"),
        ("/v1/vm/vcpus", r#"null"#, "must be a JSON object"),
        ("/v1/vm/vcpus", r#"{"vcpus": 2.5}"#, "invalid type"),
    ];
    for (path, body, says) in cases {
        let response = served.client.put_json(path, body);
        spec.check("PUT", path, &response);
        assert_eq!(response.status, 400, "{path} {body}: {:?}", response.body);
        assert_eq!(response.body["code"], "bad_request");
        let message = response.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{path} {body}: {message}");
    }
    assert_eq!(served.mock.calls(), 0, "the backend saw a bad request");
}

#[test]
fn a_body_not_declared_as_json_is_415_and_a_huge_one_413() {
    let served = start_default();
    let spec = Spec::committed();
    let form = served.client.send(
        "PUT",
        "/v1/vm/vcpus",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(br#"{"vcpus": 2}"#),
    );
    spec.check("PUT", "/v1/vm/vcpus", &form);
    assert_eq!(form.status, 415);
    assert_eq!(form.body["code"], "unsupported_media_type");

    let huge = format!(
        r#"{{"vcpus": 2, "pad": "{}"}}"#,
        "x".repeat(hull_api::BODY_LIMIT)
    );
    let response = served.client.put_json("/v1/vm/vcpus", &huge);
    spec.check("PUT", "/v1/vm/vcpus", &response);
    assert_eq!(response.status, 413);
    assert_eq!(served.mock.calls(), 0);
}

#[test]
fn unknown_paths_and_methods_are_json_errors() {
    let served = start_default();
    let spec = Spec::committed();
    for path in ["/", "/v1/vm/balloon", "/v2/vm", "/v1/vm/"] {
        let response = served.client.get(path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("content-type"), Some("application/json"));
        spec.check_component("Error", &response.body);
        assert_eq!(response.body["code"], "not_found");
    }
    let response = served.client.send("DELETE", "/v1/vm", &[], None);
    assert_eq!(response.status, 405);
    spec.check_component("Error", &response.body);
    assert_eq!(response.body["code"], "method_not_allowed");
    let response = served.client.get("/v1/vm/memory");
    assert_eq!(response.status, 405);
    spec.check_component("Error", &response.body);
    assert_eq!(served.mock.calls(), 0);
}

#[test]
fn backend_refusals_map_to_4xx_and_change_nothing() {
    let served = start_default();
    let spec = Spec::committed();
    let before = served.mock.snapshot();
    let cases = [
        (
            "/v1/vm/memory",
            r#"{"memory_mib": 4096}"#,
            422,
            "out_of_range",
        ),
        ("/v1/vm/memory", r#"{"memory_mib": 50}"#, 409, "conflict"),
        ("/v1/vm/vcpus", r#"{"vcpus": 9}"#, 422, "out_of_range"),
    ];
    for (path, body, status, code) in cases {
        let response = served.client.put_json(path, body);
        spec.check("PUT", path, &response);
        assert_eq!(response.status, status, "{path} {body}");
        assert_eq!(response.body["code"], code);
    }
    assert_eq!(served.mock.snapshot(), before);
}

#[test]
fn twenty_concurrent_resizes_are_serialized() {
    let served = start(Mock::new(Duration::from_millis(10)), Config::default());
    let spec = Arc::new(Spec::committed());
    let threads: Vec<_> = (0..20u32)
        .map(|i| {
            let client = served.client.clone();
            let spec = Arc::clone(&spec);
            std::thread::spawn(move || {
                let (path, body) = if i % 2 == 0 {
                    (
                        "/v1/vm/memory",
                        format!(r#"{{"memory_mib": {}}}"#, 200 + i * 10),
                    )
                } else {
                    ("/v1/vm/vcpus", format!(r#"{{"vcpus": {}}}"#, 1 + i % 4))
                };
                let response = client.put_json(path, &body);
                spec.check("PUT", path, &response);
                assert_eq!(response.status, 200, "{path} {body}: {:?}", response.body);
                response.body
            })
        })
        .collect();
    let answers: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(served.mock.calls(), 20);
    assert_eq!(served.mock.overlaps(), 0, "two backend calls overlapped");
    // The VM ends as the last resize of each kind left it: one of the asked values.
    let info = served.client.get("/v1/vm").body;
    let targets: Vec<_> = (0..20).step_by(2).map(|i| 200 + i * 10).collect();
    let target = info["memory_mib"]["target"].as_u64().unwrap();
    assert!(targets.contains(&target), "{target}");
    assert!((1..=4).contains(&info["vcpus"]["online"].as_u64().unwrap()));
    assert_eq!(answers.len(), 20);
}

#[test]
fn a_vm_that_is_gone_answers_503_at_once() {
    let served = start_default();
    served.mock.set_mode(Mode::Gone);
    let spec = Spec::committed();
    let started = Instant::now();
    let requests = [
        ("GET", "/v1/health", None),
        ("GET", "/v1/vm", None),
        ("GET", "/v1/vm/metrics", None),
        ("PUT", "/v1/vm/memory", Some(r#"{"memory_mib": 512}"#)),
        ("PUT", "/v1/vm/vcpus", Some(r#"{"vcpus": 1}"#)),
        ("POST", "/v1/vm/pause", None),
        ("POST", "/v1/vm/resume", None),
    ];
    for (method, path, body) in requests {
        let headers: &[(&str, &str)] = match body {
            Some(_) => &[("Content-Type", "application/json")],
            None => &[],
        };
        let response = served
            .client
            .send(method, path, headers, body.map(str::as_bytes));
        spec.check(method, path, &response);
        assert_eq!(response.status, 503, "{method} {path}");
        assert_eq!(response.body["code"], "vm_unavailable");
        assert!(response.body["message"]
            .as_str()
            .unwrap()
            .contains("QEMU exited"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_hung_backend_is_504_after_the_deadline_and_calls_stay_serialized() {
    let config = Config {
        request_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(100),
    };
    let served = start(Mock::new(Duration::ZERO), config);
    served
        .mock
        .set_mode(Mode::HangOnce(Duration::from_millis(1200)));
    let spec = Spec::committed();
    let started = Instant::now();
    let hung = served.client.get("/v1/vm");
    spec.check("GET", "/v1/vm", &hung);
    assert_eq!(hung.status, 504);
    assert_eq!(hung.body["code"], "timeout");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // The hung call still holds the VM: the next one waits for it, and times out too.
    let waiting = served.client.put_json("/v1/vm/vcpus", r#"{"vcpus": 1}"#);
    assert_eq!(waiting.status, 504);
    std::thread::sleep(Duration::from_millis(1300).saturating_sub(started.elapsed()));
    let after = served.client.get("/v1/vm");
    spec.check("GET", "/v1/vm", &after);
    assert_eq!(after.status, 200);
    assert_eq!(served.mock.overlaps(), 0);
    // The request that timed out waiting never reached the backend: nothing changed.
    assert_eq!(after.body["vcpus"]["online"], 2);
}

#[test]
fn health_does_not_wait_for_a_long_call() {
    let config = Config {
        request_timeout: Duration::from_secs(5),
        shutdown_grace: Duration::from_millis(100),
    };
    let served = start(Mock::new(Duration::ZERO), config);
    served
        .mock
        .set_mode(Mode::HangOnce(Duration::from_millis(800)));
    let client = served.client.clone();
    let slow = std::thread::spawn(move || client.get("/v1/vm").status);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(served.client.get("/v1/health").status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(slow.join().unwrap(), 200);
}

#[test]
fn curl_over_the_unix_socket() {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "curl not found: apt-get install curl (scripts/setup.sh installs it)"
    );
    let served = start_default();
    let output = std::process::Command::new("curl")
        .args(["-sS", "--fail-with-body", "--unix-socket"])
        .arg(&served.client.path)
        .args(["-X", "PUT", "-H", "Content-Type: application/json"])
        .args(["-d", r#"{"vcpus": 1}"#, "http://hull/v1/vm/vcpus"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["vcpus"]["online"], 1);
    Spec::committed().check_component("VmInfo", &body);
}

#[test]
fn keep_alive_connections_do_not_block_shutdown() {
    use std::io::{Read, Write};
    let mut served = start_default();
    let mut stream = std::os::unix::net::UnixStream::connect(&served.client.path).unwrap();
    stream
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: hull\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(stream.read(&mut buf).unwrap() > 0);
    let started = Instant::now();
    served.server.take().unwrap().shutdown().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
