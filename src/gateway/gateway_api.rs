//! Gateway mode (`--gateway NAMESPACE/NAME`): the data plane of one Gateway API Gateway, as
//! the controller provisions it.
//!
//! Reflectors on that Gateway, HTTPRoutes, ReferenceGrants, Namespaces (for `allowedRoutes`
//! selectors), Services, EndpointSlices, RoutePolicies and Secrets feed one route table per
//! listener port, made of one table per listener: each serves the HTTPRoutes attached to it
//! ([`crate::route::attach`], the rule the controller's status uses too), compiled with the
//! hostnames they share with that listener. A request is looked up only in the table of the
//! most specific listener its host matches (listener isolation). Each TLS port serves its
//! HTTPS listeners' certificates by SNI ([`super::sni`]), those
//! [`crate::route::listener_tls`] lets it use.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use rustls::sign::CertifiedKey;
use tracing::{error, info, warn};

use super::cluster::{ClusterError, next_burst, reflect, service_entries, spawn_notify};
use super::metrics::TableMetrics;
use super::policy::{PolicyEnv, Secrets, referenced_secrets, secret_data};
use super::sni::{SniCerts, SniEntry};
use super::table::{Inputs, RouteTable, ServiceEntry};
use crate::api::RoutePolicy;
use crate::api::gateway_api::{Gateway, HTTPRoute, ReferenceGrant};
use crate::route::attach::attach;
use crate::route::http_route::{self, Refs};
use crate::route::listener_tls::{certificate_refs, certified_key, terminates_tls};
use crate::watch::WatchHealth;

/// What gateway mode serves and where it puts the result.
pub struct GatewaySource {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub name: String,
    /// One table per port the process listens on.
    pub tables: BTreeMap<u16, Arc<ArcSwap<RouteTable>>>,
    /// The certificates of each TLS port.
    pub certs: BTreeMap<u16, Arc<SniCerts>>,
    /// Namespaces whose Secrets are read (empty: every namespace).
    pub secret_namespaces: Vec<String>,
    /// Set once the first complete tables are in place.
    pub ready: Arc<AtomicBool>,
    /// Build metrics.
    pub updates: TableMetrics,
    /// Shared policy state.
    pub env: PolicyEnv,
    /// Whether each watch is current.
    pub health: WatchHealth,
}

/// Starts the watchers on their own thread; returns once the client is configured.
pub fn start(source: GatewaySource) -> Result<(), ClusterError> {
    let (rt, client) = super::cluster::runtime_and_client()?;
    std::thread::Builder::new()
        .name("atrium-watch".into())
        .spawn(move || rt.block_on(watch(client, source)))
        .map_err(ClusterError::Runtime)?;
    Ok(())
}

struct Stores {
    gateways: Store<Gateway>,
    routes: Store<HTTPRoute>,
    grants: Store<ReferenceGrant>,
    policies: Store<RoutePolicy>,
    namespaces: Store<Namespace>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// One store per namespace of `--secret-namespaces` (one for all without it).
    secrets: Vec<Store<Secret>>,
    /// Parsed certificates by Secret `namespace/name@resourceVersion` (parsing a key on every
    /// endpoint change would cost more than the rest of a rebuild).
    parsed: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    /// The certificate problems last logged (each is logged when it appears, not per build).
    problems: Mutex<Vec<String>>,
}

