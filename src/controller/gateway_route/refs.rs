//! Which backends of a route do not resolve. Pure over the caches.

use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::Microservice;
use crate::route::{BackendKind, Route};

/// `"microservice users (not found)"`, `"service legacy port 8080 (no such port)"`, …
pub fn missing(
    route: &Route,
    microservices: &Store<Microservice>,
    services: Option<&Store<Service>>,
) -> Vec<String> {
    let mut out = vec![];
    for b in route.rules.iter().flat_map(|r| &r.backends) {
        let (name, port) = (&b.name, b.port.map(i32::from));
        match b.kind {
            BackendKind::Microservice => {
                match microservices.get(&ObjectRef::new(name).within(&b.namespace)) {
                    None => out.push(format!("microservice {name} (not found)")),
                    Some(ms) => {
                        if let Some(p) = port
                            && !ms.spec.ports.iter().any(|sp| sp.port == p)
                        {
                            out.push(format!("microservice {name} port {p} (no such port)"));
                        }
                    }
                }
            }
            BackendKind::Service => {
                let Some(services) = services else { continue };
                match services.get(&ObjectRef::new(name).within(&b.namespace)) {
                    None => out.push(format!("service {name} (not found)")),
                    Some(svc) => {
                        let ports = svc
                            .spec
                            .as_ref()
                            .and_then(|s| s.ports.clone())
                            .unwrap_or_default();
                        if let Some(p) = port
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
