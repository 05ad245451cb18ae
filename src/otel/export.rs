//! The span pipeline between the request path and the collector: a bounded queue that drops
//! (and counts) rather than blocks when the collector is slow or down, and one background
//! thread that batches spans and exports them over OTLP. The SDK's own batch processor drops
//! silently; an operator needs to see drops in Prometheus.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// How the queue and batches are sized (the `OTEL_BSP_*` variables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Spans waiting at most (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048); more are dropped.
    pub max_queue_size: usize,
    /// Spans per export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_export_batch_size: usize,
    /// How long a partial batch waits (`OTEL_BSP_SCHEDULE_DELAY`, 5000 ms).
    pub scheduled_delay: Duration,
    /// How long one export may take (`OTEL_BSP_EXPORT_TIMEOUT`, 30000 ms).
    pub export_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

impl BatchConfig {
    /// The defaults, overridden by whichever `OTEL_BSP_*` variable `var` returns.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut c = Self::default();
        let num = |name: &str| -> Result<Option<u64>, String> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| format!("{name}={v:?} is not a whole number"))
                })
                .transpose()
        };
        if let Some(n) = num("OTEL_BSP_MAX_QUEUE_SIZE")? {
            c.max_queue_size = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        if let Some(n) = num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")? {
            c.max_export_batch_size = usize::try_from(n).unwrap_or(usize::MAX).max(1);
        }
        c.max_export_batch_size = c.max_export_batch_size.min(c.max_queue_size);
        if let Some(ms) = num("OTEL_BSP_SCHEDULE_DELAY")? {
            c.scheduled_delay = Duration::from_millis(ms);
        }
        if let Some(ms) = num("OTEL_BSP_EXPORT_TIMEOUT")? {
            c.export_timeout = Duration::from_millis(ms);
        }
        Ok(c)
    }
}

/// The pipeline's counters, registered into the process's metrics registry.
#[derive(Clone, Debug)]
pub struct ExportMetrics {
    /// Spans handed to the collector.
    pub exported: IntCounter,
    /// Spans lost, by reason: `queue_full` (the collector is slower than the traffic) or
    /// `export_failed` (the collector refused them or could not be reached).
    pub dropped: IntCounterVec,
}

impl ExportMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let exported = IntCounter::new(
            "atrium_trace_spans_exported_total",
            "Spans exported to the OTLP collector",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "atrium_trace_spans_dropped_total",
                "Spans dropped instead of exported, by reason (queue_full, export_failed)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        Ok(Self { exported, dropped })
    }
}

enum Message {
    Span(Box<SpanData>),
    /// The provider's resource (`service.name`, …), which the exporter sends with every batch.
    Resource(Box<Resource>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
}

/// A [`SpanProcessor`] whose `on_end` never blocks: a full queue drops the span and counts it.
#[derive(Debug)]
pub struct BoundedBatchProcessor {
    queue: SyncSender<Message>,
    metrics: ExportMetrics,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Span(_) => "Span",
            Message::Resource(_) => "Resource",
            Message::Flush(_) => "Flush",
        })
    }
}

impl BoundedBatchProcessor {
    /// Starts the export thread. `make_exporter` runs on that thread, inside the
    /// current-thread runtime the exports run on (the OTLP HTTP client needs one).
    pub fn start<E, F>(
        config: BatchConfig,
        metrics: ExportMetrics,
        make_exporter: F,
    ) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Option<E> + Send + 'static,
    {
        let (queue, rx) = sync_channel(config.max_queue_size);
        let m = metrics.clone();
        let worker = std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                let exporter = rt.block_on(async { make_exporter() });
                let Some(exporter) = exporter else { return };
                run(&rt, exporter, &rx, config, &m);
            })?;
        Ok(Self {
            queue,
            metrics,
            worker: Mutex::new(Some(worker)),
        })
    }
}

/// The export loop: a batch goes out when it is full, when the oldest span in it has waited
/// `scheduled_delay`, or on a flush; it ends when every sender is gone.
fn run<E: SpanExporter>(
    rt: &tokio::runtime::Runtime,
    mut exporter: E,
    rx: &Receiver<Message>,
    config: BatchConfig,
    metrics: &ExportMetrics,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(config.max_export_batch_size);
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            config.scheduled_delay.saturating_sub(t.elapsed())
        });
        let (flush, done) = match rx.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                oldest.get_or_insert_with(Instant::now);
                (None, false)
            }
            Ok(Message::Flush(ack)) => (Some(ack), false),
            Ok(Message::Resource(r)) => {
                exporter.set_resource(&r);
                (None, false)
            }
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        let due = oldest.is_some_and(|t| t.elapsed() >= config.scheduled_delay);
        if !batch.is_empty()
            && (flush.is_some() || done || due || batch.len() >= config.max_export_batch_size)
        {
            export(rt, &exporter, std::mem::take(&mut batch), config, metrics);
            oldest = None;
        }
        if let Some(ack) = flush {
            let _ = ack.send(());
        }
        if done {
            let _ = exporter.shutdown();
            return;
        }
    }
}

fn export<E: SpanExporter>(
    rt: &tokio::runtime::Runtime,
    exporter: &E,
    batch: Vec<SpanData>,
    config: BatchConfig,
    metrics: &ExportMetrics,
) {
    let n = batch.len() as u64;
    let result = rt.block_on(async {
        tokio::time::timeout(config.export_timeout, exporter.export(batch))
            .await
            .unwrap_or(Err(OTelSdkError::Timeout(config.export_timeout)))
    });
    match result {
        Ok(()) => metrics.exported.inc_by(n),
        Err(e) => {
            // Once per failure streak would need state; the counter carries the volume.
            tracing::debug!(error = %e, spans = n, "span export failed");
            metrics
                .dropped
                .with_label_values(&["export_failed"])
                .inc_by(n);
        }
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.metrics
                    .dropped
                    .with_label_values(&["queue_full"])
                    .inc();
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Sent before any span, so it waits for room like nothing else does.
        let _ = self
            .queue
            .send(Message::Resource(Box::new(resource.clone())));
    }

    fn force_flush(&self) -> OTelSdkResult {
        let (ack, done) = sync_channel(1);
        self.queue
            .send(Message::Flush(ack))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        done.recv_timeout(Duration::from_secs(35))
            .map_err(|_| OTelSdkError::Timeout(Duration::from_secs(35)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (ack, done) = sync_channel(1);
        if self.queue.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
        // The thread ends when the last sender (this processor's) is dropped; it is not
        // joined here so a hung collector cannot hold shutdown past `timeout`.
        let _ = self.worker.lock().map(|mut w| w.take());
        Ok(())
    }
}

/// Shares one processor between the provider and whoever else must flush it.
pub type Shared = Arc<BoundedBatchProcessor>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn batch_settings_follow_the_otel_bsp_variables() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ]);
        let c = BatchConfig::from_env(|k| env.get(k).map(|v| (*v).to_owned())).expect("valid");
        assert_eq!(c.max_queue_size, 100);
        assert_eq!(
            c.max_export_batch_size, 100,
            "a batch never exceeds the queue"
        );
        assert_eq!(c.scheduled_delay, Duration::from_millis(200));
        assert_eq!(c.export_timeout, Duration::from_secs(30));
        let bad = BatchConfig::from_env(|k| (k == "OTEL_BSP_SCHEDULE_DELAY").then(|| "5s".into()));
        assert!(
            bad.expect_err("not a number")
                .contains("OTEL_BSP_SCHEDULE_DELAY")
        );
    }
}
