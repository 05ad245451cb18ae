//! State shared by all reconciles: the client, caches, metrics, events and health checks.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use super::events::Events;
use super::health_checks::HealthChecks;
use super::metrics::ControllerMetrics;
use crate::api::{GatewayRoute, Microservice, ServiceConfig};
use k8s_openapi::api::core::v1::Service;
use std::sync::OnceLock;

/// How long the answer to "is the Prometheus Operator installed?" is trusted.
const CAPABILITY_TTL: Duration = Duration::from_secs(60);

/// Everything a reconcile needs besides the object.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Only this namespace is watched, when set.
    pub namespace: Option<String>,
    /// Metrics.
    pub metrics: ControllerMetrics,
    /// Event publisher.
    pub events: Events,
    /// Health checks of external instances.
    pub health_checks: HealthChecks,
    /// Cache of Microservices (for dependencies).
    pub microservices: Store<Microservice>,
    /// Cache of ServiceConfigs (for config wiring).
    pub configs: Store<ServiceConfig>,
    /// Cache of EndpointSlices (for endpoint counts and stale external slices).
    pub slices: Store<EndpointSlice>,
    /// Per-object memory: consecutive failures (backoff) and which optional children exist.
    pub memory: Mutex<HashMap<ObjectRef<Microservice>, Memory>>,
    /// Cache of GatewayRoutes (for conflicts), set when their controller starts.
    pub routes: OnceLock<Store<GatewayRoute>>,
    /// Cache of Services (for GatewayRoute backends and unchanged-Service checks), set when
    /// the route controller starts.
    pub services: OnceLock<Store<Service>>,
    /// Cache of Deployments (for unchanged-Deployment checks), set when the Microservice
    /// controller starts.
    pub deployments: OnceLock<Store<k8s_openapi::api::apps::v1::Deployment>>,
    /// Which HorizontalPodAutoscalers and PodDisruptionBudgets exist (metadata only): a
    /// Microservice that asks for none deletes one only when it is there.
    pub optional: OptionalChildren,
    /// Consecutive failed reconciles of each ServiceConfig.
    pub config_failures: Mutex<HashMap<ObjectRef<ServiceConfig>, u32>>,
    pod_monitors: Mutex<Option<(bool, Instant)>>,
    caches: tokio::sync::watch::Receiver<bool>,
}

/// What the controller remembers about one Microservice between reconciles.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Consecutive failed reconciles.
    pub failures: u32,
    /// Optional children believed to exist (`None` after a restart: assume any may).
    pub children: Option<Children>,
    /// Replicas last applied to the Deployment.
    pub replicas: Option<i32>,
    /// Hash of the pod template last applied and the Deployment generation it arrived in.
    pub template: Option<(u64, i64)>,
    /// ConfigMaps this Microservice already holds as an owner (no need to patch them again).
    pub held: std::collections::BTreeSet<String>,
    /// A `RollingOut` Event was published for the rollout in progress (its end is then
    /// `RolledOut`, else `BecameReady`).
    pub rollout_announced: bool,
    /// The last apply of each child kind ("Deployment", "Service"), to skip unchanged ones.
    pub applied: HashMap<&'static str, super::apply::Applied>,
}

/// Metadata caches of the optional children that the Microservice controller deletes when
/// the spec stops asking for them.
#[derive(Clone)]
pub struct OptionalChildren {
    /// HorizontalPodAutoscalers.
    pub hpas: Store<PartialObjectMeta<HorizontalPodAutoscaler>>,
    /// PodDisruptionBudgets.
    pub pdbs: Store<PartialObjectMeta<PodDisruptionBudget>>,
}

/// Whether `store` holds an object named `name` in namespace `ns`.
pub fn cached<K>(store: &Store<K>, ns: &str, name: &str) -> bool
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::new(name).within(ns)).is_some()
}

/// Optional children of a Microservice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Children {
    /// A HorizontalPodAutoscaler.
    pub hpa: bool,
    /// A PodDisruptionBudget.
    pub pdb: bool,
    /// A PodMonitor.
    pub pod_monitor: bool,
    /// A Deployment (in-cluster mode).
    pub deployment: bool,
}

impl Context {
    /// Builds the context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        namespace: Option<String>,
        metrics: ControllerMetrics,
        events: Events,
        health_checks: HealthChecks,
        microservices: Store<Microservice>,
        configs: Store<ServiceConfig>,
        slices: Store<EndpointSlice>,
        optional: OptionalChildren,
    ) -> Self {
        // kube's `Store::wait_until_ready` wakes only the last of several concurrent waiters
        // (a oneshot receiver behind it keeps one waker), so exactly one task waits for the
        // ServiceConfig, EndpointSlice and optional-children caches and opens a gate every
        // reconcile can await.
        // The Microservice cache is not touched: kube's own applier waits on it before the
        // first reconcile, and a second waiter could steal its wake-up.
        let (open, caches) = tokio::sync::watch::channel(false);
        let (c, s, o) = (configs.clone(), slices.clone(), optional.clone());
        tokio::spawn(async move {
            let _ = c.wait_until_ready().await;
            let _ = s.wait_until_ready().await;
            let _ = o.hpas.wait_until_ready().await;
            let _ = o.pdbs.wait_until_ready().await;
            let _ = open.send(true);
        });
        Self {
            client,
            namespace,
            metrics,
            events,
            health_checks,
            microservices,
            configs,
            slices,
            optional,
            memory: Mutex::new(HashMap::new()),
            config_failures: Mutex::new(HashMap::new()),
            routes: OnceLock::new(),
            services: OnceLock::new(),
            deployments: OnceLock::new(),
            pod_monitors: Mutex::new(None),
            caches,
        }
    }

    /// Resolves once the ServiceConfig, EndpointSlice and optional-children caches have listed
    /// everything (at once after that). The Microservice cache is ready before any reconcile runs.
    pub async fn caches_ready(&self) {
        let mut rx = self.caches.clone();
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// An API handle for namespace `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Runs `f` on the memory of `key`.
    pub fn remember<T>(
        &self,
        key: &ObjectRef<Microservice>,
        f: impl FnOnce(&mut Memory) -> T,
    ) -> T {
        let mut mem = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        f(mem.entry(key.clone()).or_default())
    }

    /// Runs `f` on the failure count of ServiceConfig `key`.
    pub fn remember_config<T>(
        &self,
        key: &ObjectRef<ServiceConfig>,
        f: impl FnOnce(&mut u32) -> T,
    ) -> T {
        let mut mem = self
            .config_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(mem.entry(key.clone()).or_default())
    }

    /// Whether the PodMonitor API (Prometheus Operator) is served; cached for a minute.
    pub async fn pod_monitors_available(&self) -> bool {
        if let Some((answer, at)) = *self
            .pod_monitors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < CAPABILITY_TTL
        {
            return answer;
        }
        let answer = match self
            .client
            .list_api_group_resources("monitoring.coreos.com/v1")
            .await
        {
            Ok(list) => list.resources.iter().any(|r| r.name == "podmonitors"),
            Err(_) => false,
        };
        *self
            .pod_monitors
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((answer, Instant::now()));
        answer
    }
}
