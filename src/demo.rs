//! `atrium demo-backend`: the small HTTP service of the samples and the end-to-end test. Every
//! request gets JSON with the service's name, the address it listens on (the pod IP), the
//! request path, the headers it received (to show forwarded claims) and its configuration
//! (files of each `--config-dir`, re-read on every request so hot reloads show, and the
//! environment variables `--env-keys` names). `/healthz` answers 200; `/metrics` serves Prometheus text.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Args;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use serde_json::json;

/// Flags of `atrium demo-backend`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Name reported in every answer (e.g. `users`).
    #[arg(long, default_value = "demo", env = "ATRIUM_DEMO_NAME")]
    pub name: String,
    /// Address to listen on (the pod IP and port).
    #[arg(long, default_value = "127.0.0.1:8080", env = "ATRIUM_DEMO_LISTEN")]
    pub listen: SocketAddr,
    /// Directory whose files are configuration values (a mounted ConfigMap); repeatable.
    #[arg(long, env = "ATRIUM_DEMO_CONFIG_DIR", value_delimiter = ',')]
    pub config_dir: Vec<PathBuf>,
    /// Environment variables reported as configuration (the pod runner lists the ones that
    /// came from the pod's `env` and `envFrom`).
    #[arg(long, env = "ATRIUM_DEMO_ENV_KEYS", value_delimiter = ',')]
    pub env_keys: Vec<String>,
}

/// The demo backend could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

struct Demo {
    args: DemoArgs,
    registry: Registry,
    requests: IntCounterVec,
}

/// Serves until the process is stopped.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "demo_requests_total",
            "Requests answered, by kind (api, healthz, metrics)",
        ),
        &["kind"],
    )?;
    registry.register(Box::new(requests.clone()))?;
    let listen = args.listen;
    let state = Arc::new(Demo {
        args,
        registry,
        requests,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(answer)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| DemoError::Bind(listen, e))?;
    tracing::info!(%listen, "demo backend listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            tokio::select! { () = shutdown => {}, () = term => {} }
        })
        .await
        .map_err(DemoError::Serve)
}

async fn healthz(State(demo): State<Arc<Demo>>) -> &'static str {
    demo.requests.with_label_values(&["healthz"]).inc();
    "ok\n"
}

async fn metrics(State(demo): State<Arc<Demo>>) -> impl IntoResponse {
    demo.requests.with_label_values(&["metrics"]).inc();
    let mut out = vec![];
    let _ = TextEncoder::new().encode(&demo.registry.gather(), &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

fn config(args: &DemoArgs) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in &args.config_dir {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_file() {
                continue; // ConfigMap volumes keep their data behind dot-directories
            }
            if let Ok(v) = std::fs::read_to_string(&path) {
                out.insert(name, v.trim_end().to_owned());
            }
        }
    }
    for k in &args.env_keys {
        if let Ok(v) = std::env::var(k) {
            out.insert(k.clone(), v);
        }
    }
    out
}

async fn answer(State(demo): State<Arc<Demo>>, req: Request) -> impl IntoResponse {
    demo.requests.with_label_values(&["api"]).inc();
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = json!({
        "service": demo.args.name,
        "podIP": demo.args.listen.ip().to_string(),
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "config": config(&demo.args),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
