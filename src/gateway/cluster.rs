//! Cluster mode: reflectors on GatewayRoutes, Services, EndpointSlices and Secrets (JWT keys;
//! only those a route references are used) feed the route table.
//! Any change rebuilds the table off the request path (changes arriving together are folded
//! into one build) and swaps it in; the gateway reports ready after the first complete build.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::scope::api;
use crate::watch::{WatchHealth, resilient};
use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{error, info, warn};

use super::metrics::TableMetrics;
use super::policy::{PolicyEnv, Secrets, referenced_secrets, secret_data as secret_data_of};
use super::table::{Endpoint, Inputs, RouteTable, ServiceEntry};
use crate::api::GatewayRoute;

/// Errors that stop cluster mode from starting.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No kubeconfig or in-cluster configuration.
    #[error(
        "no Kubernetes configuration for cluster mode (set KUBECONFIG, run in a cluster, or use --config-dir): {0}"
    )]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The runtime could not start.
    #[error("starting the watcher runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What cluster mode watches and where it puts the result.
pub struct ClusterSource {
    /// Only this namespace, when set (`--watch-namespace`).
    pub namespace: Option<String>,
    /// Namespaces whose Secrets are watched (`--secret-namespaces`; empty: as `namespace`).
    pub secret_namespaces: Vec<String>,
    /// The route table to swap new builds into.
    pub table: Arc<ArcSwap<RouteTable>>,
    /// Set once the first complete table is in place.
    pub ready: Arc<AtomicBool>,
    /// Build metrics.
    pub updates: TableMetrics,
    /// Shared policy state.
    pub env: PolicyEnv,
    /// Whether each watch is current (`/readyz`, `atrium_gateway_config_stale`).
    pub health: WatchHealth,
}

/// Starts the watchers on their own thread; returns once the client is configured.
pub fn start(source: ClusterSource) -> Result<(), ClusterError> {
    let (rt, client) = runtime_and_client()?;
    std::thread::Builder::new()
        .name("atrium-watch".into())
        .spawn(move || rt.block_on(watch(client, source)))
        .map_err(ClusterError::Runtime)?;
    Ok(())
}

/// The watchers' one-thread runtime and a client from the kubeconfig or the pod's account.
pub fn runtime_and_client() -> Result<(tokio::runtime::Runtime, Client), ClusterError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)?;
    let client = rt.block_on(async {
        let config = kube::Config::infer().await.map_err(ClusterError::Config)?;
        Client::try_from(config).map_err(ClusterError::Client)
    })?;
    Ok((rt, client))
}

async fn watch(client: Client, source: ClusterSource) {
    let ClusterSource {
        namespace,
        secret_namespaces,
        table,
        ready,
        updates,
        env,
        health,
    } = source;
    let h = &health;
    let ns = namespace.as_deref();
    let cfg = watcher::Config::default();
    let (routes, w1) = reflector::store::<GatewayRoute>();
    let (services, w2) = reflector::store::<Service>();
    let (slices, w3) = reflector::store::<EndpointSlice>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let notify = |name: &'static str, stream: Changes| spawn_notify(&tx, name, stream);
    notify(
        "gatewayroutes",
        reflect(
            "gatewayroutes",
            w1,
            api::<GatewayRoute>(&client, ns),
            cfg.clone(),
            h,
        ),
    );
    notify(
        "services",
        reflect("services", w2, api::<Service>(&client, ns), cfg.clone(), h),
    );
    notify(
        "endpointslices",
        reflect(
            "endpointslices",
            w3,
            api::<EndpointSlice>(&client, ns),
            cfg.clone().labels(crate::registry::SERVICE_NAME_LABEL),
            h,
        ),
    );
    // Secrets: one watch per allowed namespace (least privilege: a Role in each), else the
    // watched namespace or the whole cluster.
    let secret_scopes: Vec<Option<String>> = if secret_namespaces.is_empty() {
        vec![namespace.clone()]
    } else {
        secret_namespaces.into_iter().map(Some).collect()
    };
    let mut secrets = vec![];
    for scope in secret_scopes {
        let (store, writer) = reflector::store::<Secret>();
        notify(
            "secrets",
            reflect(
                &format!("secrets/{}", scope.as_deref().unwrap_or("all")),
                writer,
                api::<Secret>(&client, scope.as_deref()),
                cfg.clone(),
                h,
            ),
        );
        secrets.push(store);
    }
    // One waiter per store (see docs/local-control-plane.md on `wait_until_ready`).
    let _ = routes.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    for s in &secrets {
        let _ = s.wait_until_ready().await;
    }
    let stores = Stores {
        routes,
        services,
        slices,
        secrets,
        env,
    };
    rebuild(&stores, &table, &updates);
    ready.store(true, Ordering::Release);
    info!("cluster mode: first route table built");
    while next_burst(&mut rx).await {
        rebuild(&stores, &table, &updates);
    }
}

