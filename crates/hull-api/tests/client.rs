//! The blocking client against the real server with the mock backend: every method, API
//! errors as `ClientError::Api`, a missing socket, a slow server, answers that are not HTTP
//! or not the JSON expected.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start, start_default, Mock, Mode};
use hull_api::{
    Backend, Client, ClientError, Config, ErrorCode, HealthStatus, VmInfo, VmStart, VmState,
};

fn client_of(served: &common::Served) -> Client {
    Client::new(served.client.path.clone()).with_timeout(Duration::from_secs(10))
}

#[test]
fn every_method_answers_its_type() {
    let served = start_default();
    let api = client_of(&served);
    assert_eq!(api.path(), served.client.path);

    assert_eq!(api.health().unwrap().status, HealthStatus::Ok);

    let info = api.info().unwrap();
    assert_eq!(info.id, "mock-1");
    assert_eq!(info.state, VmState::Running);
    assert_eq!(info.vm_start, VmStart::Clone);
    assert_eq!((info.vcpus.online, info.vcpus.max), (2, 4));
    assert_eq!(info.memory_mib.configured, 1024);
    // The same as the server's JSON.
    let raw: VmInfo = serde_json::from_value(served.client.get("/v1/vm").body).unwrap();
    assert_eq!(info, raw);

    let metrics = api.metrics().unwrap();
    assert_eq!(metrics.guest_cpu_time_ns, Some(1_500_000_000));
    assert_eq!(metrics.host.processes[0].name, "qemu-system-x86_64");
    assert_eq!(metrics.net[0].interface, "eth0");

    let resized = api.resize_memory(512).unwrap();
    assert_eq!(resized.memory_mib.target, 512);
    let resized = api.set_vcpus(3).unwrap();
    assert_eq!(resized.vcpus.online, 3);
    assert_eq!(resized.memory_mib.target, 512);
    assert_eq!(served.mock.snapshot(), (3, 512, false));

    let paused = api.pause().unwrap();
    assert_eq!(paused.state, VmState::Paused);
    assert_eq!(paused.memory_mib.guest_total, None);
    assert_eq!(api.metrics().unwrap().guest_memory, None);
    let resumed = api.resume().unwrap();
    assert_eq!(resumed.state, VmState::Running);
    assert_eq!(served.mock.snapshot(), (3, 512, false));
}

/// Asserts `err` is `Api` with `status`, `code` and a message containing `says`.
#[track_caller]
fn assert_api(err: ClientError, status: u16, code: ErrorCode, says: &str) {
    let text = err.to_string();
    match err {
        ClientError::Api { status: s, body } => {
            assert_eq!(s, status, "{text}");
            assert_eq!(body.code, code, "{text}");
            assert!(body.message.contains(says), "{text}");
            // The message people see is the server's, with its code.
            assert!(text.starts_with(&body.message), "{text}");
            let name = serde_json::to_value(code).unwrap();
            assert!(
                text.ends_with(&format!("({})", name.as_str().unwrap())),
                "{text}"
            );
        }
        other => panic!("expected an API error {status}, got {other:?}"),
    }
}

#[test]
fn api_errors_carry_the_status_and_the_servers_message() {
    let served = start_default();
    let api = client_of(&served);
    let before = served.mock.snapshot();
    assert_api(
        api.resize_memory(4096).unwrap_err(),
        422,
        ErrorCode::OutOfRange,
        "above the VM's 1024 MiB",
    );
    assert_api(
        api.resize_memory(50).unwrap_err(),
        409,
        ErrorCode::Conflict,
        "below the 100 MiB the guest uses",
    );
    assert_api(
        api.set_vcpus(9).unwrap_err(),
        422,
        ErrorCode::OutOfRange,
        "vcpus 9 is above",
    );
    // Checked by the server itself, before the backend.
    let calls = served.mock.calls();
    assert_api(
        api.resize_memory(0).unwrap_err(),
        400,
        ErrorCode::BadRequest,
        "memory_mib must be at least 1",
    );
    assert_api(
        api.set_vcpus(0).unwrap_err(),
        400,
        ErrorCode::BadRequest,
        "vcpus must be at least 1",
    );
    assert_eq!(served.mock.calls(), calls);
    assert_eq!(served.mock.snapshot(), before);

    let err = api.resize_memory(4096).unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OutOfRange));
    assert_eq!(
        err.to_string(),
        "memory_mib 4096 is above the VM's 1024 MiB (out_of_range)"
    );

    served.mock.set_mode(Mode::Gone);
    for err in [
        api.health().unwrap_err(),
        api.info().unwrap_err(),
        api.pause().unwrap_err(),
    ] {
        assert_api(err, 503, ErrorCode::VmUnavailable, "QEMU exited");
    }
}

