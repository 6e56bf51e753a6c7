//! A blocking client of the API: one HTTP/1.1 connection per request over the unix socket
//! (hyper's client), driven by a private current-thread tokio runtime, so callers stay
//! synchronous. Everything a request waits for (connecting, sending, the answer's head and
//! body) shares one deadline, [`Client::with_timeout`].
//!
//! ```no_run
//! # fn main() -> Result<(), hull_api::ClientError> {
//! let api = hull_api::Client::new("/run/hull/ID/api.sock");
//! let info = api.resize_memory(512)?;
//! println!("{} MiB", info.memory_mib.target);
//! # Ok(())
//! # }
//! ```
//!
//! Not for use from inside a tokio runtime (its own runtime cannot be entered from one).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixStream;

use crate::error::{ErrorBody, ErrorCode};
use crate::types::{Health, MemoryResize, Metrics, VcpuResize, VmInfo};

/// The timeout of a [`Client`] unless [`Client::with_timeout`] sets another: the server's
/// own request deadline (a balloon deflate can take seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer read (the API's answers are a few KiB).
const ANSWER_LIMIT: usize = 4 << 20;

/// `sun_path`'s size: longer socket paths are reached through their directory's fd.
const SUN_PATH_MAX: usize = 107;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket cannot be reached: no such file, nobody listening, no permission.
    #[error(
        "cannot connect to the management API at {}: {source} (is the container's VM running?)",
        path.display()
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The server answered with an error.
    #[error("{} ({})", body.message, code_name(body.code))]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's `{code, message}`.
        body: ErrorBody,
    },
    /// No complete answer within the client's timeout.
    #[error(
        "the management API at {} did not answer within {timeout:?}",
        path.display()
    )]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The client's timeout.
        timeout: Duration,
    },
    /// The answer is not the HTTP or JSON expected (the text names what).
    #[error("management API protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, for [`ClientError::Api`].
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

/// `code`'s name as the API spells it (`out_of_range`).
fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{code:?}"),
    }
}

/// A blocking client of one VM's API socket. Cheap to clone; every request is a connection
/// of its own.
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client of the API socket at `socket` (nothing is connected yet), with a timeout of
    /// [`DEFAULT_TIMEOUT`] per request.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            path: socket.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same client with `t` as the deadline of each request (connect to last byte).
    pub fn with_timeout(self, t: Duration) -> Client {
        Client { timeout: t, ..self }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The client's timeout per request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `GET /v1/health`: the API answers and the VM is alive.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None)
    }

    /// `GET /v1/vm`: what the VM is and how it is sized.
    pub fn info(&self) -> Result<VmInfo, ClientError> {
        self.call(Method::GET, "/v1/vm", None)
    }

    /// `GET /v1/vm/metrics`: what the VM uses.
    pub fn metrics(&self) -> Result<Metrics, ClientError> {
        self.call(Method::GET, "/v1/vm/metrics", None)
    }

    /// `POST /v1/vm/pause`: stops the vCPUs; the VM afterwards.
    pub fn pause(&self) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, "/v1/vm/pause", None)
    }

    /// `POST /v1/vm/resume`: runs the vCPUs again; the VM afterwards.
    pub fn resume(&self) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, "/v1/vm/resume", None)
    }

    /// `PUT /v1/vm/memory`: the memory the guest should have; the VM afterwards.
    pub fn resize_memory(&self, memory_mib: u64) -> Result<VmInfo, ClientError> {
        let body = json_body(&MemoryResize { memory_mib })?;
        self.call(Method::PUT, "/v1/vm/memory", Some(body))
    }

    /// `PUT /v1/vm/vcpus`: how many vCPUs the guest should have online; the VM afterwards.
    pub fn set_vcpus(&self, vcpus: u32) -> Result<VmInfo, ClientError> {
        let body = json_body(&VcpuResize { vcpus })?;
        self.call(Method::PUT, "/v1/vm/vcpus", Some(body))
    }

    /// One request, its answer decoded as `T` (2xx) or as an [`ErrorBody`].
    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {uri}");
        let request = build_request(method, uri, body)
            .map_err(|e| ClientError::Protocol(format!("{what}: cannot build the request: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| {
                ClientError::Protocol(format!("{what}: cannot start the client's runtime: {e}"))
            })?;
        let exchange = exchange(&self.path, request, &what);
        let (status, bytes) = runtime.block_on(async {
            tokio::time::timeout(self.timeout, exchange)
                .await
                .unwrap_or_else(|_| {
                    Err(ClientError::Timeout {
                        path: self.path.clone(),
                        timeout: self.timeout,
                    })
                })
        })?;
        decode(status, &bytes, &what)
    }
}

