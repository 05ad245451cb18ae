//! The gateway's part of a distributed trace: a server span per request, continuing the
//! caller's trace (W3C `traceparent`) or starting one, and a client span per upstream attempt
//! (a retry is a second attempt span), whose context goes upstream in `traceparent`. The route
//! and the status are span attributes; the trace id goes into the access log line and the
//! `x-trace-id` response header (for support tickets). Only built when tracing is on.

use std::net::SocketAddr;

use opentelemetry::trace::TraceContextExt;
use opentelemetry::{Context, KeyValue};
use pingora::http::RequestHeader;

use crate::otel::{self, Tracing, trace_id};

/// One request's spans.
pub struct RequestTrace {
    server: Context,
    attempt: Option<Context>,
    method: String,
    /// The trace id, as the `x-trace-id` header and the access log show it.
    pub trace_id: String,
}

impl RequestTrace {
    /// Starts the server span, a child of the trace context `req` carries.
    pub fn start(t: &Tracing, req: &RequestHeader, host: &str, tls: bool) -> Self {
        let method = req.method.as_str().to_owned();
        // Named by the route once one matches (`route`); unmatched requests keep the method.
        let server = t.server_span(&req.headers, &method, "", req.uri.path());
        let span = server.span();
        span.set_attribute(KeyValue::new(
            "url.scheme",
            if tls { "https" } else { "http" },
        ));
        span.set_attribute(KeyValue::new("server.address", host.to_owned()));
        let trace_id = trace_id(&server);
        Self {
            server,
            attempt: None,
            method,
            trace_id,
        }
    }

    /// The route the request matched (`http.route`, and the span's name).
    pub fn route(&self, route: &str) {
        let span = self.server.span();
        span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        span.update_name(format!("{} {route}", self.method));
    }

    /// A new upstream attempt to `addr` (`tries` counts from 1).
    pub fn attempt(&mut self, t: &Tracing, addr: SocketAddr, tries: u32) {
        self.end_attempt(Some("retried"));
        let cx = t.client_span(&self.server, &self.method, &format!("http://{addr}"));
        {
            let span = cx.span();
            span.set_attribute(KeyValue::new("server.address", addr.ip().to_string()));
            span.set_attribute(KeyValue::new("server.port", i64::from(addr.port())));
            if tries > 1 {
                let resends = i64::from(tries - 1);
                span.set_attribute(KeyValue::new("http.request.resend_count", resends));
            }
        }
        self.attempt = Some(cx);
    }

    /// The headers that carry the current attempt's context upstream.
    pub fn upstream_headers(&self, t: &Tracing) -> Vec<(&'static str, String)> {
        t.inject(self.attempt.as_ref().unwrap_or(&self.server))
    }

    /// The upstream's answer to the current attempt.
    pub fn upstream_status(&self, status: u16) {
        if let Some(cx) = &self.attempt {
            otel::record_status(cx, status);
        }
    }

    /// The current attempt failed with `error` (connect failure, timeout, reset).
    pub fn attempt_failed(&mut self, error: &str) {
        if let Some(cx) = &self.attempt {
            cx.span()
                .set_attribute(KeyValue::new("error.type", error.to_owned()));
        }
        self.end_attempt(Some(error));
    }

    fn end_attempt(&mut self, error: Option<&str>) {
        if let Some(cx) = self.attempt.take() {
            otel::end(&cx, error);
        }
    }

    /// Ends every span with the status the client got (0: none was written).
    pub fn finish(&mut self, status: u16) {
        self.end_attempt(None);
        if status > 0 {
            otel::end_server(&self.server, status);
        } else {
            otel::end(&self.server, Some("0")); // no response was written
        }
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        // A request pingora abandons before `logging` still ends its spans (ending twice is
        // a no-op).
        self.end_attempt(None);
        self.server.span().end();
    }
}
