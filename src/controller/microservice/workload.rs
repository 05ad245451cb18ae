//! Pure builders for the in-cluster children of a Microservice: Deployment and Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource,
    HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service, ServicePort as K8sServicePort,
    ServiceSpec, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::config::Configs;
use super::labels;
use crate::api::Microservice;
use crate::api::microservice::Protocol;

/// How a Microservice's metrics get scraped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrape {
    /// No `spec.metrics`.
    None,
    /// `prometheus.io/*` pod annotations (no Prometheus Operator in the cluster).
    Annotations,
    /// A PodMonitor (the Prometheus Operator is installed); no annotations, no double scrape.
    PodMonitor,
}

/// Name of the container port that serves metrics: a declared port of the same number, or
/// `metrics` (added to the container) when the metrics port is not declared.
pub fn metrics_port_name(ms: &Microservice) -> Option<String> {
    let m = ms.spec.metrics.as_ref()?;
    Some(
        ms.spec
            .ports
            .iter()
            .find(|p| p.port == m.port)
            .map_or_else(|| "metrics".to_owned(), |p| p.name.clone()),
    )
}

fn protocol(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
    .to_owned()
}

fn probe(ms: &Microservice) -> Option<Probe> {
    let hc = ms.spec.health_check.as_ref()?;
    let port = hc
        .port
        .or_else(|| ms.spec.ports.first().map(|p| p.port))
        .map(IntOrString::Int)?;
    let (http_get, tcp_socket) = match &hc.path {
        Some(path) => (
            Some(HTTPGetAction {
                path: Some(path.clone()),
                port,
                ..HTTPGetAction::default()
            }),
            None,
        ),
        None => (None, Some(TCPSocketAction { port, host: None })),
    };
    Some(Probe {
        http_get,
        tcp_socket,
        period_seconds: Some(hc.period_seconds),
        timeout_seconds: Some(hc.timeout_seconds),
        failure_threshold: Some(hc.failure_threshold),
        initial_delay_seconds: Some(hc.initial_delay_seconds),
        success_threshold: Some(1),
        ..Probe::default()
    })
}

