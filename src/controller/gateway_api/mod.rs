//! The Gateway API: GatewayClasses whose `controllerName` is `atrium.dev/gateway-controller`
//! are Accepted; each of their Gateways gets its own data plane ([`data_plane`]: a Deployment
//! and a Service running `atrium gateway --gateway NS/NAME`) and a status with addresses,
//! listeners and attached routes; HTTPRoutes attached to them get a status per parent
//! ([`status`]). What attaches where is the rule the data plane serves by
//! ([`crate::route::attach`]).

pub mod data_plane;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::apply::{MANAGER, apply};
use super::error::{ReconcileError, api_error};
use super::metrics::ControllerMetrics;
use crate::api::RoutePolicy;
use crate::api::gateway_api::{
    CONTROLLER_NAME, Gateway, GatewayAddress, GatewayClass, HTTPRoute, ReferenceGrant,
};
use crate::route::listener_tls::{certificate_refs, certified_key, terminates_tls};
use crate::watch::{WatchHealth, resilient};
use data_plane::Settings;
use status::{DataPlane, NamespaceLabels};

/// Reconciler names in metrics and logs.
pub const CLASS_CONTROLLER: &str = "gatewayclass";
/// See [`CLASS_CONTROLLER`].
pub const GATEWAY_CONTROLLER: &str = "gateway";
/// See [`CLASS_CONTROLLER`].
pub const ROUTE_CONTROLLER: &str = "httproute";

/// The finalizer that removes a Gateway's data plane (it lives in another namespace, so an
/// owner reference cannot).
pub const FINALIZER: &str = "gateway.atrium.dev/data-plane";

/// Whether the API server serves the Gateway API's HTTPRoutes (its CRDs are installed).
pub async fn installed(client: &Client) -> bool {
    client
        .list_api_group_resources("gateway.networking.k8s.io/v1")
        .await
        .is_ok_and(|r| r.resources.iter().any(|r| r.name == "httproutes"))
}

