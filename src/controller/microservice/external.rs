//! External mode: the EndpointSlices that register instances running outside the cluster.
//!
//! An EndpointSlice holds one address type and one port list, so instances are grouped by
//! both; each group is one slice with a deterministic name. `ready` comes from the
//! controller's own health checks.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::labels;
use crate::api::Microservice;
use crate::api::microservice::Protocol;
use crate::controller::health_checks::Target;

/// The EndpointSlice address type of an address.
pub fn address_type(address: &str) -> &'static str {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => "IPv4",
        Ok(IpAddr::V6(_)) => "IPv6",
        Err(_) => "FQDN",
    }
}

/// Resolved ports of instance `i`: the spec's ports with the instance's overrides.
fn instance_ports(ms: &Microservice, i: usize) -> Vec<(String, i32, Protocol, Option<String>)> {
    let ep = ms.spec.endpoints.as_ref().and_then(|e| e.get(i));
    ms.spec
        .ports
        .iter()
        .map(|p| {
            let port = ep
                .and_then(|e| e.ports.iter().find(|o| o.name == p.name))
                .map_or(p.port, |o| o.port);
            (p.name.clone(), port, p.protocol, p.app_protocol.clone())
        })
        .collect()
}

/// The health-check target of every instance (the check's port: `healthCheck.port` when it
/// names a declared port number, else the first port; instance overrides apply by name).
pub fn targets(ms: &Microservice) -> Vec<Target> {
    let hc_port = ms.spec.health_check.as_ref().and_then(|h| h.port);
    let check_name = hc_port
        .and_then(|n| ms.spec.ports.iter().find(|p| p.port == n))
        .or_else(|| ms.spec.ports.first())
        .map(|p| p.name.clone());
    ms.spec
        .endpoints
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, ep)| {
            let ports = instance_ports(ms, i);
            let port = ports
                .iter()
                .find(|(n, ..)| Some(n) == check_name.as_ref())
                .map(|(_, p, ..)| *p)?;
            Some(Target {
                address: ep.address.clone(),
                port: u16::try_from(port).ok()?,
            })
        })
        .collect()
}

/// The desired EndpointSlices; `ready(address)` is the health-check verdict of an instance.
pub fn endpoint_slices(ms: &Microservice, ready: impl Fn(&str) -> bool) -> Vec<EndpointSlice> {
    let name = ms.name_any();
    // Group instances by (address type, ports).
    type Ports = Vec<(String, i32, Protocol, Option<String>)>;
    let mut groups: BTreeMap<(&'static str, String), (Ports, Vec<String>)> = BTreeMap::new();
    for (i, ep) in ms.spec.endpoints.iter().flatten().enumerate() {
        let ports = instance_ports(ms, i);
        let key = (
            address_type(&ep.address),
            ports
                .iter()
                .map(|(n, p, ..)| format!("{n}:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        groups
            .entry(key)
            .or_insert_with(|| (ports, vec![]))
            .1
            .push(ep.address.clone());
    }
    groups
        .into_iter()
        .map(|((ty, port_key), (ports, addresses))| {
            let mut slice_labels = labels::standard(ms);
            slice_labels.insert(crate::registry::SERVICE_NAME_LABEL.to_owned(), name.clone());
            slice_labels.insert(
                "endpointslice.kubernetes.io/managed-by".to_owned(),
                labels::SLICE_MANAGER.to_owned(),
            );
            EndpointSlice {
                metadata: ObjectMeta {
                    name: Some(format!(
                        "{name}-{}-{}",
                        ty.to_ascii_lowercase(),
                        short_hash(&port_key)
                    )),
                    namespace: ms.namespace(),
                    labels: Some(slice_labels),
                    owner_references: ms.controller_owner_ref(&()).map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                address_type: ty.to_owned(),
                endpoints: addresses
                    .into_iter()
                    .map(|a| {
                        let ok = ready(&a);
                        Endpoint {
                            addresses: vec![a],
                            conditions: Some(EndpointConditions {
                                ready: Some(ok),
                                serving: Some(ok),
                                terminating: Some(false),
                            }),
                            ..Endpoint::default()
                        }
                    })
                    .collect(),
                ports: Some(
                    ports
                        .into_iter()
                        .map(|(n, p, proto, app)| EndpointPort {
                            name: Some(n),
                            port: Some(p),
                            protocol: Some(
                                match proto {
                                    Protocol::Tcp => "TCP",
                                    Protocol::Udp => "UDP",
                                    Protocol::Sctp => "SCTP",
                                }
                                .to_owned(),
                            ),
                            app_protocol: app,
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

/// A short, stable hash (FNV-1a, 8 hex digits) for deterministic child names.
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(spec: serde_json::Value) -> Microservice {
        let mut m: Microservice = serde_json::from_value(serde_json::json!({
            "apiVersion": "atrium.dev/v1alpha1", "kind": "Microservice",
            "metadata": {"name": "legacy", "namespace": "shop", "uid": "u1"},
            "spec": spec,
        }))
        .expect("valid Microservice");
        m.metadata.uid = Some("u1".into());
        m
    }

    #[test]
    fn groups_instances_by_address_type_and_ports() {
        let m = ms(serde_json::json!({
            "ports": [{"name": "http", "port": 80}],
            "endpoints": [
                {"address": "198.18.9.1"},
                {"address": "198.18.9.2"},
                {"address": "198.18.9.3", "ports": [{"name": "http", "port": 8080}]},
                {"address": "2001:db8::1"},
                {"address": "legacy.example.com"},
            ],
        }));
        let slices = endpoint_slices(&m, |a| a != "198.18.9.2");
        let summary: Vec<(String, Vec<String>, i32)> = slices
            .iter()
            .map(|s| {
                (
                    s.address_type.clone(),
                    s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
                    s.ports.as_ref().and_then(|p| p[0].port).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(summary.len(), 4);
        assert!(summary.contains(&(
            "IPv4".into(),
            vec!["198.18.9.1".into(), "198.18.9.2".into()],
            80
        )));
        assert!(summary.contains(&("IPv4".into(), vec!["198.18.9.3".into()], 8080)));
        assert!(summary.contains(&("IPv6".into(), vec!["2001:db8::1".into()], 80)));
        assert!(summary.contains(&("FQDN".into(), vec!["legacy.example.com".into()], 80)));
        let unready = slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .find(|e| e.addresses[0] == "198.18.9.2")
            .and_then(|e| e.conditions.as_ref())
            .and_then(|c| c.ready);
        assert_eq!(unready, Some(false));
        for s in &slices {
            let l = s.metadata.labels.as_ref().expect("labels");
            assert_eq!(l[crate::registry::SERVICE_NAME_LABEL], "legacy");
            assert_eq!(s.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        }
    }

    #[test]
    fn targets_use_the_health_check_port_with_overrides() {
        let m = ms(serde_json::json!({
            "ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}],
            "healthCheck": {"port": 9000, "path": "/healthz"},
            "endpoints": [
                {"address": "198.18.9.1"},
                {"address": "198.18.9.2", "ports": [{"name": "admin", "port": 9100}]},
            ],
        }));
        assert_eq!(
            targets(&m),
            [
                Target {
                    address: "198.18.9.1".into(),
                    port: 9000
                },
                Target {
                    address: "198.18.9.2".into(),
                    port: 9100
                }
            ]
        );
    }

    #[test]
    fn short_hash_is_stable() {
        assert_eq!(short_hash("http:80"), short_hash("http:80"));
        assert_ne!(short_hash("http:80"), short_hash("http:81"));
        assert_eq!(short_hash("").len(), 8);
    }
}