/// The Deployment of an in-cluster Microservice.
pub fn deployment(ms: &Microservice, configs: &Configs, scrape: Scrape) -> Deployment {
    let name = ms.name_any();
    let spec = &ms.spec;
    let mut pod_labels = spec.pod_labels.clone();
    pod_labels.extend(labels::standard(ms));
    let mut annotations = spec.pod_annotations.clone();
    if let Some(revisions) = configs.rollout_annotation() {
        annotations.insert(labels::CONFIG_REVISIONS_ANNOTATION.to_owned(), revisions);
    }
    if let (Scrape::Annotations, Some(m)) = (scrape, &spec.metrics) {
        annotations.insert("prometheus.io/scrape".to_owned(), "true".to_owned());
        annotations.insert("prometheus.io/port".to_owned(), m.port.to_string());
        annotations.insert("prometheus.io/path".to_owned(), m.path.clone());
    }

    let mut ports: Vec<ContainerPort> = spec
        .ports
        .iter()
        .map(|p| ContainerPort {
            name: Some(p.name.clone()),
            container_port: p.port,
            protocol: Some(protocol(p.protocol)),
            ..ContainerPort::default()
        })
        .collect();
    if let Some(m) = &spec.metrics
        && !spec.ports.iter().any(|p| p.port == m.port)
    {
        ports.push(ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: m.port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        });
    }

    let mut volumes = vec![];
    let mut mounts = vec![];
    let mut env_from = vec![];
    for (i, c) in configs.resolved.iter().enumerate() {
        match &c.mount_path {
            Some(path) => {
                let volume = format!("config-{i}");
                volumes.push(Volume {
                    name: volume.clone(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: c.config_map.clone(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                mounts.push(VolumeMount {
                    name: volume,
                    mount_path: path.clone(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                });
            }
            None => env_from.push(EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: c.config_map.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }),
        }
    }

    let probe = probe(ms);
    let container = Container {
        name: labels::CONTAINER_NAME.to_owned(),
        image: spec.image.clone(),
        image_pull_policy: spec.image_pull_policy.map(|p| format!("{p:?}")),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        env_from: (!env_from.is_empty()).then_some(env_from),
        resources: spec.resources.clone(),
        ports: Some(ports),
        readiness_probe: probe.clone(),
        liveness_probe: probe,
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        ..Container::default()
    };

    Deployment {
        metadata: labels::child_meta(ms),
        spec: Some(DeploymentSpec {
            // With autoscaling the HorizontalPodAutoscaler owns the count: leave it out so
            // server-side apply does not fight it.
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels::selector(&name)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!annotations.is_empty()).then_some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    service_account_name: spec.service_account_name.clone(),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Service: with a selector for in-cluster pods, without one for external endpoints (the
/// controller owns that Service's EndpointSlices).
pub fn service(ms: &Microservice) -> Service {
    let selector: Option<BTreeMap<String, String>> = ms
        .spec
        .image
        .is_some()
        .then(|| labels::selector(&ms.name_any()));
    Service {
        metadata: labels::child_meta(ms),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector,
            ports: Some(
                ms.spec
                    .ports
                    .iter()
                    .map(|p| K8sServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::Int(p.port)),
                        protocol: Some(protocol(p.protocol)),
                        app_protocol: p.app_protocol.clone(),
                        ..K8sServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// In-cluster URL of the service's first port.
pub fn url(ms: &Microservice) -> Option<String> {
    let port = ms.spec.ports.first()?;
    Some(format!(
        "http://{}.{}.svc.cluster.local:{}",
        ms.name_any(),
        ms.namespace().unwrap_or_default(),
        port.port
    ))
}

#[cfg(test)]
mod tests {
    use super::super::sample as ms;
    use super::*;

    fn container(d: &Deployment) -> Container {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
            .containers[0]
            .clone()
    }

    #[test]
    fn probes_follow_the_health_check() {
        // (health check, expected HTTP path, expected TCP port, expected probe port)
        let cases = [
            (
                serde_json::json!({"path": "/healthz"}),
                Some("/healthz"),
                false,
                8080,
            ),
            (
                serde_json::json!({"path": "/ready", "port": 9000}),
                Some("/ready"),
                false,
                9000,
            ),
            (serde_json::json!({}), None, true, 8080),
        ];
        for (hc, path, tcp, port) in cases {
            let m = ms(serde_json::json!({
                "image": "users:1",
                "ports": [{"name": "http", "port": 8080}],
                "healthCheck": hc,
            }));
            let c = container(&deployment(&m, &Configs::default(), Scrape::None));
            let p = c.readiness_probe.expect("a readiness probe");
            assert_eq!(p.http_get.as_ref().and_then(|h| h.path.as_deref()), path);
            assert_eq!(p.tcp_socket.is_some(), tcp);
            let got = p.http_get.map(|h| h.port).or(p.tcp_socket.map(|t| t.port));
            assert_eq!(got, Some(IntOrString::Int(port)));
            assert!(c.liveness_probe.is_some());
        }
        let none =
            ms(serde_json::json!({"image": "users:1", "ports": [{"name": "http", "port": 8080}]}));
        let c = container(&deployment(&none, &Configs::default(), Scrape::None));
        assert!(c.readiness_probe.is_none(), "no health check, no probe");
    }

    #[test]
    fn metrics_ports_and_scrape_annotations() {
        // (metrics port, scrape mode, expected metrics port name, annotations present)
        let cases = [
            (8080, Scrape::Annotations, "http", true),
            (9090, Scrape::Annotations, "metrics", true),
            (9090, Scrape::PodMonitor, "metrics", false),
        ];
        for (port, scrape, name, annotated) in cases {
            let m = ms(serde_json::json!({
                "image": "users:1",
                "ports": [{"name": "http", "port": 8080}],
                "metrics": {"port": port},
            }));
            assert_eq!(metrics_port_name(&m).as_deref(), Some(name));
            let d = deployment(&m, &Configs::default(), scrape);
            let ports: Vec<_> = container(&d)
                .ports
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.name)
                .collect();
            assert!(ports.contains(&name.to_owned()), "{ports:?}");
            let annotations = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .unwrap_or_default();
            assert_eq!(
                annotations.get("prometheus.io/port").cloned(),
                annotated.then(|| port.to_string()),
                "{scrape:?}"
            );
        }
    }

    #[test]
    fn replicas_are_left_to_an_autoscaler() {
        for (spec, replicas) in [
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}], "replicas": 3}),
                Some(3),
            ),
            (
                serde_json::json!({"image": "u:1", "ports": [{"name": "http", "port": 8080}], "replicas": 3, "autoscaling": {"maxReplicas": 5}}),
                None,
            ),
        ] {
            let d = deployment(&ms(spec), &Configs::default(), Scrape::None);
            assert_eq!(d.spec.and_then(|s| s.replicas), replicas);
        }
    }

    #[test]
    fn the_service_has_every_port_and_the_url_the_first() {
        let m = ms(serde_json::json!({
            "image": "users:1",
            "ports": [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9000}],
        }));
        let svc = service(&m);
        let ports: Vec<(Option<String>, i32)> = svc
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.name, p.port))
            .collect();
        assert_eq!(
            ports,
            [(Some("http".into()), 8080), (Some("grpc".into()), 9000)]
        );
        assert_eq!(
            url(&m).as_deref(),
            Some("http://users.shop.svc.cluster.local:8080")
        );
    }
}
