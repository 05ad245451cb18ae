//! What the controller writes into GatewayClass, Gateway and HTTPRoute status: pure functions
//! of the objects, with the reasons the Gateway API defines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::api::conditions::{condition, set_condition};
use crate::api::gateway_api::http_route::{HTTPRouteStatus, RouteParentStatus};
use crate::api::gateway_api::{
    CONTROLLER_NAME, GROUP, Gateway, GatewayAddress, GatewayClass, GatewayClassStatus,
    GatewayStatus, HTTPRoute, ListenerStatus, RouteGroupKind, SupportedFeature,
};
use crate::route::attach::{attach, carries_http};
use crate::route::http_route::{self, Refs};
use crate::route::listener_tls::CertError;

/// The features `status.supportedFeatures` lists: exactly those the conformance suite passes
/// (`docs/conformance.md`), sorted as the API requires.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "Gateway",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteSchemeRedirect",
    "ReferenceGrant",
];

/// The GatewayClass status: Accepted, with the supported features.
pub fn class_status(
    class: &GatewayClass,
    old: Option<&GatewayClassStatus>,
    now: Time,
) -> GatewayClassStatus {
    let mut conditions = old.map(|s| s.conditions.clone()).unwrap_or_default();
    set_condition(
        &mut conditions,
        condition(
            "Accepted",
            true,
            "Accepted",
            "Atrium implements this class",
            class.metadata.generation,
            now,
        ),
    );
    GatewayClassStatus {
        conditions,
        supported_features: SUPPORTED_FEATURES
            .iter()
            .map(|f| SupportedFeature {
                name: (*f).to_owned(),
            })
            .collect(),
    }
}

/// Where the data plane stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataPlane {
    /// Addresses it answers on.
    pub addresses: Vec<GatewayAddress>,
    /// Whether a data-plane pod is ready.
    pub ready: bool,
}

/// The namespaces' labels, for `allowedRoutes` selectors.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

fn http_route_kind() -> RouteGroupKind {
    RouteGroupKind {
        group: Some(GROUP.to_owned()),
        kind: http_route::KIND.to_owned(),
    }
}

/// What was found of each HTTPS listener's certificates (by listener name).
pub type ListenerCerts = BTreeMap<String, Result<(), CertError>>;

