//! Logging setup: `tracing` with text or JSON output, filtered by `RUST_LOG` or `--log-level`;
//! with tracing on ([`crate::otel`]), `tracing` spans of Atrium (reconciles) and of the kube
//! client (each API request) also go out as OpenTelemetry spans, whatever the log level.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Errors while setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter did not parse.
    #[error("invalid log level or filter {filter:?}: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parser's error.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("logging was already initialised: {0}")]
    Init(String),
}

/// kube's HTTP layer logs every failed request at ERROR (each retry of each watch while the
/// API server is away); Atrium's watches and reconcilers log those failures themselves, once
/// per streak, so that layer is off unless the filter names `kube_client` itself.
fn effective_filter(filter: &str) -> String {
    if filter.contains("kube_client") {
        filter.to_owned()
    } else {
        format!("{filter},kube_client::client::builder=off")
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    init_traced(format, level, None)
}

/// Like [`init`], and exports spans through `tracing` when given: Atrium's own at INFO (a
/// reconcile each, with the object's identity) and the kube client's per-request spans
/// (DEBUG), so every API call of a reconcile is its child.
pub fn init_traced(
    format: LogFormat,
    level: &str,
    tracing: Option<&crate::otel::Tracing>,
) -> Result<(), TelemetryError> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let Some(t) = tracing else {
        return init_logs(format, level);
    };
    let env_filter = log_filter(level)?;
    let spans = Targets::new()
        .with_target("atrium", LevelFilter::INFO)
        .with_target("kube_client::client::builder", LevelFilter::DEBUG);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(t.provider().tracer("atrium"))
        .with_filter(spans);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(env_filter).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_filter(env_filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Init(e.to_string()))
}

/// The log filter: `RUST_LOG` when set, else `level`.
fn log_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) if !f.is_empty() => f,
        _ => level.to_owned(),
    };
    EnvFilter::try_new(effective_filter(&filter))
        .map_err(|source| TelemetryError::Filter { filter, source })
}

fn init_logs(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let env_filter = log_filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| TelemetryError::Init(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_request_errors_are_left_to_our_own_logs_unless_asked_for() {
        assert_eq!(
            effective_filter("info"),
            "info,kube_client::client::builder=off"
        );
        assert_eq!(
            effective_filter("info,kube_client=debug"),
            "info,kube_client=debug"
        );
        assert!(EnvFilter::try_new(effective_filter("warn,atrium=debug")).is_ok());
    }
}
