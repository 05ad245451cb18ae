//! The pingora proxy: normalise → match → policies → pick an endpoint → rewrite → forward.
//! Errors answer with a small JSON body: 400 (a path that could confuse routing), 404 (no
//! route), 503 (no ready endpoint), 502 (the upstream failed), 504 (the upstream took longer
//! than the rule's timeout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorType, Result};
use tracing::info;

use super::cors;
use super::headers::{self, HeaderOp};
use super::metrics::{GatewayMetrics, code_label, method_label};
use super::outlier::Outliers;
use super::path;
use super::policy::{self, Outcome, RequestState};
use super::rule::RedirectFrom;
use super::sampling::Sampler;
use super::table::{Found, Request, RouteTable, Rule};
use super::trace::RequestTrace;
use crate::otel::Tracing;
use crate::route::{HashKey, RetryOn};

/// The proxy service state: the current table (swapped atomically by the config source) and
/// the metrics.
pub struct Gateway {
    table: Arc<ArcSwap<RouteTable>>,
    metrics: GatewayMetrics,
    max_header_size: usize,
    outliers: Arc<Outliers>,
    access_log: Sampler,
    requests: super::drain::Requests,
    tracing: Option<Arc<Tracing>>,
}

impl Gateway {
    /// Traces every request (a server span, a client span per upstream attempt).
    pub fn with_tracing(mut self, tracing: Option<Arc<Tracing>>) -> Self {
        self.tracing = tracing;
        self
    }

    /// Counts requests in flight in `requests` (so SIGTERM can exit once they are done).
    pub fn with_requests(mut self, requests: super::drain::Requests) -> Self {
        self.requests = requests;
        self
    }

    /// Logs only a `rate` share of requests (5xx answers always).
    pub fn with_access_log_rate(mut self, rate: f64) -> Self {
        self.access_log = Sampler::new(rate);
        self
    }

    /// Shares the passive-health state (for `/registry`).
    pub fn with_outliers(mut self, outliers: Arc<Outliers>) -> Self {
        self.outliers = outliers;
        self
    }

    fn failed(&self, ctx: &Ctx) {
        let (Some(rule), Some(addr)) = (&ctx.rule, ctx.upstream) else {
            return;
        };
        if self.outliers.failure(addr) {
            let service = rule.service_of(addr).unwrap_or("-");
            tracing::warn!(endpoint = %addr, service, "ejecting an endpoint after repeated failures");
            self.metrics.ejections.with_label_values(&[service]).inc();
        }
    }

    /// A gateway serving whatever table `table` holds at each request, refusing requests
    /// whose headers take more than `max_header_size` bytes.
    pub fn new(
        table: Arc<ArcSwap<RouteTable>>,
        metrics: GatewayMetrics,
        max_header_size: usize,
    ) -> Self {
        Self {
            table,
            metrics,
            max_header_size,
            outliers: Arc::default(),
            access_log: Sampler::new(1.0),
            requests: super::drain::Requests::default(),
            tracing: None,
        }
    }
}

/// Per-request state.
pub struct Ctx {
    rule: Option<Arc<Rule>>,
    path: String,
    upstream: Option<SocketAddr>,
    /// Index of the rule's backend `upstream` belongs to.
    backend: usize,
    /// The request's `Origin`, when the rule's CORS policy allows it.
    cors_origin: Option<String>,
    tries: u32,
    request_id: String,
    host: String,
    start: Instant,
    hash: Option<u64>,
    upstream_start: Option<Instant>,
    /// The upstream answered with a status the rule retries; the error that
    /// `upstream_response_filter` raised is already decided.
    status_retry: bool,
    /// What the rule's policies learnt (claims, quota headers).
    policy: RequestState,
    /// The upstream failed after the response headers were sent; the client connection was
    /// closed mid-response instead of completing it.
    aborted: bool,
    /// Counts this request as in flight until the context is dropped.
    _in_flight: super::drain::InFlight,
    /// When the current attempt runs out of the rule's timeout (the whole attempt, not each
    /// read: a backend that trickles bytes must not hold a request forever).
    deadline: Option<Instant>,
    /// Headers the client's `Connection` nominated (lower case), removed before forwarding.
    hop_by_hop: Vec<String>,
    /// The request's spans, when tracing is on.
    trace: Option<RequestTrace>,
}

