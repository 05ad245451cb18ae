//! `Microservice`: one service, run in the cluster from an image or registered from instances
//! that run outside it.

// kube's repeated `printcolumn(...)`/`shortname` attributes are not duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::Duration;

/// A service the platform runs, registers, health-checks and rolls when its configuration
/// changes. Set `image` to run it in the cluster, or `endpoints` to register instances that run
/// outside it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "atrium.dev",
    version = "v1alpha1",
    kind = "Microservice",
    namespaced,
    status = "MicroserviceStatus",
    derive = "PartialEq",
    shortname = "ms",
    shortname = "msvc",
    category = "atrium",
    doc = "A Microservice is one service of the platform: Atrium runs it from an image (a Deployment and a Service) or registers instances that run outside the cluster (a Service and an EndpointSlice fed by health checks), wires in its ServiceConfigs and metrics, and reports its health in status.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the service serves its declared spec"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Ready replicas (in-cluster mode)"
    ),
    printcolumn(
        name = "Endpoints",
        type_ = "integer",
        json_path = ".status.endpoints.ready",
        description = "Ready instances that receive traffic"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.image",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.image) != has(self.endpoints)", "message": "set exactly one of image (run the service in the cluster) or endpoints (register instances that run outside it)"},
    {"rule": "!has(self.endpoints) || !has(self.autoscaling)", "message": "autoscaling applies only to services that run in the cluster (spec.image), not to external endpoints"},
    {"rule": "!has(self.endpoints) || !has(self.disruptionBudget)", "message": "disruptionBudget applies only to services that run in the cluster (spec.image), not to external endpoints"},
    {"rule": "!has(self.healthCheck) || !has(self.healthCheck.port) || self.ports.exists(p, p.port == self.healthCheck.port)", "message": "healthCheck.port must be one of the ports declared in spec.ports"},
    {"rule": "!has(self.metrics) || !has(self.endpoints) || self.ports.exists(p, p.port == self.metrics.port)", "message": "metrics.port of a service with external endpoints must be one of the ports declared in spec.ports"}
]))]
pub struct MicroserviceSpec {
    /// Container image to run, e.g. `ghcr.io/acme/users:1.4.2`. Mutually exclusive with
    /// `endpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,

    /// When the kubelet pulls the image: `Always`, `IfNotPresent` or `Never`. Defaults to
    /// Kubernetes' own rule (`Always` for `:latest`, else `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Number of pods to run (in-cluster mode). Ignored while `autoscaling` is set: the
    /// HorizontalPodAutoscaler owns the count then. Works with `kubectl scale`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,

    /// Entrypoint override (the image's ENTRYPOINT is used when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,

    /// Arguments to the entrypoint (the image's CMD is used when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub args: Vec<String>,

    /// Environment variables of the service's container, as in a Pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub env: Vec<EnvVar>,

    /// CPU and memory requests and limits of the service's container, as in a Pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Ports the service listens on. Each becomes a port of the Service; the first one is the
    /// default for health checks and gateway backends.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<ServicePort>,

    /// ServiceAccount the pods run as (default: the namespace's `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Extra labels on the pods (the `app.kubernetes.io/*` labels Atrium sets win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// How Atrium decides that an instance is healthy: an HTTP GET of `path`, or a TCP connect
    /// when `path` is not set. In-cluster it becomes the readiness and liveness probes;
    /// for external endpoints the controller runs the checks itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// ServiceConfigs this service uses. Each is mounted as files under `mountPath`, or, without
    /// `mountPath`, exposed as environment variables. A new revision of a ServiceConfig rolls
    /// the pods (or, with the HotReload strategy, updates mounted files in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub configs: Vec<ConfigRef>,

    /// Names of other Microservices in the same namespace that this service calls. The
    /// `DependenciesReady` condition reports whether they are all ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(inner(length(min = 1, max = 253)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub depends_on: Vec<String>,

    /// Where the service exposes Prometheus metrics. Atrium wires up the scrape: a PodMonitor
    /// when the Prometheus Operator is installed, else `prometheus.io/*` pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,

    /// Scale the Deployment with CPU load through a HorizontalPodAutoscaler (in-cluster mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,

    /// Keep this many pods up during voluntary disruptions (a PodDisruptionBudget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,

    /// Instances that run outside the cluster, registered as a selector-less Service and an
    /// EndpointSlice whose ready flags come from the controller's health checks. Mutually
    /// exclusive with `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub endpoints: Option<Vec<ExternalEndpoint>>,
}

fn default_replicas() -> i32 {
    1
}

