//! Distributed tracing with OpenTelemetry: W3C Trace Context (`traceparent`, `tracestate`)
//! in and out, spans exported over OTLP/HTTP through a bounded, dropping queue
//! ([`export`]). Configured the way every OpenTelemetry SDK is, by the standard variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns it on,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (e.g. `parentbased_traceidratio` and `0.1`), `OTEL_BSP_*`,
//! `OTEL_EXPORTER_OTLP_HEADERS` and `_TIMEOUT`; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn it off. Without an endpoint nothing is set up and the
//! request paths skip every tracing step.

pub mod export;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use prometheus::Registry;

use self::export::{BatchConfig, BoundedBatchProcessor, ExportMetrics};

/// Tracing could not be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// A variable has a value this build cannot use.
    #[error("{0}")]
    Config(String),
    /// The drop counters could not be registered.
    #[error("trace export metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The export thread could not start.
    #[error("starting the span export thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the environment asks for, once tracing is on.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `service.name` of every span (`OTEL_SERVICE_NAME`, else the program's own).
    pub service_name: String,
    /// Where spans go (for logs; the exporter reads the variables itself).
    pub endpoint: String,
    /// Queue and batch sizes.
    pub batch: BatchConfig,
}

const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Reads the standard variables through `var`: `Ok(None)` when tracing is off.
pub fn settings(
    default_service: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<Settings>, OtelError> {
    let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(OtelError::Config(format!(
                "OTEL_TRACES_EXPORTER={other:?}: only \"otlp\" (or \"none\") is built in"
            )));
        }
    }
    let Some(endpoint) =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
    else {
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(OtelError::Config(format!(
            "OTLP endpoint {endpoint:?} must be an http:// or https:// URL (the collector's OTLP/HTTP port, usually 4318)"
        )));
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol
        && p.trim() != "http/protobuf"
    {
        return Err(OtelError::Config(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={p:?}: this build exports http/protobuf only (the collector's port 4318)"
        )));
    }
    if let Some(s) = set("OTEL_TRACES_SAMPLER") {
        let s = s.trim();
        if !SAMPLERS.contains(&s) {
            return Err(OtelError::Config(format!(
                "OTEL_TRACES_SAMPLER={s:?}: expected one of {}",
                SAMPLERS.join(", ")
            )));
        }
        if s.ends_with("traceidratio")
            && let Some(arg) = set("OTEL_TRACES_SAMPLER_ARG")
            && !arg
                .trim()
                .parse::<f64>()
                .is_ok_and(|r| (0.0..=1.0).contains(&r))
        {
            return Err(OtelError::Config(format!(
                "OTEL_TRACES_SAMPLER_ARG={arg:?}: expected a ratio from 0 to 1"
            )));
        }
    }
    let batch = BatchConfig::from_env(&var).map_err(OtelError::Config)?;
    Ok(Some(Settings {
        service_name: set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service.to_owned()),
        endpoint,
        batch,
    }))
}

/// The settings a process started for this one (a Gateway API data plane) should trace with:
/// this process's `OTEL_*` variables, except its service name (the data plane has its own)
/// and `OTEL_EXPORTER_OTLP_HEADERS`, which may hold a collector's credentials and would land
/// in a Deployment's spec in plain text.
pub fn data_plane_env(var: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    const FORWARDED: &[&str] = &[
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
    ];
    FORWARDED
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), var(k).filter(|v| !v.is_empty())?)))
        .collect()
}

