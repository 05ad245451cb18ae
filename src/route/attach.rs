//! Which listeners of a Gateway an HTTPRoute attaches to, and if none, why: one rule for the
//! controller (route and listener status) and the data plane (what each port serves).
//!
//! A parentRef names a Gateway (group and kind default to the Gateway API's, namespace to the
//! route's) and optionally one listener (`sectionName`) or port. A listener takes the route
//! when its protocol carries HTTP, its `allowedRoutes.kinds` include HTTPRoute, its
//! `allowedRoutes.namespaces` admit the route's namespace (`Same` by default, `All`, or a
//! label `Selector`), and the hostnames intersect.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::http_route::{KIND, intersect_hostnames};
use crate::api::gateway_api::http_route::ParentRef;
use crate::api::gateway_api::{GROUP, Gateway, HTTPRoute, Listener};

/// A listener the route attaches to, with the hostnames it serves there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// The listener's name.
    pub listener: String,
    /// Its port.
    pub port: u16,
    /// The intersected hostnames (empty: every hostname).
    pub hostnames: Vec<String>,
}

/// What one parentRef of a route comes to on the Gateway it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentResult {
    /// The parentRef as the route wrote it.
    pub parent: ParentRef,
    /// The listeners it attaches to.
    pub attached: Vec<Attached>,
    /// When it attaches to none: the `Accepted=False` reason and a message.
    pub refused: Option<(&'static str, String)>,
}

/// Whether the parentRef names this Gateway.
pub fn names_gateway(parent: &ParentRef, route_namespace: &str, gateway: &Gateway) -> bool {
    parent.group.as_deref().unwrap_or(GROUP) == GROUP
        && parent.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        && parent.namespace.as_deref().unwrap_or(route_namespace)
            == gateway.namespace().unwrap_or_default()
        && parent.name == gateway.name_any()
}

/// Whether a listener's protocol carries HTTPRoutes.
pub fn carries_http(listener: &Listener) -> bool {
    matches!(listener.protocol.as_str(), "HTTP" | "HTTPS")
}

/// Whether a label selector selects these labels (`matchLabels` and `matchExpressions` with
/// `In`, `NotIn`, `Exists`, `DoesNotExist`; an unknown operator selects nothing).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// Whether the listener admits HTTPRoutes from a namespace with these labels.
pub fn admits(
    listener: &Listener,
    gateway_namespace: &str,
    route_namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let allowed = listener.allowed_routes.clone().unwrap_or_default();
    let kinds_ok = allowed.kinds.is_empty()
        || allowed
            .kinds
            .iter()
            .any(|k| k.kind == KIND && k.group.as_deref().unwrap_or(GROUP) == GROUP);
    let namespaces = allowed.namespaces.unwrap_or_default();
    let namespace_ok = match namespaces.from.as_deref().unwrap_or("Same") {
        "All" => true,
        "Selector" => namespaces
            .selector
            .as_ref()
            .is_some_and(|s| selects(s, labels)),
        _ => route_namespace == gateway_namespace,
    };
    carries_http(listener) && kinds_ok && namespace_ok
}