async fn watch(client: Client, source: GatewaySource) {
    let GatewaySource {
        namespace,
        name,
        tables,
        certs,
        secret_namespaces,
        ready,
        updates,
        env,
        health,
    } = source;
    let h = &health;
    let cfg = watcher::Config::default();
    let (gateways, w1) = reflector::store::<Gateway>();
    let (routes, w2) = reflector::store::<HTTPRoute>();
    let (grants, w3) = reflector::store::<ReferenceGrant>();
    let (namespaces, w4) = reflector::store::<Namespace>();
    let (services, w5) = reflector::store::<Service>();
    let (slices, w6) = reflector::store::<EndpointSlice>();
    let (policies, w8) = reflector::store::<RoutePolicy>();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let one = cfg.clone().fields(&format!("metadata.name={name}"));
    spawn_notify(
        &tx,
        "gateways",
        reflect(
            "gateways",
            w1,
            Api::namespaced(client.clone(), &namespace),
            one,
            h,
        ),
    );
    spawn_notify(
        &tx,
        "httproutes",
        reflect("httproutes", w2, Api::all(client.clone()), cfg.clone(), h),
    );
    spawn_notify(
        &tx,
        "referencegrants",
        reflect(
            "referencegrants",
            w3,
            Api::all(client.clone()),
            cfg.clone(),
            h,
        ),
    );
    spawn_notify(
        &tx,
        "namespaces",
        reflect("namespaces", w4, Api::all(client.clone()), cfg.clone(), h),
    );
    spawn_notify(
        &tx,
        "services",
        reflect("services", w5, Api::all(client.clone()), cfg.clone(), h),
    );
    let labelled = cfg.clone().labels(crate::registry::SERVICE_NAME_LABEL);
    spawn_notify(
        &tx,
        "endpointslices",
        reflect("endpointslices", w6, Api::all(client.clone()), labelled, h),
    );
    // Secrets: listeners' certificates and the JWT keys RoutePolicies name, in the
    // namespaces the data plane may read.
    let scopes: Vec<Option<String>> = if secret_namespaces.is_empty() {
        vec![None]
    } else {
        secret_namespaces.into_iter().map(Some).collect()
    };
    let mut secrets = Vec::new();
    for scope in scopes {
        let (store, writer) = reflector::store::<Secret>();
        let name = format!("secrets/{}", scope.as_deref().unwrap_or("all"));
        let api: Api<Secret> = crate::scope::api(&client, scope.as_deref());
        spawn_notify(&tx, "secrets", reflect(&name, writer, api, cfg.clone(), h));
        secrets.push(store);
    }
    spawn_notify(
        &tx,
        "routepolicies",
        reflect(
            "routepolicies",
            w8,
            Api::all(client.clone()),
            cfg.clone(),
            h,
        ),
    );
    let _ = gateways.wait_until_ready().await;
    let _ = routes.wait_until_ready().await;
    let _ = grants.wait_until_ready().await;
    let _ = namespaces.wait_until_ready().await;
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    for s in &secrets {
        let _ = s.wait_until_ready().await;
    }
    let _ = policies.wait_until_ready().await;
    let stores = Stores {
        gateways,
        routes,
        grants,
        policies,
        namespaces,
        services,
        slices,
        secrets,
        parsed: Mutex::new(HashMap::new()),
        problems: Mutex::new(Vec::new()),
    };
    rebuild(&stores, &tables, &updates, &env);
    load_certs(&stores, &certs);
    ready.store(true, Ordering::Release);
    info!(gateway = %format!("{namespace}/{name}"), ports = ?tables.keys().collect::<Vec<_>>(), "gateway mode: first route tables built");
    while next_burst(&mut rx).await {
        rebuild(&stores, &tables, &updates, &env);
        load_certs(&stores, &certs);
    }
}

impl Stores {
    /// The ReferenceGrants, as the route and certificate rules take them.
    fn grants(&self) -> Vec<ReferenceGrant> {
        self.grants.state().iter().map(|g| (**g).clone()).collect()
    }

    /// A Secret from whichever store holds its namespace.
    fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let key = ObjectRef::new(name).within(namespace);
        self.secrets.iter().find_map(|s| s.get(&key))
    }
}

/// Puts each TLS port's usable certificates in place: its HTTPS listeners whose references
/// resolve, each with its hostname.
fn load_certs(stores: &Stores, ports: &BTreeMap<u16, Arc<SniCerts>>) {
    if ports.is_empty() {
        return;
    }
    let Some(gateway) = stores.gateways.state().into_iter().next() else {
        for c in ports.values() {
            c.store(vec![]);
        }
        return;
    };
    let grants = stores.grants();
    let mut parsed = stores
        .parsed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut used = HashMap::new();
    let mut problems = Vec::new();
    for (port, certs) in ports {
        let mut entries = Vec::new();
        for l in gateway
            .spec
            .listeners
            .iter()
            .filter(|l| l.port == *port && terminates_tls(l))
        {
            let refs = match certificate_refs(&gateway, l, &grants) {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("listener {}: {}: {}", l.name, e.reason, e.message));
                    continue;
                }
            };
            for (ns, name) in refs {
                let secret = stores.secret(&ns, &name);
                let key = format!(
                    "{ns}/{name}@{}",
                    secret
                        .as_ref()
                        .and_then(|s| s.metadata.resource_version.clone())
                        .unwrap_or_default()
                );
                let cert = match parsed.get(&key) {
                    Some(c) => Ok(c.clone()),
                    None => certified_key(secret.as_deref(), &ns, &name).map(Arc::new),
                };
                match cert {
                    Ok(c) => {
                        used.insert(key, c.clone());
                        entries.push(SniEntry {
                            hostname: l.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
                            key: c,
                        });
                    }
                    Err(e) => {
                        problems.push(format!("listener {}: {}: {}", l.name, e.reason, e.message));
                    }
                }
            }
        }
        certs.store(entries);
    }
    *parsed = used;
    let mut last = stores
        .problems
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for p in problems.iter().filter(|p| !last.contains(p)) {
        warn!("a certificate is not served: {p}");
    }
    *last = problems;
}