impl Ctx {
    fn ids(&self) -> Ids<'_> {
        Ids {
            request: &self.request_id,
            trace: self.trace.as_ref().map(|t| t.trace_id.as_str()),
        }
    }
}

// Header names the gateway sets on every request, parsed once (not per request).
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

/// The identifiers every answer carries: `x-request-id`, and `x-trace-id` when traced.
#[derive(Clone, Copy)]
struct Ids<'a> {
    request: &'a str,
    trace: Option<&'a str>,
}

impl Ids<'_> {
    fn write(self, resp: &mut ResponseHeader) -> Result<()> {
        resp.insert_header(X_REQUEST_ID, self.request)?;
        if let Some(t) = self.trace {
            resp.insert_header("x-trace-id", t)?;
        }
        Ok(())
    }
}

/// Writes `{"error": kind, "message": message}` with `code`; the request is then done.
async fn respond_json(
    session: &mut Session,
    code: u16,
    kind: &str,
    message: &str,
    extra: &[(String, String)],
    ids: Ids<'_>,
) -> Result<()> {
    let body = Bytes::from(serde_json::json!({"error": kind, "message": message}).to_string());
    respond(session, code, body, extra, ids).await
}

async fn respond(
    session: &mut Session,
    code: u16,
    body: Bytes,
    extra: &[(String, String)],
    ids: Ids<'_>,
) -> Result<()> {
    // A HEAD request gets the status and headers only: no body, and no content type a
    // client would try to parse an empty body as.
    let head = session.req_header().method == http::Method::HEAD;
    let mut resp = ResponseHeader::build(code, Some(4 + extra.len()))?;
    if head {
        resp.insert_header("content-length", "0")?;
    } else {
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
    }
    resp.insert_header("cache-control", "no-store")?;
    ids.write(&mut resp)?;
    for (k, v) in extra {
        resp.append_header(k.clone(), v.as_str())?;
    }
    session.write_response_header(Box::new(resp), head).await?;
    if !head {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Fails the attempt once its deadline has passed (a read timeout alone restarts with every
/// byte). Before the response headers went out this answers 504; after, the connection is cut.
fn past_deadline(ctx: &Ctx, end_of_stream: bool) -> Result<()> {
    match ctx.deadline {
        Some(d) if !end_of_stream && Instant::now() >= d => Err(Error::explain(
            ErrorType::ReadTimedout,
            "the upstream did not finish within the rule's timeout",
        )),
        _ => Ok(()),
    }
}

/// Whether the client's connection is TLS.
fn downstream_tls(session: &Session) -> bool {
    session
        .as_downstream()
        .digest()
        .is_some_and(|d| d.ssl_digest.is_some())
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

/// The ConsistentHash key of a request: the named header, cookie or query parameter, or the
/// client IP. `None` (round robin) for other policies or when the request lacks the key.
fn hash_key(session: &Session, rule: &Rule) -> Option<u64> {
    let on = rule.hash_on.as_ref()?;
    let req = session.req_header();
    let value: Option<String> = match on {
        HashKey::ClientIp => session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string()),
        HashKey::Header(name) => req
            .headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        HashKey::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_owned()),
        HashKey::QueryParam(name) => req
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_owned()),
    };

    value.map(|v| super::balance::key_hash(&v))
}

/// Whether a request may be sent again after its body went upstream: only idempotent methods
/// whose body is still whole in pingora's retry buffer.
fn resendable(session: &Session) -> bool {
    session.req_header().method.is_idempotent() && !session.as_ref().retry_buffer_truncated()
}

/// The retry kind an upstream status belongs to, if any.
fn status_kind(status: u16) -> Option<[RetryOn; 2]> {
    match status {
        502..=504 => Some([RetryOn::GatewayError, RetryOn::Status5xx]),
        500..=599 => Some([RetryOn::Status5xx, RetryOn::Status5xx]),
        _ => None,
    }
}

fn retries_on(rule: Option<&Arc<Rule>>, tries: u32, on: RetryOn) -> bool {
    rule.and_then(|r| r.retries.as_ref())
        .is_some_and(|r| tries <= r.attempts && r.on.contains(&on))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rule: None,
            path: String::new(),
            upstream: None,
            backend: 0,
            cors_origin: None,
            tries: 0,
            request_id: String::new(),
            host: String::new(),
            start: Instant::now(),
            hash: None,
            upstream_start: None,
            status_retry: false,
            policy: RequestState::default(),
            aborted: false,
            _in_flight: self.requests.start(),
            deadline: None,
            hop_by_hop: vec![],
            trace: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let incoming = session
            .req_header()
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        ctx.request_id = headers::request_id(incoming.as_deref());
        ctx.host = host_of(session);
        if let Some(t) = &self.tracing {
            let tls = downstream_tls(session);
            ctx.trace = Some(RequestTrace::start(t, session.req_header(), &ctx.host, tls));
        }
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.max_header_size {
            let msg = format!(
                "request headers take {header_bytes} bytes; the limit is {}",
                self.max_header_size
            );
            respond_json(session, 431, "headers_too_large", &msg, &[], ctx.ids()).await?;
            return Ok(true);
        }
        let refused = {
            let req = session.req_header();
            headers::refuse_framing(
                req.version == http::Version::HTTP_11,
                req.headers.contains_key(http::header::HOST),
            )
        };
        if let Some(why) = refused {
            respond_json(session, 400, "bad_request", why, &[], ctx.ids()).await?;
            return Ok(true);
        }
        let raw_path = session.req_header().uri.path().to_owned();
        let normalized = match path::normalize(&raw_path) {
            Ok(p) => p,
            Err(e) => {
                respond_json(session, 400, "bad_path", &e.to_string(), &[], ctx.ids()).await?;
                return Ok(true);
            }
        };
        // Matching ignores `;` path parameters (backends that use them read `/a;x` as `/a`).
        let matching = path::without_parameters(&normalized);
        // Matching holds borrows of the request that may not live across an await. A request
        // over TLS for a host another listener serves than the one its connection was opened
        // for (a client reusing a connection across names) is not matched: 421, so the
        // client opens the right connection.
        let (found, misdirected): (Option<Found>, Option<String>) = {
            let table = self.table.load();
            let server_name = session
                .as_downstream()
                .digest()
                .and_then(|d| d.ssl_digest.as_ref())
                .and_then(|d| super::sni::ServerName::of(d));
            match server_name {
                Some(name) if table.misdirected(name, &ctx.host) => (None, Some(name.to_owned())),
                _ => {
                    let req = session.req_header();
                    let header = |name: &str| {
                        req.headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let request = Request {
                        host: &ctx.host,
                        method: req.method.as_str(),
                        path: &matching,
                        query: req.uri.query(),
                        header: &header,
                    };
                    (table.lookup(&request), None)
                }
            }
        };
        if let Some(name) = misdirected {
            let msg = format!(
                "host {} is not served on the connection opened for {name}",
                ctx.host
            );
            respond_json(session, 421, "misdirected_request", &msg, &[], ctx.ids()).await?;
            return Ok(true);
        }
        let Some(found) = found else {
            respond_json(
                session,
                404,
                "no_route",
                "no GatewayRoute matches this request",
                &[],
                ctx.ids(),
            )
            .await?;
            return Ok(true);
        };
        // Hop-by-hop headers a client nominates are dropped on the way; one the gateway sets
        // itself (an identity claim, X-Forwarded-*) may not be nominated: it would vanish at
        // the next hop after the gateway vouched for it.
        ctx.hop_by_hop = headers::nominated(
            session
                .req_header()
                .headers
                .get_all(http::header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        if let Some(h) = ctx
            .hop_by_hop
            .iter()
            .find(|h| found.rule.sets_headers.contains(h))
        {
            let msg = format!("the Connection header names {h}, a header the gateway sets");
            respond_json(session, 400, "bad_request", &msg, &[], ctx.ids()).await?;
            return Ok(true);
        }
        ctx.path = if found.rule.forward_path_parameters && found.rule.rewrite.is_none() {
            normalized.clone()
        } else {
            found.rule.rewrite_path(&matching, &found)
        };
        let rule = found.rule.clone();
        ctx.rule = Some(rule.clone());
        if let Some(t) = &ctx.trace {
            t.route(&rule.id);
        }
        // CORS before the policies: a browser's preflight carries no credentials.
        if let Some(cors) = &rule.cors {
            let req = session.req_header();
            let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
            let origin = header("origin");
            let asked = header("access-control-request-method");
            ctx.cors_origin = origin
                .filter(|o| cors::origin_allowed(cors, o))
                .map(str::to_owned);
            if cors::is_preflight(req.method.as_str(), origin, asked) {
                let headers = match (&ctx.cors_origin, asked) {
                    (Some(o), Some(m)) => cors::preflight_headers(
                        cors,
                        o,
                        m,
                        header("access-control-request-headers"),
                    ),
                    _ => vec![],
                };
                let mut resp = ResponseHeader::build(204, Some(headers.len() + 2))?;
                for (k, v) in headers {
                    resp.insert_header(k, v)?;
                }
                ctx.ids().write(&mut resp)?;
                session.write_response_header(Box::new(resp), true).await?;
                return Ok(true);
            }
        }
        if let Outcome::Respond {
            status,
            headers,
            body,
        } = policy::run(&rule.policies, session, &mut ctx.policy).await
        {
            respond(session, status, body, &headers, ctx.ids()).await?;
            return Ok(true);
        }
        if let Some(redirect) = &rule.redirect {
            let from = RedirectFrom {
                tls: downstream_tls(session),
                port: session
                    .server_addr()
                    .and_then(|a| a.as_inet())
                    .map_or(80, SocketAddr::port),
                host: &ctx.host,
                path: &matching,
                query: session.req_header().uri.query(),
            };
            let location = rule.redirect_location(redirect, &found, from);
            let mut resp = ResponseHeader::build(redirect.status, Some(3))?;
            resp.insert_header(http::header::LOCATION, location)?;
            resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
            ctx.ids().write(&mut resp)?;
            session.write_response_header(Box::new(resp), true).await?;
            return Ok(true);
        }
        if rule.unusable_turn() {
            let msg = format!(
                "route {} sends this share of requests to a backend that cannot be used",
                rule.id
            );
            respond_json(session, 500, "invalid_backend", &msg, &[], ctx.ids()).await?;
            return Ok(true);
        }
        ctx.hash = hash_key(session, &rule);
        let outliers = &self.outliers;
        let Some((backend, upstream)) = rule
            .pick_backend(ctx.hash, &|a| outliers.is_ejected(a))
            .map(|(i, s)| (i, s.addr))
        else {
            let msg = format!("route {} has no ready endpoint", rule.id);
            respond_json(session, 503, "no_endpoint", &msg, &[], ctx.ids()).await?;
            return Ok(true);
        };
        ctx.upstream = Some(upstream);
        ctx.backend = backend;
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.tries += 1;
        if ctx.tries > 1
            && let Some(rule) = &ctx.rule
        {
            // A retry: back off, then prefer another endpoint.
            if let Some(r) = &rule.retries {
                let factor = 1u32 << (ctx.tries - 2).min(6);
                tokio::time::sleep(r.backoff.saturating_mul(factor)).await;
            }
            self.metrics
                .retries
                .with_label_values(&[rule.id.as_str()])
                .inc();
            let outliers = &self.outliers;
            if let Some((backend, next)) = rule
                .pick_backend(ctx.hash, &|a| outliers.is_ejected(a))
                .map(|(i, s)| (i, s.addr))
            {
                ctx.backend = backend;
                if let Some(prev) = ctx.upstream.replace(next) {
                    rule.release(prev);
                }
            }
        }
        let addr = ctx
            .upstream
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        ctx.upstream_start = Some(Instant::now());
        if let (Some(t), Some(trace)) = (&self.tracing, &mut ctx.trace) {
            trace.attempt(t, addr, ctx.tries);
        }
        let mut peer = HttpPeer::new(addr, false, String::new());
        let timeout = ctx.rule.as_ref().and_then(|r| r.timeout);
        peer.options.connection_timeout = Some(
            timeout
                .unwrap_or(Duration::from_secs(5))
                .min(Duration::from_secs(5)),
        );
        peer.options.read_timeout = timeout;
        ctx.deadline = timeout.map(|t| Instant::now() + t);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.failed(ctx);
        if let Some(t) = &mut ctx.trace {
            t.attempt_failed(e.etype().as_str());
        }
        // Nothing reached the upstream: retrying is safe for any method.
        if retries_on(ctx.rule.as_ref(), ctx.tries, RetryOn::ConnectFailure) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        if std::mem::take(&mut ctx.status_retry) {
            return e; // raised by upstream_response_filter, retry already decided
        }
        if let Some(t) = &mut ctx.trace {
            t.attempt_failed(e.etype().as_str());
        }
        // A client that goes away is not the upstream's failure.
        if e.esource() != &pingora::ErrorSource::Downstream {
            self.failed(ctx);
        }
        let mut e = e.more_context(format!("peer {peer}"));
        let kind = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => RetryOn::Timeout,
            _ => RetryOn::Reset,
        };
        // A request whose body was sent may have had an effect: only idempotent methods with a
        // body still in the retry buffer are retried.
        let safe = resendable(session);
        if safe && retries_on(ctx.rule.as_ref(), ctx.tries, kind) {
            e.set_retry(true);
        } else if safe {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The request target goes up as `path?query`; when the path is what the client sent
        // (no rewrite, nothing normalised) and in that form already, it is kept as it is.
        let original = &session.req_header().uri;
        let unchanged = original.path() == ctx.path
            && original.scheme().is_none()
            && original.authority().is_none();
        if !unchanged {
            let uri = match original.query() {
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
        }
        for h in &ctx.hop_by_hop {
            upstream.remove_header(h.as_str());
        }
        let options = headers::connection_options(
            upstream
                .headers
                .get_all(http::header::CONNECTION)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        match options {
            Some(v) => upstream.insert_header(http::header::CONNECTION, v)?,
            None => {
                upstream.remove_header(&http::header::CONNECTION);
            }
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string());
        if let Some(ip) = client {
            let forwarded = match upstream
                .headers
                .get(&X_FORWARDED_FOR)
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip,
            };
            upstream.insert_header(X_FORWARDED_FOR, forwarded)?;
        }
        let tls = downstream_tls(session);
        let proto = http::HeaderValue::from_static(if tls { "https" } else { "http" });
        upstream.insert_header(X_FORWARDED_PROTO, proto)?;
        if !ctx.host.is_empty() {
            upstream.insert_header(X_FORWARDED_HOST, ctx.host.as_str())?;
        }
        if let Some(host) = ctx.rule.as_ref().and_then(|r| r.host_rewrite.as_deref()) {
            upstream.insert_header(http::header::HOST, host)?;
        }
        upstream.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;
        if let (Some(t), Some(trace)) = (&self.tracing, &ctx.trace) {
            for (k, v) in trace.upstream_headers(t) {
                upstream.insert_header(k, v)?;
            }
        }
        let rule_changes = ctx.rule.as_ref().and_then(|r| r.request_headers.as_ref());
        let backend_changes = ctx
            .rule
            .as_ref()
            .and_then(|r| r.backends.get(ctx.backend))
            .and_then(|b| b.request_headers.as_ref());
        for m in rule_changes.into_iter().chain(backend_changes) {
            for op in headers::ops(m) {
                match op {
                    HeaderOp::Remove(n) => {
                        upstream.remove_header(n);
                    }
                    HeaderOp::Set(n, v) => upstream.insert_header(n.to_owned(), v)?,
                    HeaderOp::Add(n, v) => {
                        upstream.append_header(n.to_owned(), v)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        past_deadline(ctx, end_of_stream)?;
        Ok(None)
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        past_deadline(ctx, false)?;
        if let Some(t) = &ctx.trace {
            t.upstream_status(resp.status.as_u16());
        }
        // A status the rule retries: fail this attempt before anything reaches the client, so
        // pingora's retry loop sends the request again (the last attempt's answer passes).
        let status = resp.status.as_u16();
        let Some(kinds) = status_kind(status) else {
            return Ok(());
        };
        let retry = kinds
            .iter()
            .any(|k| retries_on(ctx.rule.as_ref(), ctx.tries, *k));
        if retry && resendable(session) {
            ctx.status_retry = true;
            let mut e = Error::explain(
                ErrorType::HTTPStatus(status),
                "the upstream answered a status this rule retries",
            );
            e.set_retry(true);
            return Err(e);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(addr) = ctx.upstream {
            self.outliers.success(addr);
        }
        if let (Some(start), Some(rule)) = (ctx.upstream_start.take(), &ctx.rule) {
            self.metrics
                .upstream
                .with_label_values(&[rule.id.as_str()])
                .observe(start.elapsed().as_secs_f64());
        }
        ctx.ids().write(resp)?;
        if let (Some(origin), Some(cors)) = (
            &ctx.cors_origin,
            ctx.rule.as_ref().and_then(|r| r.cors.as_ref()),
        ) {
            for (k, v) in cors::response_headers(cors, origin) {
                resp.insert_header(k, v)?;
            }
        }
        for (k, v) in &ctx.policy.response_headers {
            resp.insert_header(k.clone(), v.as_str())?;
        }
        if let Some(m) = ctx.rule.as_ref().and_then(|r| r.response_headers.as_ref()) {
            for op in headers::ops(m) {
                match op {
                    HeaderOp::Remove(n) => {
                        resp.remove_header(n);
                    }
                    HeaderOp::Set(n, v) => resp.insert_header(n.to_owned(), v)?,
                    HeaderOp::Add(n, v) => {
                        resp.append_header(n.to_owned(), v)?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        // Headers (and maybe part of the body) already went to the client: the one honest
        // signal left is to close the connection, so the client sees a truncated response.
        // Never mix the gateway's own bytes into a backend's body.
        if let Some(sent) = session.response_written() {
            ctx.aborted = true;
            return FailToProxy {
                error_code: sent.status.as_u16(),
                can_reuse_downstream: false,
            };
        }
        let (code, kind) = match e.etype() {
            ErrorType::HTTPStatus(c) => (*c, "proxy_error"),
            ErrorType::ReadTimedout | ErrorType::ConnectTimedout | ErrorType::WriteTimedout => {
                (504, "upstream_timeout")
            }
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => (502, "upstream_failed"),
                pingora::ErrorSource::Downstream => (400, "bad_request"),
                _ => (500, "internal_error"),
            },
        };
        let route = ctx.rule.as_ref().map_or("-", |r| r.id.as_str()).to_owned();
        let msg = format!("route {route}: {}", e.etype().as_str());
        let _ = respond_json(session, code, kind, &msg, &[], ctx.ids()).await;
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        if let (Some(rule), Some(addr)) = (&ctx.rule, ctx.upstream) {
            rule.release(addr);
        }
        // A response cut off after its headers counts as the bad gateway it was.
        let code = match session.response_written() {
            _ if ctx.aborted => 502,
            Some(r) => r.status.as_u16(),
            None => 0,
        };
        let route = ctx.rule.as_ref().map_or("none", |r| r.id.as_str());
        let req = session.req_header();
        let method = method_label(req.method.as_str());
        let elapsed = ctx.start.elapsed();
        if let Some(t) = &mut ctx.trace {
            t.finish(code);
        }
        self.metrics
            .requests
            .with_label_values(&[route, method, code_label(code)])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if code < 500 && !ctx.aborted && !self.access_log.sample() {
            return;
        }
        info!(
            target: "atrium::access",
            method = req.method.as_str(),
            host = ctx.host.as_str(),
            path = req.uri.path(),
            route,
            upstream = ctx.upstream.map(|u| u.to_string()).unwrap_or_default(),
            status = code,
            bytes = session.body_bytes_sent(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = ctx.request_id.as_str(),
            trace_id = ctx.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
            aborted = ctx.aborted,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_statuses_map_to_the_retry_kinds_that_cover_them() {
        for (status, kinds) in [
            (200, None),
            (404, None),
            (500, Some([RetryOn::Status5xx, RetryOn::Status5xx])),
            (502, Some([RetryOn::GatewayError, RetryOn::Status5xx])),
            (503, Some([RetryOn::GatewayError, RetryOn::Status5xx])),
            (504, Some([RetryOn::GatewayError, RetryOn::Status5xx])),
            (599, Some([RetryOn::Status5xx, RetryOn::Status5xx])),
        ] {
            assert_eq!(status_kind(status), kinds, "{status}");
        }
    }
}
