//! The gateway's admin endpoints, served by pingora: `/healthz`, `/readyz`, `/metrics`.

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use super::outlier::Outliers;
use super::table::RouteTable;

/// Serves health, metrics and the current route table.
pub struct AdminApp {
    registry: Registry,
    table: Arc<ArcSwap<RouteTable>>,
    ready: Arc<AtomicBool>,
    outliers: Arc<Outliers>,
    watches: Option<crate::watch::WatchHealth>,
}

impl AdminApp {
    /// Serves `registry` on `/metrics` and `table` on `/routes`; `/readyz` follows `ready`.
    pub fn new(
        registry: Registry,
        table: Arc<ArcSwap<RouteTable>>,
        ready: Arc<AtomicBool>,
        outliers: Arc<Outliers>,
    ) -> Self {
        Self {
            registry,
            table,
            ready,
            outliers,
            watches: None,
        }
    }

    /// Adds the watches' state to `/readyz`: while one is not current the gateway still answers
    /// 200 (it serves its last route table) and says that the table may be stale.
    pub fn with_watches(mut self, watches: crate::watch::WatchHealth) -> Self {
        self.watches = Some(watches);
        self
    }

    fn readyz(&self) -> Response<Vec<u8>> {
        if !self.ready.load(Ordering::Acquire) {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"no route table yet\n".to_vec(),
            );
        }
        let stale = self
            .watches
            .as_ref()
            .map(crate::watch::WatchHealth::stale_summary)
            .unwrap_or_default();
        let body = if stale.is_empty() {
            "ok\n".to_owned()
        } else {
            format!("ok: serving the last route table; config stale\n{stale}")
        };
        respond(StatusCode::OK, "text/plain", body.into_bytes())
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" | "/livez" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => self.readyz(),
            "/registry" => {
                let table = self.table.load();
                let outliers = &self.outliers;
                let body = serde_json::to_vec_pretty(&table.registry(&|a| outliers.is_ejected(a)))
                    .unwrap_or_default();
                respond(StatusCode::OK, "application/json", body)
            }
            "/routes" => {
                let table = self.table.load();
                let body = serde_json::to_vec_pretty(&table.summary).unwrap_or_default();
                respond(StatusCode::OK, "application/json", body)
            }
            "/metrics" => match crate::admin::encode_metrics(&self.registry) {
                Ok(body) => respond(StatusCode::OK, "text/plain; version=0.0.4", body),
                Err(e) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding metrics: {e}\n").into_bytes(),
                ),
            },
            _ => respond(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
