//! The gateway's admin endpoints, served by pingora: `/healthz`, `/readyz`, `/metrics`.

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::Registry;

/// Serves health and metrics.
pub struct AdminApp {
    registry: Registry,
}

impl AdminApp {
    /// Serves `registry` on `/metrics`.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
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
            "/healthz" | "/livez" | "/readyz" => {
                respond(StatusCode::OK, "text/plain", b"ok\n".to_vec())
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
