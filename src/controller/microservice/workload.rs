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