/// The Gateway status: addresses, Accepted/Programmed, and per listener its supported kinds,
/// attached routes and conditions. `certs` says, per HTTPS listener, whether its
/// certificates resolved ([`crate::route::listener_tls`]).
#[allow(clippy::too_many_arguments)]
pub fn gateway_status(
    gateway: &Gateway,
    routes: &[Arc<HTTPRoute>],
    labels: &NamespaceLabels,
    plane: &DataPlane,
    certs: &ListenerCerts,
    old: Option<&GatewayStatus>,
    now: &Time,
) -> GatewayStatus {
    let generation = gateway.metadata.generation;
    let cond = |t: &str, ok: bool, reason: &str, msg: String| {
        condition(t, ok, reason, msg, generation, now.clone())
    };
    let none = BTreeMap::new();
    let mut attached: BTreeMap<String, i32> = BTreeMap::new();
    for r in routes {
        let ns_labels = labels
            .get(&r.namespace().unwrap_or_default())
            .unwrap_or(&none);
        let mut seen = BTreeSet::new();
        for parent in attach(gateway, r, ns_labels) {
            for a in parent.attached {
                if seen.insert(a.listener.clone()) {
                    *attached.entry(a.listener).or_default() += 1;
                }
            }
        }
    }
    // Listeners that share a port with a different protocol conflict.
    let mut protocols: BTreeMap<u16, BTreeSet<&str>> = BTreeMap::new();
    for l in &gateway.spec.listeners {
        protocols
            .entry(l.port)
            .or_default()
            .insert(l.protocol.as_str());
    }
    let old_listeners: BTreeMap<&str, &ListenerStatus> = old
        .map(|s| s.listeners.iter().map(|l| (l.name.as_str(), l)).collect())
        .unwrap_or_default();
    let mut all_valid = true;
    let mut any_valid = false;
    let listeners = gateway
        .spec
        .listeners
        .iter()
        .map(|l| {
            let requested = l
                .allowed_routes
                .as_ref()
                .map(|a| a.kinds.clone())
                .unwrap_or_default();
            let valid_kinds = |k: &RouteGroupKind| {
                k.kind == http_route::KIND && k.group.as_deref().unwrap_or(GROUP) == GROUP
            };
            let supported: Vec<RouteGroupKind> = if requested.is_empty() {
                vec![http_route_kind()]
            } else {
                requested
                    .iter()
                    .filter(|k| valid_kinds(k))
                    .map(|_| http_route_kind())
                    .collect()
            };
            let kinds_ok = requested.iter().all(valid_kinds);
            let conflicted = protocols.get(&l.port).is_some_and(|p| p.len() > 1);
            let protocol_ok = carries_http(l);
            let cert_error = certs.get(&l.name).and_then(|r| r.as_ref().err());
            let mut c: Vec<Condition> = old_listeners
                .get(l.name.as_str())
                .map(|o| o.conditions.clone())
                .unwrap_or_default();
            let accepted = protocol_ok && !conflicted;
            all_valid &= accepted && kinds_ok && cert_error.is_none();
            // A listener whose certificates do not resolve is still accepted (routes attach
            // to it); only a Gateway with no HTTP-carrying listener is not.
            any_valid |= carries_http(l) && !conflicted;
            set_condition(
                &mut c,
                if conflicted {
                    cond(
                        "Conflicted",
                        true,
                        "ProtocolConflict",
                        format!(
                            "another listener uses port {} with another protocol",
                            l.port
                        ),
                    )
                } else {
                    cond("Conflicted", false, "NoConflicts", "no conflicts".into())
                },
            );
            set_condition(
                &mut c,
                match (protocol_ok, conflicted) {
                    (false, _) => cond(
                        "Accepted",
                        false,
                        "UnsupportedProtocol",
                        format!(
                            "protocol {} is not supported (HTTP and HTTPS are)",
                            l.protocol
                        ),
                    ),
                    (true, true) => cond(
                        "Accepted",
                        false,
                        "ProtocolConflict",
                        "the port is also used with another protocol".into(),
                    ),
                    (true, false) => cond("Accepted", true, "Accepted", "listener accepted".into()),
                },
            );
            set_condition(
                &mut c,
                match (kinds_ok, cert_error) {
                    (false, _) => cond(
                        "ResolvedRefs",
                        false,
                        "InvalidRouteKinds",
                        "allowedRoutes.kinds names a kind other than HTTPRoute".into(),
                    ),
                    (true, Some(e)) => cond("ResolvedRefs", false, e.reason, e.message.clone()),
                    (true, None) => cond(
                        "ResolvedRefs",
                        true,
                        "ResolvedRefs",
                        "all references resolved".into(),
                    ),
                },
            );
            set_condition(
                &mut c,
                match (accepted && cert_error.is_none(), plane.ready) {
                    (false, _) => cond(
                        "Programmed",
                        false,
                        "Invalid",
                        "the listener is not accepted or its references do not resolve".into(),
                    ),
                    (true, false) => cond(
                        "Programmed",
                        false,
                        "Pending",
                        "waiting for the data plane to be ready".into(),
                    ),
                    (true, true) => cond(
                        "Programmed",
                        true,
                        "Programmed",
                        "the data plane serves this listener".into(),
                    ),
                },
            );
            ListenerStatus {
                name: l.name.clone(),
                supported_kinds: if carries_http(l) { supported } else { vec![] },
                attached_routes: attached.get(&l.name).copied().unwrap_or(0),
                conditions: c,
            }
        })
        .collect();
    let mut conditions = old.map(|s| s.conditions.clone()).unwrap_or_default();
    set_condition(
        &mut conditions,
        match (all_valid, any_valid) {
            (true, _) => cond("Accepted", true, "Accepted", "gateway accepted".into()),
            (false, true) => cond(
                "Accepted",
                true,
                "ListenersNotValid",
                "some listeners are not valid; see status.listeners".into(),
            ),
            (false, false) => cond(
                "Accepted",
                false,
                "ListenersNotValid",
                "no listener is valid; see status.listeners".into(),
            ),
        },
    );
    set_condition(
        &mut conditions,
        if plane.ready {
            cond(
                "Programmed",
                true,
                "Programmed",
                "the data plane is ready".into(),
            )
        } else {
            cond(
                "Programmed",
                false,
                "Pending",
                "waiting for the data plane to be ready".into(),
            )
        },
    );
    GatewayStatus {
        addresses: plane.addresses.clone(),
        conditions,
        listeners,
    }
}