/// "Something changed", from one watch.
pub type Changes = futures::stream::BoxStream<'static, Result<(), watcher::Error>>;

/// Forwards each change of `stream` to `tx` until the receiver is gone.
pub fn spawn_notify(
    tx: &tokio::sync::mpsc::UnboundedSender<()>,
    name: &'static str,
    stream: Changes,
) {
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(item) = stream.next().await {
            match item {
                Ok(()) => {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                // `resilient` logs and retries errors itself; none reach here.
                Err(e) => warn!(watch = name, error = %e, "watch error"),
            }
        }
    });
}

/// Waits for the next change and folds the burst that follows it into one (20 ms); false
/// once every watch is gone.
pub async fn next_burst(rx: &mut tokio::sync::mpsc::UnboundedReceiver<()>) -> bool {
    if rx.recv().await.is_none() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    while rx.try_recv().is_ok() {}
    true
}

/// A reflector filling `writer` from a resilient watch on `api`, as a stream of "something
/// changed".
pub fn reflect<K>(
    name: &str,
    writer: reflector::store::Writer<K>,
    api: kube::Api<K>,
    cfg: watcher::Config,
    health: &WatchHealth,
) -> Changes
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflector::reflector(writer, resilient(name, api, cfg, health))
        .touched_objects()
        .map(|r| r.map(|_| ()))
        .boxed()
}

/// The caches a table is built from.
pub struct Stores {
    /// GatewayRoutes.
    pub routes: Store<GatewayRoute>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// Secrets, one store per namespace scope (only those routes reference are used).
    pub secrets: Vec<Store<Secret>>,
    /// Shared policy state.
    pub env: PolicyEnv,
}

fn rebuild(stores: &Stores, table: &ArcSwap<RouteTable>, updates: &TableMetrics) {
    let inputs = inputs(stores);
    let (built, errors) = RouteTable::build(&inputs);
    for e in &errors {
        error!(error = %e, "a route is skipped or answers 503 until fixed");
    }
    updates.record(&built, errors.is_empty());
    table.store(Arc::new(built));
}

/// The table inputs from the caches.
pub fn inputs(stores: &Stores) -> Inputs {
    let Stores {
        routes,
        services,
        slices,
        secrets,
        env,
    } = stores;
    let by_service = service_entries(services, slices);
    let routes: Vec<_> = routes
        .state()
        .iter()
        .map(|r| crate::route::gateway_route::compile(r))
        .collect();
    let mut secret_data = Secrets::new();
    for r in routes.iter().flatten() {
        let ns = &r.source.namespace;
        for name in referenced_secrets(r) {
            let key = ObjectRef::new(&name).within(ns);
            if let Some(s) = secrets.iter().find_map(|store| store.get(&key)) {
                secret_data.insert(format!("{ns}/{name}"), secret_data_of(&s));
            }
        }
    }
    Inputs {
        routes,
        services: by_service,
        secrets: secret_data,
        env: env.clone(),
    }
}

/// Every Service with its ports and the endpoints of its EndpointSlices.
pub fn service_entries(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
) -> BTreeMap<String, ServiceEntry> {
    let mut by_service: BTreeMap<String, ServiceEntry> = services
        .state()
        .iter()
        .map(|s| {
            let ports = s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    (
                        p.name.unwrap_or_default(),
                        u16::try_from(p.port).unwrap_or(0),
                    )
                })
                .collect();
            (
                format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()),
                ServiceEntry {
                    ports,
                    endpoints: vec![],
                },
            )
        })
        .collect();
    for slice in slices.state() {
        let Some(svc) = crate::registry::service_of(&slice) else {
            continue;
        };
        let key = format!("{}/{svc}", slice.namespace().unwrap_or_default());
        let Some(entry) = by_service.get_mut(&key) else {
            continue;
        };
        let ports: BTreeMap<String, u16> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    u16::try_from(p.port?).ok()?,
                ))
            })
            .collect();
        for a in crate::registry::addresses(&slice) {
            if let Ok(ip) = a.address.parse::<IpAddr>() {
                entry.endpoints.push(Endpoint {
                    ip,
                    ports: ports.clone(),
                    ready: a.readiness.ready,
                    serving: a.readiness.serving,
                });
            }
        }
    }
    by_service
}