/// Every parentRef of `route` that names `gateway`, and what it comes to. `labels` are the
/// route namespace's labels (for `Selector`).
pub fn attach(
    gateway: &Gateway,
    route: &HTTPRoute,
    labels: &BTreeMap<String, String>,
) -> Vec<ParentResult> {
    let route_ns = route.namespace().unwrap_or_default();
    let gateway_ns = gateway.namespace().unwrap_or_default();
    route
        .spec
        .parent_refs
        .iter()
        .filter(|p| names_gateway(p, &route_ns, gateway))
        .map(|parent| {
            let candidates: Vec<&Listener> = gateway
                .spec
                .listeners
                .iter()
                .filter(|l| parent.section_name.as_deref().is_none_or(|s| s == l.name))
                .filter(|l| parent.port.is_none_or(|p| p == l.port))
                .collect();
            if candidates.is_empty() {
                return ParentResult {
                    parent: parent.clone(),
                    attached: vec![],
                    refused: Some((
                        "NoMatchingParent",
                        "no listener of the Gateway has that sectionName or port".into(),
                    )),
                };
            }
            let admitting: Vec<&&Listener> = candidates
                .iter()
                .filter(|l| admits(l, &gateway_ns, &route_ns, labels))
                .collect();
            let attached: Vec<Attached> = admitting
                .iter()
                .filter_map(|l| {
                    intersect_hostnames(l.hostname.as_deref(), &route.spec.hostnames).map(
                        |hostnames| Attached {
                            listener: l.name.clone(),
                            port: l.port,
                            hostnames,
                        },
                    )
                })
                .collect();
            let refused = match (attached.is_empty(), admitting.is_empty()) {
                (false, _) => None,
                (true, true) => Some((
                    "NotAllowedByListeners",
                    format!("no listener admits HTTPRoutes from namespace {route_ns}"),
                )),
                (true, false) => Some((
                    "NoMatchingListenerHostname",
                    "the route's hostnames match no listener's hostname".to_owned(),
                )),
            };
            ParentResult {
                parent: parent.clone(),
                attached,
                refused,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Gateway {
        serde_saphyr::from_str(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\nspec:\n  gatewayClassName: atrium\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n  - {name: same, port: 8080, protocol: HTTP}\n  - {name: web, port: 80, protocol: HTTP, hostname: '*.example.com', allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: web}}}}}\n  - {name: tcp, port: 9000, protocol: TCP, allowedRoutes: {namespaces: {from: All}}}\n",
        )
        .expect("gateway")
    }

    fn route(ns: &str, spec: &str) -> HTTPRoute {
        serde_saphyr::from_str(&format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}}}\nspec: {spec}\n")).expect("route")
    }

    fn listeners(results: &[ParentResult]) -> Vec<Vec<&str>> {
        results
            .iter()
            .map(|r| r.attached.iter().map(|a| a.listener.as_str()).collect())
            .collect()
    }

    #[test]
    fn listeners_admit_by_namespace_kind_and_hostname() {
        let gw = gateway();
        let none = BTreeMap::new();
        let web = BTreeMap::from([("team".to_owned(), "web".to_owned())]);
        // From another namespace: only the `All` listener; with the label, the selector one too.
        let r = route(
            "app",
            "{parentRefs: [{name: gw, namespace: infra}], hostnames: [a.example.com]}",
        );
        assert_eq!(listeners(&attach(&gw, &r, &none)), [["http"]]);
        assert_eq!(listeners(&attach(&gw, &r, &web)), [["http", "web"]]);
        // Same namespace: the default `Same` listener admits it; TCP never does.
        let r = route("infra", "{parentRefs: [{name: gw}]}");
        assert_eq!(listeners(&attach(&gw, &r, &none)), [["http", "same"]]);
        let r = route("infra", "{parentRefs: [{name: gw, sectionName: tcp}]}");
        assert_eq!(
            attach(&gw, &r, &none)[0].refused.as_ref().map(|r| r.0),
            Some("NotAllowedByListeners")
        );
        // sectionName / port select listeners; none matching is NoMatchingParent.
        let r = route(
            "infra",
            "{parentRefs: [{name: gw, port: 8080}, {name: gw, sectionName: nope}]}",
        );
        let res = attach(&gw, &r, &none);
        assert_eq!(listeners(&res)[0], ["same"]);
        assert_eq!(
            res[1].refused.as_ref().map(|r| r.0),
            Some("NoMatchingParent")
        );
        // Hostnames that meet no listener's.
        let r = route(
            "app",
            "{parentRefs: [{name: gw, namespace: infra, sectionName: web}], hostnames: [other.org]}",
        );
        assert_eq!(
            attach(&gw, &r, &web)[0].refused.as_ref().map(|r| r.0),
            Some("NoMatchingListenerHostname")
        );
        // Another Gateway's parentRef is not ours.
        let r = route("infra", "{parentRefs: [{name: other}]}");
        assert!(attach(&gw, &r, &none).is_empty());
    }

    #[test]
    fn label_selectors() {
        let s: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"a": "1"},
            "matchExpressions": [{"key": "b", "operator": "In", "values": ["x", "y"]}, {"key": "c", "operator": "DoesNotExist"}]
        }))
        .expect("selector");
        let l = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(selects(&s, &l(&[("a", "1"), ("b", "y")])));
        assert!(!selects(&s, &l(&[("a", "1"), ("b", "z")])));
        assert!(!selects(&s, &l(&[("a", "1"), ("b", "x"), ("c", "")])));
    }
}
