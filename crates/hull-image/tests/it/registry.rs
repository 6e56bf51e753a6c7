//! A private registry (Debian's `docker-registry`) on 127.0.0.1:<free port>, plain HTTP,
//! storage in a temp dir, optionally with htpasswd auth. Killed (by its PID) on drop.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::{hex, require};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub creds: Option<(String, String)>,
}

/// One HTTP GET; the status line's code, if the server answered.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// With `auth: htpasswd` accepting `user`/`password` (bcrypt hash made here).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Registry {
        let bin = require("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("hull-image-registry-")
            .tempdir()
            .unwrap();
        let mut auth_yaml = String::new();
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash_with_result(password, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let mut last_log = String::new();
        for attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", hull_testkit::engines::free_port());
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_yaml}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let log = fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + START_TIMEOUT;
            let mut pause = Duration::from_millis(10);
            loop {
                if http_status(&addr, "/v2/").is_some() {
                    return Registry {
                        child,
                        addr,
                        dir,
                        creds: auth.map(|(u, p)| (u.to_string(), p.to_string())),
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "docker-registry did not answer on {addr} within {START_TIMEOUT:?}: {}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
            if !last_log.contains("address already in use") {
                break;
            }
        }
        panic!("docker-registry failed to start: {last_log}");
    }

    /// Where the registry keeps a blob's bytes.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let h = hex(digest);
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&h[..2])
            .join(h)
            .join("data")
    }

    /// `skopeo copy` of `oci:<layout>:<tag>` to `<addr>/<repo>:<tag>` (all instances of an
    /// index); returns the pushed reference.
    pub fn push_layout(&self, layout: &std::path::Path, tag: &str, repo: &str) -> String {
        self.push_layout_as(layout, tag, repo, &["--preserve-digests"])
    }

    /// Like [`Registry::push_layout`], with other skopeo flags (e.g. `--format v2s2` to push
    /// Docker schema 2 manifests and manifest lists).
    pub fn push_layout_as(
        &self,
        layout: &std::path::Path,
        tag: &str,
        repo: &str,
        flags: &[&str],
    ) -> String {
        let reference = format!("{}/{repo}:{tag}", self.addr);
        let creds = self.creds.as_ref().map(|(u, p)| format!("{u}:{p}"));
        let mut extra = vec!["--dest-tls-verify=false", "--all"];
        extra.extend_from_slice(flags);
        if let Some(c) = &creds {
            extra.push("--dest-creds");
            extra.push(c);
        }
        crate::fixtures::skopeo_copy(
            &extra,
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{reference}"),
        );
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
