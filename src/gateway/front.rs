//! The front listener before any route table exists: every request gets a JSON 404.

use async_trait::async_trait;
use http::{Response, StatusCode, header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// Answers every request with `404 {"error":"no_route", ...}`.
pub struct NoRoutes;

#[async_trait]
impl ServeHttp for NoRoutes {
    async fn response(&self, _session: &mut ServerSession) -> Response<Vec<u8>> {
        let body =
            br#"{"error":"no_route","message":"no GatewayRoute matches this request"}"#.to_vec();
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        let len = resp.body().len();
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
        resp
    }
}
