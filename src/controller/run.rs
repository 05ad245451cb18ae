//! Wires the reconcilers to their watches and runs them until the process stops.

use std::sync::Arc;
use std::time::Duration;

use crate::scope::api;
use crate::watch::{WatchHealth, resilient};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tracing::debug;

use super::context::{Context, OptionalChildren};
use super::error::ReconcileError;
use super::events::Events;
use super::gateway_route;
use super::health_checks::HealthChecks;
use super::metrics::ControllerMetrics;
use super::microservice::{self, CONTROLLER};
use super::service_config;
use crate::api::conditions;
use crate::api::{GatewayRoute, Microservice, ServiceConfig};

/// Every reconciler, as a future that resolves only when they all stop. The watches are
/// registered in `health` (a [`resilient`](crate::watch::resilient) one each) before this
/// returns, so `/readyz` says not ready from the moment a new leader starts until they listed.
pub fn controllers(
    client: Client,
    namespace: Option<String>,
    metrics: ControllerMetrics,
    health: WatchHealth,
    gateway_api: Option<super::gateway_api::data_plane::Settings>,
    reconcile: controller::Config,
) -> impl std::future::Future<Output = ()> + use<> {
    let ns = namespace.as_deref();
    let cfg = watcher::Config::default();
    let h = &health;
    for c in [
        CONTROLLER,
        service_config::CONTROLLER,
        gateway_route::CONTROLLER,
    ] {
        metrics.init(c);
    }
    // One watch of Microservices serves every mapping from them: their dependents, the
    // ServiceConfigs they use and the GatewayRoutes naming them each get a copy of every
    // change (status changes included), the Microservice reconciler everything but its own
    // status writes.
    let (to_dependents, from_ms_dependents) = fan_out::<Microservice>();
    let (to_configs, from_ms_configs) = fan_out::<Microservice>();
    let (to_routes, from_ms_routes) = fan_out::<Microservice>();
    let (ms_store, ms_writer) = reflector::store::<Microservice>();
    let controller = Controller::for_stream(
        reflector::reflector(
            ms_writer,
            resilient(
                "microservices",
                api::<Microservice>(&client, ns),
                cfg.clone(),
                h,
            ),
        )
        .inspect(move |event| {
            if let Ok(event) = event {
                copy_to(event, &[&to_dependents, &to_configs, &to_routes]);
            }
        })
        .applied_objects()
        .predicate_filter(not_status, PredicateConfig::default()),
        ms_store.clone(),
    );

    // ServiceConfigs and EndpointSlices: cached for reconciles and mapped to the
    // Microservices they affect.
    let (sc_store, sc_writer) = reflector::store::<ServiceConfig>();
    let sc_stream = reflector::reflector(
        sc_writer,
        resilient(
            "serviceconfigs",
            api::<ServiceConfig>(&client, ns),
            cfg.clone(),
            h,
        ),
    )
    .touched_objects();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let slice_stream = reflector::reflector(
        slice_writer,
        resilient(
            "endpointslices",
            api::<EndpointSlice>(&client, ns),
            cfg.clone().labels(crate::registry::SERVICE_NAME_LABEL),
            h,
        ),
    )
    .touched_objects();

    // The optional children: metadata only (existence and owner), cached so that a reconcile
    // deletes one only when it exists.
    let (hpas, hpa_writer) = reflector::store();
    let hpa_stream = reflector::reflector(
        hpa_writer,
        resilient(
            "horizontalpodautoscalers",
            api::<PartialObjectMeta<HorizontalPodAutoscaler>>(&client, ns),
            cfg.clone(),
            h,
        ),
    )
    .touched_objects();
    let (pdbs, pdb_writer) = reflector::store();
    let pdb_stream = reflector::reflector(
        pdb_writer,
        resilient(
            "poddisruptionbudgets",
            api::<PartialObjectMeta<PodDisruptionBudget>>(&client, ns),
            cfg.clone(),
            h,
        ),
    )
    .touched_objects();

    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::unbounded_channel();
    let events = Events::new(client.clone());
    let ctx = Arc::new(Context::new(
        client.clone(),
        namespace.clone(),
        metrics.clone(),
        events.clone(),
        HealthChecks::new(trigger_tx, events),
        ms_store.clone(),
        sc_store,
        slice_store,
        OptionalChildren { hpas, pdbs },
    ));

    let users_of_config = {
        let store = ms_store.clone();
        move |sc: ServiceConfig| {
            let (ns, name) = (sc.namespace(), sc.name_any());
            store
                .state()
                .iter()
                .filter(|m| m.namespace() == ns && m.spec.configs.iter().any(|c| c.name == name))
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let dependents = {
        let store = ms_store.clone();
        move |changed: Microservice| {
            let (ns, name) = (changed.namespace(), changed.name_any());
            store
                .state()
                .iter()
                .filter(|m| m.namespace() == ns && m.spec.depends_on.contains(&name))
                .map(|m| ObjectRef::from_obj(m.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let slice_owner = |slice: EndpointSlice| {
        let ns = slice.namespace();
        crate::registry::service_of(&slice).map(|svc| {
            let r = ObjectRef::<Microservice>::new(svc);
            match ns {
                Some(ns) => r.within(&ns),
                None => r,
            }
        })
    };

    // Deployments are cached (without managed fields, see `watch::slim`, and with their pod
    // template reduced to its hash, see `slim_deployment`): a reconcile whose desired
    // Deployment did not change reads its state from here instead of re-applying it.
    let (deployments, deployments_writer) = reflector::store::<Deployment>();
    let _ = ctx.deployments.set(deployments);
    let (to_services, from_services) = fan_out::<Service>();
    let janitor = janitor(ctx.clone());
    let run = controller
        .owns_stream(
            reflector::reflector(
                deployments_writer,
                resilient(
                    "deployments",
                    api::<Deployment>(&client, ns),
                    cfg.clone(),
                    h,
                )
                .map_ok(|event| event.modify(microservice::slim_deployment)),
            )
            .touched_objects(),
        )
        .owns_stream(from_services)
        .owns_stream(hpa_stream)
        .owns_stream(pdb_stream)
        .watches_stream(from_ms_dependents, dependents)
        .watches_stream(sc_stream, users_of_config)
        .watches_stream(slice_stream, slice_owner)
        .reconcile_on(UnboundedReceiverStream::new(trigger_rx))
        .with_config(reconcile.clone())
        .run(
            |ms, ctx| {
                let metrics = ctx.metrics.clone();
                measured(CONTROLLER, metrics, microservice::reconcile(ms, ctx))
            },
            microservice::error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome);

    let ctx_for_routes = ctx.clone();
    let configs_of = |m: Microservice| {
        let ns = m.namespace();
        m.spec
            .configs
            .iter()
            .map(|c| {
                let r = ObjectRef::<ServiceConfig>::new(&c.name);
                match &ns {
                    Some(ns) => r.within(ns),
                    None => r,
                }
            })
            .collect::<Vec<_>>()
    };
    let (configs_store, configs_writer) = reflector::store::<ServiceConfig>();
    let configs = Controller::for_stream(
        reflector::reflector(
            configs_writer,
            resilient(
                "serviceconfigs/reconciler",
                api::<ServiceConfig>(&client, ns),
                cfg.clone(),
                h,
            ),
        )
        .applied_objects(),
        configs_store,
    )
    .owns_stream(objects(
        "configmaps",
        api::<ConfigMap>(&client, ns),
        &cfg.clone().labels(service_config::revision::CONFIG_LABEL),
        h,
    ))
    .watches_stream(from_ms_configs, configs_of)
    .with_config(reconcile.clone())
    .run(
        |sc, ctx| {
            let metrics = ctx.metrics.clone();
            measured(
                service_config::CONTROLLER,
                metrics,
                service_config::reconcile(sc, ctx),
            )
        },
        service_config::error_policy,
        ctx.clone(),
    )
    .for_each(log_outcome);

    let routes = route_controller(
        &client,
        ns,
        &cfg,
        h,
        ctx_for_routes,
        from_ms_routes,
        to_services,
        reconcile.clone(),
    );
    let gateways = gateway_api.map(|settings| {
        super::gateway_api::controllers(
            client.clone(),
            namespace.clone(),
            settings,
            metrics.clone(),
            h,
            reconcile,
        )
    });
    let gateways = async move {
        match gateways {
            Some(g) => g.await,
            None => std::future::pending().await,
        }
    };

    async move {
        tokio::select! {
            () = run => {},
            () = configs => {},
            () = routes => {},
            () = janitor => {},
            () = gateways => {},
        }
    }
}

/// What of a Microservice a reconcile must follow: everything but its status. Each status
/// write of the controller's own would otherwise come back as one more reconcile of the same
/// object (status changes of a dependency still reach its dependents: their mapping gets
/// a copy of every change).
fn not_status(ms: &Microservice) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let m = &ms.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.generation.hash(&mut h);
    m.labels.hash(&mut h);
    m.annotations.hash(&mut h);
    m.finalizers.hash(&mut h);
    m.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// A resilient watch on `api` as a stream of the objects it sees change (no cache).
fn objects<K>(
    name: &str,
    api: kube::Api<K>,
    cfg: &watcher::Config,
    health: &WatchHealth,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    resilient(name, api, cfg.clone(), health).touched_objects()
}

/// The sending end of a [`fan_out`].
type Sender<K> = tokio::sync::mpsc::UnboundedSender<K>;
/// The receiving end of a [`fan_out`]: a stream for `watches_stream` and `owns_stream`.
type Copies<K> =
    futures::stream::Map<UnboundedReceiverStream<K>, fn(K) -> Result<K, watcher::Error>>;

/// A channel that hands one watch's objects to one more consumer, so that one watch (one
/// list, one decode per change) serves several mappings instead of a watch each.
fn fan_out<K: Send + 'static>() -> (Sender<K>, Copies<K>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ok: fn(K) -> Result<K, watcher::Error> = Ok;
    (tx, UnboundedReceiverStream::new(rx).map(ok))
}

/// Sends a copy of the object of `event` (applied or deleted) to each of `to`. A consumer
/// that stopped drops its copies.
fn copy_to<K: Clone>(event: &watcher::Event<K>, to: &[&Sender<K>]) {
    let obj = match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => o,
        watcher::Event::Init | watcher::Event::InitDone => return,
    };
    for tx in to {
        let _ = tx.send(obj.clone());
    }
}

async fn log_outcome<K, E: std::fmt::Display>(res: Result<(ObjectRef<K>, Action), E>)
where
    K: kube::Resource,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    ObjectRef<K>: std::fmt::Display,
{
    match res {
        Ok((obj, _)) => debug!(object = %obj, "reconciled"),
        Err(e) => debug!(error = %e, "controller event"),
    }
}

/// Runs a reconcile with controller-runtime's metrics around it.
async fn measured(
    controller: &'static str,
    metrics: ControllerMetrics,
    reconcile: impl std::future::Future<Output = Result<Action, ReconcileError>>,
) -> Result<Action, ReconcileError> {
    let timer = metrics
        .reconcile_time
        .with_label_values(&[controller])
        .start_timer();
    let result = reconcile.await;
    timer.observe_duration();
    let outcome = if result.is_ok() { "success" } else { "error" };
    metrics
        .reconcile_total
        .with_label_values(&[controller, outcome])
        .inc();
    if result.is_err() {
        metrics
            .reconcile_errors
            .with_label_values(&[controller])
            .inc();
    }
    result
}

/// Every 10 s: drops health checks of deleted Microservices and refreshes the
/// `atrium_microservices{condition,status}` gauges from the cache (no API calls).
async fn janitor(ctx: Arc<Context>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let store = ctx.microservices.clone();
        ctx.health_checks.retain(|k| store.get(k).is_some());
        ctx.memory
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|k, _| store.get(k).is_some());
        let all = store.state();
        for ty in [
            conditions::READY,
            conditions::RECONCILING,
            conditions::STALLED,
            conditions::AVAILABLE,
            conditions::DEPENDENCIES_READY,
            conditions::CONFIG_APPLIED,
        ] {
            for st in [conditions::TRUE, conditions::FALSE, conditions::UNKNOWN] {
                let n = all
                    .iter()
                    .filter(|m| {
                        let c = m
                            .status
                            .as_ref()
                            .and_then(|s| conditions::find(&s.conditions, ty));
                        c.map_or(conditions::UNKNOWN, |c| c.status.as_str()) == st
                    })
                    .count();
                ctx.metrics
                    .microservices
                    .with_label_values(&[ty, st])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }
}

/// The GatewayRoute status reconciler: re-evaluates a route when it, another route of its
/// namespace (conflicts), or a Microservice or Service it names changes.
/// `microservices` is the Microservice watch's copy of every change; the Service watch
/// (cached in the context) hands a copy of each of its changes to `service_copies`, the
/// Microservice controller's owner trigger.
#[allow(clippy::too_many_arguments)]
fn route_controller(
    client: &Client,
    ns: Option<&str>,
    cfg: &watcher::Config,
    h: &WatchHealth,
    ctx: Arc<Context>,
    microservices: Copies<Microservice>,
    service_copies: Sender<Service>,
    reconcile: controller::Config,
) -> impl std::future::Future<Output = ()> + use<> {
    let (to_namespace, from_routes) = fan_out::<GatewayRoute>();
    let (routes, routes_writer) = reflector::store::<GatewayRoute>();
    let controller = Controller::for_stream(
        reflector::reflector(
            routes_writer,
            resilient(
                "gatewayroutes",
                api::<GatewayRoute>(client, ns),
                cfg.clone(),
                h,
            ),
        )
        .inspect(move |event| {
            if let Ok(event) = event {
                copy_to(event, &[&to_namespace]);
            }
        })
        .applied_objects(),
        routes.clone(),
    );
    let _ = ctx.routes.set(routes.clone());
    let (services, writer) = reflector::store::<Service>();
    let _ = ctx.services.set(services);
    let service_stream = reflector::reflector(
        writer,
        resilient("services", api::<Service>(client, ns), cfg.clone(), h),
    )
    .inspect(move |event| {
        if let Ok(event) = event {
            copy_to(event, &[&service_copies]);
        }
    })
    .touched_objects();
    let naming = move |ns: Option<String>, name: String, by_service: bool| {
        routes
            .state()
            .iter()
            .filter(|r| r.namespace() == ns)
            .filter(|r| {
                r.spec
                    .rules
                    .iter()
                    .flat_map(|rule| &rule.backends)
                    .any(|b| {
                        if by_service {
                            b.service.as_deref() == Some(&name)
                        } else {
                            b.microservice.as_deref() == Some(&name)
                        }
                    })
            })
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect::<Vec<_>>()
    };
    let by_ms = {
        let naming = naming.clone();
        move |m: Microservice| naming(m.namespace(), m.name_any(), false)
    };
    let by_svc = move |s: Service| naming(s.namespace(), s.name_any(), true);
    let same_namespace = {
        let routes = controller.store();
        move |changed: GatewayRoute| {
            routes
                .state()
                .iter()
                .filter(|r| {
                    r.namespace() == changed.namespace() && r.metadata.uid != changed.metadata.uid
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    controller
        .watches_stream(microservices, by_ms)
        .watches_stream(from_routes, same_namespace)
        .watches_stream(service_stream, by_svc)
        .with_config(reconcile)
        .run(
            |route, ctx: Arc<Context>| {
                let metrics = ctx.metrics.clone();
                measured(
                    gateway_route::CONTROLLER,
                    metrics,
                    gateway_route::reconcile(route, ctx),
                )
            },
            gateway_route::error_policy,
            ctx,
        )
        .for_each(log_outcome)
}