/// A route's status: for every parentRef that names one of `gateways` (ours), Accepted and
/// ResolvedRefs; other controllers' entries are kept as they are. `service_exists` says
/// whether `namespace/name` is a Service.
pub fn route_status(
    route: &HTTPRoute,
    gateways: &[Arc<Gateway>],
    labels: &NamespaceLabels,
    refs: &Refs<'_>,
    service_exists: &dyn Fn(&str) -> bool,
    now: &Time,
) -> HTTPRouteStatus {
    let generation = route.metadata.generation;
    let cond = |t: &str, ok: bool, reason: &str, msg: String| {
        condition(t, ok, reason, msg, generation, now.clone())
    };
    let old = route.status.clone().unwrap_or_default();
    let mut parents: Vec<RouteParentStatus> = old
        .parents
        .iter()
        .filter(|p| p.controller_name != CONTROLLER_NAME)
        .cloned()
        .collect();
    let none = BTreeMap::new();
    let ns_labels = labels
        .get(&route.namespace().unwrap_or_default())
        .unwrap_or(&none);
    let compiled = http_route::compile(route, vec![], refs);
    let mut missing: Vec<String> = Vec::new();
    for rule in &route.spec.rules {
        for b in &rule.backend_refs {
            let plain = b.group.as_deref().unwrap_or("").is_empty()
                && b.kind.as_deref().unwrap_or("Service") == "Service";
            let ns = b
                .namespace
                .clone()
                .unwrap_or_else(|| route.namespace().unwrap_or_default());
            if plain && !service_exists(&format!("{ns}/{}", b.name)) {
                missing.push(format!("{ns}/{}", b.name));
            }
        }
    }
    for gw in gateways {
        for result in attach(gw, route, ns_labels) {
            let mut conditions: Vec<Condition> = old
                .parents
                .iter()
                .find(|p| p.controller_name == CONTROLLER_NAME && p.parent_ref == result.parent)
                .map(|p| p.conditions.clone())
                .unwrap_or_default();
            let accepted = match (&result.refused, &compiled) {
                (Some((reason, msg)), _) => cond("Accepted", false, reason, msg.clone()),
                (None, Err(e)) => cond("Accepted", false, "UnsupportedValue", e.reason.clone()),
                (None, Ok(_)) => cond("Accepted", true, "Accepted", "attached".into()),
            };
            set_condition(&mut conditions, accepted);
            let resolved = match &compiled {
                Ok(c) if !c.unresolved.is_empty() => {
                    let u = &c.unresolved[0];
                    cond("ResolvedRefs", false, u.reason, u.message.clone())
                }
                _ if !missing.is_empty() => cond(
                    "ResolvedRefs",
                    false,
                    "BackendNotFound",
                    format!("Service {} does not exist", missing.join(", ")),
                ),
                _ => cond(
                    "ResolvedRefs",
                    true,
                    "ResolvedRefs",
                    "all references resolved".into(),
                ),
            };
            set_condition(&mut conditions, resolved);
            parents.push(RouteParentStatus {
                parent_ref: result.parent,
                controller_name: CONTROLLER_NAME.to_owned(),
                conditions,
            });
        }
    }
    HTTPRouteStatus { parents }
}

