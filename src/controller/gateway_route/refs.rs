//! Which backends of a route do not resolve. Pure over the caches.

use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{GatewayRoute, Microservice};

/// `"microservice users (not found)"`, `"service legacy port 8080 (no such port)"`, …
pub fn missing(
    route: &GatewayRoute,
    ns: &str,
    microservices: &Store<Microservice>,
    services: Option<&Store<Service>>,
) -> Vec<String> {
    let mut out = vec![];
    for rule in &route.spec.rules {
        for b in &rule.backends {
            if let Some(name) = &b.microservice {
                match microservices.get(&ObjectRef::new(name).within(ns)) {
                    None => out.push(format!("microservice {name} (not found)")),
                    Some(ms) => {
                        if let Some(p) = b.port
                            && !ms.spec.ports.iter().any(|sp| sp.port == p)
                        {
                            out.push(format!("microservice {name} port {p} (no such port)"));
                        }
                    }
                }
            }
            if let (Some(name), Some(services)) = (&b.service, services) {
                match services.get(&ObjectRef::new(name).within(ns)) {
                    None => out.push(format!("service {name} (not found)")),
                    Some(svc) => {
                        let ports = svc
                            .spec
                            .as_ref()
                            .and_then(|s| s.ports.clone())
                            .unwrap_or_default();
                        if let Some(p) = b.port
                            && !ports.iter().any(|sp| sp.port == p)
                        {
                            out.push(format!("service {name} port {p} (no such port)"));
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}
