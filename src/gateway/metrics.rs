//! Gateway metrics. `route` is the GatewayRoute `namespace/name/rule` (or `none`), never the
//! raw path; `method` is one of the standard methods or `OTHER`, so label sets stay bounded.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::table::RouteTable;

/// Metrics of route-table builds.
#[derive(Clone)]
/// `atrium_gateway_config_stale`: 1 while a watch feeding the route table is not current (the
/// gateway keeps serving its last table), computed when scraped.
pub struct ConfigStale {
    watches: crate::watch::WatchHealth,
    gauge: prometheus::IntGauge,
}

impl ConfigStale {
    /// A gauge over `watches`.
    pub fn new(watches: crate::watch::WatchHealth) -> Result<Self, prometheus::Error> {
        let gauge = prometheus::IntGauge::new(
            "atrium_gateway_config_stale",
            "1 while the route table may be out of date because a watch is not current (the last table keeps serving)",
        )?;
        Ok(Self { watches, gauge })
    }
}

impl prometheus::core::Collector for ConfigStale {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set(i64::from(!self.watches.all_current()));
        self.gauge.collect()
    }
}

/// Metrics of route table builds.
pub struct TableMetrics {
    /// `atrium_gateway_route_table_updates_total{result}`: `ok`, or `partial` when objects
    /// were skipped.
    pub updates: IntCounterVec,
    /// `atrium_gateway_upstream_endpoints{service,state}`: endpoints of each backend service.
    pub endpoints: IntGaugeVec,
}

impl TableMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            updates: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_route_table_updates_total",
                    "Route table builds by result (ok, partial: some objects skipped)",
                ),
                &["result"],
            )?,
            endpoints: IntGaugeVec::new(
                Opts::new(
                    "atrium_gateway_upstream_endpoints",
                    "Endpoints of each backend service by state",
                ),
                &["service", "state"],
            )?,
        };
        registry.register(Box::new(m.updates.clone()))?;
        registry.register(Box::new(m.endpoints.clone()))?;
        Ok(m)
    }

    /// Records a build of `table` (`complete`: nothing was skipped).
    pub fn record(&self, table: &RouteTable, complete: bool) {
        self.updates
            .with_label_values(&[if complete { "ok" } else { "partial" }])
            .inc();
        self.endpoints.reset();
        for (service, (ready, draining)) in table.endpoint_counts() {
            self.endpoints
                .with_label_values(&[service.as_str(), "ready"])
                .set(ready);
            self.endpoints
                .with_label_values(&[service.as_str(), "draining"])
                .set(draining);
        }
    }
}

/// Request metrics of the proxy.
#[derive(Clone)]
pub struct GatewayMetrics {
    /// `atrium_gateway_requests_total{route,method,code}`.
    pub requests: IntCounterVec,
    /// `atrium_gateway_request_duration_seconds{route}`.
    pub duration: HistogramVec,
    /// `atrium_gateway_upstream_retries_total{route}`.
    pub retries: IntCounterVec,
    /// `atrium_gateway_ejections_total{service}`.
    pub ejections: IntCounterVec,
    /// `atrium_gateway_upstream_duration_seconds{route}`: from picking the endpoint to its
    /// response header.
    pub upstream: HistogramVec,
}

impl GatewayMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_requests_total",
                    "Requests answered by the gateway",
                ),
                &["route", "method", "code"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "atrium_gateway_request_duration_seconds",
                    "Time from request to the end of the response",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["route"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_upstream_retries_total",
                    "Upstream attempts retried",
                ),
                &["route"],
            )?,
            upstream: HistogramVec::new(
                HistogramOpts::new(
                    "atrium_gateway_upstream_duration_seconds",
                    "Time from connecting to the upstream to its response header",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["route"],
            )?,
            ejections: IntCounterVec::new(
                Opts::new(
                    "atrium_gateway_ejections_total",
                    "Endpoints ejected after failing several times in a row",
                ),
                &["service"],
            )?,
        };
        registry.register(Box::new(m.ejections.clone()))?;
        registry.register(Box::new(m.upstream.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        Ok(m)
    }
}

/// The `method` label: a standard method, or `OTHER`.
pub fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

/// The `code` label: common codes as themselves, the rest by class, so the set stays bounded.
pub fn code_label(code: u16) -> &'static str {
    const COMMON: [(u16, &str); 15] = [
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, label)) = COMMON.iter().find(|(c, _)| *c == code) {
        return label;
    }
    match code / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}
