//! The exact API permissions the controller needs, next to the code that uses them. The Helm
//! chart and manifests render these; `atrium rbac` prints them as a ClusterRole, and the
//! integration tests run the controller with nothing more.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const READ: &[&str] = &["get", "list", "watch"];
const MANAGE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

/// Rules of the controller role.
pub fn controller_rules() -> Vec<PolicyRule> {
    vec![
        // Our kinds: read specs, write status (conditions, counts, revisions).
        rule(
            "atrium.dev",
            &[
                "microservices",
                "serviceconfigs",
                "gatewayroutes",
                "routepolicies",
            ],
            READ,
        ),
        rule(
            "atrium.dev",
            &[
                "microservices/status",
                "serviceconfigs/status",
                "gatewayroutes/status",
            ],
            &["get", "update", "patch"],
        ),
        // Children of a Microservice (server-side apply = patch; stale optional children deleted).
        rule("apps", &["deployments"], MANAGE),
        // ServiceConfig history: a revision a ReplicaSet still uses is not pruned.
        rule("apps", &["replicasets"], READ),
        rule("", &["services", "configmaps"], MANAGE),
        rule("discovery.k8s.io", &["endpointslices"], MANAGE),
        rule("autoscaling", &["horizontalpodautoscalers"], MANAGE),
        rule("policy", &["poddisruptionbudgets"], MANAGE),
        rule("monitoring.coreos.com", &["podmonitors"], MANAGE),
        // Events for `kubectl describe`.
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        // GatewayRoute validation reads the JWT key Secrets a route names (by name, never a
        // list or watch of every Secret).
        rule("", &["secrets"], &["get"]),
        // The Gateway API: read classes, Gateways, routes and grants; write their status; the
        // data-plane finalizer on Gateways; namespaces' labels for `allowedRoutes` selectors.
        rule(
            "gateway.networking.k8s.io",
            &[
                "gatewayclasses",
                "gateways",
                "httproutes",
                "referencegrants",
            ],
            READ,
        ),
        rule(
            "gateway.networking.k8s.io",
            &[
                "gatewayclasses/status",
                "gateways/status",
                "httproutes/status",
            ],
            &["get", "update", "patch"],
        ),
        rule(
            "gateway.networking.k8s.io",
            &["gateways"],
            &["update", "patch"],
        ),
        rule("", &["namespaces"], READ),
    ]
}

/// Rules for leader election (`--leader-elect`), granted by a Role in the controller's own
/// namespace only.
pub fn leader_election_rules() -> Vec<PolicyRule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )]
}

/// Rules of the gateway role (cluster mode): read routes and endpoints, and Secrets (JWT keys
/// that routes name, the `--tls-secret` certificate). Nothing is written. Bind it with a
/// RoleBinding per namespace (or run with `--watch-namespace`) to keep Secret access to the
/// namespaces the gateway serves.
pub fn gateway_rules() -> Vec<PolicyRule> {
    vec![
        rule("atrium.dev", &["gatewayroutes", "routepolicies"], READ),
        rule("", &["services"], READ),
        rule("discovery.k8s.io", &["endpointslices"], READ),
        rule("", &["secrets"], READ),
        // Gateway mode (`--gateway`): the Gateway, its routes, grants and namespaces' labels.
        rule(
            "gateway.networking.k8s.io",
            &["gateways", "httproutes", "referencegrants"],
            READ,
        ),
        rule("", &["namespaces"], READ),
    ]
}

/// The gateway's ClusterRole, named `name`.
pub fn gateway_cluster_role(name: &str) -> ClusterRole {
    role(name, "gateway", gateway_rules())
}

fn role(name: &str, component: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [
                    ("app.kubernetes.io/name".to_owned(), "atrium".to_owned()),
                    (
                        "app.kubernetes.io/component".to_owned(),
                        component.to_owned(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// The leader-election rules as a role named `name` (`atrium rbac --role leader-election`;
/// the chart binds them with a Role in the release namespace only).
pub fn leader_election_role(name: &str) -> ClusterRole {
    role(name, "controller", leader_election_rules())
}

/// The controller's ClusterRole, named `name`.
pub fn controller_cluster_role(name: &str) -> ClusterRole {
    role(name, "controller", controller_rules())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_only_reads() {
        for r in gateway_rules() {
            assert!(
                r.verbs
                    .iter()
                    .all(|v| ["get", "list", "watch"].contains(&v.as_str())),
                "{r:?}"
            );
        }
    }

    #[test]
    fn no_wildcards_and_secrets_only_by_name() {
        for r in controller_rules() {
            assert!(!r.verbs.iter().any(|v| v == "*"), "{r:?}");
            let res = r.resources.clone().unwrap_or_default();
            assert!(!res.iter().any(|x| x == "*"), "{res:?}");
            if res.iter().any(|x| x == "secrets") {
                assert_eq!(r.verbs, vec!["get".to_owned()], "{r:?}");
            }
        }
    }
}
