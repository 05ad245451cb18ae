//! The controller's admin HTTP server: `/healthz` (process alive), `/readyz` (able to do its
//! job: the API server answers and every watch is current) and `/metrics` (Prometheus text
//! format from an owned registry).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::watch::WatchHealth;

/// Shared readiness flag, flipped by the role once it can serve, plus the watches that must be
/// current for `/readyz` to answer 200.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    watches: Arc<std::sync::OnceLock<WatchHealth>>,
    /// Since when `/readyz` has failed without a break, and how long `/livez` tolerates it.
    stall: Arc<std::sync::Mutex<Stall>>,
}

#[derive(Debug, Default)]
struct Stall {
    since: Option<std::time::Instant>,
    timeout: Option<std::time::Duration>,
}

impl Health {
    /// Marks the process ready or not ready.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the process is ready (the flag only; `/readyz` also asks the watches).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Makes `/readyz` also require that every watch in `watches` is current.
    pub fn set_detail(&self, watches: WatchHealth) {
        let _ = self.watches.set(watches);
    }

    /// Makes `/livez` fail once not ready for longer than `timeout` (zero: never).
    pub fn set_stall_timeout(&self, timeout: std::time::Duration) {
        self.stall_mut().timeout = (!timeout.is_zero()).then_some(timeout);
    }

    fn stall_mut(&self) -> std::sync::MutexGuard<'_, Stall> {
        self.stall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records whether the process is ready now (called periodically); returns the reason.
    pub fn observe(&self) -> Option<String> {
        let why = self.not_ready_reason();
        let mut stall = self.stall_mut();
        match &why {
            None => stall.since = None,
            Some(_) => {
                stall.since.get_or_insert_with(std::time::Instant::now);
            }
        }
        why
    }

    /// `None` while alive, else why a liveness probe should restart the process: not ready
    /// now, and without a break for at least the stall timeout.
    pub fn stalled_reason(&self) -> Option<String> {
        let why = self.observe()?;
        let stall = self.stall_mut();
        let (since, timeout) = (stall.since?, stall.timeout?);
        let for_ = since.elapsed();
        (for_ >= timeout).then(|| {
            format!(
                "not ready for {}s (limit {}s):\n{why}",
                for_.as_secs(),
                timeout.as_secs(),
            )
        })
    }

    /// `None` when ready, else why not (one line per reason).
    pub fn not_ready_reason(&self) -> Option<String> {
        let mut why = String::new();
        if !self.is_ready() {
            why.push_str("the API server does not answer\n");
        }
        if let Some(w) = self.watches.get() {
            why.push_str(&w.stale_summary());
        }
        (!why.is_empty()).then_some(why)
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
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { health, registry });
    let serve = async move { axum::serve(listener, app).await.map_err(AdminError::Serve) };
    Ok((local, serve))
}

async fn livez(State(state): State<AdminState>) -> impl IntoResponse {
    match state.health.stalled_reason() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("stalled: {why}")),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    match state.health.observe() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{why}")),
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