#[test]
fn a_missing_socket_is_a_connect_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let started = Instant::now();
    let err = Client::new(&path).info().unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let text = err.to_string();
    match &err {
        ClientError::Connect { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{text}");
        }
        other => panic!("expected Connect, got {other:?}"),
    }
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    assert!(text.contains("VM running"), "{text}");

    // A socket file nobody listens on (a monitor that was killed): refused.
    drop(UnixListener::bind(&path).unwrap());
    let err = Client::new(&path).health().unwrap_err();
    assert!(
        matches!(&err, ClientError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );

    // A server that stopped: its socket is gone.
    let mut served = start_default();
    let api = client_of(&served);
    api.health().unwrap();
    served.server.take().unwrap().shutdown().unwrap();
    assert!(matches!(
        api.health().unwrap_err(),
        ClientError::Connect { .. }
    ));
}

#[test]
fn a_server_slower_than_the_timeout_is_a_timeout() {
    let config = Config {
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_millis(100),
    };
    let served = start(Mock::new(Duration::ZERO), config);
    served
        .mock
        .set_mode(Mode::HangOnce(Duration::from_millis(1500)));
    let api = client_of(&served).with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = api.info().unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    match &err {
        ClientError::Timeout { path, timeout } => {
            assert_eq!(path, &served.client.path);
            assert_eq!(*timeout, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(served.client.path.to_str().unwrap()),
        "{text}"
    );
    assert!(text.contains("300ms"), "{text}");
    // The server finishes the hung call; later ones are answered.
    let api = api.with_timeout(Duration::from_secs(10));
    assert_eq!(api.info().unwrap().vcpus.online, 2);
}

/// A socket whose server runs `serve` on each connection (until the test ends).
fn fake_server(serve: fn(std::os::unix::net::UnixStream)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    (dir, path)
}

/// Reads a request head, then writes `answer`.
fn answer_with(mut stream: std::os::unix::net::UnixStream, answer: &[u8]) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let _ = stream.write_all(answer);
}

#[test]
fn a_server_that_accepts_and_never_answers_is_a_timeout() {
    let (_dir, path) = fake_server(|stream| {
        std::thread::sleep(Duration::from_secs(5));
        drop(stream);
    });
    let started = Instant::now();
    let err = Client::new(&path)
        .with_timeout(Duration::from_millis(200))
        .resize_memory(512)
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn answers_that_are_not_http_or_not_the_json_expected_are_protocol_errors() {
    let (_dir, garbage) = fake_server(|stream| answer_with(stream, b"SSH-2.0-OpenSSH\r\n\r\n"));
    let err = Client::new(&garbage).info().unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("GET /v1/vm")),
        "{err:?}"
    );

    let (_dir, wrong_json) = fake_server(|stream| {
        answer_with(
            stream,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"status\":\"fine\"}",
        )
    });
    let err = Client::new(&wrong_json).health().unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("GET /v1/health") && m.contains("fine")),
        "{text}"
    );

    let (_dir, html_error) = fake_server(|stream| {
        answer_with(
            stream,
            b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 11\r\n\r\n<html></ht>",
        )
    });
    let err = Client::new(&html_error).pause().unwrap_err();
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("POST /v1/vm/pause") && m.contains("502")),
        "{err:?}"
    );

    let (_dir, cut) = fake_server(|stream| {
        answer_with(
            stream,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\"",
        )
    });
    let err = Client::new(&cut).health().unwrap_err();
    assert!(matches!(&err, ClientError::Protocol(_)), "{err:?}");
}

#[test]
fn a_socket_path_longer_than_sun_path_works() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("d".repeat(100)).join("e".repeat(60));
    std::fs::create_dir_all(&deep).unwrap();
    let path = deep.join("api.sock");
    assert!(path.as_os_str().len() > 108);
    let backend: Arc<dyn Backend> = Mock::new(Duration::ZERO);
    let server = hull_api::serve(&path, backend).unwrap();
    let api = Client::new(&path);
    assert_eq!(api.set_vcpus(1).unwrap().vcpus.online, 1);
    server.shutdown().unwrap();
    let err = api.info().unwrap_err();
    assert!(matches!(&err, ClientError::Connect { path: p, .. } if p == &path));
}

#[test]
fn clients_on_many_threads_are_served_one_call_at_a_time() {
    let served = start(Mock::new(Duration::from_millis(5)), Config::default());
    let api = client_of(&served);
    let threads: Vec<_> = (0..8u32)
        .map(|i| {
            let api = api.clone();
            std::thread::spawn(move || api.set_vcpus(1 + i % 4).unwrap())
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(served.mock.calls(), 8);
    assert_eq!(served.mock.overlaps(), 0);
}

#[test]
fn the_default_timeout_is_the_servers() {
    let api = Client::new(Path::new("/nonexistent/api.sock"));
    assert_eq!(api.timeout(), hull_api::CLIENT_TIMEOUT);
    assert_eq!(hull_api::CLIENT_TIMEOUT, Config::default().request_timeout);
}