fn json_body(value: &impl Serialize) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value)
        .map_err(|e| ClientError::Protocol(format!("cannot encode the request body: {e}")))
}

fn build_request(
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        // The server ignores the host; HTTP/1.1 requires one.
        .header(HOST, "hull");
    match body {
        Some(body) => builder
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body))),
        None => builder.body(Full::new(Bytes::new())),
    }
}

/// Connects, sends `request` and reads the whole answer: its status and body.
async fn exchange(
    path: &Path,
    request: Request<Full<Bytes>>,
    what: &str,
) -> Result<(u16, Bytes), ClientError> {
    let stream = connect(path).await.map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Protocol(format!("{what}: HTTP handshake failed: {e}")))?;
    // Driven by the runtime while this request waits; ends with the sender.
    let driver = tokio::spawn(connection);
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Protocol(format!("{what}: no valid HTTP answer: {e}")))?;
    let status = answer.status().as_u16();
    let bytes = Limited::new(answer.into_body(), ANSWER_LIMIT)
        .collect()
        .await
        .map_err(|e| ClientError::Protocol(format!("{what}: cannot read the answer's body: {e}")))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok((status, bytes))
}

/// Connects to the socket; a path longer than `sun_path` through its directory's
/// `/proc/self/fd/N/` (as the server binds it).
async fn connect(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(path).await;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path).await;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let handle = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&handle).to_string())
        .join(name);
    let stream = UnixStream::connect(&short).await;
    drop(handle);
    stream
}

/// A 2xx answer as `T`, any other as [`ClientError::Api`].
fn decode<T: DeserializeOwned>(status: u16, bytes: &[u8], what: &str) -> Result<T, ClientError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(bytes).map_err(|e| {
            ClientError::Protocol(format!(
                "{what}: the answer (HTTP {status}) is not the JSON expected: {e}: {}",
                excerpt(bytes)
            ))
        });
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Err(ClientError::Api { status, body }),
        Err(e) => Err(ClientError::Protocol(format!(
            "{what}: HTTP {status} without an error body {{code, message}}: {e}: {}",
            excerpt(bytes)
        ))),
    }
}

/// The start of a body, for messages.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text:?}…")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_well() {
        let api = ClientError::Api {
            status: 422,
            body: ErrorBody {
                code: ErrorCode::OutOfRange,
                message: "vcpus 9 is above the VM's 4".into(),
            },
        };
        assert_eq!(
            api.to_string(),
            "vcpus 9 is above the VM's 4 (out_of_range)"
        );
        assert_eq!(api.code(), Some(ErrorCode::OutOfRange));
        let connect = ClientError::Connect {
            path: "/run/hull/x/api.sock".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        let text = connect.to_string();
        assert!(text.contains("/run/hull/x/api.sock"), "{text}");
        assert!(text.contains("VM running"), "{text}");
        let timeout = ClientError::Timeout {
            path: "/s".into(),
            timeout: Duration::from_millis(200),
        };
        assert!(timeout.to_string().contains("200ms"), "{timeout}");
    }

    #[test]
    fn answers_decode_or_name_what_is_wrong() {
        let ok: Health = decode(200, br#"{"status":"ok"}"#, "GET /v1/health").unwrap();
        assert_eq!(ok.status, crate::HealthStatus::Ok);
        let err = decode::<Health>(200, b"{", "GET /v1/health").unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("GET /v1/health")),
            "{err}"
        );
        let err =
            decode::<VmInfo>(409, br#"{"code":"conflict","message":"paused"}"#, "x").unwrap_err();
        assert!(
            matches!(&err, ClientError::Api { status: 409, body } if body.message == "paused"),
            "{err}"
        );
        let err = decode::<VmInfo>(502, b"<html>bad gateway</html>", "GET /v1/vm").unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("502") && m.contains("html")),
            "{err}"
        );
    }

    #[test]
    fn the_timeout_is_kept() {
        let c = Client::new("/x/api.sock");
        assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
        let c = c.with_timeout(Duration::from_secs(2));
        assert_eq!(c.timeout(), Duration::from_secs(2));
        assert_eq!(c.path(), Path::new("/x/api.sock"));
    }
}
