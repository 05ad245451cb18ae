//! Pure builders for the optional children: HorizontalPodAutoscaler, PodDisruptionBudget and
//! PodMonitor. Each is present only while the spec asks for it.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::labels;
use super::workload::metrics_port_name;
use crate::api::Microservice;

/// The HorizontalPodAutoscaler, when `spec.autoscaling` is set.
pub fn hpa(ms: &Microservice) -> Option<HorizontalPodAutoscaler> {
    let a = ms.spec.autoscaling.as_ref()?;
    Some(HorizontalPodAutoscaler {
        metadata: labels::child_meta(ms),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: ms.name_any(),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(a.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            behavior: None,
        }),
        status: None,
    })
}

/// The PodDisruptionBudget, when `spec.disruptionBudget` is set.
pub fn pdb(ms: &Microservice) -> Option<PodDisruptionBudget> {
    let b = ms.spec.disruption_budget.as_ref()?;
    Some(PodDisruptionBudget {
        metadata: labels::child_meta(ms),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: b.min_available.clone(),
            max_unavailable: b.max_unavailable.clone(),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&ms.name_any())),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// The PodMonitor (`monitoring.coreos.com/v1`) as JSON, when `spec.metrics` is set.
pub fn pod_monitor(ms: &Microservice) -> Option<Value> {
    let m = ms.spec.metrics.as_ref()?;
    let port = metrics_port_name(ms)?;
    let mut endpoint = json!({"port": port, "path": m.path});
    if let Some(interval) = &m.interval {
        endpoint["interval"] = json!(interval.0);
    }
    Some(json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": labels::child_meta(ms),
        "spec": {
            "selector": {"matchLabels": labels::selector(&ms.name_any())},
            "podMetricsEndpoints": [endpoint],
        },
    }))
}
