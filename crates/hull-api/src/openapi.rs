//! The OpenAPI 3 document, generated from the handlers and types.
//!
//! The committed copy is `api/hull-vm.openapi.json` at the repository's root; regenerate it
//! with `cargo run -p hull-api --example write-openapi` (a test fails while they differ).

use utoipa::OpenApi;

use crate::routes;

/// Where the committed copy lives, relative to the repository's root.
pub const OPENAPI_FILE: &str = "api/hull-vm.openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hull VM management API",
        version = "1.0.0",
        description = "Manages one container's VM: info, metrics, memory and vCPU resize, \
            pause/resume. Served by the container's monitor as HTTP/1.1 + JSON on a unix \
            socket (mode 0600) in the container's state directory, e.g. \
            `curl --unix-socket /run/hull/ID/api.sock http://hull/v1/vm`. \
            Every error is JSON `{code, message}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        routes::health,
        routes::info,
        routes::metrics,
        routes::resize_memory,
        routes::set_vcpus,
        routes::pause,
        routes::resume,
        routes::openapi,
    ),
    tags(
        (name = "vm", description = "The container's VM"),
        (name = "health", description = "Liveness"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The document as a value.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as committed: pretty JSON and a final newline.
pub fn openapi_json() -> Result<String, serde_json::Error> {
    let mut json = openapi().to_pretty_json()?;
    json.push('\n');
    Ok(json)
}
