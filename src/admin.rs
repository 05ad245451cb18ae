//! The controller's admin HTTP server: `/healthz` (process alive), `/readyz` (able to do its
//! job) and `/metrics` (Prometheus text format from an owned registry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Shared readiness flag, flipped by the role once it can serve.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the process ready or not ready.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AdminState {
    health: Health,
    registry: Registry,
}

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("admin server failed: {0}")]
    Serve(std::io::Error),
}

/// Binds `addr` and returns the bound address and a future that serves until it is dropped.
pub async fn bind(
    addr: SocketAddr,
    health: Health,
    registry: Registry,
) -> Result<(SocketAddr, impl Future<Output = Result<(), AdminError>>), AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { health, registry });
    let serve = async move { axum::serve(listener, app).await.map_err(AdminError::Serve) };
    Ok((local, serve))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    match encode_metrics(&state.registry) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_owned(),
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_owned())],
            format!("encoding metrics: {e}\n").into_bytes(),
        ),
    }
}

/// Renders a registry in the Prometheus text format.
pub fn encode_metrics(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut buf = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(buf)
}

/// Registers `atrium_build_info{version,commit,kubernetes_api,role}` = 1.
pub fn register_build_info(registry: &Registry, role: &str) -> Result<(), prometheus::Error> {
    let opts = prometheus::Opts::new(
        "atrium_build_info",
        "Build information of the running Atrium binary",
    )
    .const_label("version", crate::version::VERSION)
    .const_label("commit", crate::version::GIT_COMMIT)
    .const_label("kubernetes_api", crate::version::KUBERNETES_API)
    .const_label("role", role);
    let gauge = prometheus::IntGauge::with_opts(opts)?;
    gauge.set(1);
    registry.register(Box::new(gauge))
}