struct Ctx {
    client: Client,
    settings: Settings,
    metrics: ControllerMetrics,
    classes: Store<GatewayClass>,
    gateways: Store<Gateway>,
    routes: Store<HTTPRoute>,
    grants: Store<ReferenceGrant>,
    policies: Store<RoutePolicy>,
    namespaces: Store<Namespace>,
    /// Every Service in the cluster, metadata only: a route's backend must exist.
    services: Store<PartialObjectMeta<Service>>,
    /// The data planes' Services, in full (their load-balancer addresses).
    plane_services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// Asks the route reconciler to look at every route again.
    route_tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Ctx {
    fn ours(&self, gateway: &Gateway) -> bool {
        self.classes
            .get(&ObjectRef::new(&gateway.spec.gateway_class_name))
            .is_some_and(|c| c.spec.controller_name == CONTROLLER_NAME)
    }

    fn labels(&self) -> NamespaceLabels {
        self.namespaces
            .state()
            .iter()
            .map(|n| (n.name_any(), n.labels().clone()))
            .collect()
    }

    fn our_gateways(&self) -> Vec<Arc<Gateway>> {
        self.gateways
            .state()
            .into_iter()
            .filter(|g| self.ours(g))
            .collect()
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A store fed by a resilient watch, and the stream of what changed in it.
fn cached<K>(
    name: &str,
    api: Api<K>,
    cfg: watcher::Config,
    health: &WatchHealth,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, resilient(name, api, cfg, health)).touched_objects();
    (store, stream)
}

/// The three reconcilers, as a future that resolves when they stop. `namespace` limits
/// Gateways and HTTPRoutes to one namespace (`--watch-namespace`); GatewayClasses are
/// cluster-scoped.
pub fn controllers(
    client: Client,
    namespace: Option<String>,
    settings: Settings,
    metrics: ControllerMetrics,
    health: &WatchHealth,
    reconcile: kube::runtime::controller::Config,
) -> impl std::future::Future<Output = ()> + use<> {
    for c in [CLASS_CONTROLLER, GATEWAY_CONTROLLER, ROUTE_CONTROLLER] {
        metrics.init(c);
    }
    let ns = namespace.as_deref();
    let scoped = |c: &Client| -> Api<Gateway> { crate::scope::api(c, ns) };
    let cfg = watcher::Config::default();
    let dp = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/name={}",
        data_plane::NAME_LABEL_VALUE
    ));
    let (classes, class_stream) = cached(
        "gatewayclasses",
        Api::<GatewayClass>::all(client.clone()),
        cfg.clone(),
        health,
    );
    let (gateways, gateway_stream) = cached("gateways", scoped(&client), cfg.clone(), health);
    let (routes, route_stream) = cached(
        "httproutes",
        crate::scope::api::<HTTPRoute>(&client, ns),
        cfg.clone(),
        health,
    );
    let (grants, grant_stream) = cached(
        "referencegrants",
        Api::<ReferenceGrant>::all(client.clone()),
        cfg.clone(),
        health,
    );
    let (policies, policy_stream) = cached(
        "routepolicies",
        crate::scope::api::<RoutePolicy>(&client, ns),
        cfg.clone(),
        health,
    );
    let (namespaces, ns_stream) = cached(
        "namespaces",
        Api::<Namespace>::all(client.clone()),
        cfg.clone(),
        health,
    );
    // A backend check needs only that a Service exists: every Service in the cluster is
    // watched as metadata (its spec and status are most of it), the data planes' own in full.
    let (services, service_stream) = cached(
        "services/gateway-api",
        Api::<PartialObjectMeta<Service>>::all(client.clone()),
        cfg.clone(),
        health,
    );
    let dp_ns = settings.namespace.clone();
    let (plane_services, plane_service_stream) = cached(
        "services/gateways",
        Api::<Service>::namespaced(client.clone(), &dp_ns),
        dp.clone(),
        health,
    );
    let (slices, slice_stream) = cached(
        "endpointslices/gateways",
        Api::<EndpointSlice>::namespaced(client.clone(), &dp_ns),
        dp.clone(),
        health,
    );
    let deployments = resilient(
        "deployments/gateways",
        Api::<Deployment>::namespaced(client.clone(), &dp_ns),
        dp,
        health,
    )
    .touched_objects();
    let (route_tx, route_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let ctx = Arc::new(Ctx {
        client,
        settings,
        metrics,
        classes: classes.clone(),
        gateways: gateways.clone(),
        routes: routes.clone(),
        grants,
        policies,
        namespaces,
        services,
        plane_services,
        slices,
        route_tx: route_tx.clone(),
    });

    // Everything that can change a Gateway's status maps to the Gateways concerned.
    let all_gateways = {
        let g = gateways.clone();
        move || {
            g.state()
                .iter()
                .map(|x| ObjectRef::from_obj(x.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let by_labels = |labels: &BTreeMap<String, String>| {
        let name = labels.get(data_plane::GATEWAY_NAME_LABEL)?;
        let ns = labels.get(data_plane::GATEWAY_NAMESPACE_LABEL)?;
        Some(ObjectRef::<Gateway>::new(name).within(ns))
    };
    let parents_of = |route: &HTTPRoute| {
        let ns = route.namespace().unwrap_or_default();
        route
            .spec
            .parent_refs
            .iter()
            .map(|p| {
                ObjectRef::<Gateway>::new(&p.name).within(p.namespace.as_deref().unwrap_or(&ns))
            })
            .collect::<Vec<_>>()
    };
    let (g1, g2) = (all_gateways.clone(), all_gateways.clone());
    let gateway_run = Controller::for_stream(
        gateway_stream
            .filter_map(|r| async { r.ok() })
            .map(Ok::<_, watcher::Error>),
        gateways.clone(),
    )
    .watches_stream(class_stream, move |_: GatewayClass| g1())
    .watches_stream(ns_stream, move |_: Namespace| g2())
    .watches_stream(route_stream, move |r: HTTPRoute| parents_of(&r))
    .watches_stream(slice_stream, move |s: EndpointSlice| by_labels(s.labels()))
    .watches_stream(deployments, move |d: Deployment| by_labels(d.labels()))
    .watches_stream(service_stream, {
        let tx = route_tx.clone();
        move |s: PartialObjectMeta<Service>| {
            let _ = tx.send(());
            by_labels(s.labels())
        }
    })
    .watches_stream(plane_service_stream, move |s: Service| {
        by_labels(s.labels())
    })
    .watches_stream(grant_stream, {
        let tx = route_tx.clone();
        let g3 = all_gateways.clone();
        // Grants decide routes' backends and listeners' certificates.
        move |_: ReferenceGrant| {
            let _ = tx.send(());
            g3()
        }
    })
    .watches_stream(policy_stream, {
        let tx = route_tx.clone();
        // A RoutePolicy decides whether a route's ExtensionRef resolves.
        move |_: RoutePolicy| {
            let _ = tx.send(());
            Vec::<ObjectRef<Gateway>>::new()
        }
    })
    .with_config(reconcile.clone())
    .run(reconcile_gateway, error_policy, ctx.clone())
    .for_each(|r| async move {
        if let Err(e) = r {
            debug!(error = %e, "gateway controller event");
        }
    });

    // Route status: each route when it changes, and every route after a Gateway reconcile or
    // a change of Services or ReferenceGrants (what its attachment and references depend on).
    let (route_store, route_writer) = reflector::store::<HTTPRoute>();
    let own_routes = reflector::reflector(
        route_writer,
        resilient(
            "httproutes/status",
            crate::scope::api::<HTTPRoute>(&ctx.client, ns),
            cfg.clone(),
            health,
        ),
    )
    .applied_objects();
    let route_run = Controller::for_stream(own_routes, route_store)
        .reconcile_all_on(tokio_stream::wrappers::UnboundedReceiverStream::new(
            route_rx,
        ))
        .with_config(reconcile.clone())
        .run(reconcile_route, error_policy, ctx.clone())
        .for_each(|_| async {});
    let (class_store, class_writer) = reflector::store::<GatewayClass>();
    let own_classes = reflector::reflector(
        class_writer,
        resilient(
            "gatewayclasses/status",
            Api::<GatewayClass>::all(ctx.client.clone()),
            cfg.clone(),
            health,
        ),
    )
    .applied_objects();
    let class_run = Controller::for_stream(own_classes, class_store)
        .with_config(reconcile)
        .run(reconcile_class, error_policy, ctx.clone())
        .for_each(|_| async {});
    async move {
        tokio::select! {
            () = gateway_run => {},
            () = route_run => {},
            () = class_run => {},
        }
    }
}

fn error_policy<K>(_: Arc<K>, error: &ReconcileError, _: Arc<Ctx>) -> Action {
    warn!(%error, "Gateway API reconcile failed");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile_class(
    class: Arc<GatewayClass>,
    ctx: Arc<Ctx>,
) -> Result<Action, ReconcileError> {
    if class.spec.controller_name != CONTROLLER_NAME {
        return Ok(Action::await_change());
    }
    let _timer = ctx
        .metrics
        .reconcile_time
        .with_label_values(&[CLASS_CONTROLLER])
        .start_timer();
    let name = class.name_any();
    let status = status::class_status(&class, class.status.as_ref(), now());
    if class.status.as_ref().is_some_and(|s| {
        same_conditions(&s.conditions, &status.conditions)
            && s.supported_features == status.supported_features
    }) {
        return Ok(Action::await_change());
    }
    Api::<GatewayClass>::all(ctx.client.clone())
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(api_error("patch status", "GatewayClass", &name))?;
    Ok(Action::await_change())
}

/// Equal apart from transition times (so an unchanged status is not rewritten).
fn same_conditions(
    a: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    b: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (
                &x.type_,
                &x.status,
                &x.reason,
                &x.message,
                x.observed_generation,
            ) == (
                &y.type_,
                &y.status,
                &y.reason,
                &y.message,
                y.observed_generation,
            )
        })
}

async fn reconcile_gateway(gateway: Arc<Gateway>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let ns = gateway
        .namespace()
        .ok_or_else(|| ReconcileError::NoNamespace(gateway.name_any()))?;
    let api: Api<Gateway> = Api::namespaced(ctx.client.clone(), &ns);
    let has_finalizer = gateway.finalizers().iter().any(|f| f == FINALIZER);
    if !ctx.ours(&gateway) {
        // Not (or no longer) ours: take the data plane away if we made one.
        if has_finalizer {
            remove_data_plane(&gateway, &ctx).await?;
            let left: Vec<&String> = gateway
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .collect();
            api.patch(
                &gateway.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": left}})),
            )
            .await
            .map_err(api_error("patch", "Gateway", &gateway.name_any()))?;
        }
        return Ok(Action::await_change());
    }
    let _timer = ctx
        .metrics
        .reconcile_time
        .with_label_values(&[GATEWAY_CONTROLLER])
        .start_timer();
    let c = ctx.clone();
    finalizer(&api, FINALIZER, gateway, |event| async move {
        match event {
            Finalizer::Apply(gw) => apply_gateway(&gw, &c).await,
            Finalizer::Cleanup(gw) => remove_data_plane(&gw, &c)
                .await
                .map(|()| Action::await_change()),
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(source)
        | kube::runtime::finalizer::Error::RemoveFinalizer(source) => ReconcileError::Api {
            action: "patch finalizers",
            kind: "Gateway",
            name: ns.clone(),
            source,
        },
        other => ReconcileError::NoNamespace(other.to_string()),
    })
}

async fn apply_gateway(gateway: &Gateway, ctx: &Ctx) -> Result<Action, ReconcileError> {
    let name = data_plane::name(gateway);
    let dp_ns = &ctx.settings.namespace;
    if status::servable(gateway) {
        apply::<Deployment>(
            &Api::namespaced(ctx.client.clone(), dp_ns),
            "Deployment",
            &name,
            &data_plane::deployment(gateway, &ctx.settings),
        )
        .await?;
        apply::<Service>(
            &Api::namespaced(ctx.client.clone(), dp_ns),
            "Service",
            &name,
            &data_plane::service(gateway, &ctx.settings),
        )
        .await?;
    }
    let plane = observe_plane(gateway, ctx);
    let certs = listener_certs(gateway, ctx).await?;
    let _ = ctx.route_tx.send(());
    let routes = ctx.routes.state();
    let new = status::gateway_status(
        gateway,
        &routes,
        &ctx.labels(),
        &plane,
        &certs,
        gateway.status.as_ref(),
        &now(),
    );
    let unchanged = gateway.status.as_ref().is_some_and(|old| {
        old.addresses == new.addresses
            && same_conditions(&old.conditions, &new.conditions)
            && old.listeners.len() == new.listeners.len()
            && old.listeners.iter().zip(&new.listeners).all(|(a, b)| {
                a.name == b.name
                    && a.attached_routes == b.attached_routes
                    && a.supported_kinds == b.supported_kinds
                    && same_conditions(&a.conditions, &b.conditions)
            })
    });
    if !unchanged {
        Api::<Gateway>::namespaced(ctx.client.clone(), &gateway.namespace().unwrap_or_default())
            .patch_status(
                &gateway.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": new})),
            )
            .await
            .map_err(api_error("patch status", "Gateway", &gateway.name_any()))?;
    }
    // Until the data plane is ready its pods' state is the only thing that changes. Secrets
    // are read by name, not watched: a certificate that does not resolve is looked at again
    // soon.
    Ok(if !plane.ready {
        Action::requeue(Duration::from_secs(2))
    } else if certs.values().any(Result::is_err) {
        Action::requeue(Duration::from_secs(5))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}

/// Whether each HTTPS listener's certificates resolve: references a Gateway may make, to
/// Secrets (read by name) that hold a usable pair.
async fn listener_certs(
    gateway: &Gateway,
    ctx: &Ctx,
) -> Result<status::ListenerCerts, ReconcileError> {
    let grants: Vec<ReferenceGrant> = ctx.grants.state().iter().map(|g| (**g).clone()).collect();
    let mut out = status::ListenerCerts::new();
    for l in gateway.spec.listeners.iter().filter(|l| terminates_tls(l)) {
        let result = match certificate_refs(gateway, l, &grants) {
            Err(e) => Err(e),
            Ok(refs) => {
                let mut result = Ok(());
                for (ns, name) in refs {
                    let secret = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
                        .get_opt(&name)
                        .await
                        .map_err(api_error("get", "Secret", &name))?;
                    if let Err(e) = certified_key(secret.as_ref(), &ns, &name) {
                        result = Err(e);
                        break;
                    }
                }
                result
            }
        };
        out.insert(l.name.clone(), result);
    }
    Ok(out)
}

/// Where the data plane answers: its LoadBalancer ingress if it has one, else the addresses
/// of its ready pods (from the Service's EndpointSlices).
fn observe_plane(gateway: &Gateway, ctx: &Ctx) -> DataPlane {
    let name = data_plane::name(gateway);
    let svc = ctx
        .plane_services
        .get(&ObjectRef::new(&name).within(&ctx.settings.namespace));
    let ready_ips: Vec<String> = ctx
        .slices
        .state()
        .iter()
        .filter(|s| crate::registry::service_of(s) == Some(name.as_str()))
        .flat_map(|s| crate::registry::addresses(s))
        .filter(|a| a.readiness.ready)
        .map(|a| a.address.to_string())
        .collect();
    let ingress: Vec<GatewayAddress> = svc
        .as_ref()
        .and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match (i.ip, i.hostname) {
            (Some(ip), _) => Some(GatewayAddress {
                type_: "IPAddress".into(),
                value: ip,
            }),
            (None, Some(h)) => Some(GatewayAddress {
                type_: "Hostname".into(),
                value: h,
            }),
            _ => None,
        })
        .collect();
    let mut addresses = if ingress.is_empty() {
        ready_ips
            .iter()
            .map(|ip| GatewayAddress {
                type_: "IPAddress".into(),
                value: ip.clone(),
            })
            .collect()
    } else {
        ingress
    };
    addresses.sort_by(|a, b| a.value.cmp(&b.value));
    addresses.dedup();
    DataPlane {
        ready: !ready_ips.is_empty(),
        addresses,
    }
}

async fn remove_data_plane(gateway: &Gateway, ctx: &Ctx) -> Result<(), ReconcileError> {
    let name = data_plane::name(gateway);
    let ns = &ctx.settings.namespace;
    let gone = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    };
    gone(
        Api::<Deployment>::namespaced(ctx.client.clone(), ns)
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
    )
    .map_err(api_error("delete", "Deployment", &name))?;
    gone(
        Api::<Service>::namespaced(ctx.client.clone(), ns)
            .delete(&name, &DeleteParams::default())
            .await
            .map(|_| ()),
    )
    .map_err(api_error("delete", "Service", &name))?;
    Ok(())
}

async fn reconcile_route(route: Arc<HTTPRoute>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let gateways = ctx.our_gateways();
    let ns = route.namespace().unwrap_or_default();
    let named: Vec<Arc<Gateway>> = gateways
        .into_iter()
        .filter(|g| {
            route
                .spec
                .parent_refs
                .iter()
                .any(|p| crate::route::attach::names_gateway(p, &ns, g))
        })
        .collect();
    let ours_before = route.status.as_ref().is_some_and(|s| {
        s.parents
            .iter()
            .any(|p| p.controller_name == CONTROLLER_NAME)
    });
    if named.is_empty() && !ours_before {
        return Ok(Action::await_change());
    }
    let _timer = ctx
        .metrics
        .reconcile_time
        .with_label_values(&[ROUTE_CONTROLLER])
        .start_timer();
    let grants: Vec<ReferenceGrant> = ctx.grants.state().iter().map(|g| (**g).clone()).collect();
    let services = ctx.services.clone();
    let exists = move |key: &str| {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        services.get(&ObjectRef::new(name).within(ns)).is_some()
    };
    let policies = crate::route::http_route::policies_of(&ctx.policies.state());
    let refs = crate::route::http_route::Refs {
        grants: &grants,
        policies: &policies,
    };
    let new = status::route_status(&route, &named, &ctx.labels(), &refs, &exists, &now());
    let old = route.status.clone().unwrap_or_default();
    let unchanged = old.parents.len() == new.parents.len()
        && old.parents.iter().zip(&new.parents).all(|(a, b)| {
            a.parent_ref == b.parent_ref
                && a.controller_name == b.controller_name
                && same_conditions(&a.conditions, &b.conditions)
        });
    if !unchanged {
        Api::<HTTPRoute>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &route.name_any(),
                &PatchParams::apply(MANAGER),
                &Patch::Merge(json!({"status": new})),
            )
            .await
            .map_err(api_error("patch status", "HTTPRoute", &route.name_any()))?;
    }
    Ok(Action::await_change())
}
