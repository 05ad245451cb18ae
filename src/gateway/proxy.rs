//! The pingora proxy: normalise → match → pick an endpoint → rewrite → forward. Errors answer
//! with a small JSON body: 400 (a path that could confuse routing), 404 (no route), 503 (no
//! ready endpoint), 502 (the upstream failed).

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorType, Result};

use super::path;
use super::table::{Found, Request, RouteTable};

/// The proxy service state: the current table, swapped atomically by the config source.
pub struct Gateway {
    table: Arc<ArcSwap<RouteTable>>,
}

impl Gateway {
    /// A gateway serving whatever table `table` holds at each request.
    pub fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        Self { table }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct Ctx {
    found: Option<Found>,
    path: String,
    upstream: Option<SocketAddr>,
}

/// Writes `{"error": kind, "message": message}` with `code`; the request is then done.
async fn respond_json(session: &mut Session, code: u16, kind: &str, message: &str) -> Result<()> {
    let body = Bytes::from(serde_json::json!({"error": kind, "message": message}).to_string());
    let mut resp = ResponseHeader::build(code, Some(3))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

fn host_of(session: &Session) -> String {
    let req = session.req_header();
    let raw = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
        .unwrap_or("");
    // Strip a port; keep IPv6 literals whole.
    let host = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let raw_path = session.req_header().uri.path().to_owned();
        let normalized = match path::normalize(&raw_path) {
            Ok(p) => p,
            Err(e) => {
                respond_json(session, 400, "bad_path", &e.to_string()).await?;
                return Ok(true);
            }
        };
        // Matching holds borrows of the request that may not live across an await.
        let outcome = {
            let table = self.table.load();
            let host = host_of(session);
            let req = session.req_header();
            let header = |name: &str| {
                req.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let request = Request {
                host: &host,
                method: req.method.as_str(),
                path: &normalized,
                query: req.uri.query(),
                header: &header,
            };
            table.lookup(&request).map(|found| {
                let upstream = found.rule.pick();
                (found, upstream)
            })
        };
        let Some((found, upstream)) = outcome else {
            respond_json(
                session,
                404,
                "no_route",
                "no GatewayRoute matches this request",
            )
            .await?;
            return Ok(true);
        };
        let Some(upstream) = upstream else {
            let msg = format!("route {} has no ready endpoint", found.rule.id);
            respond_json(session, 503, "no_endpoint", &msg).await?;
            return Ok(true);
        };
        ctx.path = found.rule.rewrite_path(&normalized, &found);
        ctx.upstream = Some(upstream);
        ctx.found = Some(found);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let addr = ctx
            .upstream
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let uri = match session.req_header().uri.query() {
            Some(q) => format!("{}?{q}", ctx.path),
            None => ctx.path.clone(),
        };
        let uri: http::Uri = uri.parse().map_err(|_| {
            Error::explain(
                ErrorType::InternalError,
                "rewritten path is not a valid URI",
            )
        })?;
        upstream.set_uri(uri);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => 502,
                pingora::ErrorSource::Downstream => 400,
                _ => 500,
            },
        };
        let route = ctx
            .found
            .as_ref()
            .map(|f| f.rule.id.as_str())
            .unwrap_or("-");
        let kind = if code == 502 {
            "upstream_failed"
        } else {
            "proxy_error"
        };
        let _ = respond_json(
            session,
            code,
            kind,
            &format!("route {route}: {}", e.etype().as_str()),
        )
        .await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