fn rebuild(
    stores: &Stores,
    tables: &BTreeMap<u16, Arc<ArcSwap<RouteTable>>>,
    updates: &TableMetrics,
    env: &PolicyEnv,
) {
    let services = service_entries(&stores.services, &stores.slices);
    let gateway = stores.gateways.state().into_iter().next();
    let labels: BTreeMap<String, BTreeMap<String, String>> = stores
        .namespaces
        .state()
        .iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    let routes = stores.routes.state();
    let grants = stores.grants();
    let policies = http_route::policies_of(&stores.policies.state());
    let secret = |key: &str| {
        let (ns, name) = key.split_once('/')?;
        stores.secret(ns, name).map(|s| secret_data(&s))
    };
    let sources = Sources {
        routes: &routes,
        refs: Refs {
            grants: &grants,
            policies: &policies,
        },
        labels: &labels,
        services: &services,
        secret: &secret,
        env,
    };
    for (port, table) in tables {
        let Some(gw) = &gateway else {
            table.store(Arc::new(RouteTable::default()));
            continue;
        };
        // One table per listener on the port: a request is served by the routes of the most
        // specific listener its host matches, never by a less specific one's.
        let mut parts = Vec::new();
        let mut complete = true;
        for l in gw.spec.listeners.iter().filter(|l| l.port == *port) {
            let (built, errors) = RouteTable::build(&listener_inputs(gw, &l.name, &sources));
            for e in &errors {
                error!(port, listener = %l.name, error = %e, "a route is skipped or answers 503 until fixed");
            }
            complete &= errors.is_empty();
            parts.push((l.hostname.as_ref().map(|h| h.to_ascii_lowercase()), built));
        }
        let built = RouteTable::by_listener(parts);
        updates.record(&built, complete);
        table.store(Arc::new(built));
    }
}

/// A Secret's data by `namespace/name`.
pub type SecretLookup<'a> = dyn Fn(&str) -> Option<BTreeMap<String, Vec<u8>>> + 'a;

/// What the tables of a Gateway's ports are built from.
pub struct Sources<'a> {
    /// Every HTTPRoute.
    pub routes: &'a [Arc<HTTPRoute>],
    /// ReferenceGrants and RoutePolicies.
    pub refs: Refs<'a>,
    /// Namespaces' labels, for `allowedRoutes` selectors.
    pub labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Services and their endpoints.
    pub services: &'a BTreeMap<String, ServiceEntry>,
    /// A Secret's data by `namespace/name` (JWT keys a RoutePolicy names).
    pub secret: &'a SecretLookup<'a>,
    /// Shared policy state.
    pub env: &'a PolicyEnv,
}

/// The table inputs of one listener: every HTTPRoute attached to it, with the hostnames it
/// shares with the listener, and the Secrets their policies name.
pub fn listener_inputs(gateway: &Gateway, listener: &str, sources: &Sources<'_>) -> Inputs {
    let none = BTreeMap::new();
    let mut compiled = Vec::new();
    let mut secrets = Secrets::new();
    for route in sources.routes {
        let ns_labels = sources
            .labels
            .get(&route.namespace().unwrap_or_default())
            .unwrap_or(&none);
        let on_listener: Vec<_> = attach(gateway, route, ns_labels)
            .into_iter()
            .flat_map(|p| p.attached)
            .filter(|a| a.listener == listener)
            .collect();
        if on_listener.is_empty() {
            continue;
        }
        // Several parentRefs may attach it to this listener: the union of their hostnames
        // (any of them without a restriction means every hostname).
        let hostnames = if on_listener.iter().any(|a| a.hostnames.is_empty()) {
            vec![]
        } else {
            let mut all: Vec<String> = on_listener.into_iter().flat_map(|a| a.hostnames).collect();
            all.sort();
            all.dedup();
            all
        };
        let built = http_route::compile(route, hostnames, &sources.refs).map(|c| c.route);
        if let Ok(r) = &built {
            for name in referenced_secrets(r) {
                let key = format!("{}/{name}", r.source.namespace);
                if let Some(data) = (sources.secret)(&key) {
                    secrets.insert(key, data);
                }
            }
        }
        compiled.push(built);
    }
    Inputs {
        routes: compiled,
        services: sources.services.clone(),
        secrets,
        env: sources.env.clone(),
    }
}
