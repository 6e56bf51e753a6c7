//! The server: its own thread with a current-thread tokio runtime, started and stopped from
//! synchronous code.

use std::future::IntoFuture;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::backend::Backend;
use crate::error::ServeError;
use crate::openapi::openapi_json;
use crate::routes::{router, AppState};
use crate::socket::{self, FileId};

/// How the server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The longest a request waits for the VM (its turn at the lock plus the backend call)
    /// before it is answered 504. Default 60 s: a balloon deflate can take seconds.
    pub request_timeout: Duration,
    /// How long a stopping server lets requests in flight finish. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// A running server. Dropping it (or [`ApiServer::shutdown`]) stops it and removes its socket,
/// within about twice [`Config::shutdown_grace`] even if a backend call is stuck.
#[derive(Debug)]
pub struct ApiServer {
    path: PathBuf,
    socket: FileId,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Serves the API for `backend` on a new unix socket at `socket_path` (mode 0600), with the
/// default [`Config`]. Returns once the socket accepts connections.
pub fn serve(
    socket_path: impl AsRef<Path>,
    backend: Arc<dyn Backend>,
) -> Result<ApiServer, ServeError> {
    serve_with(socket_path, backend, Config::default())
}

/// [`serve`] with a [`Config`].
pub fn serve_with(
    socket_path: impl AsRef<Path>,
    backend: Arc<dyn Backend>,
    config: Config,
) -> Result<ApiServer, ServeError> {
    let path = socket_path.as_ref().to_path_buf();
    let state = AppState::new(backend, config.request_timeout, openapi_json()?.into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Backend calls run one at a time; the others are `health` calls, which must not
        // block: a few threads are plenty, and bound what a misbehaving backend can pile up.
        .max_blocking_threads(8)
        .build()
        .map_err(ServeError::Runtime)?;
    let (listener, id) = socket::bind_private(&path)?;
    let (stop, stopped) = watch::channel(false);
    let grace = config.shutdown_grace;
    let spawned = std::thread::Builder::new()
        .name("hull-api".into())
        .spawn(move || run(runtime, listener, router(state), stopped, grace));
    match spawned {
        Ok(thread) => Ok(ApiServer {
            path,
            socket: id,
            stop: Some(stop),
            thread: Some(thread),
        }),
        Err(err) => {
            socket::remove_if_ours(&path, id);
            Err(ServeError::Runtime(err))
        }
    }
}

impl ApiServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the server (requests in flight get [`Config::shutdown_grace`] to finish), waits
    /// for its thread and removes the socket.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let result = match self.thread.take() {
            Some(thread) => match thread.join() {
                Ok(served) => served.map_err(ServeError::Serve),
                Err(_) => Err(ServeError::Panicked),
            },
            None => Ok(()),
        };
        socket::remove_if_ours(&self.path, self.socket);
        result
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// The server thread: serves until stopped, then gives blocking calls the grace to end.
fn run(
    runtime: tokio::runtime::Runtime,
    listener: std::os::unix::net::UnixListener,
    app: Router,
    stopped: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    let served = runtime.block_on(serve_until(listener, app, stopped, grace));
    // A backend call stuck past the grace is left behind, not waited for.
    runtime.shutdown_timeout(grace);
    served
}

async fn serve_until(
    listener: std::os::unix::net::UnixListener,
    app: Router,
    stopped: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let server = axum::serve(listener, app).with_graceful_shutdown(stop_requested(stopped.clone()));
    let deadline = async {
        stop_requested(stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server.into_future() => served,
        () = deadline => Ok(()),
    }
}

/// Resolves once a stop is asked for, or the [`ApiServer`] is gone.
async fn stop_requested(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