/// Whether a data plane serves any of the Gateway's listeners (HTTP or HTTPS).
pub fn servable(gateway: &Gateway) -> bool {
    gateway.spec.listeners.iter().any(carries_http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).expect("time"))
    }

    fn gateway() -> Gateway {
        serde_saphyr::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra, generation: 2}\nspec:\n  gatewayClassName: atrium\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n  - {name: tcp, port: 80, protocol: TCP}\n  - {name: kinds, port: 8080, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}\n",
        )
        .expect("gateway")
    }

    fn route(ns: &str, spec: &str) -> Arc<HTTPRoute> {
        Arc::new(serde_saphyr::from_str(&format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}, generation: 5}}\nspec: {spec}\n")).expect("route"))
    }

    fn find<'a>(c: &'a [Condition], t: &str) -> (&'a str, &'a str) {
        c.iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .unwrap_or_default()
    }

    #[test]
    fn listeners_report_conflicts_kinds_and_attached_routes() {
        let gw = gateway();
        let routes = [route("app", "{parentRefs: [{name: gw, namespace: infra}]}")];
        let plane = DataPlane {
            addresses: vec![GatewayAddress {
                type_: "IPAddress".into(),
                value: "198.18.1.5".into(),
            }],
            ready: true,
        };
        let s = gateway_status(
            &gw,
            &routes,
            &NamespaceLabels::new(),
            &plane,
            &ListenerCerts::new(),
            None,
            &now(),
        );
        assert_eq!(find(&s.conditions, "Programmed"), ("True", "Programmed"));
        assert_eq!(
            find(&s.conditions, "Accepted"),
            ("True", "ListenersNotValid")
        );
        let l = |n: &str| s.listeners.iter().find(|l| l.name == n).expect("listener");
        assert_eq!(
            find(&l("http").conditions, "Conflicted"),
            ("True", "ProtocolConflict")
        );
        assert_eq!(
            find(&l("tcp").conditions, "Accepted"),
            ("False", "UnsupportedProtocol")
        );
        assert_eq!(
            find(&l("kinds").conditions, "ResolvedRefs"),
            ("False", "InvalidRouteKinds")
        );
        assert!(l("kinds").supported_kinds.is_empty());
        assert_eq!(l("http").attached_routes, 1);
        assert_eq!(s.addresses[0].value, "198.18.1.5");
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
    }

    #[test]
    fn a_gateway_without_a_valid_listener_is_not_accepted() {
        let gw: Gateway = serde_saphyr::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\nspec:\n  gatewayClassName: atrium\n  listeners: [{name: udp, port: 53, protocol: UDP}, {name: tcp, port: 9000, protocol: TCP}]\n",
        )
        .expect("gateway");
        let status = |g: &Gateway| {
            gateway_status(
                g,
                &[],
                &NamespaceLabels::new(),
                &DataPlane::default(),
                &ListenerCerts::new(),
                None,
                &now(),
            )
        };
        let s = status(&gw);
        assert_eq!(
            find(&s.conditions, "Accepted"),
            ("False", "ListenersNotValid")
        );
        assert!(s.listeners[0].supported_kinds.is_empty());
        // An HTTPS listener makes the Gateway Accepted; its certificates decide ResolvedRefs
        // and Programmed, not whether routes attach.
        let mut https = gw.clone();
        https.spec.listeners[1].protocol = "HTTPS".into();
        let s = status(&https);
        assert_eq!(
            find(&s.conditions, "Accepted"),
            ("True", "ListenersNotValid")
        );
        assert_eq!(
            s.listeners[1].supported_kinds,
            vec![http_route_kind()],
            "HTTPS carries HTTPRoutes"
        );
        let certs = ListenerCerts::from([(
            "tcp".to_owned(),
            Err(CertError {
                reason: "RefNotPermitted",
                message: "no grant".into(),
            }),
        )]);
        let ready = DataPlane {
            addresses: vec![],
            ready: true,
        };
        let s = gateway_status(
            &https,
            &[],
            &NamespaceLabels::new(),
            &ready,
            &certs,
            None,
            &now(),
        );
        let l = &s.listeners[1];
        assert_eq!(find(&l.conditions, "Accepted"), ("True", "Accepted"));
        assert_eq!(
            find(&l.conditions, "ResolvedRefs"),
            ("False", "RefNotPermitted")
        );
        assert_eq!(find(&l.conditions, "Programmed"), ("False", "Invalid"));
        let fine = ListenerCerts::from([("tcp".to_owned(), Ok(()))]);
        let s = gateway_status(
            &https,
            &[],
            &NamespaceLabels::new(),
            &ready,
            &fine,
            None,
            &now(),
        );
        assert_eq!(
            find(&s.listeners[1].conditions, "Programmed"),
            ("True", "Programmed")
        );
    }

    #[test]
    fn routes_get_a_status_per_parent_and_keep_other_controllers() {
        let gw = Arc::new(gateway());
        let mut r = (*route(
            "app",
            "{parentRefs: [{name: gw, namespace: infra, sectionName: http}, {name: gw, namespace: infra, sectionName: nope}], rules: [{backendRefs: [{name: web, port: 80}, {name: gone, port: 80}]}]}",
        ))
        .clone();
        r.status = Some(serde_json::from_value(serde_json::json!({"parents": [{"parentRef": {"name": "x"}, "controllerName": "example.com/other", "conditions": []}]})).expect("status"));
        let exists = |k: &str| k == "app/web";
        let s = route_status(
            &r,
            &[gw],
            &NamespaceLabels::new(),
            &Refs::grants(&[]),
            &exists,
            &now(),
        );
        assert_eq!(s.parents.len(), 3);
        assert_eq!(s.parents[0].controller_name, "example.com/other");
        assert_eq!(
            find(&s.parents[1].conditions, "Accepted"),
            ("True", "Accepted")
        );
        assert_eq!(
            find(&s.parents[1].conditions, "ResolvedRefs"),
            ("False", "BackendNotFound")
        );
        assert_eq!(
            find(&s.parents[2].conditions, "Accepted"),
            ("False", "NoMatchingParent")
        );
        assert!(
            s.parents[1]
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(5))
        );
    }
}