/// When the kubelet pulls a container image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    // Pull on every pod start.
    Always,
    // Pull only when the node does not have the image.
    IfNotPresent,
    // Never pull; the image must be on the node.
    Never,
}

/// A port the service listens on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name, unique within the service, e.g. `http` (a DNS label, at most 15 characters,
    /// as Kubernetes requires for named ports).
    #[schemars(length(min = 1, max = 15))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]')", "message": "a port name must be lower-case letters, digits and '-', start and end with a letter or digit, and contain at least one letter (e.g. http, grpc-api)"}]))]
    pub name: String,
    /// Port number, 1-65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// Application protocol hint for the Service port, e.g. `http`, `h2c`, `kubernetes.io/ws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub app_protocol: Option<String>,
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

/// Transport protocol of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// How Atrium decides that an instance is healthy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.timeoutSeconds <= self.periodSeconds", "message": "healthCheck.timeoutSeconds must not be longer than healthCheck.periodSeconds"}
]))]
pub struct HealthCheck {
    /// HTTP path to GET, e.g. `/healthz`; any 2xx or 3xx answer is healthy. Without a path
    /// the check is a TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.startsWith('/')", "message": "healthCheck.path must start with '/'"}]))]
    pub path: Option<String>,
    /// Port to check, one of `spec.ports` (default: the first declared port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Seconds between checks (default 30).
    #[serde(default = "default_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
    /// Seconds to wait for an answer (default 5).
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Consecutive failures after which an instance is taken out of service (default 2, so
    /// an instance leaves after about `periodSeconds × failureThreshold` without a good answer).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Seconds after start before the first check (default 0).
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub initial_delay_seconds: i32,
}

fn default_period() -> i32 {
    30
}
fn default_timeout() -> i32 {
    5
}
fn default_failure_threshold() -> i32 {
    2
}

/// A ServiceConfig this service uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRef {
    /// Name of a ServiceConfig in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Directory to mount the config's keys into as files, e.g. `/etc/users`. Without it the
    /// keys become environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.startsWith('/') && !self.contains(':')", "message": "mountPath must be an absolute path such as /etc/config, without ':'"}]))]
    pub mount_path: Option<String>,
}

/// Where the service exposes Prometheus metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Port that serves metrics.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// HTTP path of the metrics (default `/metrics`).
    #[serde(default = "default_metrics_path")]
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.startsWith('/')", "message": "metrics.path must start with '/'"}]))]
    pub path: String,
    /// Scrape interval, e.g. `30s` (default: Prometheus' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

fn default_metrics_path() -> String {
    "/metrics".to_owned()
}

/// CPU-based autoscaling through a HorizontalPodAutoscaler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"}
]))]
pub struct Autoscaling {
    /// Lower bound of the replica count (default 1).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_replicas: i32,
    /// Upper bound of the replica count.
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: i32,
    /// Average CPU use, as a percentage of the CPU request, to aim for (default 80).
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_cpu_target() -> i32 {
    80
}

/// How many pods must stay up during voluntary disruptions; set exactly one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.minAvailable) != has(self.maxUnavailable)", "message": "set exactly one of disruptionBudget.minAvailable or disruptionBudget.maxUnavailable"}
]))]
pub struct DisruptionBudget {
    /// Pods that must stay available: a number (`2`) or a percentage (`"50%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unavailable: a number (`1`) or a percentage (`"25%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// An instance that runs outside the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEndpoint {
    /// IP address (`203.0.113.7`, `2001:db8::7`) or DNS name (`users.legacy.example.com`).
    #[schemars(length(min = 1, max = 253))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')", "message": "address must be an IP address or a lower-case DNS name such as users.example.com"}]))]
    pub address: String,
    /// Ports of this instance when they differ from `spec.ports`, matched by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub ports: Vec<EndpointPort>,
}

/// A port of one external instance, overriding the spec's port of the same name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Name of a port in `spec.ports`.
    #[schemars(length(min = 1, max = 15))]
    pub name: String,
    /// Port number of this instance, 1-65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// What the controller observed about a Microservice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, `Available`, `DependenciesReady`, `ConfigApplied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Pods that exist (in-cluster mode).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods that run the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the pods, for the scale subresource and HorizontalPodAutoscalers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Instances that receive traffic, out of all registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<EndpointCounts>,
    /// In-cluster address of the service, e.g. `http://users.shop.svc:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The ServiceConfig revision each config of `spec.configs` is running, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config_revisions: BTreeMap<String, String>,
}

/// Instance counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCounts {
    /// Instances that are ready and receive traffic.
    pub ready: i32,
    /// All registered instances.
    pub total: i32,
}
