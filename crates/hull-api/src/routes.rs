//! The HTTP surface: one handler per endpoint, each documented for the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::backend::Backend;
use crate::error::{ApiError, ErrorBody};
use crate::types::{Health, HealthStatus, MemoryResize, Metrics, VcpuResize, VmInfo};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    backend: Arc<dyn Backend>,
    /// Held across every backend call but `health`: one call at a time per VM.
    lock: Arc<Mutex<()>>,
    timeout: Duration,
    openapi: Arc<str>,
}

impl AppState {
    pub(crate) fn new(backend: Arc<dyn Backend>, timeout: Duration, openapi: Arc<str>) -> Self {
        Self {
            backend,
            lock: Arc::new(Mutex::new(())),
            timeout,
            openapi,
        }
    }
}

/// Every route, with JSON errors for unknown paths and methods.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/vm", get(info))
        .route("/v1/vm/metrics", get(metrics))
        .route("/v1/vm/memory", put(resize_memory))
        .route("/v1/vm/vcpus", put(set_vcpus))
        .route("/v1/vm/pause", post(pause))
        .route("/v1/vm/resume", post(resume))
        .route("/v1/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Runs `call` on the blocking pool under the VM's lock, within the request deadline.
///
/// The lock guard moves into the blocking task, so a call that outlives the deadline keeps
/// the VM locked until it really returns: calls never interleave.
async fn locked<T, F>(state: &AppState, call: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Backend) -> Result<T, ApiError> + Send + 'static,
{
    let backend = Arc::clone(&state.backend);
    let lock = Arc::clone(&state.lock);
    let work = async move {
        let guard = lock.lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            call(backend.as_ref())
        })
        .await
    };
    within(state.timeout, work).await
}

/// Awaits a blocking task's result, or answers 504 after `deadline`.
async fn within<T, W>(deadline: Duration, work: W) -> ApiResult<T>
where
    W: std::future::Future<Output = Result<Result<T, ApiError>, tokio::task::JoinError>>,
{
    match tokio::time::timeout(deadline, work).await {
        Err(_) => Err(ApiError::Timeout(format!(
            "the VM did not answer within {} s",
            deadline.as_secs_f64()
        ))),
        Ok(Err(join)) => Err(ApiError::Internal(format!("the backend failed: {join}"))),
        Ok(Ok(result)) => result.map(Json),
    }
}

/// A JSON object request body whose rejections are API errors (400, 413, 415).
///
/// Read as a JSON value first: serde would take `[2]` for `{"vcpus": 2}` (a struct from a
/// sequence), and the API's bodies are objects.
pub(crate) struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<Value>::from_request(req, state)
            .await
            .map_err(|rejection| from_rejection(&rejection))?;
        if !value.is_object() {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            ));
        }
        T::deserialize(value)
            .map(Self)
            .map_err(|err| ApiError::BadRequest(format!("invalid body: {err}")))
    }
}

fn from_rejection(rejection: &JsonRejection) -> ApiError {
    let message = rejection.body_text();
    match rejection.status().as_u16() {
        413 => ApiError::PayloadTooLarge(message),
        415 => ApiError::UnsupportedMediaType(message),
        _ => ApiError::BadRequest(message),
    }
}

/// Whether the API answers and the VM is alive.
#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses(
        (status = 200, description = "The VM is alive", body = Health),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The backend did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn health(State(state): State<AppState>) -> ApiResult<Health> {
    let backend = Arc::clone(&state.backend);
    let work = tokio::task::spawn_blocking(move || backend.health());
    let Json(()) = within(state.timeout, work).await?;
    Ok(Json(Health {
        status: HealthStatus::Ok,
    }))
}

/// What the VM is and how it is sized.
#[utoipa::path(get, path = "/v1/vm", tag = "vm",
    responses(
        (status = 200, description = "The VM", body = VmInfo),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn info(State(state): State<AppState>) -> ApiResult<VmInfo> {
    locked(&state, |backend| backend.info()).await
}

/// What the VM uses: guest memory and CPU time, host PSS, device counters.
#[utoipa::path(get, path = "/v1/vm/metrics", tag = "vm",
    responses(
        (status = 200, description = "The VM's metrics", body = Metrics),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> ApiResult<Metrics> {
    locked(&state, |backend| backend.metrics()).await
}

/// Sets the memory the guest has (up or down, within what the VM was started with).
#[utoipa::path(put, path = "/v1/vm/memory", tag = "vm", request_body = MemoryResize,
    responses(
        (status = 200, description = "Resized; the VM afterwards", body = VmInfo),
        (status = 400, description = "Malformed body, unknown field, 0 MiB", body = ErrorBody),
        (status = 409, description = "Less than the guest uses, or paused", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body not declared as JSON", body = ErrorBody),
        (status = 422, description = "More than the VM was started with", body = ErrorBody),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn resize_memory(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<MemoryResize>,
) -> ApiResult<VmInfo> {
    request.validate()?;
    locked(&state, move |backend| backend.resize_memory(request)).await
}

/// Sets how many vCPUs the guest has online (up or down, within what the VM was started with).
#[utoipa::path(put, path = "/v1/vm/vcpus", tag = "vm", request_body = VcpuResize,
    responses(
        (status = 200, description = "Resized; the VM afterwards", body = VmInfo),
        (status = 400, description = "Malformed body, unknown field, 0 vCPUs", body = ErrorBody),
        (status = 409, description = "Cannot be met now, e.g. paused", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body not declared as JSON", body = ErrorBody),
        (status = 422, description = "More than the VM's maximum", body = ErrorBody),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn set_vcpus(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<VcpuResize>,
) -> ApiResult<VmInfo> {
    request.validate()?;
    locked(&state, move |backend| backend.set_vcpus(request)).await
}

/// Stops the VM's vCPUs (pausing a paused VM succeeds).
#[utoipa::path(post, path = "/v1/vm/pause", tag = "vm",
    responses(
        (status = 200, description = "Paused; the VM afterwards", body = VmInfo),
        (status = 409, description = "Cannot be paused now", body = ErrorBody),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn pause(State(state): State<AppState>) -> ApiResult<VmInfo> {
    locked(&state, |backend| backend.pause()).await
}

/// Runs the VM's vCPUs again (resuming a running VM succeeds).
#[utoipa::path(post, path = "/v1/vm/resume", tag = "vm",
    responses(
        (status = 200, description = "Running; the VM afterwards", body = VmInfo),
        (status = 409, description = "Cannot be resumed now", body = ErrorBody),
        (status = 503, description = "The VM is gone", body = ErrorBody),
        (status = 504, description = "The VM did not answer in time", body = ErrorBody),
        (status = "default", description = "Any other error", body = ErrorBody),
    ))]
pub(crate) async fn resume(State(state): State<AppState>) -> ApiResult<VmInfo> {
    locked(&state, |backend| backend.resume()).await
}

/// This API's OpenAPI 3 document (the same as `api/hull-vm.openapi.json` in hull's sources).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI document", body = Object, content_type = "application/json"),
        (status = "default", description = "Any error", body = ErrorBody),
    ))]
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    let body = state.openapi.to_string();
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no such path: {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    ))
}
