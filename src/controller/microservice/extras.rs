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

#[cfg(test)]
mod tests {
    use super::super::sample as ms;
    use super::*;

    #[test]
    fn each_optional_child_exists_only_while_asked_for() {
        // (spec, hpa, pdb, pod monitor)
        let cases = [
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}]}),
                false,
                false,
                false,
            ),
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}], "autoscaling": {"maxReplicas": 4}}),
                true,
                false,
                false,
            ),
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}], "disruptionBudget": {"minAvailable": 1}}),
                false,
                true,
                false,
            ),
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}], "metrics": {"port": 8080}}),
                false,
                false,
                true,
            ),
        ];
        for (spec, h, p, m) in cases {
            let svc = ms(spec.clone());
            assert_eq!(hpa(&svc).is_some(), h, "{spec}");
            assert_eq!(pdb(&svc).is_some(), p, "{spec}");
            assert_eq!(pod_monitor(&svc).is_some(), m, "{spec}");
        }
    }

    #[test]
    fn children_target_the_deployment_and_its_pods() {
        let svc = ms(serde_json::json!({
            "image": "u:1",
            "ports": [{"name": "http", "port": 8080}],
            "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
            "disruptionBudget": {"minAvailable": 1},
            "metrics": {"port": 9090, "path": "/m"},
        }));
        let h = hpa(&svc).and_then(|h| h.spec).expect("hpa spec");
        assert_eq!(
            (
                h.scale_target_ref.kind.as_str(),
                h.scale_target_ref.name.as_str()
            ),
            ("Deployment", "users")
        );
        assert_eq!((h.min_replicas, h.max_replicas), (Some(2), 6));
        let p = pdb(&svc).and_then(|p| p.spec).expect("pdb spec");
        assert_eq!(
            p.selector.and_then(|s| s.match_labels),
            Some(labels::selector("users"))
        );
        let monitor = pod_monitor(&svc).expect("pod monitor");
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
        assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["path"], "/m");
    }
}
