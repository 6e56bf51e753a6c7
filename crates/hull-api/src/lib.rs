//! hull's per-VM management API: its types, its OpenAPI 3 document and its HTTP server.
//!
//! Each container's monitor serves the API for its VM as HTTP/1.1 + JSON on a unix socket
//! (mode 0600). The server knows nothing of QEMU: the monitor plugs in through [`Backend`].
//!
//! | method | path               | body           | answer                  |
//! |--------|--------------------|----------------|-------------------------|
//! | GET    | `/v1/health`       |                | [`Health`]              |
//! | GET    | `/v1/vm`           |                | [`VmInfo`]              |
//! | GET    | `/v1/vm/metrics`   |                | [`Metrics`]             |
//! | PUT    | `/v1/vm/memory`    | [`MemoryResize`] | [`VmInfo`] afterwards |
//! | PUT    | `/v1/vm/vcpus`     | [`VcpuResize`] | [`VmInfo`] afterwards   |
//! | POST   | `/v1/vm/pause`     |                | [`VmInfo`] afterwards   |
//! | POST   | `/v1/vm/resume`    |                | [`VmInfo`] afterwards   |
//! | GET    | `/v1/openapi.json` |                | the OpenAPI document    |
//!
//! Errors are JSON `{code, message}` ([`ErrorBody`]); the status mapping is in [`error`].
//!
//! ```text
//! curl --unix-socket /run/hull/ID/api.sock http://hull/v1/vm
//! curl --unix-socket /run/hull/ID/api.sock -X PUT -H 'Content-Type: application/json' \
//!      -d '{"memory_mib": 512}' http://hull/v1/vm/memory
//! ```
//!
//! The host name in the URL is ignored. The document is committed as
//! `api/hull-vm.openapi.json`; `cargo run -p hull-api --example write-openapi` regenerates it.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn plug(backend: Arc<dyn hull_api::Backend>) -> Result<(), hull_api::ServeError> {
//! let server = hull_api::serve("/run/hull/ID/api.sock", backend)?;
//! // ... the VM runs ...
//! server.shutdown()?; // or drop it
//! # Ok(())
//! # }
//! ```
//!
//! From Rust, [`Client`] is a blocking client of the socket (one connection per request,
//! a deadline for each):
//!
//! ```no_run
//! let vm = hull_api::Client::new("/run/hull/ID/api.sock").set_vcpus(2)?;
//! assert_eq!(vm.vcpus.online, 2);
//! # Ok::<(), hull_api::ClientError>(())
//! ```

// No panics on any input path: errors are returned (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod backend;
mod client;
pub mod error;
mod openapi;
mod routes;
mod server;
mod socket;
mod types;

pub use backend::Backend;
pub use client::{Client, ClientError, DEFAULT_TIMEOUT as CLIENT_TIMEOUT};
pub use error::{ApiError, ErrorBody, ErrorCode, ServeError};
pub use openapi::{openapi, openapi_json, OPENAPI_FILE};
pub use routes::BODY_LIMIT;
pub use server::{serve, serve_with, ApiServer, Config};
pub use types::{
    BlockCounters, GuestMemory, Health, HealthStatus, HostProcess, HostUsage, MemoryMib,
    MemoryResize, Metrics, NetCounters, VcpuResize, Vcpus, VmInfo, VmStart, VmState,
};
