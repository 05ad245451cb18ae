//! Controller metrics. Reconcile metrics use controller-runtime's names and labels so
//! existing dashboards and alerts work unchanged.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Metrics of every reconciler, registered into the controller's registry.
#[derive(Clone)]
pub struct ControllerMetrics {
    /// `controller_runtime_reconcile_total{controller,result}`; result is `success`, `error`,
    /// `requeue` or `requeue_after`.
    pub reconcile_total: IntCounterVec,
    /// `controller_runtime_reconcile_errors_total{controller}`.
    pub reconcile_errors: IntCounterVec,
    /// `controller_runtime_reconcile_time_seconds{controller}`.
    pub reconcile_time: HistogramVec,
    /// `atrium_reconcile_errors_by_category_total{controller,category}`: bounded error classes.
    pub errors_by_category: IntCounterVec,
    /// `atrium_microservices{condition,status}`: Microservices by condition status.
    pub microservices: IntGaugeVec,
    /// `atrium_serviceconfig_revisions_total`: revisions created.
    pub serviceconfig_revisions: IntCounter,
    /// `atrium_serviceconfig_rollout_seconds`: from a new revision to every consumer up to date.
    pub serviceconfig_rollout_seconds: Histogram,
}

impl ControllerMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            reconcile_total: IntCounterVec::new(
                Opts::new(
                    "controller_runtime_reconcile_total",
                    "Total number of reconciliations per controller",
                ),
                &["controller", "result"],
            )?,
            reconcile_errors: IntCounterVec::new(
                Opts::new(
                    "controller_runtime_reconcile_errors_total",
                    "Total number of reconciliation errors per controller",
                ),
                &["controller"],
            )?,
            reconcile_time: HistogramVec::new(
                HistogramOpts::new(
                    "controller_runtime_reconcile_time_seconds",
                    "Length of time per reconciliation per controller",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["controller"],
            )?,
            errors_by_category: IntCounterVec::new(
                Opts::new(
                    "atrium_reconcile_errors_by_category_total",
                    "Reconcile errors by controller and error category",
                ),
                &["controller", "category"],
            )?,
            microservices: IntGaugeVec::new(
                Opts::new(
                    "atrium_microservices",
                    "Microservices by condition type and status",
                ),
                &["condition", "status"],
            )?,
            serviceconfig_revisions: IntCounter::new(
                "atrium_serviceconfig_revisions_total",
                "ServiceConfig revisions created",
            )?,
            serviceconfig_rollout_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "atrium_serviceconfig_rollout_seconds",
                    "Time from a new ServiceConfig revision to every consumer running it",
                )
                .buckets(vec![
                    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.serviceconfig_revisions.clone()))?;
        registry.register(Box::new(m.serviceconfig_rollout_seconds.clone()))?;
        registry.register(Box::new(m.reconcile_total.clone()))?;
        registry.register(Box::new(m.reconcile_errors.clone()))?;
        registry.register(Box::new(m.reconcile_time.clone()))?;
        registry.register(Box::new(m.errors_by_category.clone()))?;
        registry.register(Box::new(m.microservices.clone()))?;
        Ok(m)
    }

    /// Starts every series of `controller` at zero, as controller-runtime does, so dashboards
    /// and alerts see 0 rather than no data before the first reconcile or error.
    pub fn init(&self, controller: &str) {
        for result in ["success", "error"] {
            self.reconcile_total
                .with_label_values(&[controller, result]);
        }
        self.reconcile_errors.with_label_values(&[controller]);
    }
}
