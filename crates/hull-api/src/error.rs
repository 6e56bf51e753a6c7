//! Errors: what a request can fail with ([`ApiError`], answered as JSON `{code, message}`) and
//! what starting the server can fail with ([`ServeError`]).
//!
//! | `ApiError`            | HTTP | `code`                   | raised by | when |
//! |-----------------------|------|--------------------------|-----------|------|
//! | `BadRequest`          | 400  | `bad_request`            | server    | malformed JSON, unknown field, wrong type, 0 vCPUs, 0 MiB |
//! | `NotFound`            | 404  | `not_found`              | server    | no such path |
//! | `MethodNotAllowed`    | 405  | `method_not_allowed`     | server    | the path exists, not with this method |
//! | `PayloadTooLarge`     | 413  | `payload_too_large`      | server    | body over 64 KiB |
//! | `UnsupportedMediaType`| 415  | `unsupported_media_type` | server    | a body without `Content-Type: application/json` |
//! | `Conflict`            | 409  | `conflict`               | backend   | cannot be met now: below what the guest uses, a resize while paused |
//! | `OutOfRange`          | 422  | `out_of_range`           | backend   | above the VM's maximum (`vcpus.max`, `memory_mib.configured`) |
//! | `Internal`            | 500  | `internal`               | either    | a bug, a backend that panicked |
//! | `Unavailable`         | 503  | `vm_unavailable`         | backend   | the VM is gone: QEMU died, the guest or QMP channel closed |
//! | `Timeout`             | 504  | `timeout`                | server    | the backend did not answer within the request deadline |
//!
//! A request that fails changes nothing (the backend's contract, see [`crate::Backend`]).

use std::io;
use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a request failed. The backend returns the variants marked "backend" in the module's
/// table; the server raises the others itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or asks for nothing sensible (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such path (404).
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is too large (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not declared as JSON (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request cannot be met in the VM's present state, e.g. less memory than the guest
    /// uses (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is above what the VM can have (422).
    #[error("{0}")]
    OutOfRange(String),
    /// The VM is gone: QEMU died or its channels closed (503).
    #[error("{0}")]
    Unavailable(String),
    /// The backend did not answer in time (504).
    #[error("{0}")]
    Timeout(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

/// The machine-readable half of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400.
    BadRequest,
    /// 404.
    NotFound,
    /// 405.
    MethodNotAllowed,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 409.
    Conflict,
    /// 422.
    OutOfRange,
    /// 503.
    VmUnavailable,
    /// 504.
    Timeout,
    /// 500.
    Internal,
}

/// Every error response's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What kind of error, stable for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// The error's `code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::OutOfRange(_) => ErrorCode::OutOfRange,
            Self::Unavailable(_) => ErrorCode::VmUnavailable,
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The JSON body the error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

impl ErrorCode {
    /// The HTTP status of this kind of error.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::OutOfRange => 422,
            Self::Internal => 500,
            Self::VmUnavailable => 503,
            Self::Timeout => 504,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body())).into_response()
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The socket's directory is not usable (no parent, cannot create the private staging
    /// directory).
    #[error("cannot prepare a socket beside {path}: {source}")]
    Stage {
        /// The socket path asked for.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `bind(2)` failed (path too long, permission denied, ...).
    #[error("cannot bind the API socket {path}: {source}")]
    Bind {
        /// The path bound.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The socket could not be moved into place or given mode 0600.
    #[error("cannot install the API socket at {path}: {source}")]
    Install {
        /// The final socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The tokio runtime or the server thread could not be created.
    #[error("cannot start the API server thread: {0}")]
    Runtime(io::Error),
    /// The OpenAPI document could not be rendered (a bug).
    #[error("cannot render the OpenAPI document: {0}")]
    OpenApi(#[from] serde_json::Error),
    /// The server stopped with an I/O error.
    #[error("the API server failed: {0}")]
    Serve(io::Error),
    /// The server thread panicked (a bug).
    #[error("the API server thread panicked")]
    Panicked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_status_and_snake_case_name() {
        let errors = [
            ApiError::BadRequest("m".into()),
            ApiError::NotFound("m".into()),
            ApiError::MethodNotAllowed("m".into()),
            ApiError::PayloadTooLarge("m".into()),
            ApiError::UnsupportedMediaType("m".into()),
            ApiError::Conflict("m".into()),
            ApiError::OutOfRange("m".into()),
            ApiError::Unavailable("m".into()),
            ApiError::Timeout("m".into()),
            ApiError::Internal("m".into()),
        ];
        let expected = [
            (400, "bad_request"),
            (404, "not_found"),
            (405, "method_not_allowed"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
            (409, "conflict"),
            (422, "out_of_range"),
            (503, "vm_unavailable"),
            (504, "timeout"),
            (500, "internal"),
        ];
        for (error, (status, code)) in errors.iter().zip(expected) {
            assert_eq!(error.status(), status, "{error:?}");
            let body = serde_json::to_value(error.body()).unwrap();
            assert_eq!(body, serde_json::json!({"code": code, "message": "m"}));
        }
    }
}