/// A running tracer: spans it starts are batched and exported until [`Tracing::shutdown`].
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl Tracing {
    /// Sets tracing up as the environment says, with the drop counters in `registry`:
    /// `Ok(None)` when it is off.
    pub fn from_env(default_service: &str, registry: &Registry) -> Result<Option<Self>, OtelError> {
        let Some(s) = settings(default_service, |k| std::env::var(k).ok())? else {
            return Ok(None);
        };
        Self::start(&s, registry).map(Some)
    }

    /// Starts the export thread and the provider for `settings`.
    pub fn start(settings: &Settings, registry: &Registry) -> Result<Self, OtelError> {
        let metrics = ExportMetrics::register(registry)?;
        // The HTTP client needs a TLS provider for https:// endpoints; already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let processor = BoundedBatchProcessor::start(settings.batch, metrics, || {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot build the OTLP span exporter; spans are dropped"))
                .ok()
        })
        .map_err(OtelError::Thread)?;
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .with_attributes([KeyValue::new("service.version", crate::version::VERSION)])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("atrium");
        tracing::info!(endpoint = %settings.endpoint, service = %settings.service_name, "exporting traces over OTLP");
        Ok(Self {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// The tracer spans start from.
    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }

    /// The provider (for a `tracing-opentelemetry` layer).
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// The trace context a request carries (`traceparent`, `tracestate`), or an empty one.
    pub fn extract(&self, headers: &http::HeaderMap) -> Context {
        self.propagator.extract(&HeaderReader(headers))
    }

    /// The headers that carry `cx` on to the next hop.
    pub fn inject(&self, cx: &Context) -> Vec<(&'static str, String)> {
        let mut out = HeaderPairs(Vec::with_capacity(2));
        self.propagator.inject_context(cx, &mut out);
        out.0
    }

    /// A server span for an incoming request, continuing the trace its headers carry, named
    /// `METHOD route` (`route` empty: not known yet); the returned context holds it (end it
    /// with [`end_server`]).
    pub fn server_span(
        &self,
        headers: &http::HeaderMap,
        method: &str,
        route: &str,
        path: &str,
    ) -> Context {
        let parent = self.extract(headers);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("url.path", path.to_owned()),
        ];
        let name = if route.is_empty() {
            method.to_owned()
        } else {
            attributes.push(KeyValue::new("http.route", route.to_owned()));
            format!("{method} {route}")
        };
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        parent.with_span(span)
    }

    /// A client span for an outgoing call under `parent` (end it with [`end`]).
    pub fn client_span(&self, parent: &Context, method: &str, url: &str) -> Context {
        let span = self
            .tracer
            .span_builder(method.to_owned())
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("url.full", url.to_owned()),
            ])
            .start_with_context(&self.tracer, parent);
        parent.with_span(span)
    }

    /// Exports what is queued and stops (waits at most a few seconds for the collector).
    pub fn shutdown(&self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// Ends `cx`'s span, failed with `error` if there is one.
pub fn end(cx: &Context, error: Option<&str>) {
    let span = cx.span();
    if let Some(e) = error {
        span.set_status(Status::error(e.to_owned()));
    }
    span.end();
}

/// Records the HTTP status `cx`'s span answered or got (5xx marks it failed).
pub fn record_status(cx: &Context, status: u16) {
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_status(Status::error(status.to_string()));
    }
}

/// Ends `cx`'s server span with the status it answered (5xx marks it failed).
pub fn end_server(cx: &Context, status: u16) {
    record_status(cx, status);
    cx.span().end();
}

/// The trace id of `cx`'s span as 32 hex digits (what trace UIs search for).
pub fn trace_id(cx: &Context) -> String {
    cx.span().span_context().trace_id().to_string()
}

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderPairs(Vec<(&'static str, String)>);

impl Injector for HeaderPairs {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return; // an empty `tracestate` says nothing
        }
        let key = match key {
            "traceparent" => "traceparent",
            "tracestate" => "tracestate",
            _ => return,
        };
        self.0.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Option<Settings>, OtelError> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        settings("atrium-gateway", |k| env.get(k).cloned())
    }

    #[test]
    fn the_standard_variables_turn_tracing_on_and_off() {
        assert_eq!(from(&[]).expect("valid"), None, "no endpoint: off");
        let on = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318")])
            .expect("valid")
            .expect("on");
        assert_eq!(on.service_name, "atrium-gateway");
        let named = from(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_SERVICE_NAME", "edge"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(named.service_name, "edge");
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]).expect("valid"),
                None
            );
        }
    }

    #[test]
    fn values_this_build_cannot_use_are_refused_by_name() {
        let ep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (bad, name) in [
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")], "http://"),
            (
                vec![ep, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![ep, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![ep, ("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    ep,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "2"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
        ] {
            let e = from(&bad).expect_err("refused").to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn data_planes_trace_like_the_controller_without_its_name_or_credentials() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_SERVICE_NAME", "atrium-controller"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer secret"),
            ("HOME", "/root"),
        ]);
        let got = data_plane_env(|k| env.get(k).map(|v| (*v).to_owned()));
        let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER"]
        );
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        let registry = Registry::new();
        let s = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")])
            .expect("valid")
            .expect("on");
        let t = Tracing::start(&s, &registry).expect("starts");
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = t.extract(&headers);
        assert_eq!(trace_id(&cx), "4bf92f3577b34da6a3ce929d0e0e4736");
        let out = t.inject(&cx);
        assert_eq!(
            out,
            vec![(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
            )]
        );
        t.shutdown();
    }
}
