//! `atrium demo-backend`: the small HTTP service of the samples and the end-to-end test. Every
//! request gets JSON with the service's name, the address it listens on (the pod IP), the
//! request path, the headers it received (to show forwarded claims) and its configuration
//! (files of each `--config-dir`, re-read on every request so hot reloads show, and the
//! environment variables `--env-keys` names). `/healthz` answers 200; `/metrics` serves Prometheus text.
//!
//! With `--downstream NAME=URL` (the shop's `orders`: `users=$(USERS_URL)`), a request for
//! `/<service>/<id>` also calls `GET URL/NAME/<id>` of every downstream, in parallel, and
//! includes their answers under `downstream`: the shop becomes a real call graph, by Service
//! name through the cluster's DNS and kube-proxy. A downstream that fails makes the answer 502,
//! naming it.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set (see [`crate::otel`]) every request is a server span
//! continuing the caller's `traceparent`, and every downstream call a client span whose
//! context goes on in `traceparent`: the shop's calls make one trace across the services.

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
    /// A service this one calls, as `NAME=URL` (e.g. `users=http://users:8080`); repeatable.
    #[arg(long, env = "ATRIUM_DEMO_DOWNSTREAM", value_delimiter = ',', value_parser = parse_downstream)]
    pub downstream: Vec<Downstream>,
}

/// A service the demo backend calls for `/<service>/<id>` requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downstream {
    /// Its name: the first path segment of the call and the key of its answer.
    pub name: String,
    /// Its base URL (`http://users:8080`).
    pub url: String,
}

fn parse_downstream(s: &str) -> Result<Downstream, String> {
    let (name, url) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=URL, e.g. users=http://users:8080"))?;
    let url = url.trim_end_matches('/');
    if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{s:?}: expected NAME=URL with an http:// or https:// URL, e.g. users=http://users:8080"
        ));
    }
    Ok(Downstream {
        name: name.to_owned(),
        url: url.to_owned(),
    })
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
    /// The HTTP client for downstream calls could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// Tracing is configured in a way this build cannot follow.
    #[error("tracing: {0}")]
    Tracing(#[from] crate::otel::OtelError),
}

struct Demo {
    args: DemoArgs,
    registry: Registry,
    requests: IntCounterVec,
    http: reqwest::Client,
    tracing: Option<Arc<crate::otel::Tracing>>,
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
    // One TLS crypto provider for the process (the one pingora uses); already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A new connection per call: kube-proxy balances connections, not requests, so a pooled
    // connection would pin every call to one replica behind a cluster IP.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()?;
    let tracing = crate::otel::Tracing::from_env(&args.name, &registry)?.map(Arc::new);
    let state = Arc::new(Demo {
        args,
        registry,
        requests,
        http,
        tracing,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(answer)
        .with_state(state.clone());
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
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            tokio::select! { () = shutdown => {}, () = term => {} }
        })
        .await
        .map_err(DemoError::Serve);
    if let Some(t) = &state.tracing {
        let t = Arc::clone(t);
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    served
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

/// Request headers a downstream call carries on (who the user is, which request this is).
const PROPAGATED: &[&str] = &["x-request-id", "x-user-id", "x-user-scope"];

/// The `<id>` of a `/<service>/<id>` path.
fn item_id<'a>(service: &str, path: &'a str) -> Option<&'a str> {
    let rest = path
        .strip_prefix('/')?
        .strip_prefix(service)?
        .strip_prefix('/')?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// Calls every downstream for item `id`, each call a client span under `cx`; `Err` names the
/// first that failed.
async fn call_downstream(
    demo: &Demo,
    id: &str,
    headers: &axum::http::HeaderMap,
    cx: Option<&opentelemetry::Context>,
) -> Result<serde_json::Map<String, serde_json::Value>, (String, String)> {
    let calls = demo.args.downstream.iter().map(|d| async move {
        let url = format!("{}/{}/{id}", d.url, d.name);
        let span = demo
            .tracing
            .as_ref()
            .zip(cx)
            .map(|(t, cx)| t.client_span(cx, "GET", &url));
        let mut req = demo.http.get(&url);
        for h in PROPAGATED {
            if let Some(v) = headers.get(*h) {
                req = req.header(*h, v);
            }
        }
        if let (Some(t), Some(span)) = (&demo.tracing, &span) {
            for (k, v) in t.inject(span) {
                req = req.header(k, v);
            }
        }
        let result = async {
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())
        }
        .await;
        if let Some(span) = span {
            crate::otel::end(&span, result.as_ref().err().map(String::as_str));
        }
        (d.name.clone(), result)
    });
    let mut out = serde_json::Map::new();
    for (name, result) in futures::future::join_all(calls).await {
        out.insert(name.clone(), result.map_err(|e| (name, e))?);
    }
    Ok(out)
}

async fn answer(State(demo): State<Arc<Demo>>, req: Request) -> impl IntoResponse {
    demo.requests.with_label_values(&["api"]).inc();
    let cx = demo.tracing.as_ref().map(|t| {
        let route = if item_id(&demo.args.name, req.uri().path()).is_some() {
            format!("/{}/{{id}}", demo.args.name)
        } else {
            req.uri().path().to_owned()
        };
        t.server_span(
            req.headers(),
            req.method().as_str(),
            &route,
            req.uri().path(),
        )
    });
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let path = req.uri().path();
    let mut body = json!({
        "service": demo.args.name,
        "podIP": demo.args.listen.ip().to_string(),
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "config": config(&demo.args),
    });
    let mut status = StatusCode::OK;
    if !demo.args.downstream.is_empty()
        && let Some(id) = item_id(&demo.args.name, path)
    {
        match call_downstream(&demo, id, req.headers(), cx.as_ref()).await {
            Ok(answers) => body["downstream"] = answers.into(),
            Err((name, error)) => {
                status = StatusCode::BAD_GATEWAY;
                body["error"] = format!("downstream {name}: {error}").into();
            }
        }
    }
    if let Some(cx) = &cx {
        crate::otel::end_server(cx, status.as_u16());
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstreams_parse_and_items_match_the_service() {
        assert_eq!(
            parse_downstream("users=http://users:8080/"),
            Ok(Downstream {
                name: "users".into(),
                url: "http://users:8080".into()
            })
        );
        assert!(parse_downstream("users").is_err());
        assert!(parse_downstream("users=users:8080").is_err());
        assert!(parse_downstream("=http://x").is_err());
        assert_eq!(item_id("orders", "/orders/42"), Some("42"));
        assert_eq!(item_id("orders", "/orders"), None);
        assert_eq!(item_id("orders", "/orders/"), None);
        assert_eq!(item_id("orders", "/orders/42/items"), None);
        assert_eq!(item_id("orders", "/ordersx/42"), None);
    }
}
